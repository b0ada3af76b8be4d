"""A seeded random flow of blocks over every action type, for property and determinism tests.

`build_flow(seed, blocks, txs_per_block)` returns the chain (at genesis) and a generator that, given the chain,
yields signed blocks: order placements of every time in force with client ids and expiries, market orders,
cancels by id and client id, cancel-all, modifies, transfers, withdrawals, faucet mints, agent approvals with
agent-signed orders, and dead-man's switches. Prices stay near a mid so books cross and rest often.
"""

import random

from stf.tx import (
    AGENT_ACTION_KINDS, OraclePrice,
    ApproveAgent, Cancel, CancelAll, CancelByClientId, Faucet, MarketOrder, Modify, PlaceOrder, ScheduleCancel,
    Transfer, Withdraw,
)
from stf_helpers import BTC_USD, ETH_USD, USD, BTC, Chain, make_key

MIDS = {BTC_USD: 1_000_000, ETH_USD: 30_000}


def random_action(rng: random.Random, chain: Chain, owner_index: int):
    owner = chain.keys[owner_index].address
    market = rng.choice((BTC_USD, ETH_USD))
    mid = MIDS[market]
    account = chain.state.accounts.get(owner)
    own_orders = sorted(account.orders) if account else []
    roll = rng.random()
    if roll < 0.45:
        return PlaceOrder(
            market, rng.random() < 0.5, mid + rng.randint(-20, 20), rng.randint(1, 30), rng.choice((0, 0, 0, 1, 2, 3)),
            rng.choice((None, None, rng.randint(1, 50))), rng.choice((0, 0, 0, chain.time_ms + rng.randint(500, 5000))),
            False,
        )
    if roll < 0.52:
        return MarketOrder(market, rng.random() < 0.5, rng.randint(1, 20), mid + rng.choice((-40, 40)), None, False)
    if roll < 0.70 and own_orders:
        order = account.orders[rng.choice(own_orders)]
        return Cancel(order.market_id, order.order_id)
    if roll < 0.74:
        return CancelByClientId(market, rng.randint(1, 50))
    if roll < 0.77:
        return CancelAll(rng.choice((None, market)))
    if roll < 0.85 and own_orders:
        order = account.orders[rng.choice(own_orders)]
        return Modify(order.market_id, order.order_id, order.price + rng.randint(-3, 3), max(1, order.size_lots + rng.randint(-5, 5)))
    if roll < 0.90:
        to = chain.keys[rng.randrange(len(chain.keys))].address
        return Transfer(to, rng.choice((USD, BTC)), rng.randint(1, 10**7))
    if roll < 0.93:
        return Withdraw(rng.choice((USD, BTC)), rng.randint(1, 10**6), b"dest")
    if roll < 0.96:
        return Faucet(rng.choice((USD, BTC)), rng.randint(1, 10**8))
    if roll < 0.97:
        return ScheduleCancel(rng.choice((None, chain.time_ms + rng.randint(1500, 4000))))
    if roll < 0.98:
        return OraclePrice(tuple((m, MIDS[m] + rng.randint(-30, 30)) for m in (BTC_USD, ETH_USD)))
    return PlaceOrder(market, True, mid * 3, 10**12, 0, None, 0, False)  # unaffordable: INSUFFICIENT_BALANCE


def random_blocks(seed: int, chain: Chain, blocks: int, txs_per_block: int):
    """Yield (block txs) one block at a time; the caller applies each before asking for the next."""
    rng = random.Random(seed)
    agent = make_key(10_000)
    for _ in range(blocks):
        txs = []
        for validator in range(3):  # keys 0 to 2 feed the oracle in about half the blocks
            if rng.random() < 0.5:
                prices = tuple((m, MIDS[m] + rng.randint(-30, 30)) for m in (BTC_USD, ETH_USD))
                txs.append(chain.tx(chain.keys[validator], OraclePrice(prices)))
        for _ in range(rng.randint(0, txs_per_block)):
            who = rng.randrange(len(chain.keys))
            actions = [random_action(rng, chain, who) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.05:
                actions = [ApproveAgent(agent.address)]
            trading = [a for a in actions if a.KIND in AGENT_ACTION_KINDS]
            owner_agents = chain.state.accounts[chain.keys[0].address].agents
            if who == 0 and trading and rng.random() < 0.3 and agent.address in owner_agents:
                txs.append(chain.tx(agent, *trading, account=chain.keys[0].address))
            else:
                txs.append(chain.tx(chain.keys[who], *actions))
        yield txs


def make_flow_chain() -> Chain:
    """Keys 0 to 2 are validators (power 2, 1, 1); ETH-USD has a 20% price band around the oracle."""
    return Chain(
        accounts=6, faucet=True, max_open_orders_per_account=40, validators={0: 2, 1: 1, 2: 1},
        market_overrides={ETH_USD: {"price_band_bps": 2000}},
    )
