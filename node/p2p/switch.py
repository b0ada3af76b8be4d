"""One node's P2P network: the listener, persistent outbound peers, one connection per node id, gossip.

Contract:

- `Switch(node_key, chain_id, deliver, ...)` then `await switch.run(host, port, persistent)` inside the node's
  TaskGroup; it returns after `stop()` (or raises, cancelled with its parent). `listening` is set and `port` known
  once the listener is bound. Inside, one TaskGroup holds the server (node/p2p/connection.py) and one
  `keep_connected` loop (node/p2p/dialer.py) per persistent peer; `stop()` closes every peer gracefully, then
  cancels the dialers, then closes the listener.
- `peers` maps node id to the one connection in use. If a second connection to the same node appears (both
  dialed each other at once), both ends keep the connection dialed by the smaller node id and close the other
  ("duplicate connection"); both compute the same answer, so they never drop both. Between two connections
  dialed by the same side, the newer wins (the older is likely half-open). A persistent peer is not redialed
  while it is connected.
- Every connected peer's messages go through `relay_messages` (node/p2p/relay.py): gossip de-duplication,
  validator-only consensus messages (`set_validators`), relay, and `deliver(sender_id, message)` for each new
  message. `broadcast(type, payload)` sends our own message to every peer. Direct (point-to-point) messages go to
  `on_direct(peer, message)` (node/p2p/relay.py); `on_connect(peer)` is called once for each peer that becomes
  the connection in use, before its first message is read.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig, Peer, serve
from node.p2p.dialer import Backoff, keep_connected
from node.p2p.errors import MessageTooLarge
from node.p2p.frames import Message
from node.p2p.gossip import Gossip
from node.p2p.handshake import ReplayGuard
from node.p2p.relay import DirectHandler, broadcast, relay_messages
from stf.crypto import PrivateKey

log = logging.getLogger("node.p2p")


@dataclass(frozen=True, slots=True)
class PeerAddress:
    node_id: bytes
    host: str
    port: int


class Switch:
    def __init__(
        self, node_key: PrivateKey, chain_id: str, deliver: Callable[[bytes, Message], None], *,
        validator_ids: Iterable[bytes] = (), config: ConnectionConfig = ConnectionConfig(),
        backoff: Backoff = Backoff(), bans: BanList, on_direct: DirectHandler | None = None,
        on_connect: Callable[[Peer], None] | None = None,
    ) -> None:
        self.node_key = node_key
        self.node_id = node_key.address
        self.chain_id = chain_id
        self.config = config
        self.backoff = backoff
        self.bans = bans
        self.gossip = Gossip(validator_ids=validator_ids)
        self.peers: dict[bytes, Peer] = {}
        self.listening = asyncio.Event()
        self.port = 0
        self._deliver = deliver
        self._on_direct = on_direct
        self._on_connect = on_connect
        self._replay_guard = ReplayGuard()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()  # replaced by a fresh one at every change of `peers`
        self._tg: asyncio.TaskGroup | None = None
        self._dialers: list[asyncio.Task[None]] = []

    def set_validators(self, validator_ids: Iterable[bytes]) -> None:
        self.gossip.set_validators(validator_ids)

    def broadcast(self, msg_type: int, payload: Any) -> int:
        """Send our own message to every peer; a message too large for a frame is logged and sent to none (the
        node goes on: a proposal that cannot travel costs a round, never the process)."""
        try:
            return broadcast(self.gossip, self.peers, msg_type, payload)
        except MessageTooLarge as exc:
            log.error("message not sent: %s", exc, extra={"fields": {"msg_type": msg_type}})
            return 0

    def stop(self) -> None:
        self._stopping.set()

    @property
    def changed(self) -> asyncio.Event:
        """An event that is set at the next change of `peers` (take it before checking what you wait for)."""
        return self._changed

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checking whenever a peer connects or disconnects."""
        while True:
            changed = self._changed
            if predicate():
                return
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def run(self, host: str = "127.0.0.1", port: int = 0, persistent: Sequence[PeerAddress] = ()) -> None:
        async with serve(
                node_key=self.node_key, chain_id=self.chain_id, on_peer=self._on_peer, host=host, port=port,
                config=self.config, bans=self.bans, replay_guard=self._replay_guard) as server:
            self.port = server.port
            self.listening.set()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for address in persistent:
                    self.add_persistent_peer(address)
                await self._stopping.wait()
                for peer in list(self.peers.values()):
                    peer.close("switch stopping")
                await self.wait_until(lambda: not self.peers)
                for dialer in self._dialers:
                    dialer.cancel()

    def add_persistent_peer(self, address: PeerAddress) -> None:
        """Keep a connection to `address` from now on (`run` must be running)."""
        if self._tg is None or self._stopping.is_set():
            raise RuntimeError("the switch is not running")
        self._dialers.append(self._tg.create_task(self._keep(address)))

    async def _keep(self, address: PeerAddress) -> None:
        await keep_connected(
            address.host, address.port, node_key=self.node_key, chain_id=self.chain_id,
            expected_peer_id=address.node_id, on_peer=self._on_peer, config=self.config, bans=self.bans,
            backoff=self.backoff, should_dial=lambda: address.node_id not in self.peers)

    def _dialer_of(self, peer: Peer) -> bytes:
        return self.node_id if peer.outbound else peer.node_id

    async def _on_peer(self, peer: Peer) -> None:
        if self._stopping.is_set():
            return
        existing = self.peers.get(peer.node_id)
        if existing is not None:
            if self._dialer_of(peer) > self._dialer_of(existing):
                peer.disconnect("duplicate connection")
                return
            existing.disconnect("duplicate connection")
        self.peers[peer.node_id] = peer
        self._notify()
        try:
            if self._on_connect is not None:
                self._on_connect(peer)
            await relay_messages(peer, self.gossip, self.peers, self._deliver, self._on_direct)
        finally:
            if self.peers.get(peer.node_id) is peer:
                del self.peers[peer.node_id]
            self._notify()
