"""Benchmark of the perpetual markets in the STF, on one core: a mixed perp flow with margin checks, and a
liquidation cascade.

1. Mixed flow (deterministic from --seed). Genesis: the perp preset (BTC-PERP and ETH-PERP, USD collateral),
   one validator feeding the oracle every block, `--accounts` traders (default 2,000) each with $100,000 moved
   into cross margin (not timed). Accounts 0..89 % are makers, the rest takers. Measured stream: `--blocks`
   blocks (default 40) of `--block-actions` actions (default 2,500), one second apart: 55 % post-only limit
   orders 1..30 ticks behind the oracle on either side (1..20 lots, each with a client id; every one runs the
   initial-margin check against the account's positions and open orders), 30 % cancels by client id of one of
   the maker's earlier orders (filled ones answer UNKNOWN_ORDER, a real lookup), 15 % market orders of 1..20
   lots through the touch (margin check, matching, fills that move two positions each, maker re-checks at
   fill). Maker transactions batch 1..16 actions, takers send one. Blocks are signed before timing and their
   signatures checked apart (`verify` phase), then `apply_block` runs with the verified transactions, as a
   node's mempool hands them over, state root included -> `actions_per_s` = actions / CPU time of apply.
   Each block also runs the perp step: mark price from the impact prices, funding bookkeeping, triggers and
   the liquidation scan over every position holder.
2. Liquidation cascade: `--cascade-accounts` (default 10,000) accounts each open a long of 10..40 lots at 50x
   against one maker with 2 % to 2.8 % of the notional as margin (not timed), a market maker rests bids 1..200
   ticks under the coming price, then one block moves the oracle down 2 %: every one of them falls below
   maintenance (1 %) in that block; the shallower ones are reduced through the book (one chunk each) and the
   deeper ones (below 2/3 of maintenance, or where the book runs dry) go to the insurance fund's backstop. `liquidation_cascade_s` is the CPU time of that one `apply_block`.

Measures, never asserts (it does check that every account was liquidated, and says so). Usage:
scripts/bench perp [--json] [--seed N] [--accounts N] [--blocks N] [--block-actions N] [--cascade-accounts N]
With --json the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from genesis import perp_genesis, validate_genesis  # noqa: E402
from genesis.presets import INSURANCE_ACCOUNT  # noqa: E402
from stf.block import apply_block, make_block  # noqa: E402
from stf.crypto import PrivateKey  # noqa: E402
from stf.events import LiquidationEvent  # noqa: E402
from stf.state import initialize_state  # noqa: E402
from stf.tx import (  # noqa: E402
    TIF_ALO, CancelByClientId, CollateralTransfer, MarketOrder, OraclePrice, PlaceOrder, SetLeverage,
    decode_transaction, sign_transaction, validate_signature,
)

BTC_PERP, ETH_PERP = 10, 11
PRICES = {BTC_PERP: 10_000_000, ETH_PERP: 4_000_000}
TICKS = {BTC_PERP: 100, ETH_PERP: 10}
USD = 0
FUNDED = 10**12


class Bench:
    def __init__(self, accounts: int, insurance: int = 0) -> None:
        self.validator = PrivateKey((1).to_bytes(32, "big"))
        self.keys = [PrivateKey((1_000 + i).to_bytes(32, "big")) for i in range(accounts)]
        balances = [(k.address.hex(), USD, FUNDED) for k in self.keys]
        if insurance:
            balances.append((INSURANCE_ACCOUNT, USD, insurance))
        doc = perp_genesis(chain_id="kabuto-bench", balances=balances,
                           validators=[(self.validator.address.hex(), 1)], max_open_orders_per_account=1_000)
        self.genesis = validate_genesis(doc)
        self.state = initialize_state(self.genesis)
        self.time_ms = self.genesis.genesis_time_ms
        self.nonce = self.time_ms
        self.oracle = dict(PRICES)

    def sign(self, key: PrivateKey, actions: list) -> bytes:
        self.nonce += 1
        return sign_transaction(key, "kabuto-bench", self.nonce, actions)

    def oracle_tx(self) -> bytes:
        return self.sign(self.validator, [OraclePrice(tuple(sorted(self.oracle.items())))])

    def next_block(self, txs: list[bytes]):
        self.time_ms += 1_000
        self.nonce = max(self.nonce, self.time_ms)
        return make_block(self.state, self.time_ms, [*txs, self.oracle_tx()])

    def run(self, txs: list[bytes]):
        return apply_block(self.state, self.next_block(txs))


def build_flow(bench: Bench, rng: random.Random, blocks: int, block_actions: int) -> list[list[bytes]]:
    """Pre-signed transactions of every measured block (the oracle transaction is added when the block is made)."""
    makers = len(bench.keys) * 9 // 10
    next_cid = [1] * len(bench.keys)
    out = []
    for _ in range(blocks):
        txs, actions = [], 0
        while actions < block_actions:
            market = rng.choice((BTC_PERP, ETH_PERP))
            tick, oracle = TICKS[market], PRICES[market]
            if rng.random() < 0.15:
                who = rng.randrange(makers, len(bench.keys))
                is_buy = rng.random() < 0.5
                worst = oracle + (60 if is_buy else -60) * tick
                txs.append(bench.sign(bench.keys[who], [MarketOrder(market, is_buy, rng.randint(1, 20), worst, None,
                                                                    False)]))
                actions += 1
                continue
            who = rng.randrange(makers)
            batch = []
            for _ in range(rng.randint(1, 16)):
                cid = next_cid[who]
                if rng.random() < 0.35 and cid > 1:
                    batch.append(CancelByClientId(market, rng.randrange(max(1, cid - 40), cid)))
                else:
                    is_buy = rng.random() < 0.5
                    price = oracle + (-1 if is_buy else 1) * rng.randint(1, 30) * tick
                    batch.append(PlaceOrder(market, is_buy, price, rng.randint(1, 20), TIF_ALO, cid, 0, False))
                    next_cid[who] = cid + 1
            txs.append(bench.sign(bench.keys[who], batch))
            actions += len(batch)
        rng.shuffle(txs)
        out.append(txs)
    return out


def run_flow(args) -> dict:
    rng = random.Random(args.seed)
    bench = Bench(args.accounts)
    for start in range(0, len(bench.keys), 500):
        bench.run([bench.sign(k, [CollateralTransfer(100_000 * 10**6, True)]) for k in bench.keys[start:start + 500]])
    blocks = build_flow(bench, rng, args.blocks, args.block_actions)
    all_txs = [tx for txs in blocks for tx in txs]
    started = time.process_time()
    verified = {}
    for wire in all_txs:
        tx = decode_transaction(wire)
        validate_signature(tx, "kabuto-bench")
        verified[wire] = tx
    verify_s = time.process_time() - started
    gc.collect()
    gc.freeze()
    codes: Counter = Counter()
    actions = sum(len(verified[w].actions) for w in all_txs)
    apply_cpu = 0.0
    wall = 0.0
    for txs in blocks:
        block = bench.next_block(txs)
        for wire in block.txs[-1:]:
            tx = decode_transaction(wire)
            validate_signature(tx, "kabuto-bench")
            verified[wire] = tx
        t0, w0 = time.process_time(), time.perf_counter()
        result = apply_block(bench.state, block, verified)
        apply_cpu += time.process_time() - t0
        wall += time.perf_counter() - w0
        for receipt in result.receipts[:-1]:
            codes.update(r.code.name for r in receipt.results)
    gc.unfreeze()
    positions = sum(len(bench.state.markets[m].positions) for m in (BTC_PERP, ETH_PERP))
    return {
        "actions": actions, "actions_per_s": round(actions / apply_cpu), "actions_per_s_wall": round(actions / wall),
        "verify_per_s": round(len(all_txs) / verify_s), "open_positions": positions,
        "open_orders": len(bench.state.orders), "result_codes": dict(codes.most_common()),
    }


def run_cascade(args) -> dict:
    rng = random.Random(args.seed + 1)
    count = args.cascade_accounts
    bench = Bench(count + 2, insurance=10**13)
    maker, bidder = bench.keys[-2], bench.keys[-1]
    traders = bench.keys[:count]
    tick, oracle = TICKS[BTC_PERP], PRICES[BTC_PERP]
    bench.run([bench.sign(k, [CollateralTransfer(FUNDED // 2, True)]) for k in (maker, bidder)])
    sizes = [rng.randint(10, 40) for _ in traders]
    bench.run([bench.sign(maker, [PlaceOrder(BTC_PERP, False, oracle, sum(sizes), 0, None, 0, False)])])
    for start in range(0, count, 1_000):
        txs = []
        for index in range(start, min(count, start + 1_000)):
            key, lots = traders[index], sizes[index]
            margin = lots * oracle // 50 + rng.randint(0, lots * oracle * 8 // 1_000)  # 2 % to 2.8 % of notional
            txs.append(bench.sign(key, [CollateralTransfer(margin + lots * oracle // 2_000, True),
                                        SetLeverage(BTC_PERP, 50, True),
                                        MarketOrder(BTC_PERP, True, lots, oracle, None, False)]))
        bench.run(txs)
    moved = oracle * 980 // 1_000 // tick * tick
    ladder = [PlaceOrder(BTC_PERP, True, moved - (i + 1) * tick, rng.randint(50, 400), 0, None, 0, False)
              for i in range(200)]
    bench.run([bench.sign(bidder, ladder[i:i + 16]) for i in range(0, len(ladder), 16)])
    holders = len(bench.state.markets[BTC_PERP].positions)
    bench.oracle[BTC_PERP] = moved
    block = bench.next_block([])
    gc.collect()
    t0, w0 = time.process_time(), time.perf_counter()
    result = apply_block(bench.state, block)
    cascade_s = time.process_time() - t0
    cascade_wall = time.perf_counter() - w0
    stages = Counter(("book", "backstop", "adl")[e.stage] for e in result.events if type(e) is LiquidationEvent)
    liquidated = {e.account for e in result.events if type(e) is LiquidationEvent}
    return {
        "cascade_accounts": count, "position_holders": holders, "liquidated_accounts": len(liquidated),
        "liquidation_cascade_s": round(cascade_s, 3), "liquidation_cascade_wall_s": round(cascade_wall, 3),
        "liquidation_events": dict(stages), "cascade_events": len(result.events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-actions", type=int, default=2_500)
    parser.add_argument("--cascade-accounts", type=int, default=10_000)
    args = parser.parse_args()
    figures = {"python": platform.python_version(), "machine": platform.machine()}
    figures.update(run_flow(args))
    figures.update(run_cascade(args))
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if figures["liquidated_accounts"] < args.cascade_accounts:
        print(f"note: only {figures['liquidated_accounts']} of {args.cascade_accounts} accounts were liquidated")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
