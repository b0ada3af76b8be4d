"""The node's storage: a small key-value interface (`kv`), the one key schema (`schema`) and the chain store
(`store`), which writes each block in one atomic batch. See each module's docstring for its contract."""

from node.storage.kv import (
    BatchFinished, KeyValueStore, LevelDBKV, MemoryKV, StorageError, StoreClosed, StoreLocked, StoreOpenFailed,
    WriteBatch,
)
from node.storage.schema import SCHEMA_VERSION, Manifest, Meta, SchemaError, TxLocation
from node.storage.store import (
    BlockOutOfOrder, ChainMismatch, ChainStore, ChainStoreError, InvalidBlockRecord, ReplayMismatch, SchemaMismatch,
    SnapshotMissing, StateMismatch, StoreEmpty, open_chain_store,
)

__all__ = [
    "BatchFinished", "KeyValueStore", "LevelDBKV", "MemoryKV", "StorageError", "StoreClosed", "StoreLocked",
    "StoreOpenFailed", "WriteBatch", "SCHEMA_VERSION", "Manifest", "Meta", "SchemaError", "TxLocation",
    "BlockOutOfOrder", "ChainMismatch", "ChainStore", "ChainStoreError", "InvalidBlockRecord", "ReplayMismatch",
    "SchemaMismatch", "SnapshotMissing", "StateMismatch", "StoreEmpty", "open_chain_store",
]
