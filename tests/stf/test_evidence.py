"""Spec vectors for `ReportEvidence` (action 41, stf/evidence.py, docs/PROTOCOL.md §5.21): double signing
recorded in the evidence entry, one `test_invalid_*` per rejection (result codes 39..45, and the tier-1 shapes),
the entry in the state root, the block diff and a snapshot, determinism across processes, and the sign bytes
the STF rebuilds kept equal to consensus's own (`consensus.messages.Vote.sign_bytes`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.evidence import make_duplicate_vote_evidence, verify_evidence
from consensus.messages import PRECOMMIT, PREVOTE, Vote, decode_message, encode_message
from consensus.validators import ValidatorSet
from stf import codec
from stf.block import apply_block, make_block
from stf.errors import InvalidBlock, MalformedAction, ResultCode as R, Unauthorized
from stf.events import EvidenceEvent
from stf.evidence import compute_vote_sign_bytes
from stf.state import State, apply_entries, evidence_key, export_entries
from stf.tx import ApproveAgent, EvidenceVote, ReportEvidence, decode_action, encode_action
from stf.units import U64_MAX
from stf_helpers import Chain, make_key

HASH_A, HASH_B = b"\xaa" * 32, b"\xbb" * 32
OUTSIDER = make_key(99)  # never a validator
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def evidence_chain() -> Chain:
    """Validators: keys 0, 1 and 2 with power 1 each; key 3 is an ordinary account."""
    chain = Chain(validators={0: 1, 1: 1, 2: 1})
    chain.block()
    chain.block()  # height 2: votes of heights 1 and 2 are in the past
    return chain


def signed_vote(key, chain_id: str, value_hash: bytes | None, height: int = 1, round_: int = 0,
                vote_type: int = PREVOTE, timestamp_ms: int = 1_767_225_601_000) -> Vote:
    """A vote signed as consensus signs it (consensus.messages), for `key`'s address."""
    return Vote(vote_type, height, round_, value_hash, key.address, timestamp_ms).signed(key, chain_id)


def as_evidence_vote(vote: Vote) -> EvidenceVote:
    return EvidenceVote(*encode_message(vote))


def report(key, first: Vote, second: Vote, public_key: bytes | None = None) -> ReportEvidence:
    return ReportEvidence(public_key or key.public_key, as_evidence_vote(first), as_evidence_vote(second))


def double_prevote(chain: Chain, key, height: int = 1, round_: int = 0, vote_type: int = PREVOTE,
                   values: tuple = (HASH_A, None)) -> ReportEvidence:
    chain_id = chain.state.params.chain_id
    a, b = (signed_vote(key, chain_id, v, height, round_, vote_type) for v in values)
    return report(key, a, b)


def code_of(result) -> int:
    return result.receipts[0].results[0].code


# --- the sign bytes the STF rebuilds ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(
    vote_type=st.sampled_from([PREVOTE, PRECOMMIT]), height=st.integers(1, U64_MAX), round_=st.integers(0, U64_MAX),
    value_hash=st.none() | st.binary(min_size=32, max_size=32), validator=st.binary(min_size=20, max_size=20),
    timestamp_ms=st.integers(0, U64_MAX),
    chain_id=st.from_regex(r"[a-z0-9][a-z0-9-]{0,49}", fullmatch=True),
)
def test_stf_vote_sign_bytes_equal_consensus_sign_bytes(vote_type, height, round_, value_hash, validator,
                                                          timestamp_ms, chain_id) -> None:
    vote = Vote(vote_type, height, round_, value_hash, validator, timestamp_ms, b"\x00" * 64)
    assert compute_vote_sign_bytes(chain_id, as_evidence_vote(vote)) == vote.sign_bytes(chain_id)


def test_consensus_evidence_round_trips_through_the_action() -> None:
    """What the engine reports (`DuplicateVoteEvidence.encode()`) is exactly what the action carries."""
    key = make_key(1)
    a, b = signed_vote(key, "kabuto-test", HASH_A), signed_vote(key, "kabuto-test", None)
    evidence = make_duplicate_vote_evidence(a, b)
    action = ReportEvidence(key.public_key, *(EvidenceVote(*fields) for fields in evidence.encode()))
    raw = codec.decode(codec.encode(encode_action(action)), 10_000)
    assert raw == [41, key.public_key, *evidence.encode()]
    assert decode_action(raw) == action
    assert [decode_message(list(v)) for v in (action.vote_a, action.vote_b)] == [evidence.vote_a, evidence.vote_b]
    assert verify_evidence(evidence, ValidatorSet.from_genesis([(key.public_key, 1)]), "kabuto-test") == key.address


