"""Reconnect with backoff (node/p2p/dialer.py): the delays are computed, not waited for."""

import asyncio
import socket

import pytest

from node.p2p.connection import ConnectionConfig, Peer, serve
from node.p2p.dialer import Backoff, compute_backoff_s, keep_connected
from stf.crypto import PrivateKey

CHAIN = "kabuto-test"
SERVER_KEY = PrivateKey(b"\x10" * 32)
CLIENT_KEY = PrivateKey(b"\x20" * 32)
CONFIG = ConnectionConfig(handshake_timeout_s=5.0, close_timeout_s=2.0)
BACKOFF = Backoff(base_s=1.0, cap_s=8.0, stable_s=10.0)


class Stop(Exception):
    pass


class FakeSleep:
    """Records each delay; raises Stop after `limit` calls."""

    def __init__(self, limit: int) -> None:
        self.delays: list[float] = []
        self.limit = limit

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self.limit:
            raise Stop
        await asyncio.sleep(0)


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    assert [compute_backoff_s(n, BACKOFF, 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [compute_backoff_s(n, BACKOFF, 0.999) for n in (1, 5)] == pytest.approx([0.9995, 7.996])
    assert compute_backoff_s(10_000, BACKOFF, 0.5) == 6.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_dials_back_off() -> None:
    async def test() -> None:
        sleep = FakeSleep(limit=5)

        async def never(peer: Peer) -> None:
            raise AssertionError("no server is listening")

        with pytest.raises(Stop):
            await keep_connected(
                "127.0.0.1", closed_port(), node_key=CLIENT_KEY, chain_id=CHAIN,
                expected_peer_id=SERVER_KEY.address, on_peer=never, config=CONFIG, backoff=BACKOFF,
                sleep=sleep, random=lambda: 0.0)
        assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    asyncio.run(asyncio.wait_for(test(), 20))


def test_reconnects_after_the_peer_drops_and_short_sessions_count_as_failures() -> None:
    async def test() -> None:
        now = [0.0]
        sessions: list[bytes] = []

        async def drop_at_once(peer: Peer) -> None:
            return

        async def client(peer: Peer) -> None:
            sessions.append(peer.node_id)
            assert [m async for m in peer] == []
            now[0] += 11.0 if len(sessions) == 3 else 1.0  # the third session is long enough to be stable

        sleep = FakeSleep(limit=4)
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=drop_at_once, config=CONFIG) as server:
            with pytest.raises(Stop):
                await keep_connected(
                    "127.0.0.1", server.port, node_key=CLIENT_KEY, chain_id=CHAIN,
                    expected_peer_id=SERVER_KEY.address, on_peer=client, config=CONFIG, backoff=BACKOFF,
                    sleep=sleep, clock=lambda: now[0], random=lambda: 0.0)
        assert sessions == [SERVER_KEY.address] * 4
        assert sleep.delays == [0.5, 1.0, 0.5, 1.0]
    asyncio.run(asyncio.wait_for(test(), 20))


def test_does_not_dial_while_should_dial_is_false() -> None:
    async def test() -> None:
        sleep = FakeSleep(limit=3)

        async def never(peer: Peer) -> None:
            raise AssertionError("must not dial")

        with pytest.raises(Stop):
            await keep_connected(
                "127.0.0.1", closed_port(), node_key=CLIENT_KEY, chain_id=CHAIN,
                expected_peer_id=SERVER_KEY.address, on_peer=never, config=CONFIG, backoff=BACKOFF,
                sleep=sleep, random=lambda: 0.0, should_dial=lambda: False)
        assert sleep.delays == [BACKOFF.base_s] * 3
    asyncio.run(asyncio.wait_for(test(), 20))
