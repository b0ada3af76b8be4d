"""Shared builders for the consensus tests: keys, validator sets, signed messages and an engine harness."""

from __future__ import annotations

import hashlib

from consensus.engine import Engine, EngineConfig, TimeoutConfig
from consensus.events import (
    Broadcast,
    Commit,
    Committed,
    ProposalReceived,
    ProposalValueReady,
    RequestProposal,
    ScheduleTimeout,
    TimeoutFired,
    ValidateValue,
    ValueValidated,
    VoteReceived,
)
from consensus.messages import PRECOMMIT, PREVOTE, Proposal, Signer, Vote, compute_value_hash
from consensus.validators import ValidatorSet
from consensus.wal import MemoryWAL

CHAIN = "kabuto-test"
TIMEOUTS = TimeoutConfig(100, 10, 50, 5, 50, 5)


def make_signers(n: int, tag: bytes = b"t") -> list[Signer]:
    return [Signer(hashlib.sha256(b"%s/%d" % (tag, i)).digest()) for i in range(n)]


def make_valset(signers: list[Signer], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * len(signers)
    return ValidatorSet.from_genesis([(s.public_key, p) for s, p in zip(signers, powers)])


def signed_vote(signer: Signer, vote_type: int, height: int, round_: int, value_hash: bytes | None,
                timestamp_ms: int = 0, chain: str = CHAIN) -> Vote:
    return Vote(vote_type, height, round_, value_hash, signer.address, timestamp_ms).signed(signer, chain)


def prevote(signer: Signer, height: int, round_: int, value_hash: bytes | None, chain: str = CHAIN) -> Vote:
    return signed_vote(signer, PREVOTE, height, round_, value_hash, chain=chain)


def precommit(signer: Signer, height: int, round_: int, value_hash: bytes | None, ts: int = 0) -> Vote:
    return signed_vote(signer, PRECOMMIT, height, round_, value_hash, ts)


def signed_proposal(signer: Signer, height: int, round_: int, value: bytes, pol_round: int = -1,
                    chain: str = CHAIN) -> Proposal:
    p = Proposal(height, round_, pol_round, compute_value_hash(value), value, signer.address)
    return p.signed(signer, chain)


class Harness:
    """One engine among `n` equal-power validators; the others are plain signers the test speaks for."""

    def __init__(self, n: int = 4, me: int | None = None, powers: list[int] | None = None) -> None:
        self.signers = make_signers(n)
        self.valset = make_valset(self.signers, powers)
        self.by_address = {s.address: s for s in self.signers}
        proposer = self.valset.proposer_at(0)
        if me is None:  # by default the engine is not the round-0 proposer
            me = next(i for i, s in enumerate(self.signers) if s.address != proposer)
        self.me = self.signers[me]
        self.others = [s for s in self.signers if s is not self.me]
        self.wal = MemoryWAL()
        self.config = EngineConfig(CHAIN, TIMEOUTS)
        self.engine = Engine(self.config, self.me, 1, self.valset, self.valset.next_height_set(), self.wal)
        self.actions = self.engine.start(0)
        self.now = 0

    def proposer(self, round_: int, height: int = 1) -> Signer:
        valset = self.engine.validators if height == self.engine.height else self.engine.next_validators
        return self.by_address[valset.proposer_at(round_)]

    def feed(self, event) -> list:
        self.now += 1
        self.actions = self.engine.handle(event, self.now)
        return self.actions

    def feed_all(self, events) -> list:
        out = []
        for e in events:
            out += self.feed(e)
        self.actions = out
        return out

    def answer_validation(self, valid: bool = True) -> list:
        out = []
        for a in [a for a in self.actions if isinstance(a, ValidateValue)]:
            out += self.feed(ValueValidated(a.height, a.value_hash, valid))
        self.actions = out
        return out

    def votes_from(self, signers, vote_type: int, round_: int, value_hash: bytes | None, height: int = 1) -> list:
        return [VoteReceived(signed_vote(s, vote_type, height, round_, value_hash)) for s in signers]


def broadcasts(actions) -> list:
    return [a.message for a in actions if isinstance(a, Broadcast)]


def own_votes(actions, vote_type: int) -> list[Vote]:
    return [m for m in broadcasts(actions) if isinstance(m, Vote) and m.vote_type == vote_type]


def timeouts(actions) -> list[ScheduleTimeout]:
    return [a for a in actions if isinstance(a, ScheduleTimeout)]


def commits(actions) -> list[Commit]:
    return [a for a in actions if isinstance(a, Commit)]


__all__ = [
    "CHAIN", "TIMEOUTS", "Harness", "make_signers", "make_valset", "signed_vote", "prevote", "precommit",
    "signed_proposal", "broadcasts", "own_votes", "timeouts", "commits", "Committed", "ProposalReceived",
    "ProposalValueReady", "RequestProposal", "TimeoutFired", "VoteReceived", "ValueValidated", "ValidateValue",
    "PREVOTE", "PRECOMMIT",
]
