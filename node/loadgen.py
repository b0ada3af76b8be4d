"""The load generator behind `scripts/loadgen`: a signed order flow against a running network, with the latency
from submission to commit measured for every transaction.

    python -m node.loadgen (--rpc URL[,URL...] | --home DIR) [--rate N|max] [--duration S] [--accounts N]
        [--seed S] [--mix place=70,cancel=20,market=10] [--markets BTC-USD,ETH-USD] [--transport http|ws]
        [--method sync|async] [--drain S] [--batch N] [--connections N] [--max-pending N] [--json]

Contract:

- Endpoints: `--rpc` lists JSON-RPC URLs; `--home` reads each `node<i>/config.toml`'s `[rpc] listen` of a localnet
  directory. Every endpoint must answer `status` with the same chain id. Account i talks to endpoint i mod E and
  transaction n is signed by account n mod N, so with N a multiple of E the transactions go round-robin over the
  endpoints (every validator gets its share) while each wallet keeps to one node, as a real wallet does.
- Accounts: `--accounts` Ed25519 keys derived from `--seed` (SHA-256 of "kabuto-loadgen:<seed>:<i>"), the same
  for the same seed; by default one per ACCOUNT_RATE transactions per second of the rate, from MIN_ACCOUNTS to
  MAX_ACCOUNTS (`compute_accounts`; MAX_ACCOUNTS for `max`), so each account sends a few transactions per second
  and its cancels have orders of its own to name. Before the timed phase each account sends one setup
  transaction: a `Faucet` of every asset the chosen markets use, a `CancelAll` (orders left by an earlier run),
  and a `CollateralTransfer` into its perp margin when a perp market is chosen; all of them must be admitted and
  committed within `setup_timeout_s`.
- Flow (`OrderFlow`, deterministic from the seed): each transaction carries one action, chosen by the `--mix`
  weights: `place` (a GTC or post-only limit order 1..SPREAD_TICKS ticks off the market's mid, so it rests;
  the mid is the book's, else the perp oracle price, else the last trade, else a default), `cancel` (by client
  id, of the account's oldest order that this run placed) and `market` (an IOC market order reaching
  MARKET_REACH_TICKS past the mid, so it trades against the resting orders). A cancel with fewer than
  MIN_RESTING_TO_CANCEL orders to pick from becomes a place; an account holding MAX_RESTING orders replaces its
  oldest (one transaction: the cancel, then the place). Client ids start from the run's start time, so runs
  never reuse one.
- Nonces: one `NonceSource` per key (millisecond timestamps, strictly increasing). Transactions are signed
  before the timed phase (`rate x duration` of them; for `max`, MAX_PRESIGN_PER_S per second of the run, then more
  as needed), in sequence order, so each account's nonces rise in the order it submits. Each account sends
  rate/N transactions per second: at ACCOUNT_RATE its pending transactions stay far below the mempool's
  per-sender cap (1,000) and the chain's kept-nonce set (100 per signer), which a block that reorders an
  account's transactions (makers first) could otherwise overrun, even with seconds of latency.
- Rate: open loop. Every `tick_ms` (`--tick-ms`, default DEFAULT_TICK_MS) the sender works out how many
  transactions the clock says are due (`compute_due`) and sends them at once as JSON-RPC batches (at most
  `batch_max` per body, per endpoint),
  without waiting for earlier answers; HTTP requests share `connections` keep-alive connections per endpoint,
  WebSocket batches are pipelined on one socket per endpoint. `--rate max` keeps `connections` batches in flight
  per endpoint instead, and at most `max_pending` transactions sent and not yet committed (closed loop: as fast
  as the chain commits). Without that bound a flood fills the mempools faster than blocks empty them and the
  commit rate collapses while admission keeps every node busy. A whole batch refused by a limit (the RPC rate
  limit) makes that sender pause LIMIT_BACKOFF_S.
- Latency: the generator subscribes to the `blocks` channel of the first endpoint; each block message lists its
  transaction hashes. A transaction's latency is the time the block message arrived minus the time its batch was
  handed to the transport (both `time.monotonic()`). After the timed phase the generator waits up to `drain_s`
  for its admitted transactions to commit (less if DRAIN_QUIET_S pass without one of them committing).
- Summary (`summarize`): `target_rate` (null for max), `duration_s`, `submitted`, `admitted` (null with
  `broadcast_tx_async`, which does not say), `rejected` by code (the admission codes of docs/API.md §4.5;
  `limit:<name>` for a -32005 limit such as the rate limit; `rpc:<code>` for other JSON-RPC errors;
  `transport_error`), `committed` (of the submitted, by the end of the drain), `committed_tx_per_s`
  (committed within the timed window / the window), `steady_tx_per_s` (committed in the window's last
  three quarters / their length: the rate once the pipeline is full; the whole window also counts its first
  moments, when nothing can have committed yet, so at a rate the chain sustains it reads low by about the
  latency over the window), `latency_ms` {p50, p90, p99, max} (nearest rank, over every
  committed transaction), `blocks`, `txs_per_block_mean` and `block_interval_ms_mean` (blocks that arrived
  within the window, every transaction counted, the oracle's too), `loadgen_cpu_s` (this process, timed phase and
  drain; `sign_cpu_s` is the signing done before it); also `uncommitted` (sent, not refused, not seen in a
  block), `sent_by_kind`, `submitted_tx_per_s`, `pacing_lag_ms_max`, `endpoints`, `markets`.
- Errors (`LoadgenError`, one line; the CLI prints `loadgen: error: ...` and exits 2): bad arguments, an
  endpoint that does not answer, endpoints of different chains, a chain without a faucet, an unknown market, a
  setup transaction refused or not committed, the blocks stream lost, every timed submission refused.

Known limits: the generator is one Python process (one core); `pacing_lag_ms_max` says how far its sending fell
behind the clock. Filled orders are not tracked, so some cancels name an order that already traded (their
transaction still commits, with a failure code in its receipt). Latency includes the wait for a free HTTP
connection, as an open-loop client sees it.
"""

