"""Consensus messages, their canonical sign bytes, signing and verification.

Contract
- `Proposal(height, round, pol_round, value_hash, value, proposer, signature)`: `pol_round` is the paper's
  proof-of-lock round (`-1` for none) and `value` the opaque bytes the application ordered; `value_hash` is
  SHA-256 of `value` and is what the signature covers, so a proposal can be re-checked without the value.
- `Vote(vote_type, height, round, value_hash, validator, timestamp_ms, signature)`: `vote_type` is `PREVOTE` or
  `PRECOMMIT`; `value_hash` is `None` for nil; `validator` is the signer's 20-byte address; `timestamp_ms` is the
  signer's clock (only precommit timestamps are used, for block time, see `commit.compute_block_time`).
- Sign bytes = `DOMAIN_TAG` + `msgpack([type_tag, chain_id, *fields])`, a fixed-order array (never a map), with
  `use_bin_type=True`. The chain id is inside the signed bytes and never on the wire, so a message signed for
  another chain fails verification as `InvalidSignature`.
- Address = first 20 bytes of SHA-256(Ed25519 public key), the rule the transaction layer uses.
- `Verifier` is injectable: `ed25519_verify` is the default and the only one a node should use; the simulator may
  pass a caching verifier (same answers, fewer curve operations).

Invariants: messages are frozen; a signed message's signature covers every field except `value` (bound through
`value_hash`) and `signature`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from consensus.errors import MalformedMessage

DOMAIN_TAG = b"kabuto/consensus/v1\x00"
TAG_PROPOSAL = 1
TAG_PREVOTE = 2
TAG_PRECOMMIT = 3
PREVOTE = TAG_PREVOTE
PRECOMMIT = TAG_PRECOMMIT
VOTE_TYPES = (PREVOTE, PRECOMMIT)
ADDRESS_LEN = 20
HASH_LEN = 32
SIGNATURE_LEN = 64
NIL = None

Verifier = Callable[[bytes, bytes, bytes], bool]
"""verify(public_key, message, signature) -> bool."""


def compute_address(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:ADDRESS_LEN]


def compute_value_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


class CachingVerifier:
    """Remembers verification results (simulator and benchmarks); answers exactly as `ed25519_verify`."""

    __slots__ = ("cache", "checks")

    def __init__(self) -> None:
        self.cache: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.checks = 0

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = (public_key, message, signature)
        found = self.cache.get(key)
        if found is None:
            self.checks += 1
            found = ed25519_verify(public_key, message, signature)
            self.cache[key] = found
        return found


class Signer:
    """An Ed25519 key pair plus its address. Signing is deterministic (same bytes, same signature)."""

    __slots__ = ("_key", "public_key", "address")

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.address = compute_address(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def _pack(tag: int, chain_id: str, fields: list) -> bytes:
    return DOMAIN_TAG + msgpack.packb([tag, chain_id, *fields], use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Proposal:
    height: int
    round: int
    pol_round: int
    value_hash: bytes
    value: bytes
    proposer: bytes
    signature: bytes = b""

    def sign_bytes(self, chain_id: str) -> bytes:
        fields = [self.height, self.round, self.pol_round, self.value_hash, self.proposer]
        return _pack(TAG_PROPOSAL, chain_id, fields)

    def signed(self, signer: Signer, chain_id: str) -> Proposal:
        return _replace_signature(self, signer.sign(self.sign_bytes(chain_id)))


@dataclass(frozen=True, slots=True)
class Vote:
    vote_type: int
    height: int
    round: int
    value_hash: bytes | None
    validator: bytes
    timestamp_ms: int
    signature: bytes = b""

    def sign_bytes(self, chain_id: str) -> bytes:
        fields = [self.height, self.round, self.value_hash, self.validator, self.timestamp_ms]
        return _pack(self.vote_type, chain_id, fields)

    def signed(self, signer: Signer, chain_id: str) -> Vote:
        return _replace_signature(self, signer.sign(self.sign_bytes(chain_id)))


Message = Proposal | Vote


def _replace_signature(message, signature: bytes):
    fields = [getattr(message, name) for name in message.__dataclass_fields__]
    fields[-1] = signature
    return type(message)(*fields)


def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


def validate_proposal_fields(p: Proposal) -> None:
    """Raise `MalformedMessage` unless every field is in range and the value matches its hash."""
    if not (_is_uint(p.height) and p.height >= 1 and _is_uint(p.round)):
        raise MalformedMessage("proposal height must be >= 1 and round >= 0")
    if type(p.pol_round) is not int or not -1 <= p.pol_round < p.round:
        raise MalformedMessage("proposal pol_round must be -1 or in [0, round)")
    if not (_is_bytes(p.value_hash, HASH_LEN) and _is_bytes(p.proposer, ADDRESS_LEN)):
        raise MalformedMessage("proposal hash or proposer has the wrong length")
    if type(p.value) is not bytes or compute_value_hash(p.value) != p.value_hash:
        raise MalformedMessage("proposal value does not match its hash")
    if not _is_bytes(p.signature, SIGNATURE_LEN):
        raise MalformedMessage("proposal signature has the wrong length")


def validate_vote_fields(v: Vote) -> None:
    """Raise `MalformedMessage` unless every field is in range."""
    if v.vote_type not in VOTE_TYPES:
        raise MalformedMessage("vote type must be PREVOTE or PRECOMMIT")
    if not (_is_uint(v.height) and v.height >= 1 and _is_uint(v.round) and _is_uint(v.timestamp_ms)):
        raise MalformedMessage("vote height must be >= 1, round and timestamp >= 0")
    if v.value_hash is not None and not _is_bytes(v.value_hash, HASH_LEN):
        raise MalformedMessage("vote value hash must be nil or 32 bytes")
    if not (_is_bytes(v.validator, ADDRESS_LEN) and _is_bytes(v.signature, SIGNATURE_LEN)):
        raise MalformedMessage("vote validator or signature has the wrong length")


def _is_bytes(x: object, length: int) -> bool:
    return type(x) is bytes and len(x) == length


# Wire/WAL codec: fixed-order arrays, first element a kind tag.

def encode_message(m: Message) -> list:
    if isinstance(m, Proposal):
        return [TAG_PROPOSAL, m.height, m.round, m.pol_round, m.value_hash, m.value, m.proposer, m.signature]
    return [m.vote_type, m.height, m.round, m.value_hash, m.validator, m.timestamp_ms, m.signature]


def decode_message(fields: list) -> Message:
    try:
        if fields[0] == TAG_PROPOSAL and len(fields) == 8:
            return Proposal(*fields[1:])
        if fields[0] in VOTE_TYPES and len(fields) == 7:
            return Vote(*fields)
    except (TypeError, IndexError) as exc:
        raise MalformedMessage(f"undecodable message: {exc}") from None
    raise MalformedMessage("unknown message kind or arity")


def pack_message(m: Message) -> bytes:
    return msgpack.packb(encode_message(m), use_bin_type=True)


def unpack_message(data: bytes) -> Message:
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MalformedMessage(f"undecodable message bytes: {exc}") from None
    if not isinstance(fields, list) or not fields:
        raise MalformedMessage("message must be a non-empty array")
    return decode_message(fields)
