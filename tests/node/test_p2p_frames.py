"""Spec-vector and property tests of the sealed frame codec (node/p2p/frames.py)."""

import msgpack
import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.p2p import errors
from node.p2p.frames import (
    COUNTER_LIMIT, MIN_SEALED_BYTES, FrameDecoder, FrameEncoder, Message, compute_nonce,
)

KEY = b"\x42" * 32
OTHER_KEY = b"\x43" * 32


def seal(plaintext: bytes, counter: int = 0, key: bytes = KEY) -> bytes:
    """A frame built from the documented format alone, with an arbitrary plaintext."""
    header = (len(plaintext) + 16).to_bytes(4, "big")
    nonce = bytes(4) + counter.to_bytes(8, "big")
    return header + nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, header, nonce, key)


def decode_all(decoder: FrameDecoder, data: bytes) -> list[Message]:
    decoder.feed(data)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


def test_frame_matches_the_documented_format() -> None:
    frame = FrameEncoder(KEY).encode(3, [b"abc", 7])
    assert frame == seal(msgpack.packb([3, [b"abc", 7]], use_bin_type=True))
    assert compute_nonce(5) == bytes(4) + (5).to_bytes(8, "big")


PAYLOADS = [None, 0, -1, 2**63, b"", b"\x00" * 1000, "text", [1, [2, [3]]], {"k": b"v"}, {b"k": 1}, True, 1.5]


def test_round_trip_in_order() -> None:
    encoder, decoder = FrameEncoder(KEY), FrameDecoder(KEY)
    stream = b"".join(encoder.encode(i, payload) for i, payload in enumerate(PAYLOADS, start=1))
    assert decode_all(decoder, stream) == [Message(i, p) for i, p in enumerate(PAYLOADS, start=1)]
    assert encoder.counter == decoder.counter == len(PAYLOADS)


def test_tuples_encode_as_arrays() -> None:
    decoder = FrameDecoder(KEY)
    assert decode_all(decoder, FrameEncoder(KEY).encode(1, (b"a", (1, 2)))) == [Message(1, [b"a", [1, 2]])]


def test_nonce_is_never_reused_for_equal_messages() -> None:
    encoder = FrameEncoder(KEY)
    assert encoder.encode(1, b"same") != encoder.encode(1, b"same")


messages = st.lists(
    st.tuples(st.integers(1, 0xFFFF), st.one_of(st.binary(max_size=300), st.integers(-2**63, 2**64 - 1),
                                               st.lists(st.binary(max_size=20), max_size=5))),
    max_size=12)


