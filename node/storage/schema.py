"""The one key schema of the node's store: every key layout and every value layout, in one place.

Every key starts with a one-byte family tag (an ASCII letter, so a raw dump reads), followed by fixed-width
fields; heights are 8-byte big-endian unsigned integers so that byte order is height order and a range scan
walks heights in order. Hashes are 32 bytes. No family's tag is a prefix of another's keys, so a prefix scan on a
tag (or tag + height) returns exactly that family (or that height).

| key                                   | value                                                           |
|---------------------------------------|-----------------------------------------------------------------|
| `V`                                   | schema version: 8-byte big-endian (`SCHEMA_VERSION`)            |
| `G`                                   | genesis record: msgpack `[chain_id bytes, genesis app hash]`     |
| `M`                                   | meta: msgpack `[height, block hash, app hash]` of the latest block (*) |
| `B` height(8)                         | the block's canonical wire bytes (`stf.block.Block.to_wire`)    |
| `H` block hash(32)                    | height(8)                                                       |
| `C` height(8)                         | the commit certificate for the block, opaque bytes (consensus)  |
| `R` height(8)                         | the block's receipts, opaque bytes (the node encodes them)      |
| `A` height(8)                         | app hash after the block: the state root, 32 bytes              |
| `T` tx hash(32)                       | location: height(8) + index in the block(4), big-endian         |
| `S` entry key                         | the current state: one STF entry (`stf.state` key and value)    |
| `P` height(8)                         | snapshot manifest: msgpack `[height, app hash, entry count, entries hash]` |
| `Q` height(8) entry key               | the copy of one state entry as it was at that snapshot height   |

(*) At height 0 (genesis saved, no block yet) the block hash is 32 zero bytes, as the genesis state's
`last_block_hash`.

`S` holds the state at the meta height exactly: each block's changed entries are written (or deleted) in the same
batch as the block and the meta record. The STF's entry keys start with their own one-byte tag (`stf.state`),
so `S`+`a`... are accounts and so on; the store treats them as opaque.

The entries hash of a snapshot is SHA-256 over the concatenation, in key order, of the msgpack encodings of
`[key, value]` (self-delimiting, so the concatenation is unambiguous). It checks a copy without rebuilding the
state root; the app hash then checks the rebuilt state.

Changing any layout means bumping `SCHEMA_VERSION`; a store written with another version is refused at open.
"""

import hashlib
from typing import Iterable, NamedTuple

from stf import codec

SCHEMA_VERSION = 1

HASH_LEN = 32
HEIGHT_LEN = 8
TX_INDEX_LEN = 4
MAX_HEIGHT = (1 << 64) - 1

VERSION_KEY = b"V"
GENESIS_KEY = b"G"
META_KEY = b"M"
BLOCK = b"B"
BLOCK_HASH = b"H"
COMMIT = b"C"
RECEIPTS = b"R"
APP_HASH = b"A"
TX = b"T"
STATE = b"S"
SNAPSHOT_MANIFEST = b"P"
SNAPSHOT_ENTRY = b"Q"


class SchemaError(ValueError):
    """A key or value that does not have the layout of this schema (a bug, or a damaged store)."""


class Meta(NamedTuple):
    height: int
    block_hash: bytes
    app_hash: bytes


class Manifest(NamedTuple):
    height: int
    app_hash: bytes
    entry_count: int
    entries_hash: bytes


class TxLocation(NamedTuple):
    height: int
    index: int


# --- keys --------------------------------------------------------------------------------------------------------

def encode_height(height: int) -> bytes:
    if type(height) is not int or not 0 <= height <= MAX_HEIGHT:
        raise SchemaError(f"height must be an integer in [0, 2**64), not {height!r}")
    return height.to_bytes(HEIGHT_LEN, "big")


def decode_height(data: bytes) -> int:
    if len(data) != HEIGHT_LEN:
        raise SchemaError(f"a height is {HEIGHT_LEN} bytes, not {len(data)}")
    return int.from_bytes(data, "big")


