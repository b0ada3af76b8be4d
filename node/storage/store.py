"""`ChainStore`: the chain and its state over a `KeyValueStore`, one atomic batch per block.

Contract:

- `save_genesis` writes the state at height 0 (every entry), the genesis record, the meta record and a snapshot at
  height 0, in one batch. `save_block` writes, in one batch: the block, its hash index, the commit certificate,
  the receipts, one transaction-index record per transaction, the changed state entries (a None value deletes
  the entry), the app hash of the height, and the meta record (height, block hash, app hash). Heights are
  saved in order, each exactly one above the latest. A refused call writes nothing: it raises a
  `ChainStoreError`, or `schema.SchemaError` / `TypeError` for a malformed argument (a hash of the wrong length,
  a value that is not bytes), found while the batch is still unwritten.
- Invariant: the `S` entries (schema.py) are exactly the state after the meta height, and every record of every
  height from the base height + 1 to the meta height is present, none above it. The base height is 0, or the
  height of the snapshot a state-synced store started from (`save_synced_state`: no blocks below it). `load_state` checks it: it rebuilds an
  `stf.state.State` from the entries and requires that its root is the stored app hash.
- Snapshots: since the full state is kept as entries, a snapshot is a manifest (height, app hash, entry count,
  entries hash) plus a *copy* of the entries under the snapshot's prefix. The copy is what lets a node rebuild
  (`load_snapshot`) or verify (`replay`: the snapshot, then every later block through the STF, each root checked
  against the stored app hash) from an older height, and what state sync will serve; the live entries only ever
  hold the latest state. With `snapshot_interval` > 0, `save_block` takes one every that many heights; the
  newest `snapshots_kept` are kept, older ones are deleted in the same batch that writes a new one.

Crash safety (why `kill -9` at any instant leaves a consistent store):

1. Each of the writes above is one LevelDB write batch, which LevelDB appends to its log as one logical record
   (in checksummed fragments); recovery replays a complete record and drops a torn one, so after a crash the
   batch is either applied whole or not at all (the kill -9 test in tests/node/test_storage_store.py). So a
   crash inside `save_block` leaves the store at the previous height or at the new one, with the meta record,
   the entries and the block records always agreeing (they travel together).
2. Nothing is ever written in two steps that must both land: no "write the block, then the state" window as in
   CometBFT's block store plus state store, hence no repair step at start-up. The schema version is written
   alone before anything else; a store holding only it is an empty store.
3. Snapshot writes are one batch too, including the pruning of older snapshots, so an old snapshot is deleted only
   together with the write of its newer replacement. A crash between a block and the snapshot of that block
   only leaves that snapshot missing (the previous one still serves).
4. Batches are written with `sync=True` by default, so a block is durable (across a power loss too) when
   `save_block` returns. The node must not announce a block as committed before `save_block` returns; a block
   that was applied in memory but not saved is simply applied again after a restart (consensus or block sync
   supplies it again).

Start-up: `load_state` (fast: install the live entries, check the root); `replay` rebuilds from the last snapshot
and re-executes the later blocks (slow, verifies history: the `replay` command, or a fallback when the live
entries fail their check, followed by `restore_state_entries`). Whether to fall back automatically is the node's
policy: a failed check means a damaged disk or a bug, which an operator should hear about.

Concurrency: every call blocks (LevelDB, and an fsync per block with `sync`); the asyncio node runs them in a
worker thread, one writer at a time. Readers on other threads see whole blocks only (a LevelDB batch is atomic for
readers too), so reading the meta record and then that height's records is consistent. `MemoryKV` is for tests
and single-threaded use.

Known limits: one writer (the node's storage owner), no locking; a snapshot is written in one batch, so it holds
a full copy of the state in memory while writing (fine to a few million entries, chunked writes with the manifest
last are the path beyond); blocks are never pruned; receipts and commits are opaque bytes; transaction hashes
are unique on chain (the STF's nonce rule), a repeated hash would point at its latest inclusion.
"""

import hashlib
import os
from typing import Iterable, Iterator, Sequence

from node.storage import schema
from node.storage.kv import KeyValueStore, LevelDBKV, StorageError, WriteBatch
from node.storage.schema import Manifest, Meta, TxLocation
from stf.block import apply_block, decode_block
from stf.errors import KabutoError
from stf.params import ChainParams
from stf.state import State, apply_entries, export_entries
from stf.tx import decode_transaction