# --- success ---------------------------------------------------------------------------------------------------

def test_report_evidence_records_the_offence_with_an_event_and_nothing_else() -> None:
    chain = evidence_chain()
    offender, reporter = chain.keys[1], chain.keys[3]
    before = dict(export_entries(chain.state))
    result = chain.run(reporter, double_prevote(chain, offender, height=2, round_=1))
    assert code_of(result) == R.OK and result.receipts[0].results[0] == (R.OK, None, 0)
    assert result.events == [EvidenceEvent(offender.address, 2, 1, PREVOTE, reporter.address)]
    assert chain.state.evidence == {(offender.address, 2): {(1, PREVOTE): 3}}
    key = evidence_key(offender.address, 2)
    assert key == b"e" + offender.address + (2).to_bytes(8, "big") and len(key) == 29
    changed = dict(result.entries)
    assert codec.decode(changed[key], 1000) == [offender.address, 2, [[1, PREVOTE, 3]]]
    # nothing else: the reporter's nonces and the global entry move as for any transaction; no balance changes
    assert sorted(k[:1] for k in changed) == [b"e", b"g", b"n"]
    after = dict(export_entries(chain.state))
    assert after[key] == changed[key] and key not in before
    assert chain.state.merkle.root() == result.state_root


def test_evidence_of_another_round_or_vote_type_is_another_offence_in_the_same_entry() -> None:
    chain = evidence_chain()
    offender = chain.keys[0]
    result = chain.block(
        chain.tx(chain.keys[3], double_prevote(chain, offender, height=1, round_=0)),
        chain.tx(chain.keys[2], double_prevote(chain, offender, height=1, round_=0, vote_type=PRECOMMIT)),
        chain.tx(chain.keys[1], double_prevote(chain, offender, height=1, round_=2, values=(HASH_A, HASH_B))),
        chain.tx(chain.keys[3], double_prevote(chain, offender, height=2, round_=0)))
    assert [r.results[0].code for r in result.receipts] == [R.OK] * 4
    assert chain.state.evidence == {
        (offender.address, 1): {(0, PREVOTE): 3, (0, PRECOMMIT): 3, (2, PREVOTE): 3},
        (offender.address, 2): {(0, PREVOTE): 3},
    }
    value = dict(result.entries)[evidence_key(offender.address, 1)]
    assert codec.decode(value, 1000) == [offender.address, 1, [[0, PREVOTE, 3], [0, PRECOMMIT, 3], [2, PREVOTE, 3]]]


def test_votes_in_either_order_and_of_the_current_height_are_accepted() -> None:
    chain = evidence_chain()
    offender = chain.keys[2]
    action = double_prevote(chain, offender, height=3, values=(None, HASH_A))  # the block's own height, nil first
    assert code_of(chain.run(chain.keys[3], action)) == R.OK
    assert (offender.address, 3) in chain.state.evidence


# --- rejections (result codes) ---------------------------------------------------------------------------------

def assert_refused(chain: Chain, action: ReportEvidence, code: R) -> None:
    before = export_entries(chain.state)
    result = chain.run(chain.keys[3], action)
    assert code_of(result) == code and result.events == []
    after = [e for e in export_entries(chain.state) if e[0][:1] == b"e"]
    assert after == [e for e in before if e[0][:1] == b"e"]


@pytest.mark.parametrize("field", ["vote_type", "height", "round", "validator"])
def test_invalid_evidence_votes_of_different_offences(field: str) -> None:
    chain = evidence_chain()
    offender, chain_id = chain.keys[0], chain.state.params.chain_id
    a = signed_vote(offender, chain_id, HASH_A)
    other = {"vote_type": dict(vote_type=PRECOMMIT), "height": dict(height=2), "round": dict(round_=1)}.get(field)
    if other is None:  # the same vote by another validator
        b = Vote(PREVOTE, 1, 0, None, chain.keys[1].address, 1).signed(chain.keys[1], chain_id)
    else:
        b = signed_vote(offender, chain_id, None, **other)
    assert_refused(chain, report(offender, a, b), R.EVIDENCE_MISMATCH)


