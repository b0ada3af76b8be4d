"""Spec vectors for the on-disk layout (node/storage/schema.py). A change here is a change of the stored format:
bump `SCHEMA_VERSION` with it."""

import hashlib

import pytest

from node.storage import schema
from node.storage.schema import Manifest, Meta, SchemaError, TxLocation

H32 = bytes(range(32))


def test_schema_version():
    assert schema.SCHEMA_VERSION == 1
    assert schema.encode_version(1) == bytes(7) + b"\x01"


@pytest.mark.parametrize("key, expected", [
    (schema.block_key(1), b"B" + bytes(7) + b"\x01"),
    (schema.block_key(2**64 - 1), b"B" + b"\xff" * 8),
    (schema.block_hash_key(H32), b"H" + H32),
    (schema.commit_key(256), b"C" + bytes(6) + b"\x01\x00"),
    (schema.receipts_key(0), b"R" + bytes(8)),
    (schema.app_hash_key(7), b"A" + bytes(7) + b"\x07"),
    (schema.tx_key(H32), b"T" + H32),
    (schema.state_key(b"a" + bytes(20)), b"S" + b"a" + bytes(20)),
    (schema.snapshot_manifest_key(3), b"P" + bytes(7) + b"\x03"),
    (schema.snapshot_entry_key(3, b"g"), b"Q" + bytes(7) + b"\x03" + b"g"),
    (schema.snapshot_entries_prefix(3), b"Q" + bytes(7) + b"\x03"),
])
def test_key_layouts(key, expected):
    assert key == expected


def test_singleton_keys_and_family_tags_are_distinct():
    tags = [schema.VERSION_KEY, schema.GENESIS_KEY, schema.META_KEY, schema.BLOCK, schema.BLOCK_HASH, schema.COMMIT,
            schema.RECEIPTS, schema.APP_HASH, schema.TX, schema.STATE, schema.SNAPSHOT_MANIFEST,
            schema.SNAPSHOT_ENTRY]
    assert all(len(tag) == 1 for tag in tags) and len(set(tags)) == len(tags)


def test_heights_sort_as_keys():
    heights = [0, 1, 255, 256, 2**32, 2**64 - 1]
    assert sorted(schema.block_key(h) for h in reversed(heights)) == [schema.block_key(h) for h in heights]


def test_value_layouts_round_trip():
    meta = Meta(5, H32, bytes(32))
    assert schema.encode_meta(meta) == b"\x93\x05\xc4\x20" + H32 + b"\xc4\x20" + bytes(32)
    assert schema.decode_meta(schema.encode_meta(meta)) == meta
    location = TxLocation(2, 3)
    assert schema.encode_tx_location(location) == bytes(7) + b"\x02" + bytes(3) + b"\x03"
    assert schema.decode_tx_location(schema.encode_tx_location(location)) == location
    manifest = Manifest(4, H32, 10, bytes(32))
    assert schema.decode_manifest(schema.encode_manifest(manifest)) == manifest
    assert schema.decode_genesis(schema.encode_genesis("kabuto-test", H32)) == ("kabuto-test", H32)


def test_entries_hash_vector():
    entries = [(b"a", b"1"), (b"g", b"")]
    expected = hashlib.sha256(b"\x92\xc4\x01a\xc4\x011" + b"\x92\xc4\x01g\xc4\x00").digest()
    assert schema.compute_entries_hash(entries) == (2, expected)
    assert schema.compute_entries_hash([]) == (0, hashlib.sha256().digest())


@pytest.mark.parametrize("height", [-1, 2**64, True, 1.0, "1"])
def test_invalid_height(height):
    with pytest.raises(SchemaError, match="height must be an integer"):
        schema.block_key(height)


@pytest.mark.parametrize("value", [bytes(31), bytes(33), "0" * 32, None])
def test_invalid_hash_field(value):
    with pytest.raises(SchemaError, match="32 bytes"):
        schema.block_hash_key(value)
    with pytest.raises(SchemaError, match="32 bytes"):
        schema.tx_key(value)


@pytest.mark.parametrize("entry_key", [b"", "a", None])
def test_invalid_state_entry_key(entry_key):
    with pytest.raises(SchemaError, match="non-empty bytes"):
        schema.state_key(entry_key)


def test_invalid_tx_index():
    with pytest.raises(SchemaError, match="out of range"):
        schema.encode_tx_location(TxLocation(1, 2**32))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x92\x01\x02", b"\x01"])
def test_invalid_meta_record(data):
    with pytest.raises(SchemaError, match="meta record"):
        schema.decode_meta(data)


@pytest.mark.parametrize("data", [b"", bytes(11), bytes(13)])
def test_invalid_tx_location(data):
    with pytest.raises(SchemaError, match="12 bytes"):
        schema.decode_tx_location(data)