GENESIS_BLOCK_HASH = bytes(schema.HASH_LEN)


class ChainStoreError(StorageError):
    """A chain store refused an operation, or found its content inconsistent."""


class SchemaMismatch(ChainStoreError):
    """The store was written with another schema version (or is not a chain store)."""


class StoreEmpty(ChainStoreError):
    """No genesis has been saved yet."""


class BlockOutOfOrder(ChainStoreError):
    """A save that does not follow the latest stored height, or a second genesis."""


class InvalidBlockRecord(ChainStoreError):
    """The arguments of `save_block` disagree with each other or with the stored chain."""


class ChainMismatch(ChainStoreError):
    """The store holds another chain than the parameters given."""


class StateMismatch(ChainStoreError):
    """The stored entries do not rebuild the state recorded by the meta record or a snapshot manifest."""


class SnapshotMissing(ChainStoreError):
    """No snapshot at the height asked for (or none at all)."""


class ReplayMismatch(ChainStoreError):
    """Re-executing a stored block does not give its stored block hash or app hash."""


def open_chain_store(
    path: str | os.PathLike, create: bool = True, snapshot_interval: int = 0, snapshots_kept: int = 2,
    sync: bool = True,
) -> "ChainStore":
    """A `ChainStore` on the LevelDB directory `path` (the node's `<home>/data/chain`)."""
    return ChainStore(LevelDBKV(path, create), snapshot_interval, snapshots_kept, sync)


