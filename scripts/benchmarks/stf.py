"""Benchmark of the STF: actions per second through `apply_block` with the state root on, on one core.

The standard flow (deterministic from --seed; every figure below is for these defaults):

- Genesis: the minimal preset (BTC-USD and ETH-USD spot), 1,000 accounts each funded with 10**12 USD atoms,
  10**9 BTC atoms and 10**10 ETH atoms. Accounts 0..899 are market makers, 900..999 takers (so no order ever
  meets an order of its own account and self-trade prevention never fires: the same stream means the same thing
  to the peers, which have none).
- Prices on a grid of 10 ticks (BTC-USD, $1 per BTC) and 5 ticks (ETH-USD, $0.05 per ETH) around 1,000,000
  and 400,000 quote atoms per lot. A maker order is posted `1 + k` grid steps behind the opposite touch,
  k ~ exponential with mean 25 steps, capped at 300, so it never crosses and the books keep about 150 levels
  per side (a few hundred per market); sizes 1..10 lots.
- Seed (not timed): 20,000 resting post-only orders in transactions of 16 actions.
- Measured stream: 40 blocks of 5,000 actions (200,000 actions), one second apart. Each action is drawn
  independently: 55% place a post-only limit order near the touch, 35% cancel one of the maker's own resting
  orders (chosen uniformly from what really rests at that point, in the transaction's market or else the other
  one; a maker with none places instead), 10% a marketable order (`MarketOrder`, 1..20 lots, worst price 20
  grid steps through the touch, IOC).
- Actions per transaction: a maker transaction carries 1..16 actions (uniform, mean 8.5) in one market, the way
  market makers batch cancels and quotes; a taker transaction carries one market order. The transactions of a
  block are interleaved in random order (4.9 actions per transaction on average); `apply_block` runs maker-only transactions first (Hyperliquid's rule),
  and the generator's reference model follows that execution order exactly, so it predicts every order id,
  every cancel target and every fill. The run checks every receipt against the model.
- The first 10 blocks (50,000 actions) of the same logical stream are also applied with one action per
  transaction (`actions_per_s_one_action_per_tx`, beside `actions_per_s_batched_same_blocks`).

Phases, each timed on its own: (1) signature verification (`decode_transaction` + `validate_signature` over every
transaction) -> `verify_per_s`, transactions per second per core; (2) `apply_block` over the pre-built blocks with
`verified=` the transactions decoded and verified in (1), as a node's mempool hands them over, so nothing is
decoded or checked twice -> `actions_per_s` = actions / apply time;
the per-block steps of `apply_block` are timed by wrapping them (`commit_entries` is the state root's share);
(3) the same logical stream replayed through every installed pure-Python peer (scripts/benchmarks/_peers.py),
in the same process; (4) bytes per resting order: traced memory growth (tracemalloc, live objects, state root
included) of the whole state when --memory-orders more post-only orders come to rest, divided by that number.

Timing: every timed section counts this process's CPU time (`time.process_time`, one thread), so other
processes on a shared machine do not inflate it; the apply phase's wall-clock rate is printed beside it
(`actions_per_s_wall`). Before timing, the harness's own objects (pre-signed transactions, the reference model,
the op list) are moved out of the cyclic collector's view with `gc.freeze()`: a node does not carry them, and
left in view they made every full collection during `apply_block` slower (about a quarter off the figure). The
state itself stays under the normal collector unless `--gc freeze`.

Every block's header is made with `make_block` from the live state just before its `apply_block` (the header
commits to the state root it builds on), outside the timing.

Measures, never asserts. Usage: scripts/bench stf [--json] [--profile] [--seed N] [--blocks N] [--block-actions N]
[--memory-orders N] [--single-blocks N] [--no-peers]
With --json the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import gc
import hashlib
import io
import json
import platform
import pstats
import random
import sys
import time
import tracemalloc
from collections import deque
from pathlib import Path

# This file is named stf.py: drop its own directory from the path so `import stf` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import importlib.util  # noqa: E402

import stf.block  # noqa: E402
import stf.merkle  # noqa: E402
import stf.state  # noqa: E402

_spec = importlib.util.spec_from_file_location("_bench_peers", _HERE / "_peers.py")
_peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_peers)
PEER_NAMES, make_peer, replay = _peers.PEER_NAMES, _peers.make_peer, _peers.replay
from genesis import minimal_genesis, validate_genesis  # noqa: E402
from stf.block import apply_block, make_block  # noqa: E402
from stf.crypto import PrivateKey  # noqa: E402
from stf.state import initialize_state  # noqa: E402
from stf.tx import TIF_ALO, Cancel, MarketOrder, PlaceOrder, decode_transaction, sign_transaction, validate_signature  # noqa: E402

SEED = 20261122
ACCOUNTS = 1_000
MAKERS = 900
USD, BTC, ETH = 0, 1, 2
FUNDING = ((USD, 10**12), (BTC, 10**9), (ETH, 10**10))
MARKETS = (0, 1)
MID = {0: 1_000_000, 1: 400_000}
STEP = {0: 10, 1: 5}
MEAN_OFFSET_STEPS = 25
MAX_OFFSET_STEPS = 300
MAKER_SIZE = (1, 10)
TAKER_SIZE = (1, 20)
TAKER_SLIPPAGE_STEPS = 20
P_PLACE, P_CANCEL, P_TAKE = 0.55, 0.35, 0.10
MAKER_BATCH = (1, 16)
SEED_ORDERS = 20_000
SEED_BATCH = 16
BLOCK_INTERVAL_MS = 1_000
# Timed sections count the CPU time of this process, so other processes on a shared machine do not count against
# it (one core, one thread); the apply phase's wall-clock rate is reported beside it.
CLOCK = time.process_time
APPLY_STEPS = (
    "decode_block_transactions", "validate_header", "compute_execution_order", "validate_transactions",
    "process_block_time", "commit_entries",
)


# --- reference model: a plain price-time book that predicts what apply_block will do ---------------------------

class ModelSide:
    """One side of one book: price -> deque of order records; `keys` sorted with the best price last."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.keys: list[int] = []
        self.levels: dict[int, deque] = {}

    def best(self) -> int | None:
        if not self.keys:
            return None
        return self.keys[-1] if self.is_bid else -self.keys[-1]

    def add(self, rec: list) -> None:
        price = rec[4]
        level = self.levels.get(price)
        if level is None:
            self.levels[price] = deque((rec,))
            bisect.insort(self.keys, price if self.is_bid else -price)
        else:
            level.append(rec)

    def drop_level(self, price: int) -> None:
        del self.levels[price]
        del self.keys[bisect.bisect_left(self.keys, price if self.is_bid else -price)]


