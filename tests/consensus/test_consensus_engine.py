"""Spec vectors for the engine: each upon-rule of Algorithm 1, each rejection path, heights, WAL and restart."""

import pytest

from consensus.commit import verify_certificate
from consensus.engine import Engine
from consensus.errors import (
    FutureHeight,
    FutureRound,
    InvalidValidatorUpdate,
    SimulatedCrash,
    InvalidSignature,
    MalformedMessage,
    StaleHeight,
    UnknownValidator,
    WrongProposer,
)
from consensus.events import (
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Broadcast,
    CommitReceived,
    ReportEvidence,
    ScheduleTimeout,
    encode_signed_record,
)
from consensus.evidence import verify_evidence
from consensus.messages import Proposal, Vote, compute_value_hash
from consensus.validators import ValidatorUpdate
from consensus.wal import FileWAL, MemoryWAL
from consensus_helpers import (
    CHAIN,
    PRECOMMIT,
    PREVOTE,
    Committed,
    Harness,
    ProposalReceived,
    ProposalValueReady,
    RequestProposal,
    TimeoutFired,
    ValueValidated,
    VoteReceived,
    commits,
    make_signers,
    own_votes,
    precommit,
    prevote,
    signed_proposal,
    timeouts,
)

VALUE = b"value-one"
V = compute_value_hash(VALUE)
OTHER = b"value-two"
W = compute_value_hash(OTHER)


def propose(h: Harness, round_: int = 0, value: bytes = VALUE, pol_round: int = -1, valid: bool = True):
    out = h.feed(ProposalReceived(signed_proposal(h.proposer(round_), 1, round_, value, pol_round)))
    return out + h.answer_validation(valid)


def lock_on_value_in_round_0(h: Harness):
    propose(h)
    return h.feed_all(h.votes_from(h.others[:2], PREVOTE, 0, V))


# ----- starting a round ---------------------------------------------------------------------------------------

def test_non_proposer_starts_round_0_with_a_propose_timeout_only():
    h = Harness()
    assert h.actions == [ScheduleTimeout(1, 0, STEP_PROPOSE, 100)]
    assert (h.engine.height, h.engine.round, h.engine.step) == (1, 0, STEP_PROPOSE)


def test_proposer_asks_for_a_value_then_proposes_and_prevotes_it():
    probe = Harness()
    h = Harness(me=probe.signers.index(probe.proposer(0)))
    assert any(isinstance(a, RequestProposal) and (a.height, a.round) == (1, 0) for a in h.actions)
    out = h.feed(ProposalValueReady(1, 0, VALUE))
    proposals = [a.message for a in out if isinstance(a, Broadcast) and isinstance(a.message, Proposal)]
    assert [(p.value, p.pol_round) for p in proposals] == [(VALUE, -1)]
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [V]


def test_proposal_value_for_another_round_is_ignored():
    h = Harness()
    assert h.feed(ProposalValueReady(1, 0, VALUE)) == []


# ----- lines 22-33: prevote on a proposal -----------------------------------------------------------------------

def test_valid_proposal_is_validated_then_prevoted():
    h = Harness()
    out = h.feed(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)))
    assert [type(a).__name__ for a in out] == ["ValidateValue"]
    out = h.answer_validation(True)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [V]
    assert h.engine.step == STEP_PREVOTE


def test_invalid_value_gets_a_nil_prevote():
    h = Harness()
    out = propose(h, valid=False)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [None]


def test_timeout_propose_prevotes_nil():
    h = Harness()
    out = h.feed(TimeoutFired(1, 0, STEP_PROPOSE))
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [None]


def test_stale_timeout_is_ignored():
    h = Harness()
    h.feed(TimeoutFired(1, 0, STEP_PROPOSE))
    assert h.feed(TimeoutFired(1, 0, STEP_PROPOSE)) == []
    assert h.feed(TimeoutFired(1, 3, STEP_PRECOMMIT)) == []


# ----- lines 34-48: prevote quorums ---------------------------------------------------------------------------

