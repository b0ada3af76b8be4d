"""The thin async loop that joins connected peers to the sans-IO gossip rules (node/p2p/gossip.py).

`relay_messages(peer, gossip, peers, deliver)` consumes one peer's messages until it closes: each message is
routed by `Gossip.on_receive` among the peers in `peers`; a new one is handed to `deliver(sender_id, message)`
and re-sent to the peers the route names; a gossip violation disconnects and bans the sender. `peers` is the
caller's registry of connected peers by node id (the caller adds and removes entries).
`broadcast` sends our own message to every connected peer.

Direct messages: types `FIRST_DIRECT_TYPE` .. `LAST_DIRECT_TYPE` (32..63) are point-to-point requests and answers
between two peers (block sync: node/sync.py). They bypass gossip (no dedup, no relay) and go to `on_direct(peer,
message)`; without a handler such a message is a protocol violation (disconnect and ban, like an unknown type).
The handler validates its payloads itself and bans the peer for a malformed one.

`deliver` is synchronous and must not block: a consumer (mempool, consensus) puts the message on its own bounded
queue and drops it if that is full; gossip de-duplication means it is not offered again by another peer, so a
consumer that drops must be able to recover by other means (consensus catch-up, tx resubmission). A relay target
whose send queue is full is dropped by `Peer.send`, never waited for.
"""

from collections.abc import Callable, Mapping
from typing import Any

from node.p2p.connection import Peer
from node.p2p.errors import GossipError
from node.p2p.frames import Message
from node.p2p.gossip import Gossip

FIRST_DIRECT_TYPE = 32
LAST_DIRECT_TYPE = 63
DirectHandler = Callable[[Peer, Message], None]


async def relay_messages(
    peer: Peer, gossip: Gossip, peers: Mapping[bytes, Peer], deliver: Callable[[bytes, Message], None],
    on_direct: DirectHandler | None = None,
) -> None:
    async for message in peer:
        if on_direct is not None and FIRST_DIRECT_TYPE <= message.type <= LAST_DIRECT_TYPE:
            on_direct(peer, message)
            continue
        try:
            route = gossip.on_receive(peer.node_id, message.type, message.payload, peers.keys())
        except GossipError as exc:
            peer.disconnect(f"{exc.code}: {exc}", ban=True)
            return
        if route.deliver:
            deliver(peer.node_id, message)
        send_to(peers, route.targets, message.type, message.payload)


def broadcast(gossip: Gossip, peers: Mapping[bytes, Peer], msg_type: int, payload: Any) -> int:
    """Send our own message to every connected peer; returns how many accepted it (0 for a duplicate)."""
    return send_to(peers, gossip.on_local(msg_type, payload, peers.keys()).targets, msg_type, payload)


def send_to(peers: Mapping[bytes, Peer], targets: tuple[bytes, ...], msg_type: int, payload: Any) -> int:
    sent = 0
    for target in targets:
        other = peers.get(target)
        if other is not None and other.send(msg_type, payload):
            sent += 1
    return sent
