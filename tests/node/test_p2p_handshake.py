"""Spec-vector tests of the sans-IO P2P handshake (node/p2p/handshake.py): two state machines in memory."""

import hashlib
import hmac

import msgpack
import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.p2p import errors
from node.p2p.frames import MSG_AUTH, FrameDecoder, FrameEncoder
from node.p2p.handshake import (
    PROTOCOL_TAG, Handshake, ReplayGuard, Role, compute_auth_sign_bytes, encode_hello,
)
from stf.crypto import PrivateKey, compute_address, is_valid_signature

CHAIN = "kabuto-test"
ALICE = PrivateKey(b"\x01" * 32)
BOB = PrivateKey(b"\x02" * 32)
CAROL = PrivateKey(b"\x03" * 32)
EPH_I = b"\x11" * 32
EPH_R = b"\x22" * 32


def make_pair(**responder_kwargs) -> tuple[Handshake, Handshake]:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN, ephemeral_secret=EPH_I)
    responder = Handshake(Role.RESPONDER, BOB, CHAIN, ephemeral_secret=EPH_R, **responder_kwargs)
    return initiator, responder


def derive_documented_keys() -> tuple[bytes, bytes, bytes]:
    """(transcript, key_i2r, key_r2i) for EPH_I and EPH_R, computed from the module docstring alone."""
    e_i = nacl.bindings.crypto_scalarmult_base(EPH_I)
    e_r = nacl.bindings.crypto_scalarmult_base(EPH_R)
    transcript = hashlib.sha256(PROTOCOL_TAG + bytes((len(CHAIN),)) + CHAIN.encode() + e_i + e_r).digest()
    shared = nacl.bindings.crypto_scalarmult(EPH_R, e_i)
    prk = hmac.digest(transcript, shared, "sha256")
    info = PROTOCOL_TAG + b" session keys"
    key_i2r = hmac.digest(prk, info + b"\x01", "sha256")
    key_r2i = hmac.digest(prk, key_i2r + info + b"\x02", "sha256")
    return transcript, key_i2r, key_r2i


def run_in_memory(initiator: Handshake, responder: Handshake) -> list[bytes]:
    """Shuttle bytes until both sides are complete; returns the three flights I->R, R->I, I->R."""
    flights = []
    for sender, receiver in ((initiator, responder), (responder, initiator), (initiator, responder)):
        flight = sender.data_to_send()
        flights.append(flight)
        receiver.receive_data(flight)
    assert initiator.is_complete and responder.is_complete
    return flights


def test_handshake_authenticates_both_ends_and_keys_match() -> None:
    initiator, responder = make_pair()
    run_in_memory(initiator, responder)
    assert initiator.result.peer_id == BOB.address == compute_address(BOB.public_key)
    assert responder.result.peer_id == ALICE.address
    assert initiator.result.peer_public_key == BOB.public_key
    frame = initiator.result.encoder.encode(7, [b"tx", 1])
    responder.result.decoder.feed(frame)
    message = responder.result.decoder.next_message()
    assert (message.type, message.payload) == (7, [b"tx", 1])
    frame = responder.result.encoder.encode(8, None)
    initiator.result.decoder.feed(frame)
    assert initiator.result.decoder.next_message().type == 8


def test_handshake_wire_format_matches_the_documented_key_schedule() -> None:
    """Re-derive everything from the module docstring and open the responder's AUTH with it."""
    initiator, responder = make_pair()
    hello_i, flight_r, auth_i = run_in_memory(initiator, responder)
    e_i = nacl.bindings.crypto_scalarmult_base(EPH_I)
    e_r = nacl.bindings.crypto_scalarmult_base(EPH_R)
    transcript, key_i2r, key_r2i = derive_documented_keys()
    assert hello_i == len(hello_i[4:]).to_bytes(4, "big") + msgpack.packb([PROTOCOL_TAG, CHAIN.encode(), e_i])
    hello_r_len = int.from_bytes(flight_r[:4], "big")
    assert msgpack.unpackb(flight_r[4:4 + hello_r_len]) == [PROTOCOL_TAG, CHAIN.encode(), e_r]
    decoder = FrameDecoder(key_r2i)
    decoder.feed(flight_r[4 + hello_r_len:])
    auth = decoder.next_message()
    assert auth.type == MSG_AUTH and auth.payload[0] == BOB.public_key
    assert is_valid_signature(BOB.public_key, PROTOCOL_TAG + b" auth" + b"R" + transcript, auth.payload[1])
    decoder = FrameDecoder(key_i2r)
    decoder.feed(auth_i)
    auth = decoder.next_message()
    assert auth.payload[0] == ALICE.public_key
    assert is_valid_signature(ALICE.public_key, PROTOCOL_TAG + b" auth" + b"I" + transcript, auth.payload[1])


