"""WebSocket fan-out benchmark: N subscribers to `book` and `trades` while orders flow through blocks; then
`status` requests per second.

The server (rpc.server.make_app over an InMemoryChainView of the minimal genesis, published with
rpc.channels.publish_block) runs in this process on 127.0.0.1; the subscribers run in one child process (aiohttp
clients on their own core), so the server's event loop does only server work. Each subscriber takes one market
(alternately BTC-USD and ETH-USD) and subscribes to its `book` and `trades`; it parses every notification.

Order flow: `--orders-per-second` orders (pre-signed, not timed; 70% limit orders near the touch, 20% cancels
by client id, 10% market orders, from 200 accounts) in blocks every `--block-ms`. Each block is applied with
stf.block.apply_block (signatures verified beforehand, as the node's mempool does at admission) and published;
the block's commit time is taken right after `apply_block` returns. Lag = when a subscriber's client received
a message of that block minus the commit time, over every (subscriber, message), from CLOCK_MONOTONIC (one
clock for both processes on Linux). It includes the client process's own parsing and queueing.

`server_flush_ms`: from commit until every subscriber's send buffer is empty again (all of the block's frames
handed to the kernel), the server's own share of the lag; a block whose frames are not all written before the
next block is due is counted in `blocks_not_flushed_before_next`.

`gc_full_ms_max` is the longest full (generation 2) garbage collection during the flow: a pause of the whole
server. `--gc-freeze` calls `gc.freeze()` once everything is set up, as a node can after start-up.

`server_cpu_share` (over the flow) and `client_cpu_share` (from the first block until the last message arrived)
are each process's CPU time divided by that wall time (1.0 = one core busy throughout): they tell which side
bounds the lag. The subscribers stop after a whole second without a message (at most 60 s).

Then `status` over HTTP POST (keep-alive, `--concurrency` requests in flight from the child) and over one
WebSocket (pipelined, `--concurrency` in flight), each for `--status-seconds`, with the subscribers gone.
The client is Python too, so these rates are a floor of what the server can do.

    scripts/bench ws [--subscribers N] [--orders-per-second N] [--seconds S] [--gc-freeze] [--json] [--profile]

Benchmarks measure; they assert nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import multiprocessing
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from genesis import minimal_genesis, validate_genesis  # noqa: E402
from rpc.channels import make_channels, publish_block  # noqa: E402
from rpc.config import RpcConfig  # noqa: E402
from rpc.methods import make_router  # noqa: E402
from rpc.server import SERVER, make_app  # noqa: E402
from rpc.subscriptions import Hub  # noqa: E402
from rpc.views import InMemoryChainView  # noqa: E402
from stf.block import apply_block, make_block  # noqa: E402
from stf.crypto import PrivateKey  # noqa: E402
from stf.state import initialize_state  # noqa: E402
from stf.tx import (  # noqa: E402
    TIF_ALO, TIF_GTC, CancelByClientId, MarketOrder, PlaceOrder, decode_transaction, sign_transaction,
)

ACCOUNTS = 200
MIDS = {0: 1_000_000, 1: 30_000}


# --- order flow (parent, not timed) ---------------------------------------------------------------------------

def make_orders(total: int, seed: int, chain_id: str, start_nonce: int) -> list[tuple[bytes, Any]]:
    """`total` single-action transactions, signed and decoded: (wire, decoded) in submission order."""
    rng = random.Random(seed)
    keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(ACCOUNTS)]
    placed: list[list[tuple[int, int]]] = [[] for _ in keys]  # per account: (market, client id)
    txs = []
    for n in range(total):
        who = rng.randrange(len(keys))
        market = rng.choice((0, 1))
        mid = MIDS[market]
        roll = rng.random()
        if roll < 0.7 or not placed[who]:
            is_buy = rng.random() < 0.5
            price = mid - rng.randint(1, 40) if is_buy else mid + rng.randint(1, 40)
            client_id = n + 1
            action: Any = PlaceOrder(market, is_buy, price, rng.randint(1, 10), rng.choice((TIF_GTC, TIF_ALO)),
                                     client_id, 0, False)
            placed[who].append((market, client_id))
        elif roll < 0.9:
            market, client_id = placed[who].pop(rng.randrange(len(placed[who])))
            action = CancelByClientId(market, client_id)
        else:
            is_buy = rng.random() < 0.5
            action = MarketOrder(market, is_buy, rng.randint(1, 10), mid + (60 if is_buy else -60), None, False)
        wire = sign_transaction(keys[who], chain_id, start_nonce + n, [action])
        txs.append((wire, decode_transaction(wire)))
    return txs


# --- subscribers (child process) ------------------------------------------------------------------------------

async def subscriber(http: aiohttp.ClientSession, url: str, market: int, received: list[tuple[int, float, bool]],
                     ready: asyncio.Event, counter: list[int], total: int, stop: asyncio.Event) -> None:
    async with http.ws_connect(url, max_msg_size=0) as ws:
        for i, channel in enumerate(("book", "trades")):
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": i, "method": "subscribe",
                                          "params": {"channel": channel, "market": market}}))
        answers = 0
        counter[0] += 1
        if counter[0] == total:
            ready.set()
        while not stop.is_set():
            message = await ws.receive()  # cancelled at the end
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.monotonic()
            data = json.loads(message.data)
            if "id" in data:
                answers += 1
                continue
            result = data["params"]["result"]
            if result.get("type") != "snapshot":
                received.append((int(result["height"]), now, result.get("type") == "diff"))


async def measure_status(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"})
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        done = [0]
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                async with http.post(url + "/", data=body) as response:
                    await response.read()
                done[0] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        http_rps = done[0] / (time.monotonic() - started)
        async with http.ws_connect(url + "/websocket") as ws:
            sent = received = 0
            started = time.monotonic()
            deadline = started + seconds
            while sent < concurrency:
                await ws.send_str(body)
                sent += 1
            while time.monotonic() < deadline:
                await ws.receive()
                received += 1
                await ws.send_str(body)
            ws_rps = received / (time.monotonic() - started)
    return {"status_rps": http_rps, "status_rps_ws": ws_rps}


def child_main(url: str, subscribers: int, connection: Any, concurrency: int, status_seconds: float) -> None:
    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        received: list[list[tuple[int, float, bool]]] = [[] for _ in range(subscribers)]
        ready, stop = asyncio.Event(), asyncio.Event()
        counter = [0]
        async with aiohttp.ClientSession(connector=connector) as http:
            tasks = [asyncio.create_task(subscriber(http, url + "/websocket", i % 2, received[i], ready, counter,
                                                    subscribers, stop))
                     for i in range(subscribers)]
            await ready.wait()
            await asyncio.sleep(0.5)  # snapshots delivered
            connection.send("ready")
            cpu_started, wall_started = time.process_time(), time.monotonic()
            while not connection.poll():
                await asyncio.sleep(0.05)
            connection.recv()  # "stop": the parent published its last block
            seen = -1
            while seen != (seen := sum(map(len, received))) and time.monotonic() - wall_started < 60:
                await asyncio.sleep(1.0)  # the tail: until a whole second passes without a message
            cpu_share = (time.process_time() - cpu_started) / (time.monotonic() - wall_started - 1.0)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        connection.send((received, cpu_share))
        connection.send(await measure_status(url, concurrency, status_seconds))

    asyncio.run(main())


# --- server and block loop (parent) ---------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    balances = [(PrivateKey((i + 1).to_bytes(32, "big")).address.hex(), a, 10**13)
                for i in range(ACCOUNTS) for a in (0, 1, 2)]
    genesis = validate_genesis(minimal_genesis(chain_id="kabuto-bench", balances=balances))
    state = initialize_state(genesis)
    view = InMemoryChainView(state, genesis=genesis)
    hub = Hub(make_channels())
    config = RpcConfig(max_connections=args.subscribers + 100, max_connections_per_ip=args.subscribers + 100,
                       requests_per_second_per_ip=1e9, burst_per_ip=10**9)
    app = make_app(make_router(view), view, config, hub=hub)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"

    blocks = int(args.seconds * 1000 / args.block_ms)
    per_block = max(1, args.orders_per_second * args.block_ms // 1000)
    orders = make_orders(blocks * per_block, args.seed, state.params.chain_id, genesis.genesis_time_ms + 1)

    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=child_main, args=(url, args.subscribers, child, args.concurrency, args.status_seconds))
    process.start()
    connect_started = time.monotonic()
    while not parent.poll():
        await asyncio.sleep(0.05)
    parent.recv()
    connect_seconds = time.monotonic() - connect_started

    committed: dict[int, float] = {}
    apply_ms: list[float] = []
    publish_ms: list[float] = []
    flush_ms: list[float] = []
    sessions = app[SERVER].sessions
    time_ms = genesis.genesis_time_ms
    gc_pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                gc_started[0] = time.monotonic()
            else:
                gc_pauses.append((time.monotonic() - gc_started[0]) * 1000)

    gc.callbacks.append(on_gc)
    if args.gc_freeze:
        gc.collect()
        gc.freeze()  # what a node can do after start-up: the long-lived objects leave the collector's scans
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    started = time.monotonic()
    cpu_started = time.process_time()
    for b in range(blocks):
        target = started + b * args.block_ms / 1000
        await asyncio.sleep(max(0.0, target - time.monotonic()))
        batch = orders[b * per_block:(b + 1) * per_block]
        time_ms += args.block_ms
        block = make_block(state, time_ms, [wire for wire, _ in batch])
        t0 = time.monotonic()
        result = apply_block(state, block, {wire: tx for wire, tx in batch})
        t1 = time.monotonic()
        committed[block.header.height] = t1
        publish_block(hub, view, block, result)
        publish_ms.append((time.monotonic() - t1) * 1000)
        apply_ms.append((t1 - t0) * 1000)
        next_target = started + (b + 1) * args.block_ms / 1000
        while any(session.get_queued() for session in sessions) and time.monotonic() < next_target:
            await asyncio.sleep(0)  # let the writers run
        if not any(session.get_queued() for session in sessions):
            flush_ms.append((time.monotonic() - t1) * 1000)
    flow_seconds = time.monotonic() - started
    server_cpu_share = (time.process_time() - cpu_started) / flow_seconds
    if profile is not None:
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    server = app[SERVER]
    slow_closes = hub.slow_consumer_closes
    parent.send("stop")
    while not parent.poll():
        await asyncio.sleep(0.05)
    received, client_cpu_share = parent.recv()
    while not parent.poll():
        await asyncio.sleep(0.05)
    status = parent.recv()
    process.join()
    await runner.cleanup()

    lags = sorted((at - committed[height]) * 1000 for per in received for height, at, _ in per)
    messages = sum(len(per) for per in received)
    expected = len(committed) * args.subscribers  # one book diff per block per subscriber
    return {
        "subscribers": args.subscribers, "gc_freeze": args.gc_freeze, "orders_per_second": args.orders_per_second,
        "block_ms": args.block_ms,
        "blocks": blocks, "orders": len(orders), "seconds": round(flow_seconds, 2),
        "connect_seconds": round(connect_seconds, 2),
        "messages": messages, "messages_per_s": round(messages / flow_seconds),
        "book_diffs_missing": expected - sum(1 for per in received for _, _, is_diff in per if is_diff),
        "p50_lag_ms": round(statistics.median(lags), 2) if lags else None,
        "p99_lag_ms": round(lags[int(len(lags) * 0.99) - 1], 2) if lags else None,
        "max_lag_ms": round(lags[-1], 2) if lags else None,
        "apply_ms_median": round(statistics.median(apply_ms), 2),
        "publish_ms_median": round(statistics.median(publish_ms), 2),
        "publish_ms_max": round(max(publish_ms), 2), "publish_ms_max_block": publish_ms.index(max(publish_ms)) + 1,
        "server_flush_ms_p50": round(statistics.median(flush_ms), 2) if flush_ms else None,
        "server_flush_ms_max": round(max(flush_ms), 2) if flush_ms else None,
        "blocks_not_flushed_before_next": blocks - len(flush_ms),
        "server_cpu_share": round(server_cpu_share, 2), "client_cpu_share": round(client_cpu_share, 2),
        "gc_full_collections": len(gc_pauses), "gc_full_ms_max": round(max(gc_pauses, default=0.0), 2),
        "slow_consumer_closes": slow_closes, "open_sessions_at_end": len(server.sessions),
        "status_rps": round(status["status_rps"]), "status_rps_ws": round(status["status_rps_ws"]),
        "python": platform.python_version(), "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--orders-per-second", type=int, default=1000)
    parser.add_argument("--block-ms", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--status-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the server during the flow (stderr)")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once set up, before the flow")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
