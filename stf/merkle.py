"""The state root: an authenticated map from state keys to leaf digests over the entire state.

Contract. The STF calls `set(key, value)` / `delete(key)` for every state entry that changed in a block, then
`root()`. The map keeps only leaf digests, never values, so the STF owns its objects. `prove(key)` returns a
`stf.proof.Proof` that `stf.proof.verify_proof` (a standalone, stdlib-only file) checks. The hashing rules live
in `stf/proof.py` and docs/STATE_ROOT.md; this module only makes them cheap to maintain.

Layout. A fixed-depth binary tree over 2**DEPTH buckets. A bucket is stored as one `bytes` blob that is exactly
its hash preimage minus the tag: 64-byte records (key field || leaf digest) in ascending key order. Fixed-width
records cost 64 bytes per entry plus one bytes object per bucket (a dict of keys to digests measured ~170),
and let a key be found by binary search and replaced by slicing, in C, instead of parsing the bucket in
Python. Tree level d is a flat list of 2**d hashes (the children of p sit at 2p and 2p + 1); every untouched
slot points at the one shared empty-subtree hash, so an empty map is a few hundred KB of pointers.

Invariants, true whenever no call is in progress:
- `_buckets[i]` holds the records of exactly the keys whose bucket index is i, strictly ascending, once
  `_pending[i]` (changes not yet merged, keyed by key field; None means delete) is applied.
- `_levels[DEPTH][i]` is the hash of `_buckets[i]` unless i is in `_pending` or `_stale`; every inner node is
  the hash of its two children unless a bucket below it is pending or stale. `root()` restores both.
- `_count` is the number of entries once `_pending` is empty.

Cost. `set`/`delete` hash the key and the leaf (two SHA-256 calls) and record the change: O(1). `root()` merges
each change into its bucket by binary search (O(log b) Python steps plus a memcpy of the bucket, b = entries
per bucket), then rehashes each touched bucket and inner node exactly once, in ascending index order.
Nothing is proportional to the whole state except `keys()`/`items()`, which are for export.

Known limits. Keys are at most 31 bytes. The bucket memcpy and the bucket hash grow with N / 2**DEPTH, so past
a few million entries the per-change cost drifts up slowly; DEPTH is a protocol constant chosen by measurement
(scripts/bench merkle, docs/STATE_ROOT.md). Not thread-safe. No rollback: feed it only changes of a block that
applied. A bad key or value raises ValueError: the STF builds keys itself, so this is a bug, not bad input.
"""

from __future__ import annotations

from collections.abc import Iterator

from stf.proof import (
    DEPTH,
    EMPTY_HASHES,
    KEY_FIELD_SIZE,
    MAX_KEY_SIZE,
    RECORD_SIZE,
    Proof,
    compute_bucket_hash_of_records,
    compute_bucket_index,
    compute_leaf_digest,
    compute_node_hash,
    encode_key_field,
    is_valid_key,
)

_EMPTY_BUCKET = b""


def validate_key(key: bytes) -> None:
    if type(key) is not bytes or not is_valid_key(key):
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


def merge_changes(blob: bytes, changes: dict[bytes, bytes | None]) -> tuple[bytes, int]:
    """The bucket blob with `changes` (key field -> record, or None to delete) applied, and the entry delta."""
    if not blob:
        # A fresh bucket (bulk load, snapshot install): records sort by their leading key field.
        inserted = sorted([record for record in changes.values() if record is not None])
        return b"".join(inserted), len(inserted)
    delta = 0
    for field, record in changes.items():
        offset = find_slot(blob, field)
        present = blob[offset:offset + KEY_FIELD_SIZE] == field
        if record is None:
            if present:
                blob = blob[:offset] + blob[offset + RECORD_SIZE:]
                delta -= 1
        elif present:
            blob = blob[:offset] + record + blob[offset + RECORD_SIZE:]
        else:
            blob = blob[:offset] + record + blob[offset:]
            delta += 1
    return blob, delta