def test_pinned_vector_for_other_implementations() -> None:
    """Fixed inputs (ephemeral secrets 0x11 * 32 and 0x22 * 32, chain "kabuto-test") and their outputs, so a
    second implementation or a document can be checked byte for byte."""
    e_i, e_r = nacl.bindings.crypto_scalarmult_base(EPH_I), nacl.bindings.crypto_scalarmult_base(EPH_R)
    assert e_i.hex() == "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13"
    assert e_r.hex() == "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20"
    transcript, key_i2r, key_r2i = derive_documented_keys()
    assert transcript.hex() == "e9e80727c910ec10a83f4fd3071d66810699c4b96174f3cbf885af2b72b2d717"
    assert key_i2r.hex() == "a80451e4f236dd7ba221dec3d00c839e817308b936f5381ac6191c5bb45b7925"
    assert key_r2i.hex() == "9c5a3de5c9ec0ebaf07c7a8e56768047f0f5ddb26a091d1f010631a03651ae9d"
    initiator, responder = make_pair()
    run_in_memory(initiator, responder)
    first_application_frame = initiator.result.encoder.encode(16, b"tx")  # counter 1: AUTH used 0
    assert first_application_frame.hex() == "000000160628098697e65d2942e796197cf3ac92dc411d14e435"


def test_application_frames_sent_with_auth_are_kept_for_the_session() -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    flight = initiator.data_to_send() + initiator.result.encoder.encode(9, b"early" * 100)
    responder.receive_data(flight)
    assert responder.is_complete
    assert responder.result.decoder.next_message().payload == b"early" * 100


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_handshake_completes_under_any_chunking(data: st.DataObject) -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN)
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    for sender, receiver in ((initiator, responder), (responder, initiator), (initiator, responder)):
        flight = sender.data_to_send()
        cuts = sorted(data.draw(st.lists(st.integers(0, len(flight)), max_size=6)))
        for start, end in zip([0, *cuts], [*cuts, len(flight)]):
            receiver.receive_data(flight[start:end])
    assert initiator.result.peer_id == BOB.address and responder.result.peer_id == ALICE.address


def test_replay_guard_accepts_fresh_keys_and_forgets_the_oldest() -> None:
    guard = ReplayGuard(capacity=2)
    for key in (b"a" * 32, b"b" * 32, b"c" * 32):
        guard.check_and_remember(key)
    guard.check_and_remember(b"a" * 32)  # evicted, so accepted again
    with pytest.raises(errors.ReplayedHandshake):
        guard.check_and_remember(b"c" * 32)


def test_invalid_wrong_chain() -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, "other-chain")
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    with pytest.raises(errors.WrongChain):
        responder.receive_data(initiator.data_to_send())
    assert responder.data_to_send() == b""


def test_invalid_protocol_tag() -> None:
    body = msgpack.packb([b"kabuto-p2p/2", CHAIN.encode(), b"\x05" * 32])
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    with pytest.raises(errors.ProtocolMismatch):
        responder.receive_data(len(body).to_bytes(4, "big") + body)


class Impostor:
    """Claims `claimed`'s public key but signs with `signer`."""

    def __init__(self, claimed: PrivateKey, signer: PrivateKey) -> None:
        self.public_key = claimed.public_key
        self.address = claimed.address
        self._signer = signer

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message)


def test_invalid_bad_signature_from_responder() -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN)
    responder = Handshake(Role.RESPONDER, Impostor(BOB, CAROL), CHAIN)  # type: ignore[arg-type]
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(errors.BadHandshakeSignature):
        initiator.receive_data(responder.data_to_send())
    assert initiator.data_to_send() == b""  # the initiator never revealed its own identity


def test_invalid_bad_signature_from_initiator() -> None:
    initiator = Handshake(Role.INITIATOR, Impostor(ALICE, CAROL), CHAIN)  # type: ignore[arg-type]
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    with pytest.raises(errors.BadHandshakeSignature):
        responder.receive_data(initiator.data_to_send())


