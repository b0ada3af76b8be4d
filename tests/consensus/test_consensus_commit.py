"""Commit certificates (verifier spec vectors), the block-time rule, vote sets and evidence."""

import pytest

from consensus.commit import CommitCertificate, compute_block_time, compute_weighted_median_ms, verify_certificate
from consensus.errors import (
    InvalidCertificate,
    InvalidEvidence,
    InvalidSignature,
    MalformedMessage,
    UnknownValidator,
)
from consensus.evidence import DuplicateVoteEvidence, make_duplicate_vote_evidence, verify_evidence
from consensus.messages import PRECOMMIT, PREVOTE, compute_value_hash
from consensus.votes import ADDED, CONFLICT, DUPLICATE, VoteSet
from consensus_helpers import CHAIN, make_signers, make_valset, precommit, prevote, signed_vote

SIGNERS = make_signers(4, b"commit")
VALSET = make_valset(SIGNERS)
V = compute_value_hash(b"value")
W = compute_value_hash(b"other")


def cert_from(signers, value_hash=V, height=3, round_=1, stamps=None):
    votes = [precommit(s, height, round_, value_hash, (stamps or {}).get(i, 1000)) for i, s in enumerate(signers)]
    return CommitCertificate(height, round_, value_hash, tuple(sorted(votes, key=lambda v: v.validator)))


def test_certificate_with_quorum_verifies():
    assert verify_certificate(cert_from(SIGNERS[:3]), VALSET, CHAIN) == 3


def test_certificate_round_trips_through_encoding():
    cert = cert_from(SIGNERS)
    assert CommitCertificate.decode(cert.encode()) == cert


def test_invalid_certificate_without_quorum():
    with pytest.raises(InvalidCertificate):
        verify_certificate(cert_from(SIGNERS[:2]), VALSET, CHAIN)


def test_invalid_certificate_bad_signature():
    cert = cert_from(SIGNERS[:3])
    forged = cert.precommits[0].__class__(*[getattr(cert.precommits[0], f) for f in
                                            ("vote_type", "height", "round", "value_hash", "validator",
                                             "timestamp_ms")], b"\x00" * 64)
    bad = CommitCertificate(cert.height, cert.round, cert.value_hash, (forged,) + cert.precommits[1:])
    with pytest.raises(InvalidSignature):
        verify_certificate(bad, VALSET, CHAIN)


def test_invalid_certificate_wrong_chain_id():
    with pytest.raises(InvalidSignature):
        verify_certificate(cert_from(SIGNERS[:3]), VALSET, "another-chain")


def test_invalid_certificate_unknown_validator():
    stranger = make_signers(1, b"stranger")
    with pytest.raises(UnknownValidator):
        verify_certificate(cert_from(SIGNERS[:3] + stranger), VALSET, CHAIN)


def test_invalid_certificate_vote_for_other_value():
    cert = cert_from(SIGNERS[:3])
    other = precommit(SIGNERS[3], 3, 1, W)
    votes = tuple(sorted(cert.precommits + (other,), key=lambda v: v.validator))
    with pytest.raises(InvalidCertificate):
        verify_certificate(CommitCertificate(3, 1, V, votes), VALSET, CHAIN)


def test_invalid_certificate_vote_for_other_height():
    votes = tuple(sorted([precommit(s, 3, 1, V) for s in SIGNERS[:2]] + [precommit(SIGNERS[2], 4, 1, V)],
                         key=lambda v: v.validator))
    with pytest.raises(InvalidCertificate):
        verify_certificate(CommitCertificate(3, 1, V, votes), VALSET, CHAIN)


def test_invalid_certificate_duplicate_signer():
    cert = cert_from(SIGNERS[:2])
    doubled = CommitCertificate(3, 1, V, cert.precommits + cert.precommits[:1])
    with pytest.raises(InvalidCertificate):
        verify_certificate(doubled, VALSET, CHAIN)


def test_invalid_certificate_prevotes():
    votes = tuple(sorted([prevote(s, 3, 1, V) for s in SIGNERS[:3]], key=lambda v: v.validator))
    with pytest.raises(InvalidCertificate):
        verify_certificate(CommitCertificate(3, 1, V, votes), VALSET, CHAIN)


def test_invalid_certificate_malformed_vote():
    cert = cert_from(SIGNERS[:3])
    v = cert.precommits[0]
    bad = v.__class__(v.vote_type, v.height, v.round, v.value_hash, 12345, v.timestamp_ms, v.signature)
    with pytest.raises(MalformedMessage):
        verify_certificate(CommitCertificate(3, 1, V, (bad,) + cert.precommits[1:]), VALSET, CHAIN)


def test_invalid_certificate_undecodable():
    with pytest.raises((InvalidCertificate, MalformedMessage)):
        CommitCertificate.decode([3, 1, V, [[9, 9]]])


def test_invalid_certificate_for_nil():
    votes = tuple(sorted([precommit(s, 3, 1, None) for s in SIGNERS[:3]], key=lambda v: v.validator))
    with pytest.raises(InvalidCertificate):
        verify_certificate(CommitCertificate(3, 1, None, votes), VALSET, CHAIN)