def test_prevote_quorum_for_the_proposal_locks_and_precommits():
    h = Harness()
    out = lock_on_value_in_round_0(h)
    assert [v.value_hash for v in own_votes(out, PRECOMMIT)] == [V]
    e = h.engine
    assert (e.locked_hash, e.locked_round, e.valid_hash, e.valid_round, e.step) == (V, 0, V, 0, STEP_PRECOMMIT)


def test_prevote_quorum_of_mixed_values_schedules_prevote_timeout_then_precommits_nil():
    h = Harness()
    propose(h)
    out = h.feed_all([VoteReceived(prevote(h.others[0], 1, 0, None)), VoteReceived(prevote(h.others[1], 1, 0, W))])
    assert [t.step for t in timeouts(out)] == [STEP_PREVOTE]
    out = h.feed(TimeoutFired(1, 0, STEP_PREVOTE))
    assert [v.value_hash for v in own_votes(out, PRECOMMIT)] == [None]


def test_nil_prevote_quorum_precommits_nil():
    h = Harness()
    h.feed(TimeoutFired(1, 0, STEP_PROPOSE))
    out = h.feed_all(h.votes_from(h.others[:2], PREVOTE, 0, None))
    assert [v.value_hash for v in own_votes(out, PRECOMMIT)] == [None]
    assert h.engine.locked_round == -1


def test_prevote_quorum_after_precommit_only_updates_valid_value():
    h = Harness()
    h.feed(TimeoutFired(1, 0, STEP_PROPOSE))
    h.feed_all([VoteReceived(prevote(h.others[0], 1, 0, W)), VoteReceived(prevote(h.others[1], 1, 0, None))])
    h.feed(TimeoutFired(1, 0, STEP_PREVOTE))
    assert h.engine.step == STEP_PRECOMMIT
    h.feed(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)))
    h.feed_all(h.votes_from(h.others, PREVOTE, 0, V))  # two of them double-vote: counted per value, as in the paper
    h.answer_validation(True)
    e = h.engine
    assert (e.locked_round, e.valid_round, e.valid_hash, e.step) == (-1, 0, V, STEP_PRECOMMIT)


# ----- lines 47-54 and 65: precommits ---------------------------------------------------------------------------

def test_precommit_quorum_decides_with_a_verifiable_certificate():
    h = Harness()
    lock_on_value_in_round_0(h)
    out = h.feed_all(h.votes_from(h.others[:2], PRECOMMIT, 0, V))
    [commit] = commits(out)
    assert (commit.height, commit.value) == (1, VALUE)
    assert len(commit.certificate.precommits) == 3
    assert verify_certificate(commit.certificate, h.valset, CHAIN) == 3
    assert h.engine.decided


def test_decides_on_others_precommits_even_while_in_propose_step():
    h = Harness()
    h.feed_all(h.votes_from(h.others, PRECOMMIT, 0, V))
    assert h.engine.step == STEP_PROPOSE
    h.feed(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)))
    out = h.answer_validation(True)
    assert [c.value for c in commits(out)] == [VALUE]


def test_no_decision_without_the_value():
    h = Harness()
    out = h.feed_all(h.votes_from(h.others, PRECOMMIT, 0, V))
    assert commits(out) == [] and not h.engine.decided


def test_precommit_quorum_of_any_value_schedules_timeout_then_next_round():
    h = Harness()
    out = h.feed_all([VoteReceived(precommit(s, 1, 0, None)) for s in h.others])
    assert [t.step for t in timeouts(out)] == [STEP_PRECOMMIT]
    out = h.feed(TimeoutFired(1, 0, STEP_PRECOMMIT))
    assert (h.engine.round, h.engine.step) == (1, STEP_PROPOSE)
    assert [t.duration_ms for t in timeouts(out) if t.step == STEP_PROPOSE] == [110]


def test_timeouts_grow_with_the_round():
    h = Harness()
    durations = []
    for r in range(3):
        durations.append([t.duration_ms for t in timeouts(h.feed_all(
            [VoteReceived(precommit(s, 1, r, None)) for s in h.others]))])
        h.feed(TimeoutFired(1, r, STEP_PRECOMMIT))
    assert durations == [[50], [55], [60]]


