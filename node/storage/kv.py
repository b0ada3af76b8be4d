"""A small ordered key-value interface with atomic write batches, and its two backends.

Contract (`KeyValueStore`), kept by one conformance suite that both backends pass (tests/node/test_storage_kv.py):

- keys and values are `bytes` (anything else raises `TypeError` naming the argument); the empty value is a value;
- `get` returns the value or None; `has`, `put`, `delete` (deleting an absent key is not an error);
- `iterate(prefix, start, stop, reverse)` yields `(key, value)` pairs in bytewise key order (or its reverse) for
  keys that start with `prefix` and lie in `start <= key < stop`. The view is taken when `iterate` is called:
  writes made while iterating are not seen (LevelDB's implicit snapshot; `MemoryKV` copies the range);
- `write_batch(sync)` returns a `WriteBatch`: `put`/`delete` are buffered in order (a later operation on the same
  key wins), nothing is visible to readers until `commit()`, which applies all of them atomically or none.
  Used as a context manager it commits on normal exit and discards on an exception, so an exception before
  the commit leaves the store untouched. A batch is single-use: after `commit()` or `discard()` it raises
  `BatchFinished`;
- `close()` is idempotent; any operation after it (including an iterator still being consumed) raises
  `StoreClosed`. Stores are context managers that close on exit.

Durability: `LevelDBKV` batch writes are atomic across a crash of the process (LevelDB appends a batch to its log
as one checksummed record; a torn record is dropped on recovery), and a batch written with `sync=True` is also
durable across a power loss (the log is fsynced before `commit` returns). Without `sync` a completed commit
survives `kill -9` (the bytes are in the OS page cache) but not a power loss.

Known limits: `MemoryKV` sorts the matching keys on every `iterate` call (it is the test twin, not a cache);
a store is used by one thread at a time (the node's storage owner), nothing here locks; `LevelDBKV` refuses a
directory that another process (or another open handle in this process) holds, with `StoreLocked`.
"""

import os
from abc import ABC, abstractmethod
from bisect import bisect_left
from typing import Iterator

import plyvel


class StorageError(Exception):
    """The root of every storage error of the node."""


class StoreClosed(StorageError):
    """An operation on a store (or one of its iterators or batches) after `close()`."""


class StoreLocked(StorageError):
    """The LevelDB directory is held by another process or handle."""


class StoreOpenFailed(StorageError):
    """The LevelDB directory could not be opened (missing, not a directory, corrupt...)."""


class BatchFinished(StorageError):
    """A write batch used after its `commit()` or `discard()`."""


Pair = tuple[bytes, bytes]


