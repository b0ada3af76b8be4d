"""WAL framing, torn-tail tolerance, corruption detection, the file and memory backends."""

import os
import struct
import zlib

import pytest

from consensus.errors import SimulatedCrash, WALCorrupted
from consensus.wal import FileWAL, MemoryWAL, decode_records, encode_record


def test_record_is_length_crc_payload():
    assert encode_record(b"abc") == struct.pack(">II", 3, zlib.crc32(b"abc")) + b"abc"


def test_records_round_trip():
    data = b"".join(encode_record(p) for p in (b"one", b"", b"three"))
    assert decode_records(data) == ([b"one", b"", b"three"], len(data), False)


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 12])
def test_torn_last_record_is_dropped(cut):
    good = encode_record(b"first") + encode_record(b"second")
    last = encode_record(b"third-record")
    records, length, torn = decode_records(good + last[:cut])
    assert (records, length, torn) == ([b"first", b"second"], len(good), True)


def test_torn_last_record_with_bad_checksum_is_dropped():
    good = encode_record(b"first")
    last = bytearray(encode_record(b"second"))
    last[-1] ^= 0xFF
    assert decode_records(good + bytes(last)) == ([b"first"], len(good), True)


def test_invalid_corrupted_middle_record_raises():
    middle = bytearray(encode_record(b"second"))
    middle[-1] ^= 0xFF
    with pytest.raises(WALCorrupted):
        decode_records(encode_record(b"first") + bytes(middle) + encode_record(b"third"))


def test_memory_wal_loses_unflushed_records_on_crash():
    wal = MemoryWAL()
    wal.append(b"durable", flush=True)
    wal.append(b"volatile", flush=False)
    wal.crash(keep_unflushed=3)
    reopened = MemoryWAL(bytes(wal.data))
    assert reopened.records() == [b"durable"]
    reopened.append(b"after", flush=True)
    assert reopened.records() == [b"durable", b"after"]


def test_memory_wal_crash_mid_write_tears_the_record():
    wal = MemoryWAL()
    wal.append(b"a", flush=True)
    wal.arm_crash(writes=2, keep=6)
    wal.append(b"b", flush=True)
    with pytest.raises(SimulatedCrash):
        wal.append(b"c" * 50, flush=True)
    assert decode_records(bytes(wal.data))[2] is True
    assert MemoryWAL(bytes(wal.data)).records() == [b"a", b"b"]


def test_file_wal_appends_and_reads(tmp_path):
    path = str(tmp_path / "wal")
    wal = FileWAL(path)
    wal.append(b"one", flush=True)
    wal.append(b"two", flush=False)
    wal.close()
    again = FileWAL(path)
    assert again.records() == [b"one", b"two"]
    again.close()


def test_file_wal_truncates_torn_tail_on_open(tmp_path):
    path = str(tmp_path / "wal")
    with open(path, "wb") as f:
        f.write(encode_record(b"whole") + encode_record(b"partial-record")[:7])
    wal = FileWAL(path)
    assert wal.torn_bytes_dropped == 7
    wal.append(b"next", flush=True)
    assert wal.records() == [b"whole", b"next"]
    wal.close()
    assert os.path.getsize(path) == len(encode_record(b"whole") + encode_record(b"next"))


def test_invalid_file_wal_with_corrupted_middle_refuses_to_open(tmp_path):
    path = str(tmp_path / "wal")
    middle = bytearray(encode_record(b"middle"))
    middle[9] ^= 1
    with open(path, "wb") as f:
        f.write(encode_record(b"first") + bytes(middle) + encode_record(b"last"))
    with pytest.raises(WALCorrupted):
        FileWAL(path)