def test_invalid_signature_made_for_the_other_role() -> None:
    """A responder AUTH signed over the initiator's role byte (a reflected signature) is rejected."""
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN, ephemeral_secret=EPH_I)
    initiator.data_to_send()
    transcript, _, key_r2i = derive_documented_keys()
    signature = BOB.sign(PROTOCOL_TAG + b" auth" + b"I" + transcript)
    auth = FrameEncoder(key_r2i).encode(MSG_AUTH, [BOB.public_key, signature])
    e_r = nacl.bindings.crypto_scalarmult_base(EPH_R)
    with pytest.raises(errors.BadHandshakeSignature):
        initiator.receive_data(encode_hello(CHAIN.encode(), e_r) + auth)


def test_forged_auth_with_the_right_role_is_accepted() -> None:
    """The control for the test above: the same forge with b"R" completes, so only the role byte differs."""
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN, ephemeral_secret=EPH_I)
    initiator.data_to_send()
    transcript, _, key_r2i = derive_documented_keys()
    signature = BOB.sign(PROTOCOL_TAG + b" auth" + b"R" + transcript)
    auth = FrameEncoder(key_r2i).encode(MSG_AUTH, [BOB.public_key, signature])
    initiator.receive_data(encode_hello(CHAIN.encode(), nacl.bindings.crypto_scalarmult_base(EPH_R)) + auth)
    assert initiator.result.peer_id == BOB.address


def test_invalid_unexpected_peer() -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN, expected_peer_id=CAROL.address)
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(errors.UnexpectedPeer):
        initiator.receive_data(responder.data_to_send())
    assert initiator.data_to_send() == b""


def test_invalid_reflected_ephemeral_key() -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN)
    with pytest.raises(errors.ReflectedKey):
        initiator.receive_data(initiator.data_to_send())


def test_invalid_self_connection() -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN)
    responder = Handshake(Role.RESPONDER, ALICE, CHAIN)
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(errors.SelfConnection):
        initiator.receive_data(responder.data_to_send())


def test_invalid_low_order_ephemeral_key() -> None:
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    with pytest.raises(errors.InvalidPeerKey):
        responder.receive_data(encode_hello(CHAIN.encode(), bytes(32)))


def test_invalid_replayed_transcript_fails_to_decrypt() -> None:
    initiator, responder = make_pair()
    hello_i, _, auth_i = run_in_memory(initiator, responder)
    fresh = Handshake(Role.RESPONDER, BOB, CHAIN)
    fresh.receive_data(hello_i)
    with pytest.raises(errors.HandshakeDecryptionFailed):
        fresh.receive_data(auth_i)


def test_invalid_replayed_ephemeral_key_with_guard() -> None:
    guard = ReplayGuard()
    initiator, responder = make_pair(replay_guard=guard)
    hello_i, _, _ = run_in_memory(initiator, responder)
    fresh = Handshake(Role.RESPONDER, BOB, CHAIN, replay_guard=guard)
    with pytest.raises(errors.ReplayedHandshake):
        fresh.receive_data(hello_i)
    assert fresh.data_to_send() == b""


def test_invalid_tampered_auth() -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    flight = bytearray(responder.data_to_send())
    flight[-1] ^= 0x01
    with pytest.raises(errors.HandshakeDecryptionFailed):
        initiator.receive_data(bytes(flight))


def test_invalid_truncated_message_then_eof() -> None:
    initiator, responder = make_pair()
    hello_i = initiator.data_to_send()
    responder.receive_data(hello_i[:-5])
    assert not responder.is_complete
    with pytest.raises(errors.MalformedHandshake, match="closed mid-handshake"):
        responder.receive_eof()


def test_invalid_truncated_auth_then_eof() -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send()[:-3])
    with pytest.raises(errors.MalformedHandshake):
        initiator.receive_eof()


def test_invalid_truncated_msgpack_inside_hello() -> None:
    body = msgpack.packb([PROTOCOL_TAG, CHAIN.encode(), b"\x05" * 32])[:-4]
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    with pytest.raises(errors.MalformedHandshake):
        responder.receive_data(len(body).to_bytes(4, "big") + body)