def test_weighted_median_follows_power():
    valset = make_valset(SIGNERS, [1, 1, 1, 5])
    cert = cert_from(SIGNERS, stamps={0: 100, 1: 200, 2: 300, 3: 900})
    assert compute_weighted_median_ms(cert, valset) == 900
    cert = cert_from(SIGNERS, stamps={0: 100, 1: 200, 2: 300, 3: 400})
    assert compute_weighted_median_ms(cert, VALSET) == 200


def test_block_time_is_strictly_monotonic():
    cert = cert_from(SIGNERS, stamps={0: 100, 1: 100, 2: 100, 3: 100})
    assert compute_block_time(cert, VALSET, previous_block_time_ms=50) == 100
    assert compute_block_time(cert, VALSET, previous_block_time_ms=500) == 501


def test_minority_cannot_move_the_median_outside_honest_clocks():
    cert = cert_from(SIGNERS, stamps={0: 10**12, 1: 1000, 2: 1001, 3: 1002})
    assert 1000 <= compute_weighted_median_ms(cert, VALSET) <= 1002


# ----- vote sets ----------------------------------------------------------------------------------------------

def test_vote_set_counts_each_validator_once_per_value():
    vs = VoteSet(VALSET)
    a, b = SIGNERS[0], SIGNERS[1]
    assert vs.add(prevote(a, 1, 0, V), 1) == (ADDED, None)
    assert vs.add(prevote(a, 1, 0, V), 1) == (DUPLICATE, None)
    status, first = vs.add(prevote(a, 1, 0, W), 1)
    assert status == CONFLICT and first.value_hash == V
    vs.add(prevote(b, 1, 0, V), 1)
    assert vs.power_any == 2 and vs.power_for(V) == 2 and vs.power_for(W) == 1
    assert [v.validator for v in vs.votes_for(W)] == [a.address]


def test_vote_set_quorums():
    vs = VoteSet(VALSET)
    for s in SIGNERS[:2]:
        vs.add(prevote(s, 1, 0, None), 1)
    vs.add(prevote(SIGNERS[2], 1, 0, V), 1)
    assert vs.has_quorum_any() and not vs.has_quorum_for(None) and not vs.has_quorum_for(V)
    vs.add(prevote(SIGNERS[3], 1, 0, None), 1)
    assert vs.has_quorum_for(None)


# ----- evidence -----------------------------------------------------------------------------------------------

def test_evidence_verifies_and_is_canonical():
    a = prevote(SIGNERS[0], 2, 0, V)
    b = prevote(SIGNERS[0], 2, 0, None)
    ev = make_duplicate_vote_evidence(a, b)
    assert ev == make_duplicate_vote_evidence(b, a)
    assert verify_evidence(ev, VALSET, CHAIN) == SIGNERS[0].address
    assert DuplicateVoteEvidence.decode(ev.encode()) == ev


def test_invalid_evidence_same_value():
    a = prevote(SIGNERS[0], 2, 0, V)
    with pytest.raises(InvalidEvidence):
        verify_evidence(DuplicateVoteEvidence(a, a), VALSET, CHAIN)


def test_invalid_evidence_different_rounds():
    ev = DuplicateVoteEvidence(prevote(SIGNERS[0], 2, 0, None), prevote(SIGNERS[0], 2, 1, V))
    with pytest.raises(InvalidEvidence):
        verify_evidence(ev, VALSET, CHAIN)


def test_invalid_evidence_different_types():
    ev = DuplicateVoteEvidence(prevote(SIGNERS[0], 2, 0, None), precommit(SIGNERS[0], 2, 0, V))
    with pytest.raises(InvalidEvidence):
        verify_evidence(ev, VALSET, CHAIN)


def test_invalid_evidence_different_validators():
    ev = DuplicateVoteEvidence(prevote(SIGNERS[0], 2, 0, None), prevote(SIGNERS[1], 2, 0, V))
    with pytest.raises(InvalidEvidence):
        verify_evidence(ev, VALSET, CHAIN)


def test_invalid_evidence_bad_signature():
    ev = make_duplicate_vote_evidence(prevote(SIGNERS[0], 2, 0, V), prevote(SIGNERS[0], 2, 0, W, chain="x"))
    with pytest.raises(InvalidSignature):
        verify_evidence(ev, VALSET, CHAIN)


def test_invalid_evidence_unknown_validator():
    stranger = make_signers(1, b"stranger")[0]
    ev = make_duplicate_vote_evidence(prevote(stranger, 2, 0, V), prevote(stranger, 2, 0, W))
    with pytest.raises(UnknownValidator):
        verify_evidence(ev, VALSET, CHAIN)


def test_evidence_for_precommits_too():
    ev = make_duplicate_vote_evidence(signed_vote(SIGNERS[2], PRECOMMIT, 9, 4, V),
                                      signed_vote(SIGNERS[2], PRECOMMIT, 9, 4, W))
    assert verify_evidence(ev, VALSET, CHAIN) == SIGNERS[2].address
    assert ev.height == 9 and ev.vote_a.vote_type == PRECOMMIT != PREVOTE