@pytest.mark.parametrize("value", [None, HASH_A], ids=["nil", "hash"])
def test_invalid_evidence_votes_for_the_same_value(value) -> None:
    chain = evidence_chain()
    offender, chain_id = chain.keys[0], chain.state.params.chain_id
    a = signed_vote(offender, chain_id, value, timestamp_ms=1)
    b = signed_vote(offender, chain_id, value, timestamp_ms=2)  # only the timestamp differs: not an offence
    assert_refused(chain, report(offender, a, b), R.EVIDENCE_SAME_VALUE)


def test_invalid_evidence_key_of_another_address() -> None:
    chain = evidence_chain()
    action = double_prevote(chain, chain.keys[0])
    assert_refused(chain, action._replace(public_key=chain.keys[1].public_key), R.EVIDENCE_WRONG_KEY)


def test_invalid_evidence_against_a_non_validator() -> None:
    chain = evidence_chain()
    assert_refused(chain, double_prevote(chain, OUTSIDER), R.EVIDENCE_NOT_A_VALIDATOR)


def test_invalid_evidence_from_a_future_height() -> None:
    chain = evidence_chain()  # the next block is height 3
    assert_refused(chain, double_prevote(chain, chain.keys[0], height=4), R.EVIDENCE_FUTURE_HEIGHT)


def test_invalid_evidence_already_recorded() -> None:
    chain = evidence_chain()
    offender = chain.keys[0]
    first = chain.block(chain.tx(chain.keys[3], double_prevote(chain, offender)),
                        chain.tx(chain.keys[1], double_prevote(chain, offender)))  # two honest reporters, one block
    assert [r.results[0].code for r in first.receipts] == [R.OK, R.EVIDENCE_ALREADY_RECORDED]
    assert len(first.events) == 1
    # another pair of votes proving the same offence is refused too, later
    again = double_prevote(chain, offender, values=(HASH_B, HASH_A))
    assert_refused(chain, again, R.EVIDENCE_ALREADY_RECORDED)
    assert chain.state.evidence == {(offender.address, 1): {(0, PREVOTE): 3}}


@pytest.mark.parametrize("broken", ["other_chain", "vote_a_signature", "vote_b_signature"])
def test_invalid_evidence_signature(broken: str) -> None:
    chain = evidence_chain()
    offender = chain.keys[0]
    chain_id = "kabuto-other" if broken == "other_chain" else chain.state.params.chain_id
    a, b = signed_vote(offender, chain_id, HASH_A), signed_vote(offender, chain_id, None)
    flipped = bytes([a.signature[0] ^ 1]) + a.signature[1:]
    if broken == "vote_a_signature":
        a = Vote(a.vote_type, a.height, a.round, a.value_hash, a.validator, a.timestamp_ms, flipped)
    elif broken == "vote_b_signature":
        b = Vote(b.vote_type, b.height, b.round, b.value_hash, b.validator, b.timestamp_ms, flipped)
    assert_refused(chain, report(offender, a, b), R.EVIDENCE_BAD_SIGNATURE)


def test_invalid_evidence_checks_run_in_the_documented_order() -> None:
    """A report breaking several rules gets the first one's code (39 .. 45 is the order)."""
    chain = evidence_chain()
    chain_id = chain.state.params.chain_id
    outsider_future = report(OUTSIDER, signed_vote(OUTSIDER, chain_id, HASH_A, height=9),
                             signed_vote(OUTSIDER, chain_id, None, height=9))
    assert code_of(chain.run(chain.keys[3], outsider_future)) == R.EVIDENCE_NOT_A_VALIDATOR
    bad_signature_future = double_prevote(chain, chain.keys[0], height=9)
    bad_signature_future = bad_signature_future._replace(
        vote_a=bad_signature_future.vote_a._replace(signature=b"\x00" * 64))
    assert code_of(chain.run(chain.keys[3], bad_signature_future)) == R.EVIDENCE_FUTURE_HEIGHT


# --- rejections (invalid transactions) -------------------------------------------------------------------------

def raw_report() -> list:
    key = make_key(1)
    a, b = signed_vote(key, "kabuto-test", HASH_A), signed_vote(key, "kabuto-test", None)
    return [41, key.public_key, encode_message(a), encode_message(b)]


