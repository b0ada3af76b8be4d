"""A seeded random flow over the perpetual markets, for property and determinism tests.

Keys 1 to N trade both perp markets with $500 of collateral each, at leverages up to the
tier maximum, cross and isolated, with limit (every time in force, some reduce-only), market, modify and cancel
orders, stop and take-profit triggers, isolated-margin moves and collateral transfers. The oracle walks randomly
and sometimes jumps by 4 to 15 %, so positions are liquidated through the book, by the backstop and by ADL
(the insurance fund starts small or empty). Blocks are five minutes apart, so funding is paid every 12 blocks.
"""

import random

from stf.tx import (
    Cancel, CancelAll, CancelTrigger, CollateralTransfer, IsolatedMargin, MarketOrder, Modify, PlaceOrder,
    PlaceTrigger, SetLeverage,
)

from perp_helpers import BTC_PERP, BTC_PRICE, ETH_PERP, ETH_PRICE, PerpChain

TICKS = {BTC_PERP: 100, ETH_PERP: 10}
BLOCK_MS = 300_000
DEPOSIT = 500 * 10**6  # $500 of collateral per trader


def _near(rng: random.Random, mark: int, tick: int, spread_bps: int) -> int:
    price = mark + rng.randint(-spread_bps, spread_bps) * mark // 10_000
    return max(tick, price // tick * tick)


def random_perp_action(rng: random.Random, chain: PerpChain, who: int):
    key = chain.keys[who]
    account = chain.state.accounts.get(key.address)
    market_id = rng.choice((BTC_PERP, ETH_PERP))
    market = chain.state.markets[market_id]
    mark = market.mark_price or chain.oracle[market_id]
    tick = TICKS[market_id]
    own_orders = sorted(account.orders) if account else []
    own_triggers = sorted(account.triggers) if account else []
    roll = rng.random()
    if roll < 0.45:
        return PlaceOrder(market_id, rng.random() < 0.5, _near(rng, mark, tick, 60), rng.randint(1, 300),
                          rng.choice((0, 0, 0, 1, 2, 3)), None, 0, rng.random() < 0.1)
    if roll < 0.55:
        is_buy = rng.random() < 0.5
        worst = _near(rng, mark * (10_200 if is_buy else 9_800) // 10_000, tick, 0)
        return MarketOrder(market_id, is_buy, rng.randint(1, 200), worst, None, rng.random() < 0.15)
    if roll < 0.63 and own_orders:
        order = account.orders[rng.choice(own_orders)]
        return Cancel(order.market_id, order.order_id)
    if roll < 0.66:
        return CancelAll(rng.choice((None, market_id)))
    if roll < 0.71 and own_orders:
        order = account.orders[rng.choice(own_orders)]
        tick = TICKS[order.market_id]
        return Modify(order.market_id, order.order_id, max(tick, order.price + rng.randint(-3, 3) * tick),
                      max(1, order.size_lots + rng.randint(-10, 10)))
    if roll < 0.77:
        return SetLeverage(market_id, rng.choice((1, 3, 5, 10, 20, 25, 40, 50)), rng.random() < 0.7)
    if roll < 0.81:
        return IsolatedMargin(market_id, rng.randint(1, 500 * 10**6), rng.random() < 0.6)
    if roll < 0.85:
        return CollateralTransfer(rng.randint(1, 1_000 * 10**6), rng.random() < 0.5)
    if roll < 0.93:
        is_buy = rng.random() < 0.5
        return PlaceTrigger(market_id, is_buy, rng.choice((0, rng.randint(1, 50))), _near(rng, mark, tick, 400),
                            rng.random() < 0.5, rng.choice((0, _near(rng, mark, tick, 100))), rng.random() < 0.5)
    if own_triggers:
        trigger = account.triggers[rng.choice(own_triggers)]
        return CancelTrigger(trigger.market_id, trigger.trigger_id)
    return PlaceOrder(market_id, True, _near(rng, mark, tick, 30), 10**9, 0, None, 0, False)  # INSUFFICIENT_MARGIN


def make_perp_flow_chain(seed: int) -> PerpChain:
    """Seven traders (keys 1 to 7) around the validator (key 0); the insurance fund starts with $0 or $2,000
    depending on the seed; BTC-PERP has a 15 % price band. The oracle may be 15 minutes old (blocks are 5 apart)."""
    insurance = (0, 2_000 * 10**6)[seed % 2]
    fresh = {"oracle_max_age_ms": 900_000}
    return PerpChain(accounts=8, insurance=insurance, max_open_orders_per_account=30,
                     perp_overrides={BTC_PERP: {"price_band_bps": 1_500, **fresh}, ETH_PERP: fresh})


def random_perp_blocks(seed: int, chain: PerpChain, blocks: int, txs_per_block: int):
    """Yield each block's transactions; the first block deposits every trader's collateral. The caller applies
    each block (with `chain.block`, which adds the validator's oracle prices) before asking for the next."""
    rng = random.Random(seed)
    traders = range(1, len(chain.keys))
    yield [chain.tx(chain.keys[i], CollateralTransfer(DEPOSIT, True)) for i in traders]
    for _ in range(blocks - 1):
        for market_id, base in ((BTC_PERP, BTC_PRICE), (ETH_PERP, ETH_PRICE)):
            roll = rng.random()
            move = rng.randint(-40, 40) if roll < 0.7 else rng.choice((-1, 1)) * (
                rng.randint(60, 250) if roll < 0.92 else rng.randint(400, 1_500))
            price = chain.oracle[market_id] * (10_000 + move) // 10_000
            price = min(max(price, base // 2), base * 2)
            chain.oracle[market_id] = max(TICKS[market_id], price // TICKS[market_id] * TICKS[market_id])
        txs = []
        for _ in range(rng.randint(0, txs_per_block)):
            who = rng.choice(traders)
            txs.append(chain.tx(chain.keys[who], *(random_perp_action(rng, chain, who)
                                                    for _ in range(rng.randint(1, 3)))))
        yield txs
