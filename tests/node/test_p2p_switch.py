"""Three switches on 127.0.0.1: simultaneous dials settle on one connection, gossip crosses the line A - B - C,
non-validators' consensus messages stop at the first hop, and a restarted node is redialed.

Waits are on events (`Switch.wait_until`, the inboxes); only the dialers' backoff runs on the real clock, with
delays of a few milliseconds.
"""

import asyncio
import time
from collections.abc import Callable

from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig
from node.p2p.dialer import Backoff
from node.p2p.frames import Message
from node.p2p.gossip import MSG_TX, MSG_VOTE
from node.p2p.switch import PeerAddress, Switch
from stf.crypto import PrivateKey

CHAIN = "kabuto-test"
CONFIG = ConnectionConfig(handshake_timeout_s=5.0, close_timeout_s=2.0)
BACKOFF = Backoff(base_s=0.005, cap_s=0.05, stable_s=60.0)
KEY_A, KEY_B, KEY_C = (PrivateKey(bytes([n]) * 32) for n in (0x0A, 0x0B, 0x0C))
VALIDATORS = (KEY_A.address, KEY_B.address)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, Message]] = []
        self._changed = asyncio.Event()

    def deliver(self, sender: bytes, message: Message) -> None:
        self.messages.append((sender, message))
        self._changed.set()

    def payloads(self) -> list[object]:
        return [m.payload for _, m in self.messages]

    async def wait_for(self, payload: bytes) -> None:
        while payload not in self.payloads():
            self._changed.clear()
            await self._changed.wait()


def make_switch(key: PrivateKey) -> tuple[Switch, Inbox]:
    inbox = Inbox()
    switch = Switch(key, CHAIN, inbox.deliver, validator_ids=VALIDATORS, config=CONFIG, backoff=BACKOFF,
                    bans=BanList(time.monotonic))
    return switch, inbox


def address(switch: Switch) -> PeerAddress:
    return PeerAddress(switch.node_id, "127.0.0.1", switch.port)


async def settle(predicate: Callable[[], bool], *switches: Switch) -> None:
    """Wait until `predicate()` holds, re-checking whenever any of `switches` gains or loses a peer."""
    while True:
        events = [s.changed for s in switches]
        if predicate():
            return
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def linked(x: Switch, y: Switch) -> Callable[[], bool]:
    """x and y use one and the same connection: it is outbound at exactly one end."""
    def check() -> bool:
        px, py = x.peers.get(y.node_id), y.peers.get(x.node_id)
        return px is not None and py is not None and px.outbound != py.outbound and not px.is_closing
    return check


def test_switches_link_relay_filter_and_redial() -> None:
    async def test() -> None:
        (a, inbox_a), (b, _), (c, inbox_c) = (make_switch(k) for k in (KEY_A, KEY_B, KEY_C))
        async with asyncio.TaskGroup() as tg:
            tasks = {s: tg.create_task(s.run()) for s in (a, b, c)}
            for s in (a, b, c):
                await s.listening.wait()
            a.add_persistent_peer(address(b))
            b.add_persistent_peer(address(a))  # both dial: one connection must survive
            b.add_persistent_peer(address(c))
            await settle(lambda: linked(a, b)() and linked(b, c)(), a, b, c)
            assert list(a.peers) == [b.node_id] and sorted(b.peers) == sorted([a.node_id, c.node_id])

            assert a.broadcast(MSG_TX, b"tx from a") == 1
            await inbox_c.wait_for(b"tx from a")
            assert inbox_c.messages == [(b.node_id, Message(MSG_TX, b"tx from a"))]

            # a message too large for a frame is sent to nobody and logged; the switch and the link stay up
            assert a.broadcast(MSG_TX, bytes(CONFIG.max_frame_size + 1)) == 0
            assert linked(a, b)()

            c.broadcast(MSG_VOTE, b"vote from c (not a validator)")
            c.broadcast(MSG_TX, b"tx from c")
            await inbox_a.wait_for(b"tx from c")
            assert inbox_a.payloads() == [b"tx from c"]

            port_c = c.port
            c.stop()
            await tasks[c]
            await b.wait_until(lambda: c.node_id not in b.peers)
            c2, inbox_c2 = make_switch(KEY_C)
            tasks[c2] = tg.create_task(c2.run(port=port_c))
            await settle(linked(c2, b), b, c2)
            a.broadcast(MSG_TX, b"after restart")
            await inbox_c2.wait_for(b"after restart")

            for s in (a, b, c2):
                s.stop()
    asyncio.run(asyncio.wait_for(test(), 20))