# ----- lines 55-56: skip ---------------------------------------------------------------------------------------

def test_one_third_of_power_in_a_higher_round_skips_to_it():
    h = Harness()
    out = h.feed(VoteReceived(prevote(h.others[0], 1, 5, None)))
    assert h.engine.round == 0
    out = h.feed(VoteReceived(precommit(h.others[1], 1, 5, None)))
    assert h.engine.round == 5
    assert any(t.round == 5 and t.step == STEP_PROPOSE for t in timeouts(out))


# ----- locking rules --------------------------------------------------------------------------------------------

def _to_round(h: Harness, round_: int):
    while h.engine.round < round_:
        r = h.engine.round
        h.feed_all([VoteReceived(precommit(s, 1, r, None)) for s in h.others])
        h.feed(TimeoutFired(1, r, STEP_PRECOMMIT))


def _not_my_round(h: Harness, start: int) -> int:
    return next(r for r in range(start, start + 8) if h.valset.proposer_at(r) != h.me.address)


def test_locked_validator_prevotes_nil_for_another_value():
    h = Harness()
    lock_on_value_in_round_0(h)
    r = _not_my_round(h, 1)
    _to_round(h, r)
    out = propose(h, round_=r, value=OTHER)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [None]


def test_locked_validator_prevotes_its_locked_value_again():
    h = Harness()
    lock_on_value_in_round_0(h)
    r = _not_my_round(h, 1)
    _to_round(h, r)
    out = propose(h, round_=r, value=VALUE, pol_round=-1)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [V]


def test_locked_validator_follows_a_newer_proof_of_lock():
    h = Harness()
    lock_on_value_in_round_0(h)
    r = _not_my_round(h, 2)
    _to_round(h, r)
    h.feed_all(h.votes_from(h.others, PREVOTE, 1, W))
    out = propose(h, round_=r, value=OTHER, pol_round=1)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [W]


def test_locked_validator_ignores_an_older_proof_of_lock():
    h = Harness()
    _to_round(h, 1)
    propose(h, round_=1) if h.valset.proposer_at(1) != h.me.address else h.feed(ProposalValueReady(1, 1, VALUE))
    h.feed_all(h.votes_from(h.others[:2], PREVOTE, 1, V))
    assert h.engine.locked_round == 1
    r = _not_my_round(h, 2)
    _to_round(h, r)
    h.feed_all(h.votes_from(h.others, PREVOTE, 0, W))
    out = propose(h, round_=r, value=OTHER, pol_round=0)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [None]


def test_proposal_with_pol_waits_for_the_pol_prevotes():
    h = Harness()
    r = _not_my_round(h, 2)
    _to_round(h, r)
    out = propose(h, round_=r, value=OTHER, pol_round=1)
    assert own_votes(out, PREVOTE) == []
    out = h.feed_all(h.votes_from(h.others[:3], PREVOTE, 1, W))
    out += h.answer_validation(True)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [W]


def test_proposer_reproposes_its_valid_value_with_its_round():
    h = Harness()
    lock_on_value_in_round_0(h)
    my_round = next(r for r in range(1, 12) if h.valset.proposer_at(r) == h.me.address)
    _to_round(h, my_round)
    sent = [a.message for a in h.actions if isinstance(a, Broadcast) and isinstance(a.message, Proposal)]
    assert [(p.round, p.value, p.pol_round) for p in sent] == [(my_round, VALUE, 0)]
    assert not any(isinstance(a, RequestProposal) for a in h.actions)


# ----- rejections -----------------------------------------------------------------------------------------------

def test_invalid_vote_bad_signature():
    h = Harness()
    good = prevote(h.others[0], 1, 0, V)
    bad = Vote(good.vote_type, good.height, good.round, good.value_hash, good.validator, 0, b"\x01" * 64)
    with pytest.raises(InvalidSignature):
        h.feed(VoteReceived(bad))