import argparse
import asyncio
import hashlib
import json
import math
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, NamedTuple

import aiohttp

from node.config import ConfigError, load_config, parse_address
from node.home import CONFIG_FILE
from rpc.client.wallet import (
    Wallet, cancel_all, cancel_by_client_id, collateral_transfer, faucet, market_order, place,
)
from stf.tx import TIF_ALO, TIF_GTC, Action

KINDS = ("place", "cancel", "market")
DEFAULT_MIX = (("place", 70), ("cancel", 20), ("market", 10))
DEFAULT_MARKETS = ("BTC-USD", "ETH-USD")
TRANSPORTS = ("http", "ws")
METHODS = {"sync": "broadcast_tx_sync", "async": "broadcast_tx_async"}
ACCOUNT_RATE = 10              # transactions per second per account, by default
MIN_ACCOUNTS = 10
MAX_ACCOUNTS = 1000
DEFAULT_DRAIN_S = 10.0
DEFAULT_CONNECTIONS = 4
DEFAULT_MAX_PENDING = 2000
LIMIT_BACKOFF_S = 0.05
STEADY_PART = 0.75    # `steady_tx_per_s` counts the commits of the timed window's last three quarters
DEFAULT_TICK_MS = 10   # how often the open loop sends what is due; each send is one batch per endpoint
SPREAD_TICKS = 20              # a limit order rests 1..SPREAD_TICKS ticks off the mid
MARKET_REACH_TICKS = 40        # a market order's worst price, in ticks past the mid
MAX_SIZE_MULTIPLE = 5          # order sizes are 1..5 times the market's minimum size
MIN_RESTING_TO_CANCEL = 4
MAX_RESTING = 200
MAX_PRESIGN_PER_S = 4000
DRAIN_QUIET_S = 3.0
REQUEST_TIMEOUT_S = 30.0
STREAM_RECONNECT_S = 5.0
FUND_ATOMS = 10**12            # per asset and account, capped by the genesis faucet_max_atoms
DEFAULT_MID_TICKS = 1_000_000  # a market with no book, oracle or trade: mid = tick * this
KNOWN_MIDS = {"BTC-USD": 1_000_000, "ETH-USD": 400_000}  # localnet preset: $100,000 and $4,000


class LoadgenError(Exception):
    """A refusal or failure the CLI reports as one line (exit 2)."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    rate: float | None = 100.0          # transactions per second; None: flat out
    duration_s: float = 10.0
    accounts: int | None = None          # None: compute_accounts(rate)
    seed: int = 1
    mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    markets: tuple[str, ...] = DEFAULT_MARKETS
    transport: str = "http"
    method: str = "sync"
    drain_s: float = DEFAULT_DRAIN_S
    batch_max: int = 100
    tick_ms: int = DEFAULT_TICK_MS      # open loop: how often what is due is sent
    connections: int = DEFAULT_CONNECTIONS
    setup_timeout_s: float = 30.0
    max_pending: int = DEFAULT_MAX_PENDING   # flat out: at most this many sent and not yet committed


@dataclass(frozen=True, slots=True)
class MarketInfo:
    market: int
    symbol: str
    is_perp: bool
    tick: int
    min_size: int
    mid: int
    assets: tuple[int, ...]   # what the account needs funded: quote (collateral) and, for spot, base


class Prepared(NamedTuple):
    """A signed transaction ready to send: its hash (hex), its JSON-RPC request text, endpoint and kind."""
    hash_hex: str
    entry: str
    endpoint: int
    kind: str


# --- arguments --------------------------------------------------------------------------------------------------

def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """`place=70,cancel=20,market=10` -> (("place", 70), ...); weights are non-negative integers, not all 0."""
    weights: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in KINDS:
            raise LoadgenError(f"--mix: {part.strip()!r} is not KIND=WEIGHT with KIND one of {', '.join(KINDS)}")
        if name in weights:
            raise LoadgenError(f"--mix: {name} is given twice")
        if not value.isdigit():
            raise LoadgenError(f"--mix: the weight of {name} must be a non-negative integer, got {value!r}")
        weights[name] = int(value)
    if sum(weights.values()) == 0:
        raise LoadgenError("--mix: the weights add up to 0")
    return tuple((name, weights[name]) for name in KINDS if name in weights)


def parse_rate(text: str) -> float | None:
    """A positive number of transactions per second, or `max` (None)."""
    if text == "max":
        return None
    try:
        rate = float(text)
    except ValueError:
        raise LoadgenError(f"--rate: must be a number of transactions per second or 'max', got {text!r}") from None
    if not 0 < rate < float("inf"):
        raise LoadgenError(f"--rate: must be positive, got {text!r}")
    return rate


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url:
        raise LoadgenError("--rpc: an empty URL")
    return url if "://" in url else f"http://{url}"


def ws_url(http_url: str) -> str:
    scheme, rest = http_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/websocket"


def endpoints_from_home(base: str | Path) -> list[str]:
    """The RPC URL of every `node<i>` home under a localnet directory, from its config's `[rpc] listen`."""
    base = Path(base)
    urls = []
    while (base / f"node{len(urls)}" / CONFIG_FILE).is_file():
        try:
            config = load_config(base / f"node{len(urls)}" / CONFIG_FILE)
            host, port = parse_address(config.rpc.listen, "rpc.listen")
        except ConfigError as exc:
            raise LoadgenError(str(exc)) from None
        urls.append(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}")
    if not urls:
        raise LoadgenError(f"--home: {base} holds no localnet (no node0/{CONFIG_FILE})")
    return urls


