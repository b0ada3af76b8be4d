"""End-to-end load benchmark: a fresh localnet of real validator processes under the load generator.

    scripts/bench localnet [--validators N] [--duration S] [--rates 100,1000,...,max] [--accounts N] [--json]

1. The signature-verification bound, measured first, in this process, while nothing else of the benchmark runs:
   Ed25519 verifications per second on one core (pynacl `VerifyKey.verify` over the sign bytes of real signed
   transactions, for VERIFY_S seconds). Every validator verifies every transaction once (at admission, from RPC
   or gossip), so the machine cannot admit more than `verify_per_s_per_core * os.cpu_count() / validators`
   transactions per second (`verify_bound_tx_per_s`), whatever else the nodes do. It is measured again once the
   validators have stopped (`verify_per_s_per_core_end`): on a shared machine the speed of a core can drift by
   half within minutes, and the two figures show how far it moved during the run. `bound_share` is
   `max_tx_per_s` over the bound (from the first figure): the issue's target is at least half of it.
2. A localnet (`node.home.make_localnet`) in a temporary directory on free loopback ports, with every node's RPC
   rate limit raised (`rate_per_s`, `rate_burst`) so the load generator is not throttled; N validators started as
   `scripts/localnet` starts them (`python -m node start --home ...`); the benchmark waits for blocks.
3. The block interval at idle: the `blocks` stream of node 0 for IDLE_S seconds.
4. The load generator (`node.loadgen.run_load`, in this process, HTTP, `broadcast_tx_sync`, round-robin over every
   node) at each rate for `--duration` seconds, then `max` (as many transactions as the nodes commit, with at
   most `node.loadgen.DEFAULT_MAX_PENDING` uncommitted). A rate whose steady committed rate falls below SATURATION
   of its target, or whose p50 latency passes LATENCY_LIMIT_MS, saturates the network: the remaining numeric rates are
   skipped and `max` runs. Between steps the benchmark waits until blocks carry only the oracle's transactions.
   The open loop sends what is due every `--tick-ms` (default BENCH_TICK_MS = 50): a client that batches its
   orders 20 times a second, as a market maker batches its quote updates. At 3,000/s that is about 38
   transactions per node per request; at the load generator's own default of 10 ms it is about 8, and five
   times the HTTP requests, each of which costs the nodes and the load generator CPU whatever its size.

Output: `max_tx_per_s` (the highest steady committed rate of any step: the load generator's `steady_tx_per_s`,
commits in the last three quarters of the step's window), `max_tx_per_s_window` (the highest
`committed_tx_per_s`, commits in the whole window, which also holds the step's first moments, when nothing can
have committed yet: at a rate the chain sustains it reads low by about the latency over the window),
`max_sustained_rate` (the highest target met without saturating), p50/p99 latency at 100 and 1,000 transactions per second, the block interval at idle and
under load (the step of `max_tx_per_s`), per validator process its CPU seconds and peak RSS (from
/proc/<pid>/stat and /proc/<pid>/status; `cpu_s_load` over the load steps only), each step's summary with the
validators' CPU share and the consensus rounds each node entered beyond round 0 (`failed_rounds`: a proposal
that did not arrive or gather a quorum in time, one cause of latency tails), `machine` and `date`. The load
generator shares the machine with the validators; its own CPU is in each step (`loadgen_cpu_s`).

Every validator started is stopped (SIGTERM, then SIGKILL) and the directory removed, also on Ctrl-C, SIGTERM or
an error. Benchmarks measure; they assert nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402
import nacl.signing  # noqa: E402

from node.config import load_config, render_config  # noqa: E402
from node.home import CONFIG_FILE, make_localnet  # noqa: E402
from node.loadgen import (  # noqa: E402
    LoadConfig, LoadgenError, call, endpoints_from_home, parse_rate, run_load, ws_url,
)
from node.localnet import LOG_FILE, find_base_port, start_validator, stop_validators  # noqa: E402
from stf.crypto import PrivateKey, compute_sign_bytes  # noqa: E402
from stf.tx import TIF_GTC, PlaceOrder, decode_transaction, sign_transaction  # noqa: E402

DEFAULT_RATES = "100,300,1000,2000,3000,4000,6000,max"
SATURATION = 0.8
LATENCY_LIMIT_MS = 5000.0
BENCH_TICK_MS = 50
IDLE_S = 10.0
VERIFY_S = 3.0
READY_TIMEOUT_S = 60.0
QUIET_TIMEOUT_S = 60.0
RATE_LIMIT = 1_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the machine's verification bound ---------------------------------------------------------------------------

def measure_verify_per_s(seconds: float) -> float:
    """Ed25519 verifications per second on this core, over the sign bytes of real signed transactions."""
    samples = []
    for i in range(64):
        key = PrivateKey(i.to_bytes(32, "big"))
        wire = sign_transaction(key, "kabuto-localnet", 1_767_225_600_000 + i,
                                [PlaceOrder(0, i % 2 == 0, 1_000_000 + i, 1 + i % 5, TIF_GTC, i + 1, 0, False)])
        tx = decode_transaction(wire)
        samples.append((nacl.signing.VerifyKey(tx.signer_public_key), compute_sign_bytes("kabuto-localnet", tx.body),
                        tx.signature))
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for verify_key, message, signature in samples:
            verify_key.verify(message, signature)
        done += len(samples)
    return done / elapsed


# --- processes --------------------------------------------------------------------------------------------------

def read_process(pid: int) -> tuple[float, float]:
    """(CPU seconds, user + system; peak RSS in MiB) of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    peak_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmHWM:"))
    return cpu_s, peak_kb / 1024