class Model:
    """Order records are [oid, owner, market, is_buy, price, size]."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.sides = {(m, b): ModelSide(b) for m in MARKETS for b in (True, False)}
        self.orders: dict[int, list] = {}
        self.own: dict[tuple[int, int], dict[int, list]] = {}

    def touch(self, market: int) -> tuple[int | None, int | None]:
        return self.sides[(market, True)].best(), self.sides[(market, False)].best()

    def place(self, owner: int, market: int, is_buy: bool, price: int, size: int) -> int:
        oid = self.next_seq
        self.next_seq += 1
        rec = [oid, owner, market, is_buy, price, size]
        self.sides[(market, is_buy)].add(rec)
        self.orders[oid] = rec
        self.own.setdefault((owner, market), {})[oid] = rec
        return oid

    def forget(self, rec: list) -> None:
        del self.orders[rec[0]]
        del self.own[(rec[1], rec[2])][rec[0]]

    def cancel(self, oid: int) -> None:
        rec = self.orders[oid]
        side = self.sides[(rec[2], rec[3])]
        level = side.levels[rec[4]]
        level.remove(rec)
        if not level:
            side.drop_level(rec[4])
        self.forget(rec)

    def take(self, market: int, is_buy: bool, size: int, worst: int) -> tuple[int, int]:
        """(order id, lots filled) of an IOC order; fills at the makers' prices, FIFO within a level."""
        oid = self.next_seq
        self.next_seq += 1
        side = self.sides[(market, not is_buy)]
        remaining = size
        while remaining and side.keys:
            price = side.best()
            if (price > worst) if is_buy else (price < worst):
                break
            level = side.levels[price]
            while remaining and level:
                rec = level[0]
                qty = min(remaining, rec[5])
                remaining -= qty
                rec[5] -= qty
                if not rec[5]:
                    level.popleft()
                    self.forget(rec)
            if not level:
                side.drop_level(price)
        return oid, size - remaining

    def level_count(self) -> int:
        return sum(len(s.keys) for s in self.sides.values())


