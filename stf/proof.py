"""State-root hashing rules, the proof type and a standalone verifier.

This file is the single definition of how the state root is hashed (docs/STATE_ROOT.md is its prose twin).
`stf/merkle.py` imports every constant and hash function from here, so prover and verifier cannot drift.

It deliberately imports nothing but `hashlib` and `zlib` (both in every Python), so a wallet or light client
can copy this one file and check a proof without the rest of the node (no msgpack, no nacl, nothing from `stf`).

Contract (all hashes are SHA-256, all integers big-endian, `||` is concatenation):

- key: 1..31 bytes (state keys are at most 21).
- leaf digest: ``SHA256(0x00 || len(key) as 1 byte || key || value)``. The key is length-prefixed, so the value
  is everything after it and no two (key, value) pairs share a preimage.
- bucket index: the top 16 bits of ``CRC32(key)`` (zlib's CRC-32, the one in every standard library), a number
  in ``[0, 65536)``. It only spreads keys; it commits to nothing, the bucket's preimage does.
- key field (32 bytes): ``key || zero bytes up to 31 || len(key) as 1 byte``. Comparing key fields as unsigned
  bytes orders them exactly like the keys themselves (a proper prefix first), and the width is fixed.
- record (64 bytes): ``key field || leaf digest``.
- bucket hash: ``SHA256(0x01 || record_1 || ... || record_n)`` over the bucket's entries in ascending key
  order. An empty bucket is ``SHA256(0x01)``: no special case.
- inner node: ``SHA256(0x02 || child_0 || ... || child_15)``; the tree is a complete 16-ary tree of ``LEVELS``
  levels above the ``2**16`` bucket hashes, which sit in index order at level ``LEVELS``. Node ``(k, i)`` has
  children ``(k + 1, 16i) .. (k + 1, 16i + 15)``. The state root is node ``(0, 0)``.

A proof for a key is the other entries of its bucket (sorted (key, leaf digest) pairs, the key itself left out)
and, for each level from the buckets up, the 15 sibling hashes in child order with the key's own node left out.
The same shape proves membership (the verifier inserts the claimed leaf) and absence (it inserts nothing).

Known limits: keys are at most 31 bytes, so a record has a fixed width and the node can find a key in a
bucket by binary search. CRC-32 is not collision resistant: whoever can choose keys can crowd one bucket, at a
cost of ~65,536 tries per key, which is no harder with SHA-256 (16 bits are 16 bits); a crowded bucket makes
each change to it and each proof of it proportionally larger. The proof binds the key and the value bytes;
what they mean is the caller's business. A proof carries N / 65,536 entries of ~53 bytes plus 4 * 15 * 32.
"""

import hashlib
import zlib

ARITY = 16
"""Children per inner node. A protocol constant; changing it changes every root."""

LEVELS = 4
"""Inner levels above the buckets: ARITY**LEVELS = 65,536 buckets. A protocol constant."""

BUCKET_BITS = 16
BUCKET_COUNT = 1 << BUCKET_BITS
SIBLING_COUNT = ARITY - 1

DIGEST_SIZE = 32
MAX_KEY_SIZE = 31
KEY_FIELD_SIZE = 32
RECORD_SIZE = KEY_FIELD_SIZE + DIGEST_SIZE

TAG_LEAF = b"\x00"
TAG_BUCKET = b"\x01"
TAG_NODE = b"\x02"

assert ARITY**LEVELS == BUCKET_COUNT


LENGTH_BYTES = tuple(bytes((n,)) for n in range(MAX_KEY_SIZE + 1))
"""LENGTH_BYTES[n] == bytes((n,)), precomputed because it sits on the per-entry hot path."""

LEAF_PREFIXES = tuple(TAG_LEAF + LENGTH_BYTES[n] for n in range(MAX_KEY_SIZE + 1))
"""LEAF_PREFIXES[n] == 0x00 || n: the start of a leaf preimage for an n-byte key."""


