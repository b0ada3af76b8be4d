"""The chaos campaign's load: wallets funded by the faucet trading on the spot book while faults run.

Contract:

- `Load(urls, live, seed, chain_id, clients, async_rate)`: `clients` wallets (seeded keys) each loop: sign an
  order (a GTC or IOC limit order on BTC-USD around $100,000, now and then a cancel-all), send it with
  `broadcast_tx_commit` (`KabutoClient.submit_and_wait`) to a random validator among `live()` and wait for the
  answer. A successful answer with its height is an acknowledgement, recorded as `Ack(hash, height, node, t)`.
  A refusal (`TxRejected`), a commit timeout (-32010) or a transport error (the node died, was stopped or cut
  off under the client) is counted by kind and never ends the client: it signs a fresh transaction and tries
  another validator.
- Beside them, `async_rate` fire-and-forget orders a second (`broadcast_tx_async`) from other wallets keep the
  blocks non-empty; only their count is kept.
- `fund()` gives every wallet USD and BTC with a faucet transaction, acknowledged like any other, retrying on
  another validator until each is committed (or `FUND_TIMEOUT_S` passes: `LoadError`).
- `drain(node, timeout)` waits until no `broadcast_tx_commit` to `node` is in flight: a planned restart takes a
  node out of `live()` and drains it first, as a load balancer would (a node stopping with a commit wait pending
  holds its SIGTERM for up to its commit timeout).
- `run(stop)` runs the clients until `stop` is set. Every request has a client-side timeout
  (`REQUEST_TIMEOUT_S`, above the node's 10 s commit wait).
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from rpc.client import KabutoClient, RpcCallError, TxRejected, Wallet, cancel_all, faucet, place
from stf.tx import TIF_GTC, TIF_IOC

USD, BTC = 0, 1
BTC_USD = 0
MID_PRICE = 1_000_000          # quote micro-dollars per lot: $100,000 per BTC (genesis.presets)
PRICE_SPREAD = 400
FUND_USD = 10**13
FUND_BTC = 10**11
REQUEST_TIMEOUT_S = 12.0
COMMIT_TIMEOUT = -32010
FUND_TIMEOUT_S = 60.0
CLIENT_PAUSE_S = (0.02, 0.1)


class LoadError(RuntimeError):
    """The load could not start (the wallets could not be funded)."""


@dataclass(frozen=True, slots=True)
class Ack:
    tx_hash: str
    height: int
    node: int
    t: float


class Load:
    def __init__(self, urls: list[str], live: Callable[[], list[int]], seed: int, chain_id: str,
                 clients: int = 8, async_rate: float = 40.0, clock: Callable[[], float] = time.monotonic) -> None:
        rng = random.Random(seed ^ 0x10AD)
        self.urls = urls
        self.live = live
        self.rng = rng
        self.clock = clock
        self.wallets = [Wallet.from_seed(rng.randbytes(32), chain_id) for _ in range(clients)]
        self.async_wallets = [Wallet.from_seed(rng.randbytes(32), chain_id) for _ in range(max(1, clients // 2))]
        self.async_rate = async_rate
        self.acks: list[Ack] = []
        self.outcomes: Counter[str] = Counter()
        self.async_sent = 0
        self.inflight: Counter[int] = Counter()
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[int, KabutoClient] = {}

    async def __aenter__(self) -> "Load":
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        self._clients = {i: KabutoClient(url, self._session) for i, url in enumerate(self.urls)}
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def pick_node(self, avoid: int | None = None) -> int:
        nodes = self.live() or list(range(len(self.urls)))
        choices = [n for n in nodes if n != avoid] or nodes
        return self.rng.choice(choices)

    async def submit(self, wallet: Wallet, actions: tuple, node: int) -> bool:
        """One `broadcast_tx_commit` of a fresh transaction; True when acknowledged."""
        signed = wallet.sign(*actions)
        self.inflight[node] += 1
        try:
            committed = await self._clients[node].submit_and_wait(signed)
        except TxRejected as exc:
            self.outcomes[f"rejected:{exc.code}"] += 1
            return False
        except RpcCallError as exc:
            self.outcomes["commit_timeout" if exc.code == COMMIT_TIMEOUT else f"rpc_error:{exc.code}"] += 1
            return False
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            self.outcomes[f"transport:{type(exc).__name__}"] += 1
            return False
        finally:
            self.inflight[node] -= 1
        self.acks.append(Ack(committed.tx_hash.hex(), committed.height, node, self.clock()))
        self.outcomes["acknowledged"] += 1
        return True

    async def fund(self) -> None:
        deadline = self.clock() + FUND_TIMEOUT_S
        for wallet in self.wallets + self.async_wallets:
            node = None
            while not await self.submit(wallet, (faucet(USD, FUND_USD), faucet(BTC, FUND_BTC)),
                                        node := self.pick_node(avoid=node)):
                if self.clock() > deadline:
                    raise LoadError(f"could not fund the load's wallets in {FUND_TIMEOUT_S:.0f} s: "
                                    f"{dict(self.outcomes)}")
                await asyncio.sleep(0.2)

    async def drain(self, node: int, timeout: float) -> bool:
        """Wait until no `broadcast_tx_commit` to `node` is in flight (the caller has taken it out of `live()`)."""
        deadline = self.clock() + timeout
        while self.inflight[node] > 0:
            if self.clock() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def make_order(self, rng: random.Random) -> tuple:
        if rng.random() < 0.05:
            return (cancel_all(BTC_USD),)
        is_buy = rng.random() < 0.5
        price = MID_PRICE + rng.randint(-PRICE_SPREAD, PRICE_SPREAD)
        tif = TIF_IOC if rng.random() < 0.4 else TIF_GTC
        return (place(BTC_USD, is_buy, price, rng.randint(1, 5), tif),)

    async def run_client(self, index: int, stop: asyncio.Event) -> None:
        wallet = self.wallets[index]
        rng = random.Random(self.rng.random())
        node = None
        while not stop.is_set():
            node = self.pick_node(avoid=None if node is None else node)
            if not await self.submit(wallet, self.make_order(rng), node):
                node = self.pick_node(avoid=node)  # the next try goes elsewhere
            await asyncio.sleep(rng.uniform(*CLIENT_PAUSE_S))

    async def run_async_sender(self, stop: asyncio.Event) -> None:
        if self.async_rate <= 0:
            return
        rng = random.Random(self.rng.random())
        interval = 1.0 / self.async_rate
        while not stop.is_set():
            wallet = rng.choice(self.async_wallets)
            order = place(BTC_USD, rng.random() < 0.5, MID_PRICE + rng.randint(-PRICE_SPREAD, PRICE_SPREAD),
                          rng.randint(1, 3), TIF_IOC)
            try:
                await asyncio.wait_for(self._clients[self.pick_node()].broadcast_async(wallet.sign(order)), 2.0)
                self.async_sent += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, RpcCallError):
                self.outcomes["async_error"] += 1
            await asyncio.sleep(interval)

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            for index in range(len(self.wallets)):
                tg.create_task(self.run_client(index, stop))
            tg.create_task(self.run_async_sender(stop))

    def summary(self) -> dict:
        errors = {k: v for k, v in sorted(self.outcomes.items()) if k != "acknowledged"}
        return {"clients": len(self.wallets), "acknowledged": len(self.acks), "async_sent": self.async_sent,
                "outcomes": errors}
