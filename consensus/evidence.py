"""Evidence of double voting, packaged so that anyone holding the validator set can verify it.

Contract
- `DuplicateVoteEvidence(vote_a, vote_b)`: two votes by one validator for the same (height, round, type) and
  different values (nil counts as a value). The pair is stored in canonical order (by the byte encoding of the
  value hash, nil first), so the same misbehaviour always gives equal evidence objects.
- `verify_evidence` needs the validator set of the votes' height and the chain id; it raises `InvalidEvidence`
  (or `InvalidSignature` / `UnknownValidator`) and otherwise returns the offender's address. The application
  decides what to do with it (include it in a block, slash); consensus only detects and proves.
- `encode()` is the fixed-order array `[vote_a, vote_b]` of vote arrays, ready for msgpack.

Known limit: only duplicate votes; an equivocating proposer is not evidence by itself (CometBFT also only slashes
votes), but it shows up as duplicate votes when the proposer also votes for both of its proposals.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import InvalidEvidence, InvalidSignature, UnknownValidator
from consensus.messages import Verifier, Vote, decode_message, ed25519_verify, encode_message, validate_vote_fields
from consensus.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    vote_a: Vote
    vote_b: Vote

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def encode(self) -> list:
        return [encode_message(self.vote_a), encode_message(self.vote_b)]

    @classmethod
    def decode(cls, fields: list) -> DuplicateVoteEvidence:
        try:
            a, b = (decode_message(f) for f in fields)
        except (TypeError, ValueError) as exc:
            raise InvalidEvidence(f"undecodable evidence: {exc}") from None
        return cls(a, b)  # type: ignore[arg-type]


def _value_key(vote: Vote) -> bytes:
    return b"" if vote.value_hash is None else b"\x01" + vote.value_hash


def make_duplicate_vote_evidence(first: Vote, second: Vote) -> DuplicateVoteEvidence:
    a, b = sorted((first, second), key=_value_key)
    return DuplicateVoteEvidence(a, b)


def verify_evidence(
    evidence: DuplicateVoteEvidence, validators: ValidatorSet, chain_id: str, verifier: Verifier = ed25519_verify
) -> bytes:
    a, b = evidence.vote_a, evidence.vote_b
    if not (isinstance(a, Vote) and isinstance(b, Vote)):
        raise InvalidEvidence("evidence must hold two votes")
    validate_vote_fields(a)
    validate_vote_fields(b)
    if (a.vote_type, a.height, a.round, a.validator) != (b.vote_type, b.height, b.round, b.validator):
        raise InvalidEvidence("votes differ in type, height, round or validator")
    if _value_key(a) >= _value_key(b):
        raise InvalidEvidence("votes are for the same value or not in canonical order")
    member = validators.get(a.validator)
    if member is None:
        raise UnknownValidator("evidence against a validator outside the set")
    for vote in (a, b):
        if not verifier(member.public_key, vote.sign_bytes(chain_id), vote.signature):
            raise InvalidSignature("evidence vote signature does not verify for this chain id")
    return a.validator
