"""The write-ahead log: framing, a torn-tail tolerant reader, a file backend and an in-memory backend.

Format (one record): `length` (u32 big-endian, payload bytes) | `crc32(payload)` (u32 big-endian) | `payload`.
The payload is opaque here; the engine writes msgpack arrays (see `consensus.events.encode_wal_record`).

Reading (`decode_records`): records are read front to back. A last record that is cut short (header or payload
past the end) or whose checksum fails while ending exactly at the end of the data is a *torn tail*: a crash in the
middle of a write. It is dropped and reported, never an error. A bad checksum followed by more data is real
corruption and raises `WALCorrupted`: silently skipping it could forget an own signature.

Durability contract used by the engine: `append(record, flush=True)` returns only once the record (and everything
before it) is durable. The engine flushes its own signed proposals and votes before returning the action that
sends them, and the height markers; received messages are appended without a flush, because losing them in a
crash can only lose inputs that produced no signature.

`FileWAL` uses `os` only (`os.write` + `os.fsync`; on open it truncates a torn tail). `MemoryWAL` models a crash:
`crash(keep_unflushed)` keeps the flushed prefix plus `keep_unflushed` bytes of the rest (a torn write), and
`arm_crash(writes, keep)` makes the n-th next append write only `keep` bytes of its record and raise
`SimulatedCrash`, a process dying mid-write. Known limit: no rotation; a node should start a new file per height
range and delete files below its last committed height (not done yet).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Protocol

from consensus.errors import SimulatedCrash, WALCorrupted

HEADER = struct.Struct(">II")
MAX_RECORD_BYTES = 64 * 1024 * 1024


class WAL(Protocol):
    def append(self, record: bytes, flush: bool) -> None: ...

    def records(self) -> list[bytes]: ...


def encode_record(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes) -> tuple[list[bytes], int, bool]:
    """Return (payloads, length of the good prefix, whether a torn tail was dropped)."""
    records: list[bytes] = []
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < HEADER.size:
            return records, offset, True
        length, checksum = HEADER.unpack_from(data, offset)
        stop = offset + HEADER.size + length
        if length > MAX_RECORD_BYTES or stop > end:
            return records, offset, True
        payload = bytes(data[offset + HEADER.size:stop])
        if zlib.crc32(payload) != checksum:
            if stop == end:
                return records, offset, True
            raise WALCorrupted(f"checksum mismatch in the record at byte {offset}")
        records.append(payload)
        offset = stop
    return records, offset, False


class MemoryWAL:
    """In-memory WAL for tests and the simulator, with crash modelling."""

    __slots__ = ("data", "durable", "_armed", "_keep")

    def __init__(self, data: bytes = b"") -> None:
        """Open over `data` as `FileWAL` opens a file: a torn tail is cut off."""
        good = decode_records(data)[1]
        self.data = bytearray(data[:good])
        self.durable = good
        self._armed = 0
        self._keep = 0

    def append(self, record: bytes, flush: bool) -> None:
        framed = encode_record(record)
        if self._armed:
            self._armed -= 1
            if self._armed == 0:
                self.data += framed[: min(self._keep, len(framed) - 1)]
                raise SimulatedCrash("crash in the middle of a WAL write")
        self.data += framed
        if flush:
            self.durable = len(self.data)

    def records(self) -> list[bytes]:
        return decode_records(bytes(self.data))[0]

    def arm_crash(self, writes: int, keep: int) -> None:
        """Make the `writes`-th next append write only `keep` bytes and raise `SimulatedCrash`."""
        self._armed = writes
        self._keep = keep

    def crash(self, keep_unflushed: int = 0) -> None:
        """Lose what was not flushed, except a prefix of `keep_unflushed` bytes (a torn record)."""
        self.data = self.data[: self.durable + keep_unflushed]
        self.durable = len(self.data)
        self._armed = 0


class FileWAL:
    """Append-only file WAL. Opening truncates a torn tail; `append(..., flush=True)` fsyncs."""

    __slots__ = ("path", "_fd", "torn_bytes_dropped")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        data = self._read_all()
        try:
            _, good, _ = decode_records(data)
        except WALCorrupted:
            os.close(self._fd)
            raise
        self.torn_bytes_dropped = len(data) - good
        if self.torn_bytes_dropped:
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)

    def _read_all(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0) if size else b""

    def append(self, record: bytes, flush: bool) -> None:
        framed = encode_record(record)
        written = os.write(self._fd, framed)
        while written < len(framed):
            written += os.write(self._fd, framed[written:])
        if flush:
            os.fsync(self._fd)

    def records(self) -> list[bytes]:
        return decode_records(self._read_all())[0]

    def close(self) -> None:
        os.close(self._fd)
