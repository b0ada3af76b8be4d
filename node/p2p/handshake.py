"""Sans-IO P2P handshake: mutual authentication by node key and session keys from ephemeral X25519.

Wire format (LEN is a 4-byte unsigned big-endian length of what follows it)::

    I -> R   HELLO_I                       initiator = the side that dialed
    R -> I   HELLO_R, AUTH_R               responder = the side that accepted
    I -> R   AUTH_I                        the initiator is done and may send application frames right after

    HELLO    = LEN || msgpack [PROTOCOL_TAG: bin, chain_id: bin (ASCII), ephemeral_public: bin (32 bytes)]
               LEN <= 160; PROTOCOL_TAG = b"kabuto-p2p/1" (the version is part of the tag)
    AUTH     = the first frame (counter 0) of its direction in the frame format of node/p2p/frames.py,
               message [0 (MSG_AUTH), [node_public_key: bin (32), signature: bin (64)]]; LEN <= 256
               (the session's larger frame limit applies only after AUTH has been verified)

Key schedule (e_i, e_r: the initiator's and responder's ephemeral X25519 public keys)::

    transcript = SHA-256(PROTOCOL_TAG || u8 len(chain_id) || chain_id || e_i || e_r)
    shared     = X25519(own ephemeral secret, peer ephemeral public)        (all-zero result: rejected)
    prk        = HMAC-SHA256(key = transcript, msg = shared)                 (HKDF-Extract, RFC 5869)
    key_i2r    = HMAC-SHA256(prk, INFO || 0x01)                              (HKDF-Expand, 64 bytes)
    key_r2i    = HMAC-SHA256(prk, key_i2r || INFO || 0x02)
    INFO       = PROTOCOL_TAG || b" session keys"
    signature  = Ed25519(node key, PROTOCOL_TAG || b" auth" || ROLE || transcript),  ROLE = b"I" or b"R"

The peer's node id is the first 20 bytes of SHA-256 of its Ed25519 public key (stf.crypto.compute_address, the
same rule as account addresses).

Security properties and why:

- Both ends prove their node key by signing a transcript that contains both fresh ephemeral keys and the chain id,
  so a signature cannot be replayed into another session or onto another chain. AUTH is sealed under the session
  key, which binds the signer to the Diffie-Hellman result (a relay that does not know an ephemeral secret can
  neither read nor forge it) and hides node keys from passive observers.
- Reflection: a HELLO that carries our own ephemeral key is rejected (`ReflectedKey`); the role byte in the signed
  text means an initiator's signature is never accepted as a responder's; a peer that proves our own node key is
  rejected (`SelfConnection`).
- Replay: fresh ephemeral keys on both sides already make a recorded transcript useless (its AUTH fails to
  decrypt). A shared `ReplayGuard` additionally rejects any ephemeral key it has seen, before any Diffie-Hellman
  work (`ReplayedHandshake`).
- The responder reveals its node key first (validator keys are public); the initiator checks it against
  `expected_peer_id` before revealing its own.

Known limits: no protection against a responder that is flooded with HELLOs (the connection layer bounds
concurrent handshakes and applies a timeout); the initiator finishes one message before the responder has
checked it, so a rejected initiator sees the connection close right after a successful handshake.
"""

import enum
import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.public

from node.p2p.errors import (
    BadHandshakeSignature, FrameAuthenticationFailed, FrameError, HandshakeDecryptionFailed, HandshakeError,
    InvalidPeerKey, MalformedHandshake, ProtocolMismatch, ReflectedKey, ReplayedHandshake, SelfConnection,
    UnexpectedPeer, WrongChain,
)
from node.p2p.frames import DEFAULT_MAX_FRAME_SIZE, LENGTH_BYTES, MSG_AUTH, FrameDecoder, FrameEncoder
from stf.constants import MAX_CHAIN_ID_LEN
from stf.crypto import PrivateKey, compute_address, is_valid_signature

PROTOCOL_TAG = b"kabuto-p2p/1"
KEY_INFO = PROTOCOL_TAG + b" session keys"
AUTH_TAG = PROTOCOL_TAG + b" auth"
MAX_HELLO_BYTES = 160
MAX_AUTH_FRAME_BYTES = 256  # the sealed AUTH is 119 bytes; the session limit applies only once it is verified
EPHEMERAL_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class Role(enum.Enum):
    INITIATOR = b"I"
    RESPONDER = b"R"


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    peer_public_key: bytes
    peer_id: bytes
    encoder: FrameEncoder  # next send counter is 1
    decoder: FrameDecoder  # holds any application bytes that arrived with the last handshake message


class ReplayGuard:
    """Remembers the last `capacity` peer ephemeral keys (FIFO) and rejects a repeat; share one per node."""

    __slots__ = ("capacity", "_seen")

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def check_and_remember(self, ephemeral_public: bytes) -> None:
        if ephemeral_public in self._seen:
            raise ReplayedHandshake("peer reused an ephemeral key seen in an earlier handshake")
        self._seen[ephemeral_public] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