def compute_accounts(rate: float | None) -> int:
    """The default number of accounts: one per ACCOUNT_RATE tx/s, MIN_ACCOUNTS to MAX_ACCOUNTS (max: MAX)."""
    if rate is None:
        return MAX_ACCOUNTS
    return min(MAX_ACCOUNTS, max(MIN_ACCOUNTS, math.ceil(rate / ACCOUNT_RATE)))


def validate_config(config: LoadConfig) -> None:
    if config.rate is not None and not config.rate > 0:
        raise LoadgenError(f"--rate: must be positive, got {config.rate}")
    if not 0 < config.duration_s <= 86_400:
        raise LoadgenError(f"--duration: must be more than 0 and at most 86400 seconds, got {config.duration_s}")
    if config.accounts is not None and not 1 <= config.accounts <= 100_000:
        raise LoadgenError(f"--accounts: must be 1 to 100000, got {config.accounts}")
    if not 0 <= config.drain_s <= 3600:
        raise LoadgenError(f"--drain: must be 0 to 3600 seconds, got {config.drain_s}")
    if config.transport not in TRANSPORTS:
        raise LoadgenError(f"--transport: must be http or ws, got {config.transport!r}")
    if config.method not in METHODS:
        raise LoadgenError(f"--method: must be sync or async, got {config.method!r}")
    if not 1 <= config.batch_max <= 10_000 or not 1 <= config.connections <= 1000:
        raise LoadgenError("--batch and --connections: must be 1 to 10000 and 1 to 1000")
    if not 1 <= config.tick_ms <= 1000:
        raise LoadgenError(f"--tick-ms: must be 1 to 1000, got {config.tick_ms}")
    if not 1 <= config.max_pending <= 10_000_000:
        raise LoadgenError(f"--max-pending: must be 1 to 10000000, got {config.max_pending}")
    if not config.markets:
        raise LoadgenError("--markets: no market given")
    parse_mix(",".join(f"{name}={weight}" for name, weight in config.mix))


def parse_args(argv: Sequence[str] | None = None) -> tuple[list[str], LoadConfig, bool]:
    """(endpoint URLs, config, whether to print JSON); LoadgenError for a bad value."""
    parser = argparse.ArgumentParser(prog="loadgen", description="a signed order flow against a running network")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rpc", help="JSON-RPC URLs, comma-separated")
    source.add_argument("--home", help="a localnet directory (reads node<i>/config.toml)")
    parser.add_argument("--rate", default="100", help="transactions per second, or max (default 100)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the timed phase (default 10)")
    parser.add_argument("--accounts", type=int, help="default: one per 10 tx/s of the rate, 10 to 1000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", default="place=70,cancel=20,market=10")
    parser.add_argument("--markets", default=",".join(DEFAULT_MARKETS), help="ids or symbols, comma-separated")
    parser.add_argument("--transport", default="http", help="http or ws")
    parser.add_argument("--method", default="sync", help="sync (broadcast_tx_sync) or async")
    parser.add_argument("--drain", type=float, default=DEFAULT_DRAIN_S, help="seconds to wait for commits after")
    parser.add_argument("--batch", type=int, default=100, help="transactions per JSON-RPC batch at most")
    parser.add_argument("--tick-ms", type=int, default=DEFAULT_TICK_MS,
                        help=f"open loop: send what is due every this many ms (default {DEFAULT_TICK_MS})")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS, help="per endpoint")
    parser.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                        help="with --rate max: at most this many sent and not yet committed")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.rpc is None and args.home is None:
        raise LoadgenError("give the endpoints: --rpc URL[,URL...] or --home DIR")
    urls = [normalize_url(u) for u in args.rpc.split(",")] if args.rpc is not None else endpoints_from_home(args.home)
    config = LoadConfig(
        rate=parse_rate(args.rate), duration_s=args.duration, accounts=args.accounts, seed=args.seed,
        mix=parse_mix(args.mix), markets=tuple(m.strip() for m in args.markets.split(",") if m.strip()),
        transport=args.transport, method=args.method, drain_s=args.drain, batch_max=args.batch,
        tick_ms=args.tick_ms, connections=args.connections, max_pending=args.max_pending)
    validate_config(config)
    return urls, config, args.json


# --- pacing and figures -----------------------------------------------------------------------------------------

