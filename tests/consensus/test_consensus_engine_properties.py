"""Property test: random interleavings of messages, timeouts and verdicts on one engine keep its invariants.

The message pool is signed once; hypothesis picks orders. After every event: no unexpected exception, at most
one own message per (round, step), `valid_round >= locked_round`, at most one decision and its certificate
verifies. Replaying the WAL into a fresh engine reproduces the same state.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.commit import verify_certificate
from consensus.engine import Engine
from consensus.errors import ConsensusError
from consensus.events import STEP_PRECOMMIT, STEP_PREVOTE, STEP_PROPOSE, Commit, TimeoutFired
from consensus.messages import Proposal, compute_value_hash
from consensus.wal import MemoryWAL
from consensus_helpers import (
    CHAIN,
    PRECOMMIT,
    PREVOTE,
    Harness,
    ProposalReceived,
    ValueValidated,
    VoteReceived,
    broadcasts,
    signed_proposal,
    signed_vote,
)

ROUNDS = 4
VALUES = [b"alpha", b"beta"]
HASHES = [compute_value_hash(v) for v in VALUES] + [None]
BASE = Harness()


def build_pool():
    pool = []
    for r in range(ROUNDS):
        proposer = BASE.proposer(r)
        if proposer is not BASE.me:
            for value in VALUES:
                for pol in range(-1, r):
                    pool.append(ProposalReceived(signed_proposal(proposer, 1, r, value, pol)))
        for signer in BASE.others:
            for vote_type in (PREVOTE, PRECOMMIT):
                for value_hash in HASHES:
                    pool.append(VoteReceived(signed_vote(signer, vote_type, 1, r, value_hash)))
    for r in range(ROUNDS):
        for step in (STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT):
            pool.append(TimeoutFired(1, r, step))
    for value_hash in HASHES[:2]:
        pool.append(ValueValidated(1, value_hash, True))
    pool.append(ValueValidated(1, HASHES[1], False))
    return pool


POOL = build_pool()


def fresh_engine():
    engine = Engine(BASE.config, BASE.me, 1, BASE.valset, BASE.valset.next_height_set(), MemoryWAL())
    engine.start(0)
    return engine


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=80))
def test_random_interleavings_keep_invariants(picks):
    engine = fresh_engine()
    own: dict[tuple[int, int, int], object] = {}
    decisions = []
    for now, pick in enumerate(picks, start=1):
        try:
            actions = engine.handle(POOL[pick], now)
        except ConsensusError:
            continue
        for message in broadcasts(actions):
            step = STEP_PROPOSE if isinstance(message, Proposal) else message.vote_type
            key = (message.height, message.round, step)
            assert own.setdefault(key, message).value_hash == message.value_hash
        decisions += [a for a in actions if isinstance(a, Commit)]
        assert engine.valid_round >= engine.locked_round
        assert engine.double_sign_refusals == 0
    assert len(decisions) <= 1
    for commit in decisions:
        assert verify_certificate(commit.certificate, BASE.valset, CHAIN) > 0
    restored, _ = Engine.restore(BASE.config, BASE.me, 1, BASE.valset, BASE.valset.next_height_set(),
                                 MemoryWAL(bytes(engine.wal.data)))
    state = lambda e: (e.round, e.step, e.locked_hash, e.locked_round, e.valid_hash, e.valid_round, e.decided)
    assert state(restored) == state(engine)
    assert restored.double_sign_refusals == 0
