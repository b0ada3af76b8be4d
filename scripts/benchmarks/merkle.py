"""Benchmark of the state root (stf/merkle.py): cost per block and memory per entry.

Builds a MerkleMap of ENTRIES keys shaped like account keys (b"a" + 20 bytes), then runs BLOCKS blocks that
each change CHANGED random entries (60% overwrite, 20% delete, 20% insert of a new key, so the size stays
about constant) and call root(). Reports the time per block and per changed entry (the set/delete calls plus
root(), on one core), and the traced bytes per entry of the built map (tracemalloc, keys and values freed).

Block times are reported twice: wall clock and the process's CPU time. On a shared machine the wall clock
includes time spent waiting for a core; the CPU time does not, so it is the steadier figure to compare designs.

Measures, never asserts. Usage: scripts/bench merkle [--json] [--entries N] [--changed N] [--blocks N]
With --json the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stf.merkle import MerkleMap  # noqa: E402
from stf.proof import ARITY, BUCKET_COUNT, LEVELS, verify_proof  # noqa: E402

SEED = 20261122


def make_key(n: int) -> bytes:
    return b"a" + hashlib.sha256(n.to_bytes(8, "big")).digest()[:20]


def make_value(n: int, version: int) -> bytes:
    # About the size of a msgpack-encoded account or order entry.
    return (n * 1_000_003 + version).to_bytes(16, "big") * 4


def build(entries: int) -> MerkleMap:
    tree = MerkleMap()
    for n in range(entries):
        tree.set(make_key(n), make_value(n, 0))
    tree.root()
    return tree


def measure_bytes_per_entry(entries: int) -> tuple[float, int, int]:
    """Traced bytes per entry of a built map, plus the traced size of an empty map and the build time in ms."""
    gc.collect()
    tracemalloc.start()
    empty = MerkleMap()
    empty_bytes = tracemalloc.get_traced_memory()[0]
    del empty
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    tree = build(entries)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(tree) == entries
    del tree
    return used / entries, empty_bytes, used


def plan_block(rng: random.Random, live: list[int], next_id: int, changed: int) -> tuple[list[tuple[str, int]], int]:
    """A list of (op, key number) and the next unused key number; mutates `live` to the post-block set."""
    ops: list[tuple[str, int]] = []
    for _ in range(changed):
        roll = rng.randrange(10)
        if roll < 6:
            ops.append(("set", live[rng.randrange(len(live))]))
        elif roll < 8:
            slot = rng.randrange(len(live))
            ops.append(("delete", live[slot]))
            live[slot] = live[-1]
            live.pop()
        else:
            ops.append(("set", next_id))
            live.append(next_id)
            next_id += 1
    return ops, next_id


def run_blocks(entries: int, changed: int, blocks: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each block."""
    tree = build(entries)
    rng = random.Random(SEED)
    live = list(range(entries))
    next_id = entries
    times = []
    cpu_times = []
    for height in range(1, blocks + 1):
        ops, next_id = plan_block(rng, live, next_id, changed)
        # Keys and values are prepared outside the timed region: the STF already has them.
        prepared = [(op, make_key(n), make_value(n, height)) for op, n in ops]
        gc.collect()
        start, cpu_start = time.perf_counter(), time.process_time()
        for op, key, value in prepared:
            if op == "set":
                tree.set(key, value)
            else:
                tree.delete(key)
        tree.root()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    assert len(tree) == len(live)
    return times, cpu_times


def measure_proof(entries: int) -> tuple[int, float]:
    """Proof size in bytes (wire payload, no framing) and microseconds to verify one proof."""
    tree = build(entries)
    key = make_key(7)
    proof = tree.prove(key)
    root = tree.root()
    size = sum(len(k) + len(d) for k, d in proof.entries) + sum(len(s) for group in proof.siblings for s in group)
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        ok = verify_proof(root, key, make_value(7, 0), proof)
    elapsed = time.perf_counter() - start
    assert ok
    return size, elapsed * 1e6 / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()

    bytes_per_entry, empty_bytes, _ = measure_bytes_per_entry(args.entries)
    start = time.perf_counter()
    build(args.entries)
    build_ms = (time.perf_counter() - start) * 1e3
    times, cpu_times = run_blocks(args.entries, args.changed, args.blocks)
    proof_bytes, verify_us = measure_proof(args.entries)
    block_ms = statistics.median(times) * 1e3
    cpu_ms = statistics.median(cpu_times) * 1e3
    result = {
        "benchmark": "merkle",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "arity": ARITY,
        "levels": LEVELS,
        "buckets": BUCKET_COUNT,
        "entries": args.entries,
        "changed_per_block": args.changed,
        "blocks": args.blocks,
        "block_ms_median": round(block_ms, 2),
        "block_ms_min": round(min(times) * 1e3, 2),
        "block_ms_max": round(max(times) * 1e3, 2),
        "us_per_changed_entry": round(block_ms * 1e3 / args.changed, 3),
        "cpu_ms_median": round(cpu_ms, 2),
        "cpu_ms_min": round(min(cpu_times) * 1e3, 2),
        "cpu_us_per_changed_entry": round(cpu_ms * 1e3 / args.changed, 3),
        "bytes_per_entry": round(bytes_per_entry, 1),
        "empty_map_bytes": empty_bytes,
        "build_ms": round(build_ms, 1),
        "proof_bytes": proof_bytes,
        "verify_us": round(verify_us, 1),
    }
    print(f"merkle: {ARITY}-ary, {LEVELS} levels over {BUCKET_COUNT} buckets, {args.entries} entries, "
          f"{args.changed} changed per block, {args.blocks} blocks")
    print(f"  block (sets/deletes + root): median {result['block_ms_median']} ms "
          f"(min {result['block_ms_min']}, max {result['block_ms_max']}), "
          f"{result['us_per_changed_entry']} us per changed entry")
    print(f"  CPU time per block: median {result['cpu_ms_median']} ms (min {result['cpu_ms_min']}), "
          f"{result['cpu_us_per_changed_entry']} us per changed entry")
    print(f"  memory: {result['bytes_per_entry']} traced bytes per entry; empty map {empty_bytes} bytes")
    print(f"  build of {args.entries} entries: {result['build_ms']} ms")
    print(f"  proof: {proof_bytes} bytes, verify {result['verify_us']} us")
    if args.json:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