def make_benchmark_localnet(base: Path, validators: int) -> list[Path]:
    """A localnet whose RPC rate limits do not throttle one client address."""
    homes = make_localnet(base, validators, find_base_port(2 * validators))
    for home in homes:
        config = load_config(home / CONFIG_FILE)
        rpc = replace(config.rpc, rate_per_s=RATE_LIMIT, rate_burst=RATE_LIMIT)
        (home / CONFIG_FILE).write_text(render_config(replace(config, rpc=rpc)))
    return homes


def check_running(procs: list[subprocess.Popen], homes: list[Path]) -> None:
    for i, proc in enumerate(procs):
        if proc.poll() is not None:
            raise LoadgenError(f"validator {i} exited with code {proc.returncode}; see {homes[i] / LOG_FILE}")


# --- the chain, seen through RPC --------------------------------------------------------------------------------

async def wait_ready(urls: list[str], procs: list[subprocess.Popen], homes: list[Path]) -> None:
    """Until every node has committed height 2."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        for url in urls:
            while True:
                check_running(procs, homes)
                try:
                    if int((await call(session, url, "status"))["sync_info"]["latest_block_height"]) >= 2:
                        break
                except LoadgenError:
                    pass
                if time.monotonic() > deadline:
                    raise LoadgenError(f"{url} did not reach height 2 within {READY_TIMEOUT_S:g} s")
                await asyncio.sleep(0.2)


async def follow_blocks(url: str, until: Any, timeout: float) -> list[tuple[float, int]]:
    """(arrival, txs) of each block on node `url`'s `blocks` stream until `until(blocks)` or `timeout`."""
    blocks: list[tuple[float, int]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(url), max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["blocks"]}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(blocks):
            try:
                message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if data.get("method") == "subscription":
                blocks.append((time.monotonic(), int(data["params"]["result"]["num_txs"])))
    return blocks


async def read_failed_rounds(urls: list[str]) -> list[float | None]:
    """Each node's `kabuto_consensus_rounds_total` (rounds entered beyond round 0), from its /metrics."""
    counts: list[float | None] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for url in urls:
            try:
                async with session.get(url + "/metrics") as response:
                    text = await response.text()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                counts.append(None)
                continue
            counts.append(next((float(line.split()[-1]) for line in text.splitlines()
                                if line.startswith("kabuto_consensus_rounds_total ")), None))
    return counts


def compute_interval_ms(blocks: list[tuple[float, int]]) -> float | None:
    if len(blocks) < 2:
        return None
    return round((blocks[-1][0] - blocks[0][0]) * 1000 / (len(blocks) - 1), 1)


async def wait_quiet(url: str, validators: int) -> None:
    """Until three blocks in a row carry at most the oracle's transactions (one per validator)."""
    await follow_blocks(url, lambda b: len(b) >= 3 and all(txs <= validators for _, txs in b[-3:]), QUIET_TIMEOUT_S)


# --- the run ----------------------------------------------------------------------------------------------------

def is_saturated(summary: dict[str, Any]) -> bool:
    p50 = summary["latency_ms"]["p50"]
    return summary["steady_tx_per_s"] < SATURATION * summary["target_rate"] or p50 is None \
        or p50 > LATENCY_LIMIT_MS