def test_invalid_vote_wrong_chain_id():
    h = Harness()
    with pytest.raises(InvalidSignature):
        h.feed(VoteReceived(prevote(h.others[0], 1, 0, V, chain="other-chain")))


def test_invalid_vote_unknown_validator():
    h = Harness()
    stranger = make_signers(1, b"stranger")[0]
    with pytest.raises(UnknownValidator):
        h.feed(VoteReceived(prevote(stranger, 1, 0, V)))


def test_invalid_vote_stale_height():
    h = Harness()
    decide_height_1(h)
    h.feed(Committed(1))
    with pytest.raises(StaleHeight):
        h.feed(VoteReceived(prevote(h.others[2], 1, 0, V)))


def test_invalid_vote_far_future_height():
    h = Harness()
    with pytest.raises(FutureHeight):
        h.feed(VoteReceived(prevote(h.others[0], 3, 0, V)))


def test_invalid_vote_malformed():
    h = Harness()
    with pytest.raises(MalformedMessage):
        h.feed(VoteReceived(Vote(PREVOTE, 1, 0, b"short", h.others[0].address, 0, b"s" * 64)))


def test_invalid_proposal_wrong_proposer():
    h = Harness()
    impostor = next(s for s in h.signers if s.address != h.valset.proposer_at(0))
    with pytest.raises(WrongProposer):
        h.feed(ProposalReceived(signed_proposal(impostor, 1, 0, VALUE)))


def test_invalid_proposal_far_future_round():
    h = Harness()
    stranger = make_signers(1, b"stranger")[0]
    with pytest.raises(FutureRound):
        h.feed(ProposalReceived(signed_proposal(stranger, 1, 10**9, VALUE)))


def test_invalid_proposal_bad_signature():
    h = Harness()
    p = signed_proposal(h.proposer(0), 1, 0, VALUE, chain="other-chain")
    with pytest.raises(InvalidSignature):
        h.feed(ProposalReceived(p))


def test_invalid_proposal_value_does_not_match_hash():
    h = Harness()
    p = signed_proposal(h.proposer(0), 1, 0, VALUE)
    forged = Proposal(p.height, p.round, p.pol_round, p.value_hash, OTHER, p.proposer, p.signature)
    with pytest.raises(MalformedMessage):
        h.feed(ProposalReceived(forged))


def test_rejected_input_changes_nothing_and_writes_nothing():
    h = Harness()
    before = bytes(h.wal.data)
    with pytest.raises(InvalidSignature):
        h.feed(VoteReceived(prevote(h.others[0], 1, 0, V, chain="x")))
    assert bytes(h.wal.data) == before and h.engine.prevotes == {}


def test_second_proposal_for_a_round_is_ignored():
    h = Harness()
    propose(h)
    assert h.feed(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, OTHER))) == []
    assert h.engine.proposals[0].value == VALUE


# ----- evidence --------------------------------------------------------------------------------------------------

def test_double_vote_is_reported_once_as_verifiable_evidence():
    h = Harness()
    culprit = h.others[0]
    h.feed(VoteReceived(prevote(culprit, 1, 0, V)))
    out = h.feed(VoteReceived(prevote(culprit, 1, 0, W)))
    [report] = [a for a in out if isinstance(a, ReportEvidence)]
    assert verify_evidence(report.evidence, h.valset, CHAIN) == culprit.address
    assert h.feed(VoteReceived(prevote(culprit, 1, 0, W))) == []
    assert h.engine.evidence == [report.evidence]


# ----- heights and validator sets ---------------------------------------------------------------------------------

def decide_height_1(h: Harness):
    lock_on_value_in_round_0(h)
    return h.feed_all(h.votes_from(h.others[:2], PRECOMMIT, 0, V))


def test_next_height_starts_only_after_committed():
    h = Harness()
    decide_height_1(h)
    assert h.engine.height == 1
    out = h.feed(Committed(1))
    assert (h.engine.height, h.engine.round, h.engine.step, h.engine.decided) == (2, 0, STEP_PROPOSE, False)
    assert any(isinstance(a, ScheduleTimeout) and a.height == 2 for a in out)