def encode_chain_id(chain_id: str) -> bytes:
    """The chain id as sent on the wire; raises ValueError for a local configuration mistake."""
    chain = chain_id.encode("ascii")
    if not 0 < len(chain) <= MAX_CHAIN_ID_LEN:
        raise ValueError(f"chain id must be 1 to {MAX_CHAIN_ID_LEN} ASCII characters")
    return chain


def compute_transcript_hash(chain_id: bytes, initiator_ephemeral: bytes, responder_ephemeral: bytes) -> bytes:
    return hashlib.sha256(
        PROTOCOL_TAG + bytes((len(chain_id),)) + chain_id + initiator_ephemeral + responder_ephemeral).digest()


def compute_session_keys(shared_secret: bytes, transcript_hash: bytes) -> tuple[bytes, bytes]:
    """(key_i2r, key_r2i): HKDF-SHA256 with the transcript hash as salt."""
    prk = hmac.digest(transcript_hash, shared_secret, "sha256")
    key_i2r = hmac.digest(prk, KEY_INFO + b"\x01", "sha256")
    key_r2i = hmac.digest(prk, key_i2r + KEY_INFO + b"\x02", "sha256")
    return key_i2r, key_r2i


def compute_auth_sign_bytes(role: Role, transcript_hash: bytes) -> bytes:
    return AUTH_TAG + role.value + transcript_hash


def encode_hello(chain_id: bytes, ephemeral_public: bytes) -> bytes:
    body = msgpack.packb([PROTOCOL_TAG, chain_id, ephemeral_public], use_bin_type=True)
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def decode_hello(body: bytes, chain_id: bytes) -> bytes:
    """The peer's ephemeral public key from a HELLO body; checks tag, chain and shape."""
    try:
        value = msgpack.unpackb(body, raw=False, max_ext_len=0, max_map_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MalformedHandshake(f"HELLO is not one msgpack object: {exc}") from None
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, bytes) for v in value):
        raise MalformedHandshake("HELLO must be a msgpack array of three bin fields")
    tag, peer_chain, ephemeral = value
    if tag != PROTOCOL_TAG:
        raise ProtocolMismatch(f"peer speaks {tag[:32]!r}, we speak {PROTOCOL_TAG!r}")
    if peer_chain != chain_id:
        raise WrongChain(f"peer is on chain {peer_chain[:64]!r}, we are on {chain_id!r}")
    if len(ephemeral) != EPHEMERAL_BYTES:
        raise MalformedHandshake(f"ephemeral key is {len(ephemeral)} bytes, expected {EPHEMERAL_BYTES}")
    return ephemeral


def decode_auth_payload(payload: object) -> tuple[bytes, bytes]:
    if (not isinstance(payload, list) or len(payload) != 2 or not isinstance(payload[0], bytes)
            or not isinstance(payload[1], bytes) or len(payload[0]) != PUBLIC_KEY_BYTES
            or len(payload[1]) != SIGNATURE_BYTES):
        raise MalformedHandshake("AUTH payload must be [public key (32 bytes), signature (64 bytes)]")
    return payload[0], payload[1]


class _State(enum.Enum):
    AWAIT_HELLO = 1
    AWAIT_AUTH = 2
    COMPLETE = 3
    FAILED = 4


