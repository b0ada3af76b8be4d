"""Commit certificates, their verifier, and the block-time rule.

Contract
- `CommitCertificate(height, round, value_hash, precommits)` proves that more than 2/3 of the voting power of the
  height's validator set precommitted `value_hash` in `round`. `precommits` are full signed votes in validator
  address order. Block sync and light clients call `verify_certificate` with the validator set of that height;
  it raises a typed error naming the first defect, or returns the certified power.
- Block time (`compute_block_time`): the time of block h + 1 is the power-weighted median of the precommit
  timestamps in the certificate for h that block h + 1 carries (CometBFT's BFT time), clamped to at least the
  time of block h plus 1 ms. The clamp makes block time strictly monotonic whatever the timestamps; with less
  than 1/3 faulty power the median is an honest validator's clock, so faulty validators cannot move it outside
  the range of honest clocks. Which certificate a block carries is the proposer's choice, made canonical by the
  block, so every node computes the same time.
- Encoding: `encode()` is a fixed-order array `[height, round, value_hash, [vote arrays]]` for msgpack.

Known limit: the certificate carries whole votes (about 150 bytes per validator); no signature aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import InvalidCertificate, InvalidSignature, UnknownValidator
from consensus.messages import (
    PRECOMMIT,
    Verifier,
    Vote,
    decode_message,
    ed25519_verify,
    encode_message,
    validate_vote_fields,
)
from consensus.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    height: int
    round: int
    value_hash: bytes
    precommits: tuple[Vote, ...]

    def encode(self) -> list:
        return [self.height, self.round, self.value_hash, [encode_message(v) for v in self.precommits]]

    @classmethod
    def decode(cls, fields: list) -> CommitCertificate:
        try:
            height, round_, value_hash, votes = fields
            return cls(height, round_, value_hash, tuple(decode_message(v) for v in votes))  # type: ignore[misc]
        except (TypeError, ValueError) as exc:
            raise InvalidCertificate(f"undecodable certificate: {exc}") from None


def verify_certificate(
    cert: CommitCertificate, validators: ValidatorSet, chain_id: str, verifier: Verifier = ed25519_verify
) -> int:
    """Check `cert` against the validator set of its height; return the power that signed it."""
    if cert.value_hash is None or type(cert.value_hash) is not bytes:
        raise InvalidCertificate("a certificate must certify a value, not nil")
    power = 0
    previous = b""
    for vote in cert.precommits:
        validate_certificate_vote(cert, vote, previous)
        previous = vote.validator
        member = validators.get(vote.validator)
        if member is None:
            raise UnknownValidator("certificate vote from a validator outside the set")
        if not verifier(member.public_key, vote.sign_bytes(chain_id), vote.signature):
            raise InvalidSignature("certificate vote signature does not verify for this chain id")
        power += member.power
    if not validators.is_quorum(power):
        raise InvalidCertificate(f"certificate power {power} is not more than 2/3 of {validators.total_power}")
    return power


def validate_certificate_vote(cert: CommitCertificate, vote: Vote, previous_address: bytes) -> None:
    if not isinstance(vote, Vote) or vote.vote_type != PRECOMMIT:
        raise InvalidCertificate("certificate entries must be precommits")
    validate_vote_fields(vote)
    if (vote.height, vote.round, vote.value_hash) != (cert.height, cert.round, cert.value_hash):
        raise InvalidCertificate("certificate vote for another height, round or value")
    if vote.validator <= previous_address:
        raise InvalidCertificate("certificate votes must be in strictly increasing address order")


def compute_weighted_median_ms(cert: CommitCertificate, validators: ValidatorSet) -> int:
    """CometBFT's weightedMedian over the certificate's precommit timestamps (ties by address)."""
    weighted = sorted((v.timestamp_ms, v.validator, validators.power_of(v.validator)) for v in cert.precommits)
    remaining = sum(w for _, _, w in weighted) // 2
    for timestamp_ms, _, weight in weighted:
        if remaining <= weight:
            return timestamp_ms
        remaining -= weight
    raise InvalidCertificate("empty certificate has no median time")


def compute_block_time(cert: CommitCertificate, validators: ValidatorSet, previous_block_time_ms: int) -> int:
    """Time of the block that carries `cert`: weighted median, never earlier than the previous block + 1 ms."""
    return max(compute_weighted_median_ms(cert, validators), previous_block_time_ms + 1)
