"""Three real endpoints on 127.0.0.1, A - B - C through hub B: gossip relay, validator filter, ban on bad gossip.

Per-connection ordering is what makes these checks deterministic: when a later message from the same sender has
arrived, every earlier one has been routed.
"""

import asyncio
import contextlib
from collections.abc import Callable

from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig, Peer, open_connection, serve
from node.p2p.frames import Message
from node.p2p.gossip import MSG_TX, MSG_VOTE, Gossip
from node.p2p.relay import broadcast, relay_messages
from stf.crypto import PrivateKey

CHAIN = "kabuto-test"
CONFIG = ConnectionConfig(handshake_timeout_s=5.0, close_timeout_s=2.0)
KEY_A, KEY_B, KEY_C = (PrivateKey(bytes([n]) * 32) for n in (0xA1, 0xB2, 0xC3))
VALIDATORS = (KEY_A.address, KEY_B.address)


class Node:
    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.gossip = Gossip(validator_ids=VALIDATORS)
        self.peers: dict[bytes, Peer] = {}
        self.delivered: list[tuple[bytes, Message]] = []
        self.bans = BanList(lambda: 0.0)
        self._changed = asyncio.Event()

    def deliver(self, sender: bytes, message: Message) -> None:
        self.delivered.append((sender, message))
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    async def wait_for(self, payload: bytes) -> None:
        await self.wait_until(lambda: payload in self.payloads())

    def payloads(self) -> list[bytes]:
        return [m.payload for _, m in self.delivered]

    async def on_peer(self, peer: Peer) -> None:
        self.peers[peer.node_id] = peer
        self._changed.set()
        try:
            await relay_messages(peer, self.gossip, self.peers, self.deliver)
        finally:
            del self.peers[peer.node_id]


def test_gossip_relays_through_a_hub_filters_non_validators_and_bans_bad_gossip() -> None:
    async def test() -> None:
        a, b, c = Node(KEY_A), Node(KEY_B), Node(KEY_C)
        async with (serve(node_key=KEY_B, chain_id=CHAIN, on_peer=b.on_peer, config=CONFIG, bans=b.bans) as hub,
                    asyncio.TaskGroup() as tg, contextlib.AsyncExitStack() as stack):
            for node in (a, c):
                peer = await stack.enter_async_context(open_connection(
                    "127.0.0.1", hub.port, node_key=node.key, chain_id=CHAIN, expected_peer_id=KEY_B.address,
                    config=CONFIG))
                node.peers[peer.node_id] = peer
                tg.create_task(relay_messages(peer, node.gossip, node.peers, node.deliver))
            await b.wait_until(lambda: len(b.peers) == 2)  # the hub registers a peer after its handshake

            assert broadcast(a.gossip, a.peers, MSG_TX, b"tx from a") == 1
            assert broadcast(a.gossip, a.peers, MSG_TX, b"tx from a") == 0  # our own duplicate
            await c.wait_for(b"tx from a")
            assert c.delivered == [(KEY_B.address, Message(MSG_TX, b"tx from a"))]

            broadcast(c.gossip, c.peers, MSG_VOTE, b"vote from c")  # C is not a validator
            broadcast(a.gossip, a.peers, MSG_VOTE, b"vote from a")
            broadcast(c.gossip, c.peers, MSG_TX, b"tx from c")
            await a.wait_for(b"tx from c")
            await c.wait_for(b"vote from a")
            assert sorted(b.payloads()) == [b"tx from a", b"tx from c", b"vote from a"]
            assert a.payloads() == [b"tx from c"]  # nothing of A's came back, C's vote was not relayed
            assert c.payloads() == [b"tx from a", b"vote from a"]

            a.peers[KEY_B.address].send(MSG_VOTE, "a str, not bin")
            await a.peers[KEY_B.address].wait_closed()
            assert b.bans.get_ban(KEY_A.address).reason.startswith("malformed_gossip")
            broadcast(c.gossip, c.peers, MSG_TX, b"still relayed")
            await b.wait_for(b"still relayed")
            assert list(b.peers) == [KEY_C.address]
    asyncio.run(asyncio.wait_for(test(), 20))