def iter_entries(blob: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, leaf digest) pairs of one bucket blob, ascending by key."""
    for start in range(0, len(blob), RECORD_SIZE):
        key_size = blob[start + KEY_FIELD_SIZE - 1]
        yield blob[start:start + key_size], blob[start + KEY_FIELD_SIZE:start + RECORD_SIZE]


def unique_parents(indices: list[int]) -> list[int]:
    # indices ascend, so i >> 1 never decreases and a dict keeps them unique and ascending.
    return list(dict.fromkeys([i >> 1 for i in indices]))


class MerkleMap:
    """Authenticated map from state keys (1..31 bytes) to leaf digests, with a lazily recomputed root."""

    __slots__ = ("_buckets", "_levels", "_pending", "_stale", "_count")

    def __init__(self) -> None:
        self._buckets: list[bytes] = [_EMPTY_BUCKET] * (1 << DEPTH)
        self._levels: list[list[bytes]] = [[EMPTY_HASHES[d]] * (1 << d) for d in range(DEPTH + 1)]
        self._pending: dict[int, dict[bytes, bytes | None]] = {}
        self._stale: dict[int, None] = {}
        self._count = 0

    def set(self, key: bytes, value: bytes) -> None:
        """Insert or replace the entry for `key`; `value` is the entry's canonical bytes."""
        validate_key(key)
        if type(value) is not bytes:
            raise ValueError("merkle: a value must be bytes")
        field = encode_key_field(key)
        self._changes_for(compute_bucket_index(key))[field] = field + compute_leaf_digest(key, value)

    def delete(self, key: bytes) -> None:
        """Remove the entry for `key`; a no-op if it is absent."""
        validate_key(key)
        self._changes_for(compute_bucket_index(key))[encode_key_field(key)] = None

    def get_leaf(self, key: bytes) -> bytes | None:
        """The leaf digest stored for `key`, or None if absent (pending changes included)."""
        validate_key(key)
        index = compute_bucket_index(key)
        field = encode_key_field(key)
        changes = self._pending.get(index)
        if changes is not None and field in changes:
            record = changes[field]
            return None if record is None else record[KEY_FIELD_SIZE:]
        blob = self._buckets[index]
        offset = find_slot(blob, field)
        if blob[offset:offset + KEY_FIELD_SIZE] != field:
            return None
        return blob[offset + KEY_FIELD_SIZE:offset + RECORD_SIZE]

    def __contains__(self, key: bytes) -> bool:
        return self.get_leaf(key) is not None

    def __len__(self) -> int:
        self._merge_pending()
        return self._count

    def root(self) -> bytes:
        """The 32-byte state root; recomputes only buckets and nodes touched since the last call."""
        self._merge_pending()
        self._rehash_stale()
        return self._levels[0][0]

    def prove(self, key: bytes) -> Proof:
        """A proof of the key's current leaf (membership) or of its absence, against `root()`."""
        validate_key(key)
        self.root()
        index = compute_bucket_index(key)
        entries = tuple(entry for entry in iter_entries(self._buckets[index]) if entry[0] != key)
        siblings = []
        for depth in range(DEPTH, 0, -1):
            siblings.append(self._levels[depth][index ^ 1])
            index >>= 1
        return Proof(entries=entries, siblings=tuple(siblings))

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, leaf digest), ascending by key: for export and snapshot checks. O(N log N)."""
        self._merge_pending()
        entries = [entry for blob in self._buckets if blob for entry in iter_entries(blob)]
        entries.sort()
        return entries

    def keys(self) -> list[bytes]:
        """Every key, ascending."""
        return [key for key, _ in self.items()]

    def _changes_for(self, index: int) -> dict[bytes, bytes | None]:
        changes = self._pending.get(index)
        if changes is None:
            changes = self._pending[index] = {}
        return changes

    def _merge_pending(self) -> None:
        buckets = self._buckets
        for index in sorted(self._pending):
            buckets[index], delta = merge_changes(buckets[index], self._pending[index])
            self._count += delta
            self._stale[index] = None
        self._pending.clear()

    def _rehash_stale(self) -> None:
        if not self._stale:
            return
        indices = sorted(self._stale)
        self._stale.clear()
        buckets = self._buckets
        level = self._levels[DEPTH]
        for i in indices:
            level[i] = compute_bucket_hash_of_records(buckets[i])
        for depth in range(DEPTH, 0, -1):
            indices = unique_parents(indices)
            self._rehash_level(self._levels[depth], self._levels[depth - 1], indices)

    @staticmethod
    def _rehash_level(children: list[bytes], parents: list[bytes], indices: list[int]) -> None:
        for p in indices:
            parents[p] = compute_node_hash(children[2 * p], children[2 * p + 1])