def test_messages_for_the_next_height_are_buffered_and_applied():
    h = Harness()
    early = prevote(h.others[0], 2, 0, None)
    assert h.feed(VoteReceived(early)) == []
    decide_height_1(h)
    h.feed(Committed(1))
    assert h.engine.prevotes[0].votes[early.validator] == early


def test_validator_updates_take_effect_two_heights_later():
    h = Harness()
    newcomer = make_signers(1, b"newcomer")[0]
    decide_height_1(h)
    h.feed(Committed(1, (ValidatorUpdate(newcomer.public_key, 3),)))
    assert h.engine.validators.get(newcomer.address) is None
    assert h.engine.next_validators.power_of(newcomer.address) == 3


def test_invalid_validator_update_is_rejected_before_anything_changes():
    h = Harness()
    decide_height_1(h)
    before = bytes(h.wal.data)
    with pytest.raises(InvalidValidatorUpdate):
        h.feed(Committed(1, (ValidatorUpdate(make_signers(1, b"nobody")[0].public_key, 0),)))
    assert bytes(h.wal.data) == before and h.engine.height == 1
    h.feed(Committed(1))
    assert h.engine.height == 2


def test_block_sync_certificate_decides_the_height():
    h = Harness()
    other = Harness()
    decide_height_1(other)
    cert = commits(other.actions)[0].certificate
    h.feed(CommitReceived(VALUE, cert))
    out = h.answer_validation(True)
    assert [c.value for c in commits(out)] == [VALUE]


def test_invalid_block_sync_value_mismatch():
    h = Harness()
    other = Harness()
    decide_height_1(other)
    with pytest.raises(MalformedMessage):
        h.feed(CommitReceived(OTHER, commits(other.actions)[0].certificate))


def test_observer_without_key_never_signs():
    h = Harness()
    signers = h.signers
    engine = Engine(h.config, None, 1, h.valset, h.valset.next_height_set(), MemoryWAL())
    engine.start(0)
    engine.handle(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)), 1)
    out = engine.handle(ValueValidated(1, V, True), 2)
    assert [a for a in out if isinstance(a, Broadcast)] == [] and engine.step == STEP_PREVOTE
    for s in signers[:3]:
        out = engine.handle(VoteReceived(precommit(s, 1, 0, V)), 3)
    assert [c.value for c in commits(out)] == [VALUE]


# ----- WAL, restart and the double-sign guard ----------------------------------------------------------------------

def test_own_vote_is_durable_before_it_is_broadcast():
    h = Harness()
    out = propose(h)
    [vote] = own_votes(out, PREVOTE)
    assert h.wal.durable == len(h.wal.data)
    assert encode_signed_record(vote) in h.wal.records()


def restore(h: Harness, wal: MemoryWAL):
    return Engine.restore(h.config, h.me, 1, h.valset, h.valset.next_height_set(), wal)


def test_restart_restores_round_state_and_resends_the_same_votes():
    h = Harness()
    lock_on_value_in_round_0(h)
    sent = own_votes(h.actions, PRECOMMIT)
    engine, actions = restore(h, MemoryWAL(bytes(h.wal.data)))
    state = lambda e: (e.height, e.round, e.step, e.locked_hash, e.locked_round, e.valid_round)
    assert state(engine) == state(h.engine)
    assert own_votes(actions, PRECOMMIT) == sent
    assert any(isinstance(a, ScheduleTimeout) for a in actions)


def test_restart_after_a_torn_write_loses_only_the_unsent_tail():
    h = Harness()
    propose(h)
    h.wal.arm_crash(writes=1, keep=5)
    with pytest.raises(Exception):
        h.feed(VoteReceived(prevote(h.others[0], 1, 0, V)))
    engine, _ = restore(h, MemoryWAL(bytes(h.wal.data)))
    assert engine.step == STEP_PREVOTE and h.others[0].address not in engine.prevotes[0].votes