@settings(max_examples=150, deadline=None)
@given(messages, st.data())
def test_any_chunking_gives_the_same_messages(sent: list[tuple[int, object]], data: st.DataObject) -> None:
    encoder = FrameEncoder(KEY)
    stream = b"".join(encoder.encode(t, p) for t, p in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    decoder = FrameDecoder(KEY)
    received = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        received += decode_all(decoder, stream[start:end])
    assert received == [Message(t, p) for t, p in sent]
    assert decoder.buffered_bytes == 0


def test_partial_frame_waits_for_more_bytes() -> None:
    frame = FrameEncoder(KEY).encode(1, b"x" * 100)
    decoder = FrameDecoder(KEY)
    assert decode_all(decoder, frame[:3]) == []
    assert decode_all(decoder, frame[3:-1]) == []
    assert decode_all(decoder, frame[-1:]) == [Message(1, b"x" * 100)]


def test_invalid_oversize_frame_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(KEY, max_frame_size=1024)
    decoder.feed((1025).to_bytes(4, "big"))
    with pytest.raises(errors.FrameTooLarge):
        decoder.next_message()


def test_frame_of_exactly_the_maximum_size_is_accepted() -> None:
    plaintext_len = 1024 - 16
    payload = b"x" * (plaintext_len - len(msgpack.packb([1, b"x" * 1000])) + 1000)
    frame = FrameEncoder(KEY, max_frame_size=1024).encode(1, payload)
    assert len(frame) == 4 + 1024
    assert decode_all(FrameDecoder(KEY, max_frame_size=1024), frame) == [Message(1, payload)]


def test_invalid_oversize_message_refused_to_the_sender() -> None:
    encoder = FrameEncoder(KEY, max_frame_size=1024)
    with pytest.raises(errors.MessageTooLarge):
        encoder.encode(1, b"x" * 1024)
    assert encoder.counter == 0


@pytest.mark.parametrize("length", [0, 1, MIN_SEALED_BYTES - 1])
def test_invalid_frame_shorter_than_a_tag(length: int) -> None:
    decoder = FrameDecoder(KEY)
    decoder.feed(length.to_bytes(4, "big") + bytes(length))
    with pytest.raises(errors.MalformedFrame):
        decoder.next_message()


@pytest.mark.parametrize("position", [4, 10, -1])
def test_invalid_tampered_ciphertext(position: int) -> None:
    frame = bytearray(FrameEncoder(KEY).encode(1, b"payload"))
    frame[position] ^= 0x80
    decoder = FrameDecoder(KEY)
    decoder.feed(bytes(frame))
    with pytest.raises(errors.FrameAuthenticationFailed):
        decoder.next_message()


def test_invalid_tampered_length_prefix() -> None:
    frame = FrameEncoder(KEY).encode(1, b"payload")
    shorter = (int.from_bytes(frame[:4], "big") - 1).to_bytes(4, "big")
    decoder = FrameDecoder(KEY)
    decoder.feed(shorter + frame[4:])
    with pytest.raises(errors.FrameAuthenticationFailed):
        decoder.next_message()


def test_invalid_wrong_direction_key() -> None:
    decoder = FrameDecoder(OTHER_KEY)
    decoder.feed(FrameEncoder(KEY).encode(1, b"payload"))
    with pytest.raises(errors.FrameAuthenticationFailed):
        decoder.next_message()


def test_invalid_replayed_frame() -> None:
    frame = FrameEncoder(KEY).encode(1, b"pay me once")
    decoder = FrameDecoder(KEY)
    assert decode_all(decoder, frame) == [Message(1, b"pay me once")]
    decoder.feed(frame)
    with pytest.raises(errors.FrameAuthenticationFailed):
        decoder.next_message()


def test_invalid_reordered_frames() -> None:
    encoder = FrameEncoder(KEY)
    first, second = encoder.encode(1, b"a"), encoder.encode(1, b"b")
    decoder = FrameDecoder(KEY)
    decoder.feed(second + first)
    with pytest.raises(errors.FrameAuthenticationFailed):
        decoder.next_message()


def test_invalid_dropped_frame() -> None:
    encoder = FrameEncoder(KEY)
    encoder.encode(1, b"lost")
    decoder = FrameDecoder(KEY)
    decoder.feed(encoder.encode(1, b"next"))
    with pytest.raises(errors.FrameAuthenticationFailed):
        decoder.next_message()


@pytest.mark.parametrize("plaintext", [
    b"\xc1\xc1\xc1",                                     # never-used msgpack byte
    msgpack.packb([1, b"x"]) + b"\x00",                  # trailing bytes
    msgpack.packb([1, b"x", 3]),                         # three elements
    msgpack.packb({"type": 1}),                          # not an array
    msgpack.packb([-1, None]),                           # negative type
    msgpack.packb([0x10000, None]),                      # type too large
    msgpack.packb([True, None]),                         # bool is not a type
    msgpack.packb(["1", None]),                          # str is not a type
    msgpack.packb([1, msgpack.ExtType(1, b"x")]),        # ext types are refused
    b"\x92\x01\x81\x92\x01\x02\x03",                   # a map keyed by an array
    b"\x92\x01\xa2\xff\xfe",                             # invalid UTF-8 in a str
    b"\x92\x01\x91",                                     # truncated array
])
def test_invalid_malformed_plaintext(plaintext: bytes) -> None:
    decoder = FrameDecoder(KEY)
    decoder.feed(seal(plaintext))
    with pytest.raises(errors.MalformedMessage):
        decoder.next_message()
    assert decoder.counter == 1  # authentic frame: the counter moved on, the connection is closed anyway


def test_decoder_is_poisoned_after_an_error() -> None:
    decoder = FrameDecoder(KEY)
    decoder.feed(seal(b"\xc1\xc1\xc1"))
    with pytest.raises(errors.MalformedMessage) as first:
        decoder.next_message()
    with pytest.raises(errors.MalformedMessage) as again:
        decoder.feed(FrameEncoder(KEY, counter=1).encode(1, b"fine"))
    assert again.value is first.value
    with pytest.raises(errors.MalformedMessage):
        decoder.next_message()


def test_invalid_counter_exhausted_on_send() -> None:
    encoder = FrameEncoder(KEY, counter=COUNTER_LIMIT - 1)
    last = encoder.encode(1, b"last")
    with pytest.raises(errors.CounterExhausted):
        encoder.encode(1, b"one too many")
    decoder = FrameDecoder(KEY, counter=COUNTER_LIMIT - 1)
    assert decode_all(decoder, last) == [Message(1, b"last")]


def test_invalid_counter_exhausted_on_receive() -> None:
    decoder = FrameDecoder(KEY, counter=COUNTER_LIMIT)
    decoder.feed(seal(msgpack.packb([1, None]), counter=0))
    with pytest.raises(errors.CounterExhausted):
        decoder.next_message()


@pytest.mark.parametrize("msg_type", [-1, 0x10000, True, "1", 1.0])
def test_sender_rejects_a_bad_message_type(msg_type: object) -> None:
    with pytest.raises(ValueError):
        FrameEncoder(KEY).encode(msg_type, None)  # type: ignore[arg-type]


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        FrameEncoder(b"short")
    with pytest.raises(ValueError):
        FrameDecoder(b"x" * 33)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(20, 1 << 20))
def test_arbitrary_bytes_only_ever_raise_a_frame_error(data: bytes, max_frame_size: int) -> None:
    decoder = FrameDecoder(KEY, max_frame_size=max_frame_size)
    decoder.feed(data)
    try:
        assert decoder.next_message() is None
    except errors.FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_authentic_plaintext_only_ever_raises_malformed_message(plaintext: bytes) -> None:
    decoder = FrameDecoder(KEY)
    decoder.feed(seal(plaintext.ljust(3, b"\xc0")))
    try:
        message = decoder.next_message()
    except errors.MalformedMessage:
        return
    assert 0 <= message.type <= 0xFFFF