def _hash_field(value: bytes, what: str) -> bytes:
    if type(value) is not bytes or len(value) != HASH_LEN:
        raise SchemaError(f"{what} must be {HASH_LEN} bytes")
    return value


def block_key(height: int) -> bytes:
    return BLOCK + encode_height(height)


def block_hash_key(block_hash: bytes) -> bytes:
    return BLOCK_HASH + _hash_field(block_hash, "a block hash")


def commit_key(height: int) -> bytes:
    return COMMIT + encode_height(height)


def receipts_key(height: int) -> bytes:
    return RECEIPTS + encode_height(height)


def app_hash_key(height: int) -> bytes:
    return APP_HASH + encode_height(height)


def tx_key(tx_hash: bytes) -> bytes:
    return TX + _hash_field(tx_hash, "a transaction hash")


def _entry_key(entry_key: bytes) -> bytes:
    if type(entry_key) is not bytes or not entry_key:
        raise SchemaError("a state entry key is non-empty bytes")
    return entry_key


def state_key(entry_key: bytes) -> bytes:
    return STATE + _entry_key(entry_key)


def snapshot_manifest_key(height: int) -> bytes:
    return SNAPSHOT_MANIFEST + encode_height(height)


def snapshot_entries_prefix(height: int) -> bytes:
    return SNAPSHOT_ENTRY + encode_height(height)


def snapshot_entry_key(height: int, entry_key: bytes) -> bytes:
    return snapshot_entries_prefix(height) + _entry_key(entry_key)


# --- values ------------------------------------------------------------------------------------------------------

def _decode_list(data: bytes, length: int, what: str) -> list:
    try:
        value = codec.decode(data, len(data))
    except Exception as exc:
        raise SchemaError(f"{what}: {exc}") from None
    if type(value) is not list or len(value) != length:
        raise SchemaError(f"{what} is a list of {length} fields")
    return value


def encode_version(version: int) -> bytes:
    return encode_height(version)


def decode_version(data: bytes) -> int:
    return decode_height(data)


def encode_genesis(chain_id: str, app_hash: bytes) -> bytes:
    return codec.encode([chain_id.encode(), _hash_field(app_hash, "the genesis app hash")])


def decode_genesis(data: bytes) -> tuple[str, bytes]:
    chain_id, app_hash = _decode_list(data, 2, "the genesis record")
    return chain_id.decode(), app_hash


def encode_meta(meta: Meta) -> bytes:
    encode_height(meta.height)
    return codec.encode([meta.height, _hash_field(meta.block_hash, "a block hash"),
                         _hash_field(meta.app_hash, "an app hash")])


def decode_meta(data: bytes) -> Meta:
    return Meta(*_decode_list(data, 3, "the meta record"))


def encode_tx_location(location: TxLocation) -> bytes:
    if not 0 <= location.index < 1 << (8 * TX_INDEX_LEN):
        raise SchemaError(f"transaction index {location.index} out of range")
    return encode_height(location.height) + location.index.to_bytes(TX_INDEX_LEN, "big")


def decode_tx_location(data: bytes) -> TxLocation:
    if len(data) != HEIGHT_LEN + TX_INDEX_LEN:
        raise SchemaError("a transaction location is 12 bytes")
    return TxLocation(decode_height(data[:HEIGHT_LEN]), int.from_bytes(data[HEIGHT_LEN:], "big"))


def encode_manifest(manifest: Manifest) -> bytes:
    encode_height(manifest.height)
    return codec.encode([manifest.height, _hash_field(manifest.app_hash, "an app hash"), manifest.entry_count,
                         _hash_field(manifest.entries_hash, "an entries hash")])


def decode_manifest(data: bytes) -> Manifest:
    return Manifest(*_decode_list(data, 4, "a snapshot manifest"))


def compute_entries_hash(entries: Iterable[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """(entry count, entries hash) of `entries` given in key order; see the module docstring."""
    digest = hashlib.sha256()
    count = 0
    for key, value in entries:
        digest.update(codec.encode([key, value]))
        count += 1
    return count, digest.digest()