def test_double_sign_guard_refuses_a_conflicting_vote_after_restart():
    h = Harness()
    wal = MemoryWAL()
    conflicting = prevote(h.me, 1, 0, W)
    wal.append(encode_signed_record(conflicting), True)
    engine, _ = restore(h, wal)
    engine.handle(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)), 1)
    out = engine.handle(ValueValidated(1, V, True), 2)
    assert own_votes(out, PREVOTE) == []
    assert engine.double_sign_refusals == 1


def test_double_sign_guard_resends_the_identical_earlier_vote():
    h = Harness()
    wal = MemoryWAL()
    earlier = Vote(PREVOTE, 1, 0, V, h.me.address, 77).signed(h.me, CHAIN)
    wal.append(encode_signed_record(earlier), True)
    engine, _ = restore(h, wal)
    engine.handle(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)), 1)
    out = engine.handle(ValueValidated(1, V, True), 2)
    assert own_votes(out, PREVOTE) == [earlier]
    assert engine.double_sign_refusals == 0


def test_restart_at_next_height_replays_from_the_marker():
    h = Harness()
    decide_height_1(h)
    h.feed(Committed(1))
    h.feed(VoteReceived(prevote(h.others[0], 2, 0, None)))
    engine, _ = Engine.restore(h.config, h.me, 2, h.engine.validators, h.engine.next_validators,
                               MemoryWAL(bytes(h.wal.data)))
    assert engine.height == 2 and h.others[0].address in engine.prevotes[0].votes


def _crash_while_signing_prevote(h: Harness) -> bytes:
    h.feed(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)))
    [request] = [a for a in h.actions if type(a).__name__ == "ValidateValue"]
    h.wal.arm_crash(writes=2, keep=20)  # write 1: the ValueValidated input, write 2: the own prevote (torn)
    with pytest.raises(SimulatedCrash):
        h.feed(ValueValidated(1, request.value_hash, True))
    return request.value_hash


def test_crash_mid_write_of_own_vote_then_replay_signs_the_same_vote():
    h = Harness()
    _crash_while_signing_prevote(h)
    engine, actions = restore(h, MemoryWAL(bytes(h.wal.data)))  # the input record survived, the vote is torn
    assert [v.value_hash for v in own_votes(actions, PREVOTE)] == [V]
    assert engine.double_sign_refusals == 0


def test_crash_mid_write_losing_the_input_leaves_no_signature():
    h = Harness()
    value_hash = _crash_while_signing_prevote(h)
    h.wal.crash(keep_unflushed=0)  # the unflushed inputs (proposal, verdict) are lost with the torn vote
    engine, actions = restore(h, MemoryWAL(bytes(h.wal.data)))
    assert own_votes(actions, PREVOTE) == [] and engine.step == STEP_PROPOSE and engine._own_signed == {}
    engine.handle(ProposalReceived(signed_proposal(h.proposer(0), 1, 0, VALUE)), 50)
    out = engine.handle(ValueValidated(1, value_hash, True), 51)
    assert [v.value_hash for v in own_votes(out, PREVOTE)] == [V]


def test_restore_is_idempotent():
    h = Harness()
    lock_on_value_in_round_0(h)
    data = bytes(h.wal.data)
    first, a1 = restore(h, MemoryWAL(data))
    second, a2 = restore(h, MemoryWAL(data))
    assert a1 == a2
    assert (first.round, first.step, first.locked_round) == (second.round, second.step, second.locked_round)


def test_restart_from_a_file_wal_with_a_torn_tail(tmp_path):
    path = str(tmp_path / "consensus.wal")
    h = Harness()
    h.engine.wal = FileWAL(path)
    lock_on_value_in_round_0(h)
    sent = own_votes(h.actions, PRECOMMIT)
    h.engine.wal.close()
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x01\x00torn")  # a crash in the middle of the next write
    wal = FileWAL(path)
    engine, actions = Engine.restore(h.config, h.me, 1, h.valset, h.valset.next_height_set(), wal)
    assert wal.torn_bytes_dropped == 8
    assert (engine.round, engine.step, engine.locked_round) == (0, STEP_PRECOMMIT, 0)
    assert own_votes(actions, PRECOMMIT) == sent
    wal.close()