def broken(path: tuple, value) -> list:
    raw = raw_report()
    target = raw
    for index in path[:-1]:
        target = target[index]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize("raw", [
    raw_report()[:3],                                   # a field missing
    raw_report() + [0],                                 # a field too many
    broken((1,), b"\x01" * 31),                         # public key not 32 bytes
    broken((2,), "vote"),                               # a vote that is not an array
    broken((2,), encode_message(signed_vote(make_key(1), "kabuto-test", HASH_A))[:6]),  # 6 fields
    broken((2, 0), 1),                                  # vote type 1 (a proposal tag)
    broken((3, 0), 4),
    broken((2, 0), True),                               # a boolean is not a type
    broken((2, 1), 0),                                  # height 0
    broken((2, 1), U64_MAX + 1),
    broken((2, 2), -1),                                 # negative round
    broken((2, 3), b"\x01" * 31),                       # value hash not 32 bytes
    broken((3, 3), 0),                                  # value hash neither bin32 nor nil
    broken((2, 4), b"\x01" * 21),                       # validator not 20 bytes
    broken((2, 5), -5),                                 # negative timestamp
    broken((3, 6), b"\x00" * 63),                       # signature not 64 bytes
], ids=lambda raw: repr(raw)[:60])
def test_invalid_evidence_encoding(raw: list) -> None:
    with pytest.raises(MalformedAction):
        decode_action(raw)


def test_invalid_evidence_signed_by_an_agent_is_an_invalid_transaction() -> None:
    chain = evidence_chain()
    owner, agent = chain.keys[3], chain.keys[2]
    chain.run(owner, ApproveAgent(agent.address))
    with pytest.raises(InvalidBlock) as info:
        chain.run(agent, double_prevote(chain, chain.keys[0]), account=owner.address)
    assert type(info.value.__cause__) is Unauthorized


# --- the entry in diffs, snapshots and the root ----------------------------------------------------------------

def test_evidence_entry_installs_from_a_block_diff_and_from_a_snapshot() -> None:
    chain = evidence_chain()
    follower = State(chain.state.params)
    apply_entries(follower, export_entries(chain.state))           # a client holding the state at height 2
    result = chain.block(chain.tx(chain.keys[3], double_prevote(chain, chain.keys[0])),
                         chain.tx(chain.keys[3], double_prevote(chain, chain.keys[1], height=2, round_=5)))
    assert apply_entries(follower, result.entries) == result.state_root == chain.state.merkle.root()
    assert follower.evidence == chain.state.evidence
    restored = State(chain.state.params)
    assert apply_entries(restored, export_entries(chain.state)) == chain.state.merkle.root()
    assert restored.evidence == chain.state.evidence
    # a state installed from a snapshot refuses a repeat exactly as the original does
    repeat = double_prevote(chain, chain.keys[0], values=(HASH_B, None))
    block = make_block(chain.state, chain.time_ms + 1000, [chain.tx(chain.keys[3], repeat)])
    assert apply_block(restored, block).receipts[0].results[0].code == R.EVIDENCE_ALREADY_RECORDED


def test_recording_evidence_changes_the_state_root() -> None:
    with_evidence, without = evidence_chain(), evidence_chain()
    with_evidence.run(with_evidence.keys[3], double_prevote(with_evidence, with_evidence.keys[0]))
    without.run(without.keys[3], double_prevote(without, OUTSIDER))  # the same transaction shape, refused
    assert with_evidence.state.merkle.root() != without.state.merkle.root()


# --- determinism -----------------------------------------------------------------------------------------------

def run_evidence_flow() -> list[str]:
    """Blocks recording many offences of several validators, heights and rounds in a scrambled order; the root
    after each block (run in fresh processes with other hash seeds by the test below)."""
    chain = Chain(validators={i: 1 + i for i in range(4)}, accounts=5)
    for _ in range(3):
        chain.block()
    roots = []
    for step in range(4):
        actions = []
        for n in range(6):
            offender = chain.keys[(n * 7 + step) % 4]
            values = (HASH_A, None) if n % 2 else (HASH_B, HASH_A)
            actions.append(double_prevote(chain, offender, height=1 + (n + step) % 3, round_=(n * step) % 4,
                                          vote_type=PREVOTE if n % 3 else PRECOMMIT, values=values))
        txs = [chain.tx(chain.keys[4], action) for action in actions]
        roots.append(chain.block(*txs).state_root.hex())
    return roots


def test_evidence_roots_are_the_same_across_processes_and_hash_seeds() -> None:
    here = run_evidence_flow()
    assert len(set(here)) == len(here)
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]; "
            "from test_evidence import run_evidence_flow; print(' '.join(run_evidence_flow()))")
    for seed in ("1", "31337"):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, check=True, cwd=ROOT)
        assert out.stdout.split() == here
