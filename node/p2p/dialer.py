"""Keep an outbound connection to one known peer, reconnecting with capped exponential backoff and jitter.

`keep_connected` loops forever (its owner cancels it, from its TaskGroup): dial, handshake, `await on_peer(peer)`
until the peer closes, then wait and dial again. The wait after the n-th consecutive failure is

    raw   = min(cap_s, base_s * 2 ** (n - 1))
    delay = raw / 2 + raw / 2 * u            u uniform in [0, 1) ("equal jitter": never under half the raw delay)

A dial or handshake error is a failure; so is a session shorter than `stable_s` (a peer that accepts and at once
drops us, e.g. because it has banned us, must not be redialed in a tight loop). A session of at least `stable_s`
resets the count, so the next wait is the base one. While `should_dial()` is false (e.g. the peer is already
connected the other way round) the loop only re-checks every `base_s`. `sleep`, `clock` and `random` are
injected so tests need no real waiting.
"""

import asyncio
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig, Peer, open_connection
from node.p2p.errors import P2PError
from stf.crypto import PrivateKey

log = logging.getLogger("node.p2p")


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    stable_s: float = 10.0


def compute_backoff_s(failures: int, backoff: Backoff, u: float) -> float:
    """The wait after `failures` (>= 1) consecutive failures, for a jitter draw `u` in [0, 1)."""
    raw = min(backoff.cap_s, backoff.base_s * 2 ** min(failures - 1, 62))
    return raw / 2 + raw / 2 * u


async def keep_connected(
    host: str, port: int, *, node_key: PrivateKey, chain_id: str, expected_peer_id: bytes,
    on_peer: Callable[[Peer], Awaitable[None]], config: ConnectionConfig = ConnectionConfig(),
    bans: BanList | None = None, backoff: Backoff = Backoff(),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
    random: Callable[[], float] = _random.random, should_dial: Callable[[], bool] = lambda: True,
) -> None:
    failures = 0
    while True:
        if not should_dial():
            failures = 0
            await sleep(backoff.base_s)
            continue
        started = clock()
        try:
            async with open_connection(
                    host, port, node_key=node_key, chain_id=chain_id, expected_peer_id=expected_peer_id,
                    config=config, bans=bans) as peer:
                await on_peer(peer)
            reason = peer.close_reason
            failures = 1 if clock() - started >= backoff.stable_s else failures + 1
            log.info("peer %s at %s:%d disconnected: %s", expected_peer_id.hex(), host, port, reason)
        except (P2PError, OSError) as exc:
            failures += 1
            log.info("dial %s at %s:%d failed (%d in a row): %r", expected_peer_id.hex(), host, port, failures, exc)
        await sleep(compute_backoff_s(failures, backoff, random()))
