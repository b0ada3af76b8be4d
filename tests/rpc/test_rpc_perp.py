"""Perpetual content of the API through the router over a real chain: `markets` perp fields, the `account`
perp summary (collateral, margin, positions with unrealized PnL and liquidation price, triggers), and
`funding_history`, market-wide and per account."""

import asyncio
import json
from typing import Any

from genesis import perp_genesis, validate_genesis
from rpc.jsonrpc import CallContext
from rpc.methods import make_router
from rpc.views import InMemoryChainView
from stf.block import apply_block, make_block
from stf.crypto import PrivateKey
from stf.state import initialize_state
from stf.tx import CollateralTransfer, MarketOrder, OraclePrice, PlaceOrder, PlaceTrigger, SetLeverage, sign_transaction

BTC_PERP = 10
UNIT = 100_000 * 10**6  # the BTC-PERP preset with one lot = 1 BTC: 100,000 USD in micro-dollars
OVERRIDES = {"tick_size": 10_000, "lot_size": 100_000_000, "margin_tiers": [[0, 40]], "maker_fee_bps": 0,
             "taker_fee_bps": 0, "impact_notional": 1_000 * 10**6, "oracle_max_age_ms": 3_600_000}


class PerpRpcChain:
    def __init__(self) -> None:
        self.keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(4)]
        doc = perp_genesis(balances=[(k.address.hex(), 0, 10**12) for k in self.keys],
                           validators=[(self.keys[0].address.hex(), 1)])
        doc["perp_markets"][0].update(OVERRIDES)
        self.genesis = validate_genesis(doc)
        self.state = initialize_state(self.genesis)
        self.view = InMemoryChainView(self.state)
        self.router = make_router(self.view)
        self.time_ms = self.genesis.genesis_time_ms
        self.nonce = self.time_ms
        self.price = UNIT

    def tx(self, key: PrivateKey, *actions: Any) -> bytes:
        self.nonce += 1
        return sign_transaction(key, self.state.params.chain_id, self.nonce, list(actions))

    def block(self, *txs: bytes, advance_ms: int = 1000) -> None:
        self.time_ms += advance_ms
        self.nonce = max(self.nonce, self.time_ms)
        oracle = self.tx(self.keys[0], OraclePrice(((BTC_PERP, self.price), (11, 4_000_000))))
        block = make_block(self.state, self.time_ms, [*txs, oracle])
        self.view.add_block(block, apply_block(self.state, block))

    def result(self, method: str, params: Any) -> Any:
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        response = json.loads(asyncio.run(self.router.handle(json.dumps(request), CallContext(self.view))))
        assert "result" in response, response
        return response["result"]


def make_positions() -> PerpRpcChain:
    """Key 1: 1 BTC long at 100,000 in isolated margin at 10x; key 2 the short, cross at the default 10x."""
    chain = PerpRpcChain()
    long_key, short_key = chain.keys[1], chain.keys[2]
    chain.block(*(chain.tx(k, CollateralTransfer(50_000 * 10**6, True)) for k in chain.keys[1:]),
                chain.tx(long_key, SetLeverage(BTC_PERP, 10, False)))
    chain.block(chain.tx(short_key, PlaceOrder(BTC_PERP, False, UNIT, 1, 0, None, 0, False)),
                chain.tx(long_key, MarketOrder(BTC_PERP, True, 1, UNIT, None, False)))
    return chain


def test_account_shows_positions_margin_and_the_worked_liquidation_price() -> None:
    chain = make_positions()
    chain.block(chain.tx(chain.keys[1], PlaceTrigger(BTC_PERP, False, 0, 95_000 * 10**6, False, 0, True)))
    perp = chain.result("account", [chain.keys[1].address.hex()])["perp"]
    position, = perp["positions"]
    assert position == {
        "market": BTC_PERP, "size_lots": "1", "cost": str(UNIT), "entry_price": str(UNIT), "mark_price": str(UNIT),
        "notional": str(UNIT), "unrealized_pnl": "0", "is_cross": False, "leverage": 10,
        "margin": str(10_000 * 10**6), "maintenance_margin": str(1_250 * 10**6), "funding_index": "0",
        "realized_pnl": "0", "liquidation_price": "91139240000",
    }
    assert perp["collateral"] == str(40_000 * 10**6) and perp["leverage"] == [
        {"market": BTC_PERP, "leverage": 10, "margin_mode": "isolated"}]
    trigger, = perp["triggers"]
    assert (trigger["kind"], trigger["size_lots"], trigger["reduce_only"]) == ("stop", "0", True)
    short = chain.result("account", [chain.keys[2].address.hex()])["perp"]
    assert short["positions"][0]["size_lots"] == "-1" and short["initial_margin"] == str(10_000 * 10**6)
    chain.price = 98_000 * 10**6
    chain.block()
    short = chain.result("account", [chain.keys[2].address.hex()])["perp"]
    assert short["positions"][0]["unrealized_pnl"] == str(2_000 * 10**6)
    assert int(short["equity"]) == 52_000 * 10**6 and int(short["withdrawable"]) > 0


def test_markets_carry_the_perp_state() -> None:
    chain = make_positions()
    market, = [m for m in chain.result("markets", [])["markets"] if m["market"] == BTC_PERP]
    assert market["kind"] == "perp" and market["base_asset"] is None
    perp = market["perp"]
    assert (perp["mark_price"], perp["open_interest_lots"], perp["margin_tiers"]) == (str(UNIT), "1", [["0", 40]])


def test_funding_history_market_wide_and_per_account() -> None:
    chain = make_positions()
    chain.block(chain.tx(chain.keys[3], PlaceOrder(BTC_PERP, True, 101_000 * 10**6, 1, 0, None, 0, False)))
    for _ in range(12):
        chain.block(advance_ms=600_000)
    history = chain.result("funding_history", {"market": "BTC-PERP"})["funding"]
    assert len(history) == 2 and history[0]["rate"] == "1187500"      # newest first: a full hour at 0.01
    paid = chain.result("funding_history", {"market": BTC_PERP, "address": chain.keys[1].address.hex()})["funding"]
    assert paid[0]["amount"] == "118750000" and paid[0]["size_lots"] == "1"
    received = chain.result("funding_history", {"market": BTC_PERP, "address": chain.keys[2].address.hex(),
                                                "limit": 1})["funding"]
    assert received == [{**paid[0], "size_lots": "-1", "amount": "-118750000"}]