async def run_steps(args: argparse.Namespace, urls: list[str], procs: list[subprocess.Popen],
                    homes: list[Path]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    saturated = False
    for rate in args.rates:
        if saturated and rate is not None:
            continue
        check_running(procs, homes)
        before, started = [read_process(p.pid)[0] for p in procs], time.monotonic()
        rounds_before = await read_failed_rounds(urls)
        config = LoadConfig(rate=rate, duration_s=args.duration, accounts=args.accounts, seed=args.seed,
                            drain_s=args.drain, tick_ms=args.tick_ms)
        summary = await run_load(urls, config)
        cpu, wall = [read_process(p.pid)[0] - b for p, b in zip(procs, before)], time.monotonic() - started
        summary["step_wall_s"] = round(wall, 1)   # setup, timed phase and drain
        summary["node_cpu_s"] = [round(c, 2) for c in cpu]
        summary["node_cpu_share"] = [round(c / wall, 2) for c in cpu]  # 1.0 = one core busy throughout
        summary["failed_rounds"] = [None if a is None or b is None else int(b - a)
                                    for a, b in zip(rounds_before, await read_failed_rounds(urls))]
        summary["saturated"] = rate is not None and is_saturated(summary)
        saturated = saturated or summary["saturated"]
        steps.append(summary)
        print(f"rate {'max' if rate is None else f'{rate:g}'}: committed {summary['steady_tx_per_s']}/s steady, "
              f"{summary['committed_tx_per_s']}/s over the window, "
              f"p50 {summary['latency_ms']['p50']} ms, p99 {summary['latency_ms']['p99']} ms, "
              f"validators' CPU {sum(cpu):.1f} s{' (saturated)' if summary['saturated'] else ''}",
              file=sys.stderr, flush=True)
        await wait_quiet(urls[0], len(urls))
    return steps


def latency_at(steps: list[dict[str, Any]], rate: float, key: str) -> float | None:
    for step in steps:
        if step["target_rate"] == rate:
            return step["latency_ms"][key]
    return None


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_count": os.cpu_count(), "model": model, "python": platform.python_version(),
            "platform": platform.platform()}


async def run(args: argparse.Namespace, base: Path, procs: list[subprocess.Popen]) -> dict[str, Any]:
    verify_per_s = measure_verify_per_s(VERIFY_S)
    homes = make_benchmark_localnet(base, args.validators)
    urls = endpoints_from_home(base)
    procs.extend(start_validator(home) for home in homes)
    await wait_ready(urls, procs, homes)
    idle = await follow_blocks(urls[0], lambda b: False, IDLE_S)
    load_started = [read_process(p.pid)[0] for p in procs]
    steps = await run_steps(args, urls, procs, homes)
    best = max(steps, key=lambda s: s["steady_tx_per_s"], default=None)
    sustained = [s["target_rate"] for s in steps if s["target_rate"] is not None and not s["saturated"]]
    nodes = []
    for i, (proc, started) in enumerate(zip(procs, load_started)):
        cpu_s, rss_mb = read_process(proc.pid)
        nodes.append({"node": i, "cpu_s": round(cpu_s, 2), "cpu_s_load": round(cpu_s - started, 2),
                      "rss_mb": round(rss_mb, 1)})
    stop_validators(procs)   # the second measurement of the bound runs on a quiet machine, like the first
    verify_end_per_s = measure_verify_per_s(VERIFY_S)
    bound = verify_per_s * (os.cpu_count() or 1) / args.validators
    return {
        "validators": args.validators, "duration_s": args.duration, "tick_ms": args.tick_ms,
        "accounts": "auto" if args.accounts is None else args.accounts,
        "max_tx_per_s": None if best is None else best["steady_tx_per_s"],
        "max_tx_per_s_window": max((s["committed_tx_per_s"] for s in steps), default=None),
        "max_sustained_rate": max(sustained, default=None),
        "p50_ms_at_100": latency_at(steps, 100.0, "p50"), "p99_ms_at_100": latency_at(steps, 100.0, "p99"),
        "p50_ms_at_1000": latency_at(steps, 1000.0, "p50"), "p99_ms_at_1000": latency_at(steps, 1000.0, "p99"),
        "verify_per_s_per_core": round(verify_per_s), "verify_per_s_per_core_end": round(verify_end_per_s),
        "verify_bound_tx_per_s": round(bound),
        "bound_share": None if best is None else round(best["steady_tx_per_s"] / bound, 3),
        "block_interval_ms_idle": compute_interval_ms(idle),
        "block_interval_ms_load": None if best is None else best["block_interval_ms_mean"],
        "nodes": nodes, "steps": steps, "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--rates", default=DEFAULT_RATES, help="transactions per second, comma-separated; max")
    parser.add_argument("--accounts", type=int, help="default: the load generator's, one per 10 tx/s")
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to wait for commits after each rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick-ms", type=int, default=BENCH_TICK_MS,
                        help=f"the load generator sends what is due every this many ms (default {BENCH_TICK_MS})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        args.rates = [parse_rate(r.strip()) for r in args.rates.split(",") if r.strip()]
    except LoadgenError as exc:
        parser.error(str(exc))
    if not 1 <= args.validators <= 20 or not args.rates or not args.duration > 0:
        parser.error("--validators must be 1 to 20, --rates not empty, --duration positive")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    base = Path(tempfile.mkdtemp(prefix="kabuto-bench-localnet-"))
    procs: list[subprocess.Popen] = []
    try:
        figures = asyncio.run(run(args, base, procs))
    except (LoadgenError, aiohttp.ClientError, OSError) as exc:
        print(f"bench localnet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench localnet: interrupted; stopping every validator", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_validators(procs)
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            if key != "steps":
                print(f"{key:24} {value}")
        for step in figures["steps"]:
            print(f"step {step['target_rate'] or 'max'}: {json.dumps(step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
