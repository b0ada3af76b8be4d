"""The one canonical encoding of every consensus object: msgpack with a fixed shape.

Rules (docs/PROTOCOL.md §Encoding): objects are msgpack arrays with a fixed field order, never maps; integers use
the smallest msgpack representation (what msgpack-python emits); byte strings are `bin`, text is never used on
the wire; `nil` marks an absent optional field. `decode_canonical` accepts bytes only if re-encoding what it read
gives the same bytes, so every object has exactly one encoding and one hash.
"""

from typing import Any

import msgpack

from stf.errors import MalformedEncoding

_packer = msgpack.Packer(use_bin_type=True, strict_types=False, autoreset=True)


def encode(value: Any) -> bytes:
    """Canonical bytes of `value` (tuples and lists both encode as arrays)."""
    return _packer.pack(value)


def decode(data: bytes, max_len: int) -> Any:
    """Decode without the canonical check; raises MalformedEncoding on any msgpack error or trailing bytes."""
    if len(data) > max_len:
        raise MalformedEncoding(f"{len(data)} bytes exceeds the limit of {max_len}")
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, max_bin_len=max_len,
            max_str_len=0, max_map_len=0, max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedEncoding(f"not valid msgpack: {exc}") from None


def decode_canonical(data: bytes, max_len: int) -> Any:
    """Decode `data` and require that it is the canonical encoding of what it holds."""
    value = decode(data, max_len)
    if encode(value) != data:
        raise MalformedEncoding("not the canonical encoding (re-encoding differs)")
    return value