@pytest.mark.parametrize("value", [
    [PROTOCOL_TAG, CHAIN.encode()],
    [PROTOCOL_TAG, CHAIN.encode(), b"\x05" * 31],
    [PROTOCOL_TAG, CHAIN, b"\x05" * 32],
    {"tag": PROTOCOL_TAG},
    [PROTOCOL_TAG, CHAIN.encode(), b"\x05" * 32, b""],
])
def test_invalid_malformed_hello(value: object) -> None:
    body = msgpack.packb(value, use_bin_type=True)
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    with pytest.raises(errors.MalformedHandshake):
        responder.receive_data(len(body).to_bytes(4, "big") + body)


def test_invalid_oversize_hello_length_rejected_before_buffering() -> None:
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    with pytest.raises(errors.MalformedHandshake, match="limit"):
        responder.receive_data((1 << 20).to_bytes(4, "big"))


def responder_awaiting_auth() -> Handshake:
    responder = Handshake(Role.RESPONDER, BOB, CHAIN, ephemeral_secret=EPH_R)
    responder.receive_data(Handshake(Role.INITIATOR, ALICE, CHAIN, ephemeral_secret=EPH_I).data_to_send())
    return responder


def test_invalid_auth_with_wrong_message_type() -> None:
    _, key_i2r, _ = derive_documented_keys()
    with pytest.raises(errors.MalformedHandshake, match="expected AUTH"):
        responder_awaiting_auth().receive_data(FrameEncoder(key_i2r).encode(5, [ALICE.public_key, bytes(64)]))


@pytest.mark.parametrize("payload", [
    [b"\x01" * 32], [b"\x01" * 31, bytes(64)], [b"\x01" * 32, bytes(63)], b"\x01" * 96, None,
])
def test_invalid_auth_payload_shape(payload: object) -> None:
    _, key_i2r, _ = derive_documented_keys()
    with pytest.raises(errors.MalformedHandshake, match="AUTH payload"):
        responder_awaiting_auth().receive_data(FrameEncoder(key_i2r).encode(MSG_AUTH, payload))


def test_invalid_auth_frame_not_msgpack() -> None:
    _, key_i2r, _ = derive_documented_keys()
    sealed = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        b"\xc1\xc1\xc1", (19).to_bytes(4, "big"), bytes(12), key_i2r)
    with pytest.raises(errors.MalformedHandshake, match="AUTH frame"):
        responder_awaiting_auth().receive_data((19).to_bytes(4, "big") + sealed)


def test_invalid_oversize_auth_frame_rejected_before_buffering() -> None:
    with pytest.raises(errors.MalformedHandshake, match="limit"):
        responder_awaiting_auth().receive_data((257).to_bytes(4, "big"))


def test_session_frame_limit_applies_after_auth() -> None:
    initiator, responder = make_pair()
    run_in_memory(initiator, responder)
    big = initiator.result.encoder.encode(1, b"x" * 10_000)
    responder.result.decoder.feed(big)
    assert responder.result.decoder.next_message().payload == b"x" * 10_000


def test_failed_handshake_stays_failed() -> None:
    initiator = Handshake(Role.INITIATOR, ALICE, CHAIN)
    hello = initiator.data_to_send()
    with pytest.raises(errors.ReflectedKey):
        initiator.receive_data(hello)
    with pytest.raises(errors.ReflectedKey):
        initiator.receive_data(b"")
    with pytest.raises(RuntimeError):
        initiator.result


def test_sign_bytes_differ_by_role() -> None:
    transcript = b"\x00" * 32
    assert compute_auth_sign_bytes(Role.INITIATOR, transcript) != compute_auth_sign_bytes(Role.RESPONDER, transcript)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([Role.INITIATOR, Role.RESPONDER]))
def test_arbitrary_bytes_only_ever_raise_a_handshake_error(data: bytes, role: Role) -> None:
    handshake = Handshake(role, BOB, CHAIN)
    try:
        handshake.receive_data(data)
        handshake.receive_eof()
    except errors.HandshakeError:
        pass
    assert not handshake.is_complete


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_valid_hello_only_ever_raise_a_handshake_error(data: bytes) -> None:
    responder = Handshake(Role.RESPONDER, BOB, CHAIN)
    responder.receive_data(Handshake(Role.INITIATOR, ALICE, CHAIN).data_to_send())
    try:
        responder.receive_data(data)
        responder.receive_eof()
    except errors.HandshakeError:
        pass
    assert not responder.is_complete