def compute_due(rate: float, elapsed_s: float, sent: int) -> int:
    """Open loop: how many transactions to send now so that `rate * elapsed_s` have gone (never negative)."""
    return max(0, int(rate * elapsed_s) - sent)


def compute_percentile(ordered: Sequence[float], percent: float) -> float | None:
    """Nearest rank: the smallest value with at least `percent`% of the values at or below it."""
    if not ordered:
        return None
    rank = max(1, math.ceil(len(ordered) * percent / 100))
    return ordered[min(len(ordered), rank) - 1]


def compute_block_figures(blocks: Sequence[tuple[float, int, int]], start: float, end: float) -> dict[str, Any]:
    """`blocks`, `txs_per_block_mean`, `block_interval_ms_mean` over (arrival, height, txs) arriving in
    (start, end]; the first interval is measured from the last block before `start`, if any."""
    inside = [b for b in blocks if start < b[0] <= end]
    before = [b for b in blocks if b[0] <= start]
    times = ([before[-1][0]] if before else []) + [b[0] for b in inside]
    intervals = [(b - a) * 1000 for a, b in zip(times, times[1:])]
    return {
        "blocks": len(inside),
        "txs_per_block_mean": round(sum(b[2] for b in inside) / len(inside), 1) if inside else None,
        "block_interval_ms_mean": round(sum(intervals) / len(intervals), 1) if intervals else None,
    }


def summarize(config: LoadConfig, start: float, commits: Sequence[tuple[float, float]],
              blocks: Sequence[tuple[float, int, int]], counts: dict[str, Any]) -> dict[str, Any]:
    """The run's summary (module contract) from the commits (arrival, latency s) of the submitted transactions,
    the blocks (arrival, height, txs) and the send counts (`submitted`, `admitted`, `rejected`, ...)."""
    end = start + config.duration_s
    latencies = sorted(latency * 1000 for _, latency in commits)
    in_window = sum(1 for at, _ in commits if at <= end)
    steady_from = start + config.duration_s * (1 - STEADY_PART)
    in_steady = sum(1 for at, _ in commits if steady_from < at <= end)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "target_rate": config.rate, "duration_s": config.duration_s, "transport": config.transport,
        "tick_ms": config.tick_ms if config.rate is not None else None,
        "method": METHODS[config.method], "accounts": config.accounts, "mix": dict(config.mix),
        "submitted": counts["submitted"], "admitted": counts["admitted"],
        "rejected": dict(sorted(counts["rejected"].items())), "committed": len(commits),
        "committed_in_window": in_window, "committed_tx_per_s": round(in_window / config.duration_s, 1),
        "steady_tx_per_s": round(in_steady / (config.duration_s * STEADY_PART), 1),
        "submitted_tx_per_s": round(counts["submitted"] / config.duration_s, 1),
        "latency_ms": {"p50": ms(compute_percentile(latencies, 50)), "p90": ms(compute_percentile(latencies, 90)),
                       "p99": ms(compute_percentile(latencies, 99)), "max": ms(latencies[-1] if latencies else None)},
        **compute_block_figures(blocks, start, end),
        **{key: value for key, value in counts.items() if key not in ("submitted", "admitted", "rejected")},
    }


# --- the order flow ---------------------------------------------------------------------------------------------

def derive_seed(seed: int, index: int) -> bytes:
    return hashlib.sha256(f"kabuto-loadgen:{seed}:{index}".encode()).digest()


def format_request(seq: int, method: str, wire: bytes) -> str:
    return f'{{"jsonrpc":"2.0","id":{seq},"method":"{method}","params":{{"tx":"{wire.hex()}"}}}}'


class OrderFlow:
    """The deterministic stream of signed transactions (module contract: Flow)."""

    def __init__(self, wallets: Sequence[Wallet], markets: Sequence[MarketInfo], mix: Sequence[tuple[str, int]],
                 seed: int, client_base: int, endpoints: int, method: str = "sync") -> None:
        self.wallets = wallets
        self.markets = markets
        self.kinds = [name for name, weight in mix if weight > 0]
        self.weights = [weight for _, weight in mix if weight > 0]
        self.rng = random.Random(seed)
        self.client_ids = [client_base] * len(wallets)
        self.resting: list[deque[tuple[int, int]]] = [deque() for _ in wallets]
        self.endpoints = endpoints
        self.method = METHODS[method]
        self.count = 0

    def next_actions(self, who: int) -> tuple[str, list[Action]]:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        resting = self.resting[who]
        if kind == "cancel" and len(resting) < MIN_RESTING_TO_CANCEL:
            kind = "place"
        if kind == "cancel":
            return kind, [cancel_by_client_id(*resting.popleft())]
        market = self.markets[self.rng.randrange(len(self.markets))]
        is_buy = self.rng.random() < 0.5
        size = market.min_size * self.rng.randint(1, MAX_SIZE_MULTIPLE)
        if kind == "market":
            reach = market.tick * MARKET_REACH_TICKS
            worst = market.mid + reach if is_buy else max(market.tick, market.mid - reach)
            return kind, [market_order(market.market, is_buy, size, worst)]
        offset = market.tick * self.rng.randint(1, SPREAD_TICKS)
        price = max(market.tick, market.mid - offset if is_buy else market.mid + offset)
        self.client_ids[who] += 1
        actions: list[Action] = []
        if len(resting) >= MAX_RESTING:
            actions.append(cancel_by_client_id(*resting.popleft()))
        resting.append((market.market, self.client_ids[who]))
        tif = TIF_ALO if self.rng.random() < 0.5 else TIF_GTC
        actions.append(place(market.market, is_buy, price, size, tif, client_id=self.client_ids[who]))
        return kind, actions

    def sign(self, count: int) -> list[Prepared]:
        """The next `count` transactions, signed."""
        out = []
        for _ in range(count):
            who = self.count % len(self.wallets)
            kind, actions = self.next_actions(who)
            signed = self.wallets[who].sign(*actions)
            out.append(Prepared(signed.hash.hex(), format_request(self.count, self.method, signed.wire),
                                who % self.endpoints, kind))
            self.count += 1
        return out