def check_bytes(value: object, name: str) -> None:
    if type(value) is not bytes:
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def compute_prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix`, or None when there is none."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def compute_range(prefix: bytes, start: bytes | None, stop: bytes | None) -> tuple[bytes, bytes | None]:
    """The half-open range [lower, upper) of keys that start with `prefix` and lie in [start, stop)."""
    check_bytes(prefix, "prefix")
    lower = prefix
    if start is not None:
        check_bytes(start, "start")
        lower = max(lower, start)
    upper = compute_prefix_end(prefix)
    if stop is not None:
        check_bytes(stop, "stop")
        upper = stop if upper is None else min(upper, stop)
    return lower, upper


class WriteBatch(ABC):
    """Buffered writes applied atomically by `commit()`; see the module docstring."""

    def __init__(self) -> None:
        self._finished = False

    def put(self, key: bytes, value: bytes) -> None:
        self._check_open()
        check_bytes(key, "key")
        check_bytes(value, "value")
        self._put(key, value)

    def delete(self, key: bytes) -> None:
        self._check_open()
        check_bytes(key, "key")
        self._delete(key)

    def commit(self) -> None:
        self._check_open()
        self._finished = True
        self._commit()

    def discard(self) -> None:
        """Drop the buffered writes (idempotent)."""
        self._finished = True

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finished:
            self.commit()
        else:
            self.discard()

    def _check_open(self) -> None:
        if self._finished:
            raise BatchFinished("this write batch was already committed or discarded")

    @abstractmethod
    def _put(self, key: bytes, value: bytes) -> None: ...

    @abstractmethod
    def _delete(self, key: bytes) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...


class KeyValueStore(ABC):
    """An ordered bytes-to-bytes store; see the module docstring for the contract."""

    name = "store"

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        check_bytes(key, "key")
        return self._get(key)

    def has(self, key: bytes) -> bool:
        return self.get(key) is not None

    def put(self, key: bytes, value: bytes) -> None:
        with self.write_batch() as batch:
            batch.put(key, value)

    def delete(self, key: bytes) -> None:
        with self.write_batch() as batch:
            batch.delete(key)

    def iterate(
        self, prefix: bytes = b"", start: bytes | None = None, stop: bytes | None = None, reverse: bool = False,
    ) -> Iterator[Pair]:
        self._check_open()
        lower, upper = compute_range(prefix, start, stop)
        if upper is not None and upper <= lower:
            return iter(())
        return self._guard(self._iterate(lower, upper, reverse))

    def write_batch(self, sync: bool = False) -> WriteBatch:
        self._check_open()
        return self._write_batch(sync)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "KeyValueStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self.name} is closed")

    def _guard(self, pairs: Iterator[Pair]) -> Iterator[Pair]:
        try:
            for pair in pairs:
                self._check_open()
                yield pair
        except RuntimeError:  # plyvel: "Database or iterator is closed"
            raise StoreClosed(f"{self.name} was closed while iterating") from None

    @abstractmethod
    def _get(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def _iterate(self, lower: bytes, upper: bytes | None, reverse: bool) -> Iterator[Pair]: ...

    @abstractmethod
    def _write_batch(self, sync: bool) -> WriteBatch: ...

    @abstractmethod
    def _close(self) -> None: ...


# --- in memory -------------------------------------------------------------------------------------------------

class _MemoryBatch(WriteBatch):
    def __init__(self, store: "MemoryKV") -> None:
        super().__init__()
        self._store = store
        self._ops: list[tuple[bytes, bytes | None]] = []

    def _put(self, key: bytes, value: bytes) -> None:
        self._ops.append((key, value))

    def _delete(self, key: bytes) -> None:
        self._ops.append((key, None))

    def _commit(self) -> None:
        self._store._check_open()
        data = self._store._data
        for key, value in self._ops:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self._ops = []

    def discard(self) -> None:
        super().discard()
        self._ops = []


class MemoryKV(KeyValueStore):
    """The in-memory twin: a dict, sorted on demand. Nothing survives `close()`."""

    name = "memory store"

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[bytes, bytes] = {}

    def _get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def _iterate(self, lower: bytes, upper: bytes | None, reverse: bool) -> Iterator[Pair]:
        keys = sorted(self._data)
        begin = bisect_left(keys, lower)
        end = len(keys) if upper is None else bisect_left(keys, upper)
        data = self._data
        pairs = [(key, data[key]) for key in keys[begin:end]]
        if reverse:
            pairs.reverse()
        return iter(pairs)

    def _write_batch(self, sync: bool) -> WriteBatch:
        return _MemoryBatch(self)

    def _close(self) -> None:
        self._data = {}


# --- LevelDB ---------------------------------------------------------------------------------------------------

class _LevelDBBatch(WriteBatch):
    def __init__(self, store: "LevelDBKV", sync: bool) -> None:
        super().__init__()
        self._store = store
        self._batch = store._db.write_batch(sync=sync)

    def _put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)

    def _delete(self, key: bytes) -> None:
        self._batch.delete(key)

    def _commit(self) -> None:
        self._store._check_open()
        self._batch.write()

    def discard(self) -> None:
        super().discard()
        self._batch.clear()


def _message(exc: Exception) -> str:
    text = exc.args[0] if exc.args else exc
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


class LevelDBKV(KeyValueStore):
    """LevelDB through plyvel. `path` is a directory, created (with its parents) when `create` is true."""

    def __init__(self, path: str | os.PathLike, create: bool = True, cache_bytes: int | None = None) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.name = f"LevelDB store at {self.path}"
        self._db = self._open(create, cache_bytes)

    def _open(self, create: bool, cache_bytes: int | None) -> plyvel.DB:
        if create:
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as exc:
                raise StoreOpenFailed(f"cannot create LevelDB directory {self.path}: {exc.strerror}") from None
        elif not os.path.isdir(self.path):
            raise StoreOpenFailed(f"no LevelDB store at {self.path} (not a directory)")
        try:
            return plyvel.DB(self.path, create_if_missing=create, lru_cache_size=cache_bytes)
        except plyvel.IOError as exc:
            message = _message(exc)
            if "lock" in message.lower() and "No such file" not in message and "Not a directory" not in message:
                raise StoreLocked(
                    f"LevelDB directory {self.path} is locked: another node process (or another open handle) "
                    f"is using it ({message})"
                ) from None
            raise StoreOpenFailed(f"cannot open LevelDB directory {self.path}: {message}") from None
        except plyvel.Error as exc:
            raise StoreOpenFailed(f"cannot open LevelDB directory {self.path}: {_message(exc)}") from None

    def _get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def _iterate(self, lower: bytes, upper: bytes | None, reverse: bool) -> Iterator[Pair]:
        # A raw iterator, positioned by hand: plyvel's ranged reverse iterator yields nothing when the only key in
        # range equals `start` (wbolster/plyvel#4 territory); the model test in the conformance suite caught it.
        # Creating it here (not in the generator) fixes the view when `iterate` is called.
        raw = self._db.raw_iterator()
        return self._walk_backward(raw, lower, upper) if reverse else self._walk_forward(raw, lower, upper)

    @staticmethod
    def _walk_forward(raw, lower: bytes, upper: bytes | None) -> Iterator[Pair]:
        raw.seek(lower)
        while raw.valid():
            key = raw.key()
            if upper is not None and key >= upper:
                return
            yield key, raw.value()
            raw.next()

    @staticmethod
    def _walk_backward(raw, lower: bytes, upper: bytes | None) -> Iterator[Pair]:
        if upper is None:
            raw.seek_to_last()
        else:
            raw.seek(upper)  # the first key >= upper, or none: step back to the last key < upper
            if raw.valid():
                raw.prev()
            else:
                raw.seek_to_last()
        while raw.valid():
            key = raw.key()
            if key < lower:
                return
            yield key, raw.value()
            raw.prev()

    def _write_batch(self, sync: bool) -> WriteBatch:
        return _LevelDBBatch(self, sync)

    def _close(self) -> None:
        self._db.close()