# --- the flow ------------------------------------------------------------------------------------------------

def compute_maker_price(model: Model, rng: random.Random, market: int, is_buy: bool) -> int:
    """Post-only price 1 + k grid steps behind the opposite touch (or the reference mid when that side is empty)."""
    step = STEP[market]
    offset = 1 + min(int(rng.expovariate(1 / MEAN_OFFSET_STEPS)), MAX_OFFSET_STEPS)
    best_bid, best_ask = model.touch(market)
    if is_buy:
        return (best_ask if best_ask is not None else MID[market]) - offset * step
    return (best_bid if best_bid is not None else MID[market]) + offset * step


def make_place(model: Model, rng: random.Random, owner: int, market: int, op_log: list, expect: list) -> PlaceOrder:
    is_buy = rng.random() < 0.5
    price = compute_maker_price(model, rng, market, is_buy)
    size = rng.randint(*MAKER_SIZE)
    oid = model.place(owner, market, is_buy, price, size)
    op_log.append(("P", market, is_buy, price, size, oid))
    expect.append((oid, 0))
    return PlaceOrder(market, is_buy, price, size, TIF_ALO, None, 0, False)


def make_maker_actions(model: Model, rng: random.Random, owner: int, count: int, op_log: list, expect: list) -> list:
    market = rng.choice(MARKETS)
    actions = []
    for _ in range(count):
        own = model.own.get((owner, market)) or model.own.get((owner, 1 - market))
        if own and rng.random() < P_CANCEL / (P_PLACE + P_CANCEL):
            oid = rng.choice(list(own))
            cancel_market = model.orders[oid][2]
            model.cancel(oid)
            op_log.append(("C", cancel_market, oid))
            expect.append((oid, 0))
            actions.append(Cancel(cancel_market, oid))
        else:
            actions.append(make_place(model, rng, owner, market, op_log, expect))
    return actions


def make_taker_action(model: Model, rng: random.Random, op_log: list, expect: list) -> MarketOrder:
    market = rng.choice(MARKETS)
    is_buy = rng.random() < 0.5
    size = rng.randint(*TAKER_SIZE)
    best_bid, best_ask = model.touch(market)
    through = TAKER_SLIPPAGE_STEPS * STEP[market]
    if is_buy:
        worst = (best_ask if best_ask is not None else MID[market]) + through
    else:
        worst = (best_bid if best_bid is not None else MID[market]) - through
    oid, filled = model.take(market, is_buy, size, worst)
    op_log.append(("M", market, is_buy, size, worst, oid))
    expect.append((oid, filled))
    return MarketOrder(market, is_buy, size, worst, None, False)


