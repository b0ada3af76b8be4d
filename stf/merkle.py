"""The state root: an authenticated map from state keys to leaf digests over the entire state.

Contract. The STF calls `set(key, value)` / `delete(key)` for every state entry that changed in a block, then
`root()`. The map keeps only leaf digests, never values (a pending value is held only until the next `root()`),
so the STF owns its objects. `prove(key)` returns a `stf.proof.Proof` that `stf.proof.verify_proof` (a
standalone, stdlib-only file) checks. The hashing rules live in `stf/proof.py` and docs/STATE_ROOT.md; this
module only makes them cheap to maintain.

Layout. A 16-ary tree of LEVELS = 4 inner levels over 2**16 buckets. A bucket is stored as one `bytes` blob that
is exactly its hash preimage minus the tag: 64-byte records (key field || leaf digest) in ascending key order,
so a key is found by a C-level scan or binary search and replaced by slicing, instead of parsing the bucket in
Python. Level k is one `bytearray` of 16**k hashes, 32 bytes each, filled with EMPTY[k] at start: the children
of node p are the 512 contiguous bytes at 512 p, so a node hashes one slice. That costs a fixed 2.2 MB per map
and no object per hash: measured 109 traced bytes per entry at 100,000 entries against 128 with a list of
`bytes` per level (which shares the empty hashes, ~1 MB empty), at the same speed (docs/STATE_ROOT.md §4).

Invariants, true whenever no call is in progress:
- `_buckets[i]` holds the records of exactly the keys whose bucket index is i, strictly ascending, once
  `_pending` (the latest value per key since the last merge; None means delete) is applied.
- `_levels[LEVELS]` holds the hash of each bucket and every inner node the hash of its 16 children, unless
  `_pending` is non-empty. `root()` restores both.
- `_count` is the number of entries once `_pending` is empty.

Cost. `set`/`delete` only validate and store the value in a dict: every per-change hash (CRC-32 for the bucket,
SHA-256 for the leaf) is deferred to `root()`, which applies the changes one by one in a single loop (a scan
or binary search plus one memcpy of the bucket), then hashes each dirty bucket once and each dirty inner node
once, level by level, in ascending index order. A key changed several times in one block costs one change.
Nothing is proportional to the whole state except `keys()`/`items()`, which are for export. About a third of
the time is SHA-256 (~2.3 calls per change at 10,000 changes per block); the rest is interpreter work.

Known limits. Keys are at most 31 bytes. The bucket memcpy and hash grow with N / 65,536 and with crowding: a
bucket crowded by chosen keys (CRC-32 is cheap to grind, see stf/proof.py) costs each change to it and each
proof of it in proportion to its size. Not thread-safe. No rollback: feed it only changes of a block that
applied. A bad key or value raises ValueError: the STF builds keys itself, so this is a bug, not bad input.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator

from stf.proof import (
    ARITY,
    BUCKET_COUNT,
    DIGEST_SIZE,
    EMPTY_HASHES,
    KEY_FIELD_SIZE,
    LEAF_PREFIXES,
    LENGTH_BYTES,
    LEVELS,
    MAX_KEY_SIZE,
    RECORD_SIZE,
    TAG_BUCKET,
    TAG_NODE,
    Proof,
    compute_bucket_index,
    compute_leaf_digest,
    encode_key_field,
)

_EMPTY_BUCKET = b""
_sha256 = hashlib.sha256
_crc32 = zlib.crc32

NODE_SPAN = ARITY * DIGEST_SIZE
"""Bytes of one node's children in a level array: the 16 hashes a node hash covers, contiguous."""

FIELD_SUFFIXES = tuple(bytes(MAX_KEY_SIZE - n) + LENGTH_BYTES[n] for n in range(MAX_KEY_SIZE + 1))
"""key + FIELD_SUFFIXES[len(key)] is the key field: zero padding to 31 bytes, then the length byte."""


def is_state_key(key: object) -> bool:
    return type(key) is bytes and 0 < len(key) <= MAX_KEY_SIZE


def validate_key(key: bytes) -> None:
    if not is_state_key(key):
        raise ValueError(f"merkle: a key must be bytes of length 1..{MAX_KEY_SIZE}")


def find_slot(blob: bytes, field: bytes) -> int:
    """Byte offset of the first record whose key field is >= `field` (len(blob) if none)."""
    low, high = 0, len(blob) // RECORD_SIZE
    while low < high:
        middle = (low + high) // 2  # both non-negative: floor is the usual midpoint
        start = middle * RECORD_SIZE
        if blob[start:start + KEY_FIELD_SIZE] < field:
            low = middle + 1
        else:
            high = middle
    return low * RECORD_SIZE


def find_record(blob: bytes, field: bytes) -> int:
    """Byte offset of the record whose key field is `field`, or -1 if the bucket holds none.

    Overwrites and deletes, most changes, find their record with one C-level scan. A hit off a record boundary
    straddles two records (digests are arbitrary bytes, so this is possible in principle): the binary search
    then decides, as it does for a miss.
    """
    offset = blob.find(field)
    if offset >= 0 and not offset & (RECORD_SIZE - 1):
        return offset
    offset = find_slot(blob, field)
    return offset if blob[offset:offset + KEY_FIELD_SIZE] == field else -1