def compute_leaf_digest(key: bytes, value: bytes) -> bytes:
    """The commitment to one entry: SHA256(0x00 || len(key) || key || value)."""
    return hashlib.sha256(LEAF_PREFIXES[len(key)] + key + value).digest()


def compute_bucket_index(key: bytes) -> int:
    """The top 16 bits of the key's CRC-32: a bucket in [0, 65536)."""
    return zlib.crc32(key) >> 16


def encode_key_field(key: bytes) -> bytes:
    """The fixed-width form of a key: key || zero padding to 31 bytes || len(key)."""
    return key.ljust(MAX_KEY_SIZE, b"\x00") + LENGTH_BYTES[len(key)]


def encode_record(key: bytes, leaf_digest: bytes) -> bytes:
    """One entry as it appears inside a bucket hash preimage: key field || leaf digest (64 bytes)."""
    return encode_key_field(key) + leaf_digest


def compute_bucket_hash(entries: list[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket from its (key, leaf digest) pairs, which must already be sorted by key."""
    return compute_bucket_hash_of_records(b"".join(encode_record(k, d) for k, d in entries))


def compute_bucket_hash_of_records(records: bytes) -> bytes:
    """Hash of a bucket from its concatenated 64-byte records, ascending by key (empty for an empty bucket)."""
    return hashlib.sha256(TAG_BUCKET + records).digest()


def compute_node_hash(children: bytes) -> bytes:
    """Hash of an inner node from its 16 child hashes, concatenated in child order (512 bytes)."""
    return hashlib.sha256(TAG_NODE + children).digest()


def compute_empty_hashes() -> tuple[bytes, ...]:
    """EMPTY[k] is the hash of an all-empty subtree whose top sits at level k (EMPTY[LEVELS]: empty bucket)."""
    hashes = [compute_bucket_hash([])]
    for _ in range(LEVELS):
        hashes.append(compute_node_hash(hashes[-1] * ARITY))
    return tuple(reversed(hashes))


EMPTY_HASHES = compute_empty_hashes()
EMPTY_BUCKET_HASH = EMPTY_HASHES[LEVELS]
EMPTY_ROOT = EMPTY_HASHES[0]


def is_valid_key(key: object) -> bool:
    return isinstance(key, bytes) and 1 <= len(key) <= MAX_KEY_SIZE


def is_valid_digest(digest: object) -> bool:
    return isinstance(digest, bytes) and len(digest) == DIGEST_SIZE


def is_valid_sibling_group(group: object) -> bool:
    return isinstance(group, tuple) and len(group) == SIBLING_COUNT and all(is_valid_digest(s) for s in group)


class Proof:
    """Evidence that a key holds a value (or nothing) under a state root. Immutable plain data.

    `entries`: the bucket's other (key, leaf digest) pairs, ascending by key, the proven key left out.
    `siblings`: LEVELS groups of 15 hashes, bottom up. siblings[0] holds the other buckets under the key's
    level-3 node, siblings[-1] the other children of the root; each group is in child order with the key's own
    node left out (it sits at position (bucket index >> 4k) & 15 of group k).

    Hand-written rather than a dataclass so that this file needs nothing but hashlib and zlib.
    """

    __slots__ = ("entries", "siblings")
    entries: tuple[tuple[bytes, bytes], ...]
    siblings: tuple[tuple[bytes, ...], ...]

    def __init__(self, entries: tuple[tuple[bytes, bytes], ...], siblings: tuple[tuple[bytes, ...], ...]) -> None:
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "siblings", siblings)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Proof is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proof):
            return NotImplemented
        return self.entries == other.entries and self.siblings == other.siblings

    def __hash__(self) -> int:
        return hash((self.entries, self.siblings))

    def __repr__(self) -> str:
        return f"Proof(entries={self.entries!r}, siblings={self.siblings!r})"

    def to_wire(self) -> list[list[object]]:
        """Plain nested lists of bytes: [[[key, digest], ...], [[15 hashes] * 4]]. Hex each bytes for JSON."""
        return [[[k, d] for k, d in self.entries], [list(group) for group in self.siblings]]

    @classmethod
    def from_wire(cls, wire: object) -> "Proof":
        """Parse `to_wire()` output (lists or tuples, as msgpack may return); raises ValueError if malformed."""
        if not isinstance(wire, (list, tuple)) or len(wire) != 2:
            raise ValueError("proof: expected [entries, siblings]")
        raw_entries, raw_siblings = wire
        return cls(entries=parse_entries(raw_entries), siblings=parse_siblings(raw_siblings))


def parse_entries(raw: object) -> tuple[tuple[bytes, bytes], ...]:
    if not isinstance(raw, (list, tuple)):
        raise ValueError("proof: entries must be a list")
    entries = []
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError("proof: each entry must be [key, digest]")
        key, digest = bytes_or_error(item[0], "entry key"), bytes_or_error(item[1], "entry digest")
        if not is_valid_key(key) or not is_valid_digest(digest):
            raise ValueError(f"proof: entry key must be 1..{MAX_KEY_SIZE} bytes and digest 32 bytes")
        entries.append((key, digest))
    if not is_strictly_sorted(entries):
        raise ValueError("proof: entries must be strictly ascending by key")
    return tuple(entries)


def parse_siblings(raw: object) -> tuple[tuple[bytes, ...], ...]:
    if not isinstance(raw, (list, tuple)) or len(raw) != LEVELS:
        raise ValueError(f"proof: expected a list of exactly {LEVELS} sibling groups")
    groups = []
    for group in raw:
        if not isinstance(group, (list, tuple)) or len(group) != SIBLING_COUNT:
            raise ValueError(f"proof: each sibling group must be a list of exactly {SIBLING_COUNT} hashes")
        siblings = tuple(bytes_or_error(s, "sibling") for s in group)
        if not all(is_valid_digest(s) for s in siblings):
            raise ValueError("proof: every sibling must be 32 bytes")
        groups.append(siblings)
    return tuple(groups)


def bytes_or_error(value: object, what: str) -> bytes:
    # msgpack may hand back bytearray or memoryview-like buffers; normalise, but never accept str or ints.
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise ValueError(f"proof: {what} must be bytes, got {type(value).__name__}")


def is_strictly_sorted(entries: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> bool:
    return all(entries[i][0] < entries[i + 1][0] for i in range(len(entries) - 1))


def is_well_formed(key: object, value: object, proof: object) -> bool:
    """Shape checks, so that verification of any input returns a bool instead of raising."""
    if not is_valid_key(key) or not (value is None or isinstance(value, bytes)):
        return False
    if not isinstance(proof, Proof) or not isinstance(proof.siblings, tuple) or len(proof.siblings) != LEVELS:
        return False
    if not all(is_valid_sibling_group(group) for group in proof.siblings) or not isinstance(proof.entries, tuple):
        return False
    for item in proof.entries:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        if not is_valid_key(item[0]) or not is_valid_digest(item[1]):
            return False
    return is_strictly_sorted(proof.entries)


def compute_proof_root(key: bytes, value: bytes | None, proof: Proof) -> bytes | None:
    """The root that `proof` implies for (key, value), or None if the proof is inconsistent with the key."""
    index = compute_bucket_index(key)
    entries = list(proof.entries)
    for other_key, _ in entries:
        # The proven key must not hide among the others, and every other entry must really live in this bucket.
        if other_key == key or compute_bucket_index(other_key) != index:
            return None
    if value is not None:
        entries.append((key, compute_leaf_digest(key, value)))
        entries.sort()
    node = compute_bucket_hash(entries)
    for level, group in enumerate(proof.siblings):
        position = (index >> (4 * level)) & (ARITY - 1)
        node = compute_node_hash(b"".join(group[:position]) + node + b"".join(group[position:]))
    return node


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """True iff `proof` shows that `key` maps to `value` under `root` (value None: the key is absent).

    Never raises: malformed input of any kind is simply not a valid proof.
    """
    if not is_valid_digest(root) or not is_well_formed(key, value, proof):
        return False
    return compute_proof_root(key, value, proof) == root