class ChainStore:
    """The node's block store and state store over one `KeyValueStore`, which it owns: `close()` closes it, and
    so does a failure of the constructor (a refused store is not left open)."""

    def __init__(
        self, kv: KeyValueStore, snapshot_interval: int = 0, snapshots_kept: int = 2, sync: bool = True,
    ) -> None:
        self.kv = kv
        self.snapshot_interval = snapshot_interval
        self.snapshots_kept = snapshots_kept
        self.sync = sync
        try:
            if snapshot_interval < 0 or snapshots_kept < 1:
                raise ValueError("snapshot_interval must be >= 0 and snapshots_kept >= 1")
            self._check_version()
        except BaseException:
            kv.close()
            raise

    def close(self) -> None:
        self.kv.close()

    def __enter__(self) -> "ChainStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _check_version(self) -> None:
        stored = self.kv.get(schema.VERSION_KEY)
        if stored is None:
            if next(self.kv.iterate(), None) is not None:
                raise SchemaMismatch(f"{self.kv.name} holds data but no schema version: not a chain store")
            self.kv.put(schema.VERSION_KEY, schema.encode_version(schema.SCHEMA_VERSION))
            return
        version = schema.decode_version(stored)
        if version != schema.SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{self.kv.name} has schema version {version}, this node reads version {schema.SCHEMA_VERSION}")

    # --- writers ---------------------------------------------------------------------------------------------

    def save_genesis(self, chain_id: str, entries: Iterable[tuple[bytes, bytes]], app_hash: bytes) -> Manifest:
        """The state at height 0 (`stf.state.export_entries` of the genesis state and its root)."""
        if self.latest() is not None:
            raise BlockOutOfOrder(f"{self.kv.name} already holds a chain")
        entries = sorted(entries)
        with self.kv.write_batch(sync=self.sync) as batch:
            for key, value in entries:
                batch.put(schema.state_key(key), value)
            batch.put(schema.GENESIS_KEY, schema.encode_genesis(chain_id, app_hash))
            batch.put(schema.app_hash_key(0), app_hash)
            manifest = self._put_snapshot(batch, 0, app_hash, entries)
            batch.put(schema.META_KEY, schema.encode_meta(Meta(0, GENESIS_BLOCK_HASH, app_hash)))
        return manifest

    def save_synced_state(
        self, chain_id: str, genesis_app_hash: bytes, entries: Iterable[tuple[bytes, bytes]], height: int,
        block_hash: bytes, app_hash: bytes,
    ) -> Manifest:
        """Start an empty store at `height` from a verified snapshot's entries (state sync), in one batch: the
        entries, the genesis record, the app hash of `height`, a snapshot at `height` and the meta record. The
        caller has checked that the entries rebuild `app_hash` and that a certified header commits to it."""
        if self.latest() is not None:
            raise BlockOutOfOrder(f"{self.kv.name} already holds a chain")
        entries = sorted(entries)
        with self.kv.write_batch(sync=self.sync) as batch:
            for key, value in entries:
                batch.put(schema.state_key(key), value)
            batch.put(schema.GENESIS_KEY, schema.encode_genesis(chain_id, genesis_app_hash))
            batch.put(schema.app_hash_key(height), app_hash)
            manifest = self._put_snapshot(batch, height, app_hash, entries)
            batch.put(schema.META_KEY, schema.encode_meta(Meta(height, block_hash, app_hash)))
        return manifest

    def save_block(
        self, height: int, block_wire: bytes, commit_wire: bytes, receipts_wire: bytes, tx_hashes: Sequence[bytes],
        state_entries_changed: Iterable[tuple[bytes, bytes | None]], app_hash: bytes, block_hash: bytes | None = None,
    ) -> None:
        """Store block `height` and the state after it in one atomic batch (see the module docstring).

        `app_hash` is the state root after the block. Without `block_hash` the block is decoded and checked against
        the chain (height, previous hash, pre-state app hash, transaction hashes); a caller that already holds the
        decoded block passes its hash and skips that work.
        """
        latest = self.latest()
        if latest is None:
            raise StoreEmpty(f"{self.kv.name} has no genesis: save_genesis first")
        if height != latest.height + 1:
            raise BlockOutOfOrder(f"block {height} does not follow the latest stored height {latest.height}")
        if block_hash is None:
            block_hash = self._check_block(height, block_wire, tx_hashes, latest)
        with self.kv.write_batch(sync=self.sync) as batch:
            batch.put(schema.block_key(height), block_wire)
            batch.put(schema.block_hash_key(block_hash), schema.encode_height(height))
            batch.put(schema.commit_key(height), commit_wire)
            batch.put(schema.receipts_key(height), receipts_wire)
            for index, tx_hash in enumerate(tx_hashes):
                batch.put(schema.tx_key(tx_hash), schema.encode_tx_location(TxLocation(height, index)))
            for key, value in state_entries_changed:
                if value is None:
                    batch.delete(schema.state_key(key))
                else:
                    batch.put(schema.state_key(key), value)
            batch.put(schema.app_hash_key(height), app_hash)
            batch.put(schema.META_KEY, schema.encode_meta(Meta(height, block_hash, app_hash)))
        if self.snapshot_interval and height % self.snapshot_interval == 0:
            self.save_snapshot(height)

    def restore_state_entries(self, state: State) -> None:
        """Replace the live entries by those of `state`, which must be the state at the latest height (its root is
        the stored app hash): after `replay` rebuilt a state whose live entries failed their check. One batch."""
        meta = self.get_latest()
        if state.height != meta.height or state.merkle.root() != meta.app_hash:
            raise StateMismatch(f"the state to restore is not the stored state at height {meta.height}")
        with self.kv.write_batch(sync=self.sync) as batch:
            for key, _ in self.kv.iterate(schema.STATE):
                batch.delete(key)
            for key, value in export_entries(state):
                batch.put(schema.state_key(key), value)

    def _check_block(self, height: int, block_wire: bytes, tx_hashes: Sequence[bytes], latest: Meta) -> bytes:
        try:
            block = decode_block(block_wire)
        except KabutoError as exc:
            raise InvalidBlockRecord(f"block {height}: {exc}") from None
        header = block.header
        if header.height != height:
            raise InvalidBlockRecord(f"the block's header says height {header.height}, saved as {height}")
        if header.prev_hash != latest.block_hash or header.app_hash != latest.app_hash:
            raise InvalidBlockRecord(f"block {height} does not build on the stored block {latest.height}")
        if [hashlib.sha256(tx).digest() for tx in block.txs] != list(tx_hashes):
            raise InvalidBlockRecord(
                f"the {len(tx_hashes)} transaction hashes given are not those of block {height}'s "
                f"{len(block.txs)} transactions, in order")
        return header.hash()

    def save_snapshot(self, height: int) -> Manifest:
        """Copy the state at the latest height, which must be `height`, under a snapshot; prune older ones."""
        latest = self.latest()
        if latest is None:
            raise StoreEmpty(f"{self.kv.name} has no genesis: nothing to snapshot")
        if height != latest.height:
            raise SnapshotMissing(f"a snapshot copies the latest state (height {latest.height}), not {height}")
        with self.kv.write_batch(sync=self.sync) as batch:
            manifest = self._put_snapshot(batch, height, latest.app_hash, self.iterate_state_entries())
        return manifest

    def _put_snapshot(
        self, batch: WriteBatch, height: int, app_hash: bytes, entries: Iterable[tuple[bytes, bytes]],
    ) -> Manifest:
        entries = list(entries)
        for key, value in entries:
            batch.put(schema.snapshot_entry_key(height, key), value)
        manifest = Manifest(height, app_hash, *schema.compute_entries_hash(entries))
        batch.put(schema.snapshot_manifest_key(height), schema.encode_manifest(manifest))
        kept = [m.height for m in self.list_snapshots() if m.height != height]
        for old in kept[:max(0, len(kept) - self.snapshots_kept + 1)]:
            self._delete_snapshot(batch, old)
        return manifest

    def _delete_snapshot(self, batch: WriteBatch, height: int) -> None:
        for key, _ in self.kv.iterate(schema.snapshot_entries_prefix(height)):
            batch.delete(key)
        batch.delete(schema.snapshot_manifest_key(height))

    # --- readers ---------------------------------------------------------------------------------------------

    def latest(self) -> Meta | None:
        """The latest committed (height, block hash, app hash); None before genesis."""
        data = self.kv.get(schema.META_KEY)
        return None if data is None else schema.decode_meta(data)

    def get_latest(self) -> Meta:
        meta = self.latest()
        if meta is None:
            raise StoreEmpty(f"{self.kv.name} has no genesis")
        return meta

    def get_chain_id(self) -> str | None:
        data = self.kv.get(schema.GENESIS_KEY)
        return None if data is None else schema.decode_genesis(data)[0]

    def get_block(self, height: int) -> bytes | None:
        return self.kv.get(schema.block_key(height))

    def get_block_height(self, block_hash: bytes) -> int | None:
        data = self.kv.get(schema.block_hash_key(block_hash))
        return None if data is None else schema.decode_height(data)

    def get_block_by_hash(self, block_hash: bytes) -> bytes | None:
        height = self.get_block_height(block_hash)
        return None if height is None else self.get_block(height)

    def iterate_blocks(self, first: int, last: int) -> Iterator[tuple[int, bytes]]:
        """(height, block wire) for the stored blocks from `first` to `last` inclusive, in order (block sync)."""
        stop = schema.block_key(last + 1) if last < schema.MAX_HEIGHT else schema.BLOCK + b"\xff" * 9
        pairs = self.kv.iterate(schema.BLOCK, start=schema.block_key(first), stop=stop)
        return ((schema.decode_height(key[1:]), value) for key, value in pairs)

    def get_commit(self, height: int) -> bytes | None:
        return self.kv.get(schema.commit_key(height))

    def get_receipts(self, height: int) -> bytes | None:
        return self.kv.get(schema.receipts_key(height))

    def get_app_hash(self, height: int) -> bytes | None:
        return self.kv.get(schema.app_hash_key(height))

    def get_tx_location(self, tx_hash: bytes) -> TxLocation | None:
        data = self.kv.get(schema.tx_key(tx_hash))
        return None if data is None else schema.decode_tx_location(data)

    def get_state_entry(self, entry_key: bytes) -> bytes | None:
        return self.kv.get(schema.state_key(entry_key))

    def iterate_state_entries(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry of the latest state, in key order (the view is fixed when called)."""
        return ((key[1:], value) for key, value in self.kv.iterate(schema.STATE))

    def get_snapshot(self, height: int) -> Manifest | None:
        data = self.kv.get(schema.snapshot_manifest_key(height))
        return None if data is None else schema.decode_manifest(data)

    def list_snapshots(self) -> list[Manifest]:
        """Every stored snapshot manifest, oldest first."""
        return [schema.decode_manifest(value) for _, value in self.kv.iterate(schema.SNAPSHOT_MANIFEST)]

    def iterate_snapshot_entries(self, height: int) -> Iterator[tuple[bytes, bytes]]:
        skip = len(schema.snapshot_entries_prefix(height))
        return ((key[skip:], value) for key, value in self.kv.iterate(schema.snapshot_entries_prefix(height)))

    # --- rebuilding the state --------------------------------------------------------------------------------

    def _check_chain(self, params: ChainParams) -> None:
        chain_id = self.get_chain_id()
        if chain_id is None:
            raise StoreEmpty(f"{self.kv.name} has no genesis")
        if chain_id != params.chain_id:
            raise ChainMismatch(f"{self.kv.name} holds chain {chain_id!r}, not {params.chain_id!r}")

    def load_state(self, params: ChainParams) -> State:
        """The state at the latest height, rebuilt from the live entries and checked against the app hash."""
        self._check_chain(params)
        meta = self.get_latest()
        state, root = self._install(params, list(self.iterate_state_entries()), f"height {meta.height}")
        if root != meta.app_hash:
            raise StateMismatch(
                f"{self.kv.name}: the stored entries give root {root.hex()}, the app hash at height {meta.height} "
                f"is {meta.app_hash.hex()}")
        if state.height != meta.height or state.last_block_hash != meta.block_hash:
            raise StateMismatch(f"{self.kv.name}: the stored state is at height {state.height}, meta {meta.height}")
        return state

    def load_snapshot(self, params: ChainParams, height: int | None = None) -> State:
        """The state of the snapshot at `height` (default: the newest), checked against its manifest."""
        self._check_chain(params)
        manifest = self._find_snapshot(height)
        entries = list(self.iterate_snapshot_entries(manifest.height))
        if schema.compute_entries_hash(entries) != (manifest.entry_count, manifest.entries_hash):
            raise StateMismatch(f"{self.kv.name}: snapshot {manifest.height} entries do not match its manifest")
        state, root = self._install(params, entries, f"snapshot {manifest.height}")
        if root != manifest.app_hash or state.height != manifest.height:
            raise StateMismatch(f"{self.kv.name}: snapshot {manifest.height} does not rebuild its app hash")
        return state

    def _install(self, params: ChainParams, entries: list[tuple[bytes, bytes]], where: str) -> tuple[State, bytes]:
        state = State(params)
        try:
            return state, apply_entries(state, entries)
        except (KabutoError, ValueError, TypeError, KeyError) as exc:
            raise StateMismatch(f"{self.kv.name}: the stored entries of {where} do not decode: {exc!r}") from None

    def _find_snapshot(self, height: int | None) -> Manifest:
        if height is None:
            snapshots = self.list_snapshots()
            if not snapshots:
                raise SnapshotMissing(f"{self.kv.name} has no snapshot")
            return snapshots[-1]
        manifest = self.get_snapshot(height)
        if manifest is None:
            raise SnapshotMissing(f"{self.kv.name} has no snapshot at height {height}")
        return manifest

    def replay(
        self, params: ChainParams, snapshot_height: int | None = None, to_height: int | None = None,
        check_signatures: bool = True,
    ) -> State:
        """Load a snapshot, then re-execute every stored block after it up to `to_height` (default: the latest),
        requiring each block's stored hash and app hash. Signatures were checked before the blocks were
        committed; `check_signatures=False` trusts them (faster)."""
        state = self.load_snapshot(params, snapshot_height)
        target = self.get_latest().height if to_height is None else to_height
        if target < state.height:
            raise SnapshotMissing(f"snapshot {state.height} is above the replay target {target}")
        for height in range(state.height + 1, target + 1):
            self._replay_block(state, height, check_signatures)
        return state

    def _replay_block(self, state: State, height: int, check_signatures: bool) -> None:
        wire = self.get_block(height)
        if wire is None:
            raise ReplayMismatch(f"{self.kv.name}: block {height} is missing")
        try:
            block = decode_block(wire)
            # apply_block skips the signature check of a transaction it is handed already decoded
            verified = None if check_signatures else {wire: decode_transaction(wire) for wire in block.txs}
            result = apply_block(state, block, verified)
        except KabutoError as exc:
            raise ReplayMismatch(f"{self.kv.name}: block {height} does not apply: {exc}") from None
        if self.get_block_height(result.block_hash) != height:
            raise ReplayMismatch(f"{self.kv.name}: block {height} hash index does not match the block")
        if result.state_root != self.get_app_hash(height):
            raise ReplayMismatch(f"{self.kv.name}: block {height} gives another app hash than the stored one")