def iter_entries(blob: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, leaf digest) pairs of one bucket blob, ascending by key."""
    for start in range(0, len(blob), RECORD_SIZE):
        key_size = blob[start + KEY_FIELD_SIZE - 1]
        yield blob[start:start + key_size], blob[start + KEY_FIELD_SIZE:start + RECORD_SIZE]


def unique_parents(indices: list[int]) -> list[int]:
    # indices ascend, so i >> 4 never decreases and a dict keeps them unique and ascending.
    return list(dict.fromkeys([i >> 4 for i in indices]))


class MerkleMap:
    """Authenticated map from state keys (1..31 bytes) to leaf digests, with a lazily recomputed root."""

    __slots__ = ("_buckets", "_levels", "_pending", "_count")

    def __init__(self) -> None:
        self._buckets: list[bytes] = [_EMPTY_BUCKET] * BUCKET_COUNT
        self._levels: list[bytearray] = [bytearray(EMPTY_HASHES[k] * ARITY**k) for k in range(LEVELS + 1)]
        self._pending: dict[bytes, bytes | None] = {}
        self._count = 0

    def set(self, key: bytes, value: bytes) -> None:
        """Insert or replace the entry for `key`; `value` is the entry's canonical bytes."""
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE or type(value) is not bytes:
            raise ValueError(f"merkle: a key must be bytes of length 1..{MAX_KEY_SIZE} and a value bytes")
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Remove the entry for `key`; a no-op if it is absent."""
        validate_key(key)
        self._pending[key] = None

    def get_leaf(self, key: bytes) -> bytes | None:
        """The leaf digest stored for `key`, or None if absent (pending changes included)."""
        validate_key(key)
        if key in self._pending:
            value = self._pending[key]
            return None if value is None else compute_leaf_digest(key, value)
        field = encode_key_field(key)
        blob = self._buckets[compute_bucket_index(key)]
        offset = find_slot(blob, field)
        if blob[offset:offset + KEY_FIELD_SIZE] != field:
            return None
        return blob[offset + KEY_FIELD_SIZE:offset + RECORD_SIZE]

    def __contains__(self, key: bytes) -> bool:
        return self.get_leaf(key) is not None

    def __len__(self) -> int:
        self.root()
        return self._count

    def root(self) -> bytes:
        """The 32-byte state root; recomputes only buckets and nodes touched since the last call."""
        if self._pending:
            dirty = self._merge_pending()
            self._rehash(dirty)
        return bytes(self._levels[0])

    def prove(self, key: bytes) -> Proof:
        """A proof of the key's current leaf (membership) or of its absence, against `root()`."""
        validate_key(key)
        self.root()
        index = compute_bucket_index(key)
        entries = tuple(entry for entry in iter_entries(self._buckets[index]) if entry[0] != key)
        groups = []
        for level in range(LEVELS, 0, -1):
            start, position = (index >> 4) * NODE_SPAN, index & (ARITY - 1)
            group = [bytes(self._levels[level][at:at + DIGEST_SIZE]) for at in range(start, start + NODE_SPAN, 32)]
            groups.append(tuple(group[:position] + group[position + 1:]))
            index >>= 4
        return Proof(entries=entries, siblings=tuple(groups))

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, leaf digest), ascending by key: for export and snapshot checks. O(N log N)."""
        self.root()
        entries = [entry for blob in self._buckets if blob for entry in iter_entries(blob)]
        entries.sort()
        return entries

    def keys(self) -> list[bytes]:
        """Every key, ascending."""
        return [key for key, _ in self.items()]

    def _merge_pending(self) -> list[int]:
        """Apply every pending change to its bucket; returns the dirty bucket indices, ascending.

        The hot loop of the state root. Per change: one CRC-32, one leaf SHA-256 (sets only) and, unless the
        bucket is empty, a scan for the key field and one splice (a memcpy of the bucket). Buckets are not
        grouped first: measured, sorting the changes by bucket cost more than it saved.
        """
        pending = self._pending
        self._pending = {}
        buckets = self._buckets
        dirty: dict[int, None] = {}
        delta = 0
        for key, value in pending.items():
            index = _crc32(key) >> 16
            dirty[index] = None
            blob = buckets[index]
            size = len(key)
            field = key + FIELD_SUFFIXES[size]
            if value is None:
                offset = find_record(blob, field) if blob else -1
                if offset >= 0:
                    buckets[index] = blob[:offset] + blob[offset + RECORD_SIZE:]
                    delta -= 1
                continue
            record = field + _sha256(LEAF_PREFIXES[size] + key + value).digest()
            if not blob:
                buckets[index] = record
                delta += 1
                continue
            offset = find_record(blob, field)
            if offset >= 0:
                buckets[index] = blob[:offset] + record + blob[offset + RECORD_SIZE:]
            else:
                offset = find_slot(blob, field)
                buckets[index] = blob[:offset] + record + blob[offset:]
                delta += 1
        self._count += delta
        return sorted(dirty)

    def _rehash(self, dirty: list[int]) -> None:
        """Rehash each dirty bucket, then each inner node above one, level by level upwards, ascending."""
        buckets = self._buckets
        hashes = self._levels[LEVELS]
        for i in dirty:
            hashes[i << 5:(i << 5) + 32] = _sha256(TAG_BUCKET + buckets[i]).digest()  # DIGEST_SIZE == 32
        indices = dirty
        for k in range(LEVELS, 0, -1):
            children, parents = self._levels[k], self._levels[k - 1]
            indices = unique_parents(indices)
            for p in indices:
                # The 16 children of p are the 512 contiguous bytes from 512 p: one slice, no join.
                parents[p << 5:(p << 5) + 32] = _sha256(TAG_NODE + children[p << 9:(p << 9) + 512]).digest()
