"""The typed errors of the P2P transport.

Every rejection has its own class so the connection layer (and an operator reading a log line) can tell exactly
which rule a peer broke; `code` is a stable snake_case name for logs and metrics. Two families:

- `HandshakeError`: the peer never proved who it is. The connection is dropped, but nobody is banned: the claimed
  identity is not authenticated, so banning it would let anyone get an honest node banned.
- `FrameError`: an authenticated peer sent a frame that breaks the wire format. The connection is dropped and the
  peer's node id is banned for a while (node/p2p/bans.py).
"""


class P2PError(Exception):
    """Base of every error raised by node/p2p."""

    code = "p2p_error"


class HandshakeError(P2PError):
    code = "handshake_failed"


class MalformedHandshake(HandshakeError):
    """A handshake message is truncated, oversize, or not the documented msgpack shape."""

    code = "malformed_handshake"


class ProtocolMismatch(HandshakeError):
    """The peer speaks another protocol or another version of this one."""

    code = "protocol_mismatch"


class WrongChain(HandshakeError):
    code = "wrong_chain"


class ReflectedKey(HandshakeError):
    """The peer sent back our own ephemeral key (a reflection attack or a connection to ourselves)."""

    code = "reflected_key"


class InvalidPeerKey(HandshakeError):
    """The peer's ephemeral X25519 key gives an all-zero shared secret (a low-order point)."""

    code = "invalid_peer_key"


class HandshakeDecryptionFailed(HandshakeError):
    """The peer's authentication frame does not decrypt under the derived session key."""

    code = "handshake_decryption_failed"


class BadHandshakeSignature(HandshakeError):
    code = "bad_handshake_signature"


class UnexpectedPeer(HandshakeError):
    """The peer proved a node key other than the one we dialed."""

    code = "unexpected_peer"


class SelfConnection(HandshakeError):
    """The peer proved our own node key."""

    code = "self_connection"


class ReplayedHandshake(HandshakeError):
    """The peer reused an ephemeral key already seen by this node's replay guard."""

    code = "replayed_handshake"


class FrameError(P2PError):
    code = "bad_frame"


class FrameTooLarge(FrameError):
    code = "frame_too_large"


class MalformedFrame(FrameError):
    """The length prefix announces fewer bytes than the smallest possible sealed frame."""

    code = "malformed_frame"


class FrameAuthenticationFailed(FrameError):
    """Bad MAC: tampered, truncated, replayed, reordered, or sealed with another key."""

    code = "frame_authentication_failed"


class MalformedMessage(FrameError):
    """The plaintext is not exactly one msgpack array [type, payload] with a valid type."""

    code = "malformed_message"


class UnexpectedMessage(FrameError):
    """A well-formed message that is not allowed here (e.g. a second AUTH after the handshake)."""

    code = "unexpected_message"


class CounterExhausted(FrameError):
    """The per-direction nonce counter would wrap; the connection must be closed and re-established."""

    code = "counter_exhausted"


class MessageTooLarge(P2PError):
    """Raised to the local sender: the encoded message does not fit in one frame."""

    code = "message_too_large"


class HandshakeTimeout(HandshakeError):
    code = "handshake_timeout"


class PeerRefused(P2PError):
    """The handshake succeeded but local policy refuses this peer (banned, duplicate, not allowed)."""

    code = "peer_refused"


class GossipError(P2PError):
    """An authenticated peer sent a gossip message that breaks the gossip rules (node/p2p/gossip.py)."""

    code = "bad_gossip"


class UnknownMessageType(GossipError):
    code = "unknown_message_type"


class MalformedGossip(GossipError):
    code = "malformed_gossip"


class PartsMismatch(GossipError):
    """All parts of a value arrived but they do not hash to the announced value hash."""

    code = "parts_mismatch"