class Handshake:
    """One side of one handshake. Feed received bytes with `receive_data`, send what `data_to_send` returns.

    Raises a `HandshakeError` subclass on the first violation and stays failed. When `is_complete`, `result`
    holds the peer identity and the frame codecs for the rest of the session (flush `data_to_send` first:
    the initiator's AUTH is queued at the moment it completes).
    """

    def __init__(
        self, role: Role, node_key: PrivateKey, chain_id: str, *, expected_peer_id: bytes | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, replay_guard: ReplayGuard | None = None,
        ephemeral_secret: bytes | None = None,
    ) -> None:
        chain = encode_chain_id(chain_id)
        self.role = role
        self._node_key = node_key
        self._chain = chain
        self._expected_peer_id = expected_peer_id
        self._max_frame_size = max_frame_size
        self._replay_guard = replay_guard
        secret = (nacl.public.PrivateKey.generate() if ephemeral_secret is None
                  else nacl.public.PrivateKey(ephemeral_secret))
        self._ephemeral_secret = bytes(secret)
        self.ephemeral_public = bytes(secret.public_key)
        self._state = _State.AWAIT_HELLO
        self._error: HandshakeError | None = None
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._transcript = b""
        self._encoder: FrameEncoder | None = None
        self._decoder: FrameDecoder | None = None
        self._result: HandshakeResult | None = None
        if role is Role.INITIATOR:
            self._outbox += encode_hello(chain, self.ephemeral_public)

    @property
    def is_complete(self) -> bool:
        return self._state is _State.COMPLETE

    @property
    def result(self) -> HandshakeResult:
        if self._result is None:
            raise RuntimeError("handshake is not complete")
        return self._result

    def data_to_send(self) -> bytes:
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        self._check_usable()
        try:
            self._receive(data)
        except HandshakeError as exc:
            self._state, self._error = _State.FAILED, exc
            raise

    def receive_eof(self) -> None:
        """The peer closed the stream; an error unless the handshake is already complete."""
        self._check_usable()
        if self._state is not _State.COMPLETE:
            buffered = len(self._inbox) + (self._decoder.buffered_bytes if self._decoder else 0)
            self._state = _State.FAILED
            self._error = MalformedHandshake(f"connection closed mid-handshake ({buffered} bytes buffered)")
            raise self._error

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error

    def _receive(self, data: bytes) -> None:
        if self._state is _State.AWAIT_HELLO:
            self._inbox += data
            body = self._take_hello_body()
            if body is None:
                return
            leftover = bytes(self._inbox)
            self._inbox.clear()
            self._process_hello(decode_hello(body, self._chain))
            data = leftover
        if self._state is _State.AWAIT_AUTH:
            assert self._decoder is not None
            self._decoder.feed(data)
            self._process_auth()
        elif self._state is _State.COMPLETE and data:
            assert self._decoder is not None
            self._decoder.feed(data)

    def _take_hello_body(self) -> bytes | None:
        if len(self._inbox) < LENGTH_BYTES:
            return None
        length = int.from_bytes(self._inbox[:LENGTH_BYTES], "big")
        if length > MAX_HELLO_BYTES:
            raise MalformedHandshake(f"HELLO announces {length} bytes, the limit is {MAX_HELLO_BYTES}")
        if len(self._inbox) < LENGTH_BYTES + length:
            return None
        body = bytes(self._inbox[LENGTH_BYTES:LENGTH_BYTES + length])
        del self._inbox[:LENGTH_BYTES + length]
        return body

    def _process_hello(self, peer_ephemeral: bytes) -> None:
        if hmac.compare_digest(peer_ephemeral, self.ephemeral_public):
            raise ReflectedKey("peer sent our own ephemeral key back")
        if self._replay_guard is not None:
            self._replay_guard.check_and_remember(peer_ephemeral)
        try:
            shared = nacl.bindings.crypto_scalarmult(self._ephemeral_secret, peer_ephemeral)
        except nacl.exceptions.RuntimeError:
            raise InvalidPeerKey("peer ephemeral key is a low-order point") from None
        if shared == bytes(len(shared)):
            raise InvalidPeerKey("peer ephemeral key gives an all-zero shared secret")
        is_initiator = self.role is Role.INITIATOR
        own, peer = self.ephemeral_public, peer_ephemeral
        self._transcript = compute_transcript_hash(self._chain, *((own, peer) if is_initiator else (peer, own)))
        key_i2r, key_r2i = compute_session_keys(shared, self._transcript)
        send_key, recv_key = (key_i2r, key_r2i) if is_initiator else (key_r2i, key_i2r)
        self._encoder = FrameEncoder(send_key, max_frame_size=self._max_frame_size)
        self._decoder = FrameDecoder(recv_key, max_frame_size=MAX_AUTH_FRAME_BYTES)
        self._state = _State.AWAIT_AUTH
        if self.role is Role.RESPONDER:
            self._outbox += encode_hello(self._chain, self.ephemeral_public)
            self._queue_auth()

    def _queue_auth(self) -> None:
        assert self._encoder is not None
        signature = self._node_key.sign(compute_auth_sign_bytes(self.role, self._transcript))
        self._outbox += self._encoder.encode(MSG_AUTH, [self._node_key.public_key, signature])

    def _process_auth(self) -> None:
        assert self._decoder is not None and self._encoder is not None
        try:
            message = self._decoder.next_message()
        except FrameAuthenticationFailed:
            raise HandshakeDecryptionFailed("AUTH does not decrypt under the session key") from None
        except FrameError as exc:
            raise MalformedHandshake(f"AUTH frame: {exc}") from None
        if message is None:
            return
        if message.type != MSG_AUTH:
            raise MalformedHandshake(f"expected AUTH (type {MSG_AUTH}), got type {message.type}")
        peer_public_key, signature = decode_auth_payload(message.payload)
        peer_role = Role.RESPONDER if self.role is Role.INITIATOR else Role.INITIATOR
        if not is_valid_signature(peer_public_key, compute_auth_sign_bytes(peer_role, self._transcript), signature):
            raise BadHandshakeSignature("AUTH signature does not verify for the claimed node key")
        if peer_public_key == self._node_key.public_key:
            raise SelfConnection("peer proved our own node key")
        peer_id = compute_address(peer_public_key)
        if self._expected_peer_id is not None and peer_id != self._expected_peer_id:
            raise UnexpectedPeer(f"dialed {self._expected_peer_id.hex()}, peer proved {peer_id.hex()}")
        if self.role is Role.INITIATOR:
            self._queue_auth()
        self._decoder.max_frame_size = self._max_frame_size
        self._state = _State.COMPLETE
        self._result = HandshakeResult(peer_public_key, peer_id, self._encoder, self._decoder)