class Flow:
    """Keys, genesis and a reference model; builds signed blocks whose effects the model predicts."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = [PrivateKey(hashlib.sha256(b"kabuto-bench-%d" % i).digest()) for i in range(ACCOUNTS)]
        balances = [(k.address.hex(), asset, amount) for k in self.keys for asset, amount in FUNDING]
        self.genesis = validate_genesis(minimal_genesis(balances=balances))
        self.chain_id = self.genesis.params.chain_id
        self.model = Model(next_seq=1)
        self.nonces = [self.genesis.genesis_time_ms] * ACCOUNTS
        self.time_ms = self.genesis.genesis_time_ms

    def sign(self, owner: int, actions: list) -> bytes:
        self.nonces[owner] += 1
        return sign_transaction(self.keys[owner], self.chain_id, self.nonces[owner], actions)

    def seal(self, wires: list[bytes]) -> tuple[int, tuple[bytes, ...]]:
        """A planned block: (time, signed transactions). Its header commits to the state root it builds on, so
        `make_block` makes it from the live state just before the timed `apply_block` (outside the timing)."""
        self.time_ms += BLOCK_INTERVAL_MS
        return self.time_ms, tuple(wires)

    def seed_blocks(self, orders: int, per_block: int = 4_000) -> tuple[list, list[tuple]]:
        """Post-only orders in transactions of SEED_BATCH actions: resting depth before anything is timed."""
        blocks, op_log, pending, done = [], [], [], 0
        while done < orders:
            count = min(SEED_BATCH, orders - done)
            owner = self.rng.randrange(MAKERS)
            market = self.rng.choice(MARKETS)
            actions = [make_place(self.model, self.rng, owner, market, op_log, []) for _ in range(count)]
            pending.append(self.sign(owner, actions))
            done += count
            if len(pending) * SEED_BATCH >= per_block or done >= orders:
                blocks.append(self.seal(pending))
                pending = []
        return blocks, op_log

    def plan_block(self, actions: int) -> list[tuple[bool, int, int]]:
        """(is_taker, owner, actions) per transaction in block (wire) order, about `actions` actions in all."""
        plan, total = [], 0
        mean_batch = sum(MAKER_BATCH) / 2
        p_taker_tx = P_TAKE / (P_TAKE + (1 - P_TAKE) / mean_batch)
        while total < actions:
            if self.rng.random() < p_taker_tx:
                plan.append((True, self.rng.randrange(MAKERS, ACCOUNTS), 1))
                total += 1
            else:
                count = min(self.rng.randint(*MAKER_BATCH), actions - total)
                plan.append((False, self.rng.randrange(MAKERS), count))
                total += count
        return plan

    def stream_blocks(self, blocks: int, actions_per_block: int) -> tuple[list[list[tuple[int, list, list]]], list[tuple]]:
        """Per block, the transactions in wire order as (owner, actions, expected (order id, filled) per action),
        and the logical ops in execution order. Makers are generated first, as `apply_block` executes them."""
        out, op_log = [], []
        for _ in range(blocks):
            plan = self.plan_block(actions_per_block)
            txs: list = [None] * len(plan)
            for index, (is_taker, owner, count) in enumerate(plan):
                if not is_taker:
                    expect: list = []
                    txs[index] = (owner, make_maker_actions(self.model, self.rng, owner, count, op_log, expect), expect)
            for index, (is_taker, owner, _count) in enumerate(plan):
                if is_taker:
                    expect = []
                    txs[index] = (owner, [make_taker_action(self.model, self.rng, op_log, expect)], expect)
            out.append(txs)
        return out, op_log

    def sign_stream(self, stream: list, one_action_per_tx: bool) -> list[tuple[tuple, list[list]]]:
        """Signed blocks, each with its expectations per transaction (in wire order)."""
        blocks = []
        for txs in stream:
            wires, expects = [], []
            for owner, actions, expect in txs:
                if one_action_per_tx:
                    for action, e in zip(actions, expect):
                        wires.append(self.sign(owner, [action]))
                        expects.append([e])
                else:
                    wires.append(self.sign(owner, actions))
                    expects.append(expect)
            blocks.append((self.seal(wires), expects))
        return blocks

    def memory_blocks(self, orders: int, per_block: int = 5_000) -> list:
        """Post-only orders only (nothing trades), SEED_BATCH per transaction, for the bytes-per-order figure."""
        blocks, pending, done = [], [], 0
        while done < orders:
            count = min(SEED_BATCH, orders - done)
            owner = self.rng.randrange(MAKERS)
            market = self.rng.choice(MARKETS)
            pending.append(self.sign(owner, [make_place(self.model, self.rng, owner, market, [], []) for _ in range(count)]))
            done += count
            if len(pending) * SEED_BATCH >= per_block or done >= orders:
                blocks.append(self.seal(pending))
                pending = []
        return blocks


# --- phases --------------------------------------------------------------------------------------------------

def verify_all(blocks: list, chain_id: str) -> tuple[dict, float, int]:
    """Decode and verify every transaction of planned blocks, as a node's mempool does at admission; returns
    (wire bytes -> decoded transaction, handed to apply_block as `verified`; seconds; transactions)."""
    verified: dict = {}
    wires = [w for _time_ms, txs in blocks for w in txs]
    start = CLOCK()
    for wire in wires:
        tx = decode_transaction(wire)
        validate_signature(tx, chain_id)
        verified[wire] = tx
    return verified, CLOCK() - start, len(wires)


class StepTimers:
    """Wrap the per-block steps of apply_block (module globals of stf.block) to accumulate their time."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(APPLY_STEPS, 0.0)
        self.originals = {}

    def __enter__(self) -> "StepTimers":
        for name in APPLY_STEPS:  # a step that stf/block.py no longer has is counted in "execute"
            if not hasattr(stf.block, name):
                continue
            original = self.originals[(stf.block, name)] = getattr(stf.block, name)
            setattr(stf.block, name, self.wrap(name, original))
        # Inside commit_entries: encoding the dirty entries, and the root's merge and rehash (the rest of
        # commit_entries is the merkle set/delete calls).
        for owner, name in ((stf.state, "collect_dirty_entries"), (stf.merkle.MerkleMap, "root")):
            original = self.originals[(owner, name)] = getattr(owner, name)
            self.seconds[name] = 0.0
            setattr(owner, name, self.wrap(name, original))
        return self

    def wrap(self, name, original):
        seconds, clock = self.seconds, CLOCK

        def timed(*args):
            start = clock()
            try:
                return original(*args)
            finally:
                seconds[name] += clock() - start
        return timed

    def __exit__(self, *exc) -> None:
        for (owner, name), original in self.originals.items():
            setattr(owner, name, original)