# --- transports -------------------------------------------------------------------------------------------------

class TransportError(Exception):
    pass


class HttpTransport:
    """JSON-RPC bodies POSTed on the session's keep-alive connections."""

    def __init__(self, session: aiohttp.ClientSession, urls: Sequence[str]) -> None:
        self.session = session
        self.urls = [url + "/" for url in urls]

    async def send(self, endpoint: int, body: str) -> Any:
        try:
            async with self.session.post(self.urls[endpoint], data=body,
                                         headers={"Content-Type": "application/json"}) as response:
                return json.loads(await response.read())
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None


class WsTransport:
    """One WebSocket per endpoint; bodies are pipelined and answered in order (docs/API.md §1)."""

    def __init__(self, sockets: Sequence[aiohttp.ClientWebSocketResponse]) -> None:
        self.sockets = sockets
        self.waiting: list[deque[asyncio.Future[Any]]] = [deque() for _ in sockets]

    async def send(self, endpoint: int, body: str) -> Any:
        ws = self.sockets[endpoint]
        if ws.closed:
            raise TransportError("the WebSocket is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[endpoint].append(future)
        try:
            await ws.send_str(body)
        except (aiohttp.ClientError, OSError, ConnectionError) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None
        return await future

    async def read(self, endpoint: int) -> None:
        ws, waiting = self.sockets[endpoint], self.waiting[endpoint]
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT and waiting:
                    future = waiting.popleft()
                    if not future.done():
                        future.set_result(json.loads(message.data))
        finally:
            while waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_exception(TransportError("the WebSocket closed"))


@asynccontextmanager
async def open_transport(config: LoadConfig, session: aiohttp.ClientSession, urls: Sequence[str],
                         group: asyncio.TaskGroup) -> AsyncIterator[HttpTransport | WsTransport]:
    """The transport of `config`; a WebSocket's reader runs in `group` until the socket closes on exit."""
    if config.transport == "http":
        yield HttpTransport(session, urls)
        return
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    try:
        for url in urls:
            try:
                sockets.append(await session.ws_connect(ws_url(url), max_msg_size=0, heartbeat=None, compress=0))
            except (aiohttp.ClientError, OSError) as exc:
                raise LoadgenError(f"{ws_url(url)}: cannot open a WebSocket ({exc})") from None
        transport = WsTransport(sockets)
        for i in range(len(sockets)):
            group.create_task(transport.read(i))
        yield transport
    finally:
        for ws in sockets:
            await ws.close()


def name_error(error: Any) -> str:
    """A JSON-RPC error as a rejection code: `limit:<config name>` for -32005, else `rpc:<code>`."""
    data = error.get("data") if isinstance(error, dict) else None
    if isinstance(error, dict) and error.get("code") == -32005 and isinstance(data, dict):
        return f"limit:{data.get('limit')}"
    return f"rpc:{error.get('code') if isinstance(error, dict) else '?'}"


# --- the blocks stream ------------------------------------------------------------------------------------------

class BlockWatcher:
    """The `blocks` channel of one node: block arrivals, and the commit of every watched transaction hash."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.sent_at: dict[str, float] = {}           # watched hash -> when it was handed to the transport
        self.commits: list[tuple[float, float]] = []  # (arrival, latency s) of each watched hash committed
        self.blocks: list[tuple[float, int, int]] = []  # (arrival, height, txs)
        self.last_height = 0
        self.changed = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Follow the channel; after a lost connection resubscribe from the next height, else LoadgenError."""
        lost_at: float | None = None
        while True:
            params: dict[str, Any] = {"channel": "blocks"}
            if self.last_height:
                params["from_height"] = str(self.last_height + 1)
            try:
                async with self.session.ws_connect(self.url, max_msg_size=0, heartbeat=None) as ws:
                    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": params}))
                    lost_at = None
                    await self.read(ws)
                reason = f"closed with code {ws.close_code}"
            except (aiohttp.ClientError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            lost_at = lost_at or time.monotonic()
            if time.monotonic() - lost_at > STREAM_RECONNECT_S:
                raise LoadgenError(f"the blocks stream of {self.url} was lost: {reason}")
            await asyncio.sleep(0.2)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "error" in data:
                raise LoadgenError(f"the blocks stream of {self.url} refused the subscription: {data['error']}")
            if data.get("method") == "subscription":
                self.on_block(data["params"]["result"], time.monotonic())
            else:
                self.subscribed.set()

    def on_block(self, block: dict[str, Any], now: float) -> None:
        height = int(block["header"]["height"])
        if height <= self.last_height:
            return
        self.last_height = height
        self.blocks.append((now, height, int(block["num_txs"])))
        sent_at = self.sent_at
        for tx_hash in block["tx_hashes"]:
            at = sent_at.pop(tx_hash, None)
            if at is not None:
                self.commits.append((now, now - at))
        self.changed.set()

    async def wait(self, done: Any, timeout: float) -> bool:
        """Until `done()` is true (after each block); False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(min(remaining, 0.5)):
                    await self.changed.wait()
            except TimeoutError:
                pass
        return True


# --- the chain and its markets ----------------------------------------------------------------------------------

async def call(session: aiohttp.ClientSession, url: str, method: str, params: Any = None) -> Any:
    """One JSON-RPC call; LoadgenError naming the endpoint when it cannot be reached or answers an error."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    try:
        async with session.post(url + "/", json=body) as response:
            answer = json.loads(await response.read())
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
        raise LoadgenError(f"{url}: cannot reach the RPC endpoint ({exc or type(exc).__name__})") from None
    if "error" in answer:
        error = answer["error"]
        raise LoadgenError(f"{url}: {method} answered {error.get('code')}: {error.get('message')}")
    return answer["result"]


def resolve_markets(wanted: Sequence[str], listed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `markets` entries named by id or symbol, in the order given; LoadgenError for an unknown one."""
    by_key = {str(m["market"]): m for m in listed} | {m["symbol"]: m for m in listed}
    chosen = []
    for name in wanted:
        entry = by_key.get(name)
        if entry is None:
            known = ", ".join(m["symbol"] for m in listed)
            raise LoadgenError(f"--markets: no market {name!r} on this chain (it has {known})")
        if entry["halted"]:
            raise LoadgenError(f"--markets: {entry['symbol']} is halted")
        if entry not in chosen:
            chosen.append(entry)
    return chosen


def compute_mid(entry: dict[str, Any], book: dict[str, Any]) -> int:
    """The price orders are placed around, on the tick grid (module contract: Flow)."""
    tick = int(entry["tick_size"])
    if book["bids"] and book["asks"]:
        mid = (int(book["bids"][0][0]) + int(book["asks"][0][0])) // 2
    elif entry.get("perp") and int(entry["perp"]["oracle_price"]):
        mid = int(entry["perp"]["oracle_price"])
    elif int(entry["last_trade_price"]):
        mid = int(entry["last_trade_price"])
    else:
        mid = KNOWN_MIDS.get(entry["symbol"], tick * DEFAULT_MID_TICKS)
    return max(tick * (SPREAD_TICKS + 1), mid // tick * tick)


async def probe_chain(session: aiohttp.ClientSession, urls: Sequence[str],
                      wanted: Sequence[str]) -> tuple[str, int, list[MarketInfo]]:
    """(chain id, faucet atoms per asset, markets) after checking every endpoint serves the same chain."""
    chain_ids = [(await call(session, url, "status"))["node_info"]["network"] for url in urls]
    if len(set(chain_ids)) != 1:
        raise LoadgenError(f"the endpoints serve different chains: {', '.join(sorted(set(chain_ids)))}")
    try:
        params = (await call(session, urls[0], "genesis"))["params"]
    except LoadgenError:
        params = {"faucet_enabled": True, "faucet_max_atoms": str(FUND_ATOMS)}  # not served: checked after setup
    if not params["faucet_enabled"]:
        raise LoadgenError("the chain has no faucet (genesis params.faucet_enabled is false); the load generator "
                           "funds its accounts with Faucet actions")
    listed = (await call(session, urls[0], "markets"))["markets"]
    markets = []
    for entry in resolve_markets(wanted, listed):
        book = await call(session, urls[0], "book", {"market": entry["market"], "depth": 1})
        is_perp = entry["kind"] == "perp"
        if is_perp and not int(entry["perp"]["oracle_price"]):
            raise LoadgenError(f"--markets: {entry['symbol']} has no oracle price yet (its orders are refused)")
        assets = (entry["quote_asset"]["id"],) + (() if is_perp else (entry["base_asset"]["id"],))
        markets.append(MarketInfo(entry["market"], entry["symbol"], is_perp, int(entry["tick_size"]),
                                  int(entry["min_size_lots"]), compute_mid(entry, book), assets))
    return chain_ids[0], min(FUND_ATOMS, int(params["faucet_max_atoms"])), markets


# --- setup, sending, draining -----------------------------------------------------------------------------------

async def submit_checked(transport: Any, endpoint: int, entries: list[str], what: str, url: str) -> None:
    """Send `entries` (one batch) and require every one admitted; LoadgenError naming the first refusal."""
    try:
        answer = await transport.send(endpoint, "[" + ",".join(entries) + "]")
    except TransportError as exc:
        raise LoadgenError(f"{url}: {what}: {exc}") from None
    for item in answer if isinstance(answer, list) else [answer]:
        if "error" in item:
            raise LoadgenError(f"{url}: {what} refused: {name_error(item['error'])}: {item['error'].get('message')}")
        if item["result"].get("code", "ok") != "ok":
            raise LoadgenError(f"{url}: {what} refused: {item['result']['code']}: {item['result']['message']}")


async def setup_accounts(config: LoadConfig, session: aiohttp.ClientSession, transport: Any, urls: Sequence[str],
                         watcher: BlockWatcher, wallets: Sequence[Wallet], markets: Sequence[MarketInfo],
                         fund_atoms: int) -> None:
    """Fund every account (module contract: Accounts) and wait until its setup transaction is committed."""
    assets = sorted({asset for m in markets for asset in m.assets})
    actions: list[Action] = [faucet(asset, fund_atoms) for asset in assets] + [cancel_all(None)]
    if any(m.is_perp for m in markets):
        actions.append(collateral_transfer(fund_atoms // 2))
    by_endpoint: list[list[str]] = [[] for _ in urls]
    for i, wallet in enumerate(wallets):
        signed = wallet.sign(*actions)
        watcher.sent_at[signed.hash.hex()] = time.monotonic()
        by_endpoint[i % len(urls)].append(format_request(i, "broadcast_tx_sync", signed.wire))
    for endpoint, entries in enumerate(by_endpoint):
        for start in range(0, len(entries), config.batch_max):
            await submit_checked(transport, endpoint, entries[start:start + config.batch_max],
                                 "a setup (funding) transaction", urls[endpoint])
    if not await watcher.wait(lambda: not watcher.sent_at, config.setup_timeout_s):
        raise LoadgenError(f"{len(watcher.sent_at)} of {len(wallets)} setup transactions were not committed "
                           f"within {config.setup_timeout_s:g} s")
    account = await call(session, urls[0], "account", {"address": wallets[0].account.hex()})
    funded = {b["asset"] for b in account["balances"] if int(b["balance"]) > 0}
    if not set(assets) <= funded:
        raise LoadgenError("the setup transactions committed but did not fund the accounts (is the faucet on?)")
    watcher.commits.clear()


class Sender:
    """Sends batches of prepared transactions and counts the answers."""

    def __init__(self, config: LoadConfig, transport: Any, watcher: BlockWatcher) -> None:
        self.config = config
        self.transport = transport
        self.watcher = watcher
        self.is_sync = config.method == "sync"
        self.submitted = 0
        self.admitted = 0
        self.rejected: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.refused = 0
        self.pacing_lag_s = 0.0

    async def send(self, endpoint: int, batch: list[Prepared]) -> int:
        """Send one batch; the number of its transactions refused."""
        refused_before = self.refused
        now = time.monotonic()
        sent_at = self.watcher.sent_at
        for tx in batch:
            sent_at[tx.hash_hex] = now
            self.kinds[tx.kind] += 1
        self.submitted += len(batch)
        try:
            answer = await self.transport.send(endpoint, "[" + ",".join(tx.entry for tx in batch) + "]")
        except TransportError:
            self.refuse(batch, "transport_error")
        else:
            self.count_answer(batch, answer)
        return self.refused - refused_before

    def refuse(self, batch: Sequence[Prepared], code: str) -> None:
        self.rejected[code] += len(batch)
        self.refused += len(batch)
        for tx in batch:
            self.watcher.sent_at.pop(tx.hash_hex, None)

    def count_answer(self, batch: list[Prepared], answer: Any) -> None:
        if isinstance(answer, dict):  # the whole body refused (a limit, or a malformed body)
            self.refuse(batch, name_error(answer.get("error")))
            return
        for tx, item in zip(batch, answer):
            if "error" in item:
                self.refuse([tx], name_error(item["error"]))
            elif self.is_sync:
                code = item["result"]["code"]
                if code == "ok":
                    self.admitted += 1
                else:
                    self.refuse([tx], code)

    def split(self, txs: Sequence[Prepared], endpoints: int) -> list[tuple[int, list[Prepared]]]:
        """Batches of at most `batch_max`, one endpoint each, in sequence order within an endpoint."""
        per: list[list[Prepared]] = [[] for _ in range(endpoints)]
        for tx in txs:
            per[tx.endpoint].append(tx)
        step = self.config.batch_max
        return [(e, txs[i:i + step]) for e, txs in enumerate(per) for i in range(0, len(txs), step)]

    async def run_paced(self, flow: OrderFlow, prepared: list[Prepared], endpoints: int) -> None:
        """Open loop at `config.rate` for `config.duration_s` (module contract: Rate)."""
        rate, duration = self.config.rate, self.config.duration_s
        assert rate is not None
        start, position = time.monotonic(), 0
        async with asyncio.TaskGroup() as group:
            while (elapsed := time.monotonic() - start) < duration:
                due = compute_due(rate, elapsed, position)
                if due:
                    self.pacing_lag_s = max(self.pacing_lag_s, elapsed - (position + 1) / rate)
                    if position + due > len(prepared):
                        prepared.extend(flow.sign(position + due - len(prepared)))
                    for endpoint, batch in self.split(prepared[position:position + due], endpoints):
                        group.create_task(self.send(endpoint, batch))
                    position += due
                await asyncio.sleep(self.config.tick_ms / 1000)

    async def run_flat_out(self, flow: OrderFlow, prepared: list[Prepared], endpoints: int) -> None:
        """`connections` batches in flight per endpoint until `config.duration_s` has passed."""
        queues: list[deque[Prepared]] = [deque() for _ in range(endpoints)]
        for tx in prepared:
            queues[tx.endpoint].append(tx)
        deadline = time.monotonic() + self.config.duration_s

        sent_at, max_pending = self.watcher.sent_at, self.config.max_pending

        async def worker(endpoint: int) -> None:
            queue = queues[endpoint]
            while time.monotonic() < deadline:
                if len(sent_at) >= max_pending:
                    await self.watcher.wait(lambda: len(sent_at) < max_pending or time.monotonic() >= deadline,
                                            self.config.duration_s)
                    continue
                if len(queue) < self.config.batch_max:
                    for tx in flow.sign(self.config.batch_max * endpoints):
                        queues[tx.endpoint].append(tx)
                batch = [queue.popleft() for _ in range(self.config.batch_max)]
                if await self.send(endpoint, batch) == len(batch):
                    await asyncio.sleep(LIMIT_BACKOFF_S)  # every one refused (a limit): let the node breathe

        async with asyncio.TaskGroup() as group:
            for endpoint in range(endpoints):
                for _ in range(self.config.connections):
                    group.create_task(worker(endpoint))


def make_wallets(seed: int, count: int, chain_id: str) -> list[Wallet]:
    return [Wallet.from_seed(derive_seed(seed, i), chain_id) for i in range(count)]


async def run_load(endpoints: Sequence[str], config: LoadConfig) -> dict[str, Any]:
    """Set up, send the timed flow, drain, and return the summary (module contract); LoadgenError on failure."""
    validate_config(config)
    if config.accounts is None:
        config = replace(config, accounts=compute_accounts(config.rate))
    urls = [normalize_url(url) for url in endpoints]
    if not urls:
        raise LoadgenError("no endpoint given")
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=config.connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        chain_id, fund_atoms, markets = await probe_chain(session, urls, config.markets)
        watcher = BlockWatcher(session, ws_url(urls[0]))
        try:
            async with asyncio.TaskGroup() as group:
                follow = group.create_task(watcher.run())
                try:
                    if not await _wait_event(watcher.subscribed, 10.0):
                        raise LoadgenError(f"{watcher.url}: no answer to the blocks subscription within 10 s")
                    async with open_transport(config, session, urls, group) as transport:
                        return await _run_phases(config, session, transport, urls, watcher, chain_id, fund_atoms,
                                                 markets)
                finally:
                    follow.cancel()
        except* LoadgenError as group_error:
            raise group_error.exceptions[0] from None


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def _run_phases(config: LoadConfig, session: aiohttp.ClientSession, transport: Any, urls: Sequence[str],
                      watcher: BlockWatcher, chain_id: str, fund_atoms: int,
                      markets: list[MarketInfo]) -> dict[str, Any]:
    assert config.accounts is not None
    wallets = make_wallets(config.seed, config.accounts, chain_id)
    await setup_accounts(config, session, transport, urls, watcher, wallets, markets, fund_atoms)
    client_base = (time.time_ns() // 1_000_000 % (1 << 40)) << 20
    flow = OrderFlow(wallets, markets, config.mix, config.seed, client_base, len(urls), config.method)
    sign_started = time.process_time()
    presign = config.duration_s * (config.rate if config.rate is not None else MAX_PRESIGN_PER_S)
    prepared = flow.sign(int(presign) + 1)
    sign_cpu_s = time.process_time() - sign_started

    sender = Sender(config, transport, watcher)
    cpu_started, start = time.process_time(), time.monotonic()
    if config.rate is None:
        await sender.run_flat_out(flow, prepared, len(urls))
    else:
        await sender.run_paced(flow, prepared, len(urls))
    sends_done = time.monotonic()
    drain_end = max(start + config.duration_s, sends_done) + config.drain_s

    def drained() -> bool:
        now = time.monotonic()
        last = max([sends_done] + [at for at, _ in watcher.commits[-1:]])
        return not watcher.sent_at or now >= drain_end or now - last >= DRAIN_QUIET_S

    await watcher.wait(drained, config.drain_s + DRAIN_QUIET_S + 1)
    counts: dict[str, Any] = {
        "submitted": sender.submitted, "admitted": sender.admitted if sender.is_sync else None,
        "rejected": sender.rejected, "uncommitted": len(watcher.sent_at),
        "sent_by_kind": dict(sorted(sender.kinds.items())),
        "endpoints": list(urls), "markets": [m.symbol for m in markets],
        "pacing_lag_ms_max": round(sender.pacing_lag_s * 1000, 1),
        "loadgen_cpu_s": round(time.process_time() - cpu_started, 2), "sign_cpu_s": round(sign_cpu_s, 2),
        "presigned": len(prepared),
    }
    return summarize(config, start, watcher.commits, watcher.blocks, counts)


# --- the command ------------------------------------------------------------------------------------------------

def format_table(summary: dict[str, Any]) -> str:
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ",".join(map(str, value))
        lines.append(f"{key:24} {value}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        urls, config, as_json = parse_args(argv)
        summary = asyncio.run(run_load(urls, config))
    except LoadgenError as exc:
        print(f"loadgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary) if as_json else format_table(summary), flush=True)
    if summary["submitted"] and summary["admitted"] == 0 and summary["committed"] == 0:
        worst = max(summary["rejected"].items(), key=lambda item: item[1], default=("?", 0))
        print(f"loadgen: error: every submission was refused (most often {worst[0]}, {worst[1]} times)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
