"""Sans-IO gossip: message types, dedup by hash, validator-set filtering, relay targets, proposal parts.

Message types carried in frames (node/p2p/frames.py) and their payloads:

    16 MSG_TX              bin: one signed transaction, as the STF encodes it
    17 MSG_VOTE            bin: one consensus vote (consensus.messages.pack_message)
    18 MSG_PROPOSAL        bin: one consensus proposal, with its value when it fits in one frame
    19 MSG_PROPOSAL_PART   [value_hash: bin 32, index: uint, total: uint, chunk: bin]
                           the value split into `total` chunks of exactly `part_size` bytes (the last one 1 to
                           `part_size`; a value of 0 bytes is one empty chunk); value_hash = SHA-256(value), the
                           hash a consensus Proposal signs

Rules (`Gossip.on_receive` decides, the caller acts):

- A message is identified by SHA-256(u16be type || msgpack(payload)). The first copy is delivered and relayed to
  every connected peer except the one it came from; later copies are dropped (`ROUTE_DUPLICATE`). The seen set
  is bounded (FIFO of `seen_capacity` ids), so a very old message can be delivered twice: consumers stay
  idempotent (the mempool and consensus already are).
- Consensus types (17, 18, 19) are accepted only from peers whose node id is in the validator set
  (`set_validators`); from anyone else they are dropped (`ROUTE_NOT_VALIDATOR`) and not relayed. Transactions
  are accepted from any peer.
- An unknown type or a payload of the wrong shape raises a `GossipError`: the caller disconnects and bans the peer
  (`Peer.disconnect(..., ban=True)`). Checking signatures is the consumer's job (mempool, consensus); only what it
  delivers has been de-duplicated, never validated.
- Relay targets are returned in sorted node-id order, so a seeded multi-node test is reproducible.

Known limit: a part is not verifiable alone (the proposal signs the hash of the whole value, not a Merkle root of
its parts), so a wrong part is detected only when the value is complete (`PartsMismatch`) and cannot be pinned on
one peer. Signing a parts root in the proposal would fix that; it is a change to consensus/messages.py.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from node.p2p.errors import MalformedGossip, PartsMismatch, UnknownMessageType

MSG_TX = 16
MSG_VOTE = 17
MSG_PROPOSAL = 18
MSG_PROPOSAL_PART = 19
GOSSIP_TYPES = (MSG_TX, MSG_VOTE, MSG_PROPOSAL, MSG_PROPOSAL_PART)
CONSENSUS_TYPES = (MSG_VOTE, MSG_PROPOSAL, MSG_PROPOSAL_PART)
HASH_BYTES = 32

ROUTE_NEW = "new"
ROUTE_DUPLICATE = "duplicate"
ROUTE_NOT_VALIDATOR = "not_validator"


@dataclass(frozen=True, slots=True)
class Route:
    status: str
    deliver: bool
    targets: tuple[bytes, ...]


def compute_message_id(msg_type: int, payload: Any) -> bytes:
    return hashlib.sha256(msg_type.to_bytes(2, "big") + msgpack.packb(payload, use_bin_type=True)).digest()


class SeenCache:
    """A bounded FIFO set of message ids."""

    __slots__ = ("capacity", "_ids")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: bytes) -> bool:
        """True if `message_id` is new (and is now remembered)."""
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def validate_gossip_payload(msg_type: int, payload: Any) -> None:
    if msg_type not in GOSSIP_TYPES:
        raise UnknownMessageType(f"message type {msg_type} is not a gossip type")
    if msg_type == MSG_PROPOSAL_PART:
        decode_part(payload)
    elif not isinstance(payload, bytes):
        raise MalformedGossip(f"message type {msg_type} carries bin, got {type(payload).__name__}")


class Gossip:
    """Routing decisions for one node; the connection layer sends, consumers validate."""

    def __init__(self, *, validator_ids: Iterable[bytes] = (), seen_capacity: int = 100_000) -> None:
        self._validators = frozenset(validator_ids)
        self.seen = SeenCache(seen_capacity)

    def set_validators(self, validator_ids: Iterable[bytes]) -> None:
        self._validators = frozenset(validator_ids)

    def is_validator(self, node_id: bytes) -> bool:
        return node_id in self._validators

    def on_receive(self, from_peer: bytes, msg_type: int, payload: Any, peer_ids: Iterable[bytes]) -> Route:
        """Route a message from `from_peer` among the connected `peer_ids`; raises a GossipError for a
        malformed message (ban the sender)."""
        validate_gossip_payload(msg_type, payload)
        if msg_type in CONSENSUS_TYPES and from_peer not in self._validators:
            return Route(ROUTE_NOT_VALIDATOR, False, ())
        if not self.seen.add(compute_message_id(msg_type, payload)):
            return Route(ROUTE_DUPLICATE, False, ())
        return Route(ROUTE_NEW, True, tuple(sorted(peer for peer in peer_ids if peer != from_peer)))

    def on_local(self, msg_type: int, payload: Any, peer_ids: Iterable[bytes]) -> Route:
        """Our own message (a tx from RPC, our vote): remembered as seen and sent to every connected peer."""
        validate_gossip_payload(msg_type, payload)
        if not self.seen.add(compute_message_id(msg_type, payload)):
            return Route(ROUTE_DUPLICATE, False, ())
        return Route(ROUTE_NEW, False, tuple(sorted(peer_ids)))


@dataclass(frozen=True, slots=True)
class Part:
    value_hash: bytes
    index: int
    total: int
    chunk: bytes


def _is_uint(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def decode_part(payload: Any) -> Part:
    if (not isinstance(payload, list) or len(payload) != 4 or not isinstance(payload[0], bytes)
            or len(payload[0]) != HASH_BYTES or not _is_uint(payload[1]) or not _is_uint(payload[2])
            or not isinstance(payload[3], bytes)):
        raise MalformedGossip("a proposal part is [value_hash (32 bytes), index, total, chunk]")
    part = Part(*payload)
    if not part.index < part.total:
        raise MalformedGossip(f"part index {part.index} is not below total {part.total}")
    return part


def split_value(value: bytes, part_size: int) -> list[list[Any]]:
    """The MSG_PROPOSAL_PART payloads of `value`, in index order."""
    if part_size <= 0:
        raise ValueError("part size must be positive")
    value_hash = hashlib.sha256(value).digest()
    chunks = [value[i:i + part_size] for i in range(0, len(value), part_size)] or [b""]
    return [[value_hash, index, len(chunks), chunk] for index, chunk in enumerate(chunks)]


class PartAssembler:
    """Collects proposal parts until a value is complete and matches its hash.

    Bounded: a value may not exceed `max_value_bytes`, and at most `max_pending` values are in progress (the
    oldest is dropped first). A completed value is returned once; its later parts are ignored.
    """

    def __init__(self, *, part_size: int, max_value_bytes: int, max_pending: int = 4) -> None:
        self.part_size = part_size
        self.max_value_bytes = max_value_bytes
        self.max_pending = max_pending
        self._max_parts = max(1, -(-max_value_bytes // part_size))  # ceiling division of positive ints
        self._pending: OrderedDict[bytes, dict[int, bytes]] = OrderedDict()
        self._totals: dict[bytes, int] = {}
        self._done = SeenCache(64)

    def add(self, payload: Any) -> bytes | None:
        """The whole value when this part completes it, else None; raises MalformedGossip or PartsMismatch."""
        part = decode_part(payload)
        self._validate_size(part)
        if part.value_hash in self._done:
            return None
        total = self._totals.setdefault(part.value_hash, part.total)
        if total != part.total:
            raise MalformedGossip(f"part says {part.total} parts, an earlier part said {total}")
        parts = self._pending.setdefault(part.value_hash, {})
        parts.setdefault(part.index, part.chunk)
        self._evict_oldest()
        if len(parts) < total:
            return None
        return self._complete(part.value_hash, parts)

    def _validate_size(self, part: Part) -> None:
        if part.total > self._max_parts:
            raise MalformedGossip(f"{part.total} parts exceed the limit of {self._max_parts}")
        last = part.index == part.total - 1
        size_ok = len(part.chunk) <= self.part_size if last else len(part.chunk) == self.part_size
        if not size_ok or (last and not part.chunk and part.total != 1):
            raise MalformedGossip(f"part {part.index}/{part.total} has {len(part.chunk)} bytes")

    def _evict_oldest(self) -> None:
        while len(self._pending) > self.max_pending:
            value_hash, _ = self._pending.popitem(last=False)
            del self._totals[value_hash]

    def _complete(self, value_hash: bytes, parts: dict[int, bytes]) -> bytes:
        del self._pending[value_hash]
        del self._totals[value_hash]
        value = b"".join(parts[i] for i in range(len(parts)))
        if hashlib.sha256(value).digest() != value_hash:
            raise PartsMismatch(f"parts of {value_hash.hex()} do not hash to it")
        self._done.add(value_hash)
        return value