def check_block(result, expects: list[list]) -> int:
    """Count receipt results that differ from the model: code OK, predicted order id, predicted fill."""
    mismatches = 0
    for receipt, expect in zip(result.receipts, expects):
        for action_result, (oid, filled) in zip(receipt.results, expect):
            if action_result.code != 0 or action_result.order_id != oid or action_result.filled_lots != filled:
                mismatches += 1
    return mismatches


def compute_level_lengths(state) -> dict:
    """Orders per price level at the end: the median, the longest, and the mean over the best 5 levels per side."""
    lengths, top = [], []
    for market in state.markets.values():
        for side in (market.book.bids, market.book.asks):
            ordered = [len(level) for _price, level in side.iter_levels()]
            lengths += ordered
            top += ordered[:5]
    lengths.sort()
    return {"median": lengths[len(lengths) // 2], "max": lengths[-1], "best5_mean": round(sum(top) / len(top))}


def run_apply(flow: Flow, seed: list, blocks: list, verified, profile: bool = False, freeze_state: bool = False) -> dict:
    state = initialize_state(flow.genesis)
    for time_ms, txs in seed:
        apply_block(state, make_block(state, time_ms, list(txs)), verified)
    resting_before = len(state.orders)
    gc.collect()
    if freeze_state:
        gc.freeze()
    profiler = cProfile.Profile() if profile else None
    total, wall, mismatches, entries, per_block = 0.0, 0.0, 0, 0, []
    with StepTimers() as timers:
        for (time_ms, txs), expects in blocks:
            block = make_block(state, time_ms, list(txs))
            if profiler:
                profiler.enable()
            wall_start, start = time.perf_counter(), CLOCK()
            result = apply_block(state, block, verified)
            seconds = CLOCK() - start
            wall += time.perf_counter() - wall_start
            total += seconds
            per_block.append(seconds)
            if profiler:
                profiler.disable()
            mismatches += check_block(result, expects)
            entries += len(result.entries)
            del result
    actions = sum(len(e) for _, exps in blocks for e in exps)
    txs = sum(len(b[1]) for b, _ in blocks)
    steps = timers.seconds
    out = {
        "seconds": total, "wall_seconds": wall, "per_block": per_block, "actions": actions, "txs": txs, "steps": steps, "mismatches": mismatches,
        "resting_before": resting_before, "resting_after": len(state.orders), "entries_per_block": entries / len(blocks),
        "levels_after": sum(len(m.book.bids.keys) + len(m.book.asks.keys) for m in state.markets.values()),
        "level_lengths": compute_level_lengths(state),
        "model_resting": len(flow.model.orders),
    }
    if profiler:
        out["profile"] = profiler
    if freeze_state:  # thaw, drop this state, and freeze the harness again
        del state
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    return out


def run_peers(seed_ops: list[tuple], ops: list[tuple], names: tuple[str, ...]) -> dict:
    out = {}
    for name in names:
        peer = make_peer(name, MARKETS)
        if peer is None:
            continue
        replay(peer, seed_ops)
        gc.collect()
        start = CLOCK()
        filled = replay(peer, ops)
        seconds = CLOCK() - start
        out[name] = {"actions_per_s": len(ops) / seconds, "filled_lots": filled, "resting_after": peer.resting_count()}
        del peer
        gc.collect()
    return out


def measure_bytes_per_resting_order(flow: Flow, seed: list, extra: list, verified, orders: int) -> dict:
    """Traced bytes of live objects added to the whole state (state root included) per additional resting order."""
    gc.collect()
    tracemalloc.start()
    state = initialize_state(flow.genesis)
    for time_ms, txs in seed:
        apply_block(state, make_block(state, time_ms, list(txs)), verified)
    gc.collect()
    before_orders = len(state.orders)
    base = tracemalloc.get_traced_memory()[0]
    snap_before = tracemalloc.take_snapshot()
    for time_ms, txs in extra:
        apply_block(state, make_block(state, time_ms, list(txs)), verified)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    snap_after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    added = len(state.orders) - before_orders
    by_file = {}
    for stat in snap_after.compare_to(snap_before, "filename"):
        name = Path(stat.traceback[0].filename).name
        by_file[name] = by_file.get(name, 0) + stat.size_diff
    merkle = by_file.get("merkle.py", 0)
    return {
        "bytes_per_resting_order": used / added if added else float("nan"), "orders_added": added,
        "state_root_bytes_per_order": merkle / added if added else float("nan"),
        "by_file": {k: round(v / added, 1) for k, v in sorted(by_file.items(), key=lambda kv: -kv[1]) if abs(v) / added >= 1},
        "requested": orders,
    }


def print_profile(profiler: cProfile.Profile, top: int = 15) -> None:
    for key in ("cumulative", "tottime"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(key).print_stats(top)
        print(f"--- profile of the apply phase, top {top} by {key} ---")
        print("\n".join(line for line in buffer.getvalue().splitlines() if line.strip())[:6000])


def describe_stf_commit() -> str:
    """The commit measured, with '+dirty' when stf/ has uncommitted changes (other engineers share the checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "stf"], cwd=root, capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def count_kinds(ops: list[tuple]) -> dict:
    kinds = {"P": 0, "C": 0, "M": 0}
    for op in ops:
        kinds[op[0]] += 1
    return {"place": kinds["P"], "cancel": kinds["C"], "marketable": kinds["M"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile the apply phase (cProfile), print top 15")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-actions", type=int, default=5_000)
    parser.add_argument("--memory-orders", type=int, default=50_000)
    parser.add_argument("--single-blocks", type=int, default=10,
                        help="blocks of the stream also applied with one action per transaction (0: skip)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--gc", choices=("default", "freeze"), default="default",
                        help="freeze: gc.freeze() the seeded state before the timed blocks (a node-side tuning)")
    args = parser.parse_args()
    wall = time.perf_counter()

    flow = Flow(args.seed)
    seed, seed_ops = flow.seed_blocks(SEED_ORDERS)
    stream, ops = flow.stream_blocks(args.blocks, args.block_actions)
    nonces_after_seed = list(flow.nonces)
    # The batched and the one-action-per-transaction blocks both follow the seed blocks, so each is a chain of
    # its own from the same post-seed point: rewind the block counter between the two.
    seed_tip = flow.time_ms
    batched = flow.sign_stream(stream, one_action_per_tx=False)
    single = None
    if args.single_blocks:
        flow.nonces = list(nonces_after_seed)
        flow.time_ms = seed_tip
        single = flow.sign_stream(stream[:args.single_blocks], one_action_per_tx=True)
    model_resting_after_stream = len(flow.model.orders)
    model_levels_after_stream = flow.model.level_count()
    flow.time_ms = seed_tip
    flow.nonces = list(nonces_after_seed)
    # The memory blocks start from the post-seed state; the model is past the stream, so rebuild it from the seed.
    flow.model = Model(next_seq=1)
    flow.rng = random.Random(args.seed + 1)
    for op in seed_ops:
        flow.model.place(0, op[1], op[2], op[3], op[4])
    memory = flow.memory_blocks(args.memory_orders)
    setup_s = time.perf_counter() - wall
    # The harness's own objects (pre-signed blocks, the model, the op list) would otherwise be scanned by every
    # full collection during the timed phases, which a node does not pay: move them out of the collector's view.
    gc.collect()
    gc.freeze()

    verified, verify_s, verify_txs = verify_all([b for b, _ in batched], flow.chain_id)
    verified.update(verify_all(seed, flow.chain_id)[0])
    verify_per_s = verify_txs / verify_s
    single_verified = verify_all([b for b, _ in single], flow.chain_id)[0] if single else {}
    memory_verified = verify_all(memory, flow.chain_id)[0]

    freeze_state = args.gc == "freeze"
    main_run = run_apply(flow, seed, batched, verified, profile=args.profile, freeze_state=freeze_state)
    single_run = run_apply(flow, seed, single, verified | single_verified, freeze_state=freeze_state) if single else None
    peers = {} if args.no_peers else run_peers(seed_ops, ops, PEER_NAMES)
    mem = measure_bytes_per_resting_order(flow, seed, memory, verified | memory_verified, args.memory_orders)

    actions = main_run["actions"]
    apply_s = main_run["seconds"]
    steps = dict(main_run["steps"])
    collect_s, merkle_root_s = steps.pop("collect_dirty_entries"), steps.pop("root")
    root_s = steps["commit_entries"]
    execute_s = apply_s - sum(steps.values())
    kabuto_filled = sum(filled for _, exps in batched for exp in exps for _oid, filled in exp)
    fastest = max(peers, key=lambda n: peers[n]["actions_per_s"]) if peers else None
    result = {
        "actions_per_s": round(actions / apply_s),
        "actions_per_s_wall": round(actions / main_run["wall_seconds"]),
        "actions_per_s_state_root_off": round(actions / (apply_s - root_s)),
        "actions_per_s_execute_only": round(actions / execute_s),
        "state_root_share": round(root_s / apply_s, 4),
        "apply_step_share": {k: round(v / apply_s, 4) for k, v in steps.items()},
        "execute_share": round(execute_s / apply_s, 4),
        "commit_split": {"encode_entries": round(collect_s / apply_s, 4), "merkle_root": round(merkle_root_s / apply_s, 4),
                         "merkle_set_delete": round((root_s - collect_s - merkle_root_s) / apply_s, 4)},
        "verify_per_s": round(verify_per_s),
        "verify_actions_per_s": round(verify_per_s * actions / main_run["txs"]),
        "bytes_per_resting_order": round(mem["bytes_per_resting_order"], 1),
        "state_root_bytes_per_resting_order": round(mem["state_root_bytes_per_order"], 1),
        "bytes_by_file": mem["by_file"],
        "peer": fastest,
        "peer_actions_per_s": round(peers[fastest]["actions_per_s"]) if fastest else None,
        "vs_peer": round(actions / apply_s / peers[fastest]["actions_per_s"], 3) if fastest else None,
        "vs_peer_state_root_off": round(actions / (apply_s - root_s) / peers[fastest]["actions_per_s"], 3) if fastest else None,
        "peers": {n: {k: (round(v) if isinstance(v, float) else v) for k, v in p.items()} for n, p in peers.items()},
        "actions": actions, "txs": main_run["txs"], "blocks": len(batched),
        "actions_per_tx": round(actions / main_run["txs"], 2),
        "mix": count_kinds(ops),
        "apply_s": round(apply_s, 3),
        "receipt_mismatches": main_run["mismatches"] + (single_run["mismatches"] if single_run else 0),
        "filled_lots": {"model": kabuto_filled, **{n: p["filled_lots"] for n, p in peers.items()}},
        "resting_orders": {"before": main_run["resting_before"], "after": main_run["resting_after"],
                           "model_after": model_resting_after_stream},
        "price_levels_after": {"kabuto": main_run["levels_after"], "model": model_levels_after_stream},
        "orders_per_level_after": main_run["level_lengths"],
        "entries_per_block": round(main_run["entries_per_block"]),
        "seed": args.seed,
        "gc": args.gc,
        "setup_s": round(setup_s, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    if single_run:
        single_root = single_run["steps"]["commit_entries"]
        result["actions_per_s_one_action_per_tx"] = round(single_run["actions"] / single_run["seconds"])
        prefix = len(single)
        prefix_actions = sum(len(e) for _, exps in batched[:prefix] for e in exps)
        result["actions_per_s_batched_same_blocks"] = round(prefix_actions / sum(main_run["per_block"][:prefix]))
        result["one_action_per_tx_blocks"] = prefix
        result["state_root_share_one_action_per_tx"] = round(single_root / single_run["seconds"], 4)
        result["txs_one_action_per_tx"] = single_run["txs"]
    result["stf_commit"] = describe_stf_commit()
    result["elapsed_s"] = round(time.perf_counter() - wall, 1)

    mix = result["mix"]
    print(f"stf: seed {args.seed}, {ACCOUNTS} accounts ({MAKERS} makers), {len(batched)} blocks, {actions} actions "
          f"in {main_run['txs']} txs ({result['actions_per_tx']} actions/tx); place {mix['place']}, "
          f"cancel {mix['cancel']}, marketable {mix['marketable']}")
    print(f"  books: {result['resting_orders']['before']} -> {result['resting_orders']['after']} resting orders, "
          f"{result['price_levels_after']['kabuto']} price levels at the end (orders per level {result['orders_per_level_after']}); {result['entries_per_block']} state "
          f"entries changed per block; receipt mismatches vs model: {result['receipt_mismatches']}")
    print(f"  verify: {result['verify_per_s']} tx/s ({result['verify_actions_per_s']} actions/s) per core")
    print(f"  apply_block, state root on: {result['actions_per_s']} actions/s ({apply_s:.2f} s CPU; wall clock "
          f"{result['actions_per_s_wall']} actions/s); state root share "
          f"{result['state_root_share']:.1%}; root off (subtracted): {result['actions_per_s_state_root_off']} actions/s; "
          f"execution only: {result['actions_per_s_execute_only']} actions/s")
    print("  apply steps: " + ", ".join(f"{k} {v:.1%}" for k, v in result["apply_step_share"].items())
          + f", execute (the rest) {result['execute_share']:.1%}")
    print("  commit_entries split (share of apply): " + ", ".join(f"{k} {v:.1%}" for k, v in result["commit_split"].items()))
    if single_run:
        print(f"  one action per tx (first {prefix} blocks): {result['actions_per_s_one_action_per_tx']} actions/s "
              f"({single_run['txs']} txs), state root share {result['state_root_share_one_action_per_tx']:.1%}; "
              f"batched, same blocks: {result['actions_per_s_batched_same_blocks']} actions/s")
    for name, p in peers.items():
        print(f"  peer {name}: {round(p['actions_per_s'])} actions/s, filled {p['filled_lots']} lots "
              f"(model {kabuto_filled}), {p['resting_after']} resting after")
    if fastest:
        print(f"  vs fastest peer ({fastest}): {result['vs_peer']}x with the state root, "
              f"{result['vs_peer_state_root_off']}x without")
    print(f"  memory: {result['bytes_per_resting_order']} bytes per resting order over {mem['orders_added']} orders "
          f"(state root {result['state_root_bytes_per_resting_order']}); by file: {mem['by_file']}")
    print(f"  setup {result['setup_s']} s, total {result['elapsed_s']} s, {result['machine']}, stf at {result['stf_commit']}")
    if args.profile:
        print_profile(main_run["profile"])
    if args.json:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
