"""Spec vectors for message sign bytes, signing, field validation and the codec."""

import hashlib

import msgpack
import pytest

from consensus.errors import MalformedMessage
from consensus.messages import (
    DOMAIN_TAG,
    PRECOMMIT,
    PREVOTE,
    TAG_PROPOSAL,
    CachingVerifier,
    Proposal,
    Vote,
    compute_address,
    compute_value_hash,
    ed25519_verify,
    pack_message,
    unpack_message,
    validate_proposal_fields,
    validate_vote_fields,
)
from consensus_helpers import CHAIN, make_signers, signed_proposal, signed_vote

SIGNER = make_signers(1)[0]
VALUE_HASH = compute_value_hash(b"block")


def test_address_is_first_20_bytes_of_sha256_of_public_key():
    assert compute_address(SIGNER.public_key) == hashlib.sha256(SIGNER.public_key).digest()[:20]
    assert SIGNER.address == compute_address(SIGNER.public_key)


def test_vote_sign_bytes_are_domain_tag_then_fixed_order_array():
    vote = Vote(PREVOTE, 5, 2, VALUE_HASH, SIGNER.address, 1234)
    expected = DOMAIN_TAG + msgpack.packb([PREVOTE, CHAIN, 5, 2, VALUE_HASH, SIGNER.address, 1234], use_bin_type=True)
    assert vote.sign_bytes(CHAIN) == expected


def test_nil_vote_sign_bytes_encode_nil():
    vote = Vote(PRECOMMIT, 1, 0, None, SIGNER.address, 0)
    assert msgpack.unpackb(vote.sign_bytes(CHAIN)[len(DOMAIN_TAG):])[4] is None


def test_proposal_sign_bytes_cover_hash_not_value():
    p = Proposal(3, 1, 0, VALUE_HASH, b"block", SIGNER.address)
    expected = DOMAIN_TAG + msgpack.packb([TAG_PROPOSAL, CHAIN, 3, 1, 0, VALUE_HASH, SIGNER.address], use_bin_type=True)
    assert p.sign_bytes(CHAIN) == expected


def test_prevote_and_precommit_sign_bytes_differ():
    a = Vote(PREVOTE, 1, 0, VALUE_HASH, SIGNER.address, 0)
    b = Vote(PRECOMMIT, 1, 0, VALUE_HASH, SIGNER.address, 0)
    assert a.sign_bytes(CHAIN) != b.sign_bytes(CHAIN)


def test_signature_verifies_and_is_deterministic():
    v1 = signed_vote(SIGNER, PREVOTE, 1, 0, VALUE_HASH)
    v2 = signed_vote(SIGNER, PREVOTE, 1, 0, VALUE_HASH)
    assert v1.signature == v2.signature
    assert ed25519_verify(SIGNER.public_key, v1.sign_bytes(CHAIN), v1.signature)


def test_invalid_signature_for_another_chain_id():
    v = signed_vote(SIGNER, PREVOTE, 1, 0, VALUE_HASH, chain="other-chain")
    assert not ed25519_verify(SIGNER.public_key, v.sign_bytes(CHAIN), v.signature)


def test_caching_verifier_answers_like_ed25519_and_checks_once():
    verifier = CachingVerifier()
    v = signed_vote(SIGNER, PREVOTE, 1, 0, VALUE_HASH)
    assert verifier(SIGNER.public_key, v.sign_bytes(CHAIN), v.signature)
    assert verifier(SIGNER.public_key, v.sign_bytes(CHAIN), v.signature)
    assert not verifier(SIGNER.public_key, v.sign_bytes("x"), v.signature)
    assert verifier.checks == 2


@pytest.mark.parametrize("message", [
    signed_vote(SIGNER, PREVOTE, 7, 3, None, 99),
    signed_vote(SIGNER, PRECOMMIT, 7, 3, VALUE_HASH, 99),
    signed_proposal(SIGNER, 7, 3, b"block", 1),
])
def test_codec_round_trip(message):
    assert unpack_message(pack_message(message)) == message


def test_invalid_codec_garbage_bytes():
    with pytest.raises(MalformedMessage):
        unpack_message(b"\xc1\xc1")


def test_invalid_codec_map_instead_of_array():
    with pytest.raises(MalformedMessage):
        unpack_message(msgpack.packb({"height": 1}))


def test_invalid_codec_wrong_arity():
    with pytest.raises(MalformedMessage):
        unpack_message(msgpack.packb([PREVOTE, 1, 0]))


def _vote(**changes):
    fields = dict(vote_type=PREVOTE, height=1, round=0, value_hash=VALUE_HASH, validator=SIGNER.address,
                  timestamp_ms=0, signature=b"s" * 64)
    fields.update(changes)
    return Vote(**fields)


@pytest.mark.parametrize("changes", [
    {"vote_type": 9}, {"height": 0}, {"round": -1}, {"timestamp_ms": -5}, {"value_hash": b"short"},
    {"validator": b"x" * 19}, {"signature": b"s" * 63}, {"height": True},
])
def test_invalid_vote_fields(changes):
    with pytest.raises(MalformedMessage):
        validate_vote_fields(_vote(**changes))


def _proposal(**changes):
    fields = dict(height=1, round=2, pol_round=-1, value_hash=VALUE_HASH, value=b"block", proposer=SIGNER.address,
                  signature=b"s" * 64)
    fields.update(changes)
    return Proposal(**fields)


@pytest.mark.parametrize("changes", [
    {"height": 0}, {"pol_round": 2}, {"pol_round": -2}, {"value": b"other"}, {"proposer": b"p"},
    {"signature": b""}, {"value_hash": b"h" * 31},
])
def test_invalid_proposal_fields(changes):
    with pytest.raises(MalformedMessage):
        validate_proposal_fields(_proposal(**changes))


def test_valid_fields_pass():
    validate_vote_fields(_vote())
    validate_vote_fields(_vote(value_hash=None))
    validate_proposal_fields(_proposal(pol_round=1))
