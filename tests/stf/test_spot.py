"""Spec vectors for spot orders: pre-state, one action, exact post-state or the exact result code.

The BTC-USD market of the minimal genesis: lot = 1,000 satoshi, price in micro-dollars per lot, tick 1,
maker -1 bps (a rebate), taker 5 bps, fees in USD to the fee account.
"""

import pytest

from invariants import check_invariants, compute_supply
from stf.errors import ResultCode as R
from stf.events import (
    REASON_CANCELLED, REASON_EXPIRED, REASON_FILLED, REASON_SELF_TRADE, REASON_UNFILLED_IOC, OrderAccepted, OrderDone,
    OrderModified, Trade,
)
from stf.state import encode_account
from stf.tx import (
    TIF_ALO, TIF_FOK, TIF_GTC, TIF_IOC, Cancel, CancelAll, CancelByClientId, MarketOrder, Modify, PlaceOrder,
)
from stf_helpers import BTC, BTC_USD, ETH_USD, FUNDED_BTC, FUNDED_USD, USD, Chain

FEE_ACCOUNT = bytes.fromhex("fee0" * 10)
P = 1_000_000  # $100,000.0 per BTC, in micro-dollars per lot


def limit(is_buy: bool, price: int, size: int, tif: int = TIF_GTC, cid: int | None = None, expires: int = 0,
          market: int = BTC_USD) -> PlaceOrder:
    return PlaceOrder(market, is_buy, price, size, tif, cid, expires, False)


def code_of(result, action_index: int = 0) -> int:
    return result.receipts[0].results[action_index].code


def kinds(result) -> list[str]:
    return [type(e).__name__ for e in result.events]


@pytest.fixture
def chain() -> Chain:
    return Chain(accounts=4)


def test_resting_sell_holds_base_and_buy_holds_quote_with_fee_bound(chain: Chain) -> None:
    seller, buyer = chain.keys[0], chain.keys[1]
    assert code_of(chain.run(seller, limit(False, P, 10))) == R.OK
    assert chain.held(seller, BTC) == 10 * 1000
    chain.run(buyer, limit(True, P - 10, 3))
    # a resting buy is a maker: the maker rate here is a rebate, so the hold is exactly the notional
    assert chain.held(buyer, USD) == 3 * (P - 10)


def test_fill_moves_exact_amounts_at_maker_price_with_fee_and_rebate(chain: Chain) -> None:
    seller, buyer = chain.keys[0], chain.keys[1]
    chain.run(seller, limit(False, P, 10))
    result = chain.run(buyer, limit(True, P + 500, 4, TIF_IOC))
    trade = next(e for e in result.events if type(e) is Trade)
    notional = P * 4
    assert trade == Trade(BTC_USD, P, 4, True, 2, 1, buyer.address, seller.address, 2000, -400)
    assert chain.balance(buyer, USD) == FUNDED_USD - notional - 2000
    assert chain.balance(buyer, BTC) == FUNDED_BTC + 4000
    assert chain.balance(seller, USD) == FUNDED_USD + notional + 400
    assert chain.balance(seller, BTC) == FUNDED_BTC - 4000
    assert chain.held(seller, BTC) == 6000
    assert chain.balance(FEE_ACCOUNT, USD) == 1600
    assert result.receipts[0].results[0] == (R.OK, 2, 4)


def test_taker_fee_rounds_up_and_rebate_rounds_down(chain: Chain) -> None:
    seller, buyer = chain.keys[0], chain.keys[1]
    chain.run(seller, limit(False, 1_999, 1))           # notional 1,999: 5 bps = 0.9995 -> 1; 1 bps = 0.1999 -> 0
    trade = next(e for e in chain.run(buyer, limit(True, 1_999, 1, TIF_IOC)).events if type(e) is Trade)
    assert (trade.taker_fee, trade.maker_fee) == (1, 0)


def test_price_time_priority_and_partial_fill_across_levels(chain: Chain) -> None:
    a, b, c, taker = chain.keys
    chain.block(chain.tx(a, limit(False, P + 1, 5)), chain.tx(b, limit(False, P, 2)), chain.tx(c, limit(False, P, 3)))
    result = chain.run(taker, limit(True, P + 1, 7, TIF_GTC))
    trades = [(e.maker_order_id, e.price, e.size_lots) for e in result.events if type(e) is Trade]
    assert trades == [(2, P, 2), (3, P, 3), (1, P + 1, 2)]
    assert chain.state.orders[1].size_lots == 3
    assert result.receipts[0].results[0].filled_lots == 7
    assert 4 not in chain.state.orders  # fully filled taker does not rest


def test_gtc_remainder_rests_and_ioc_remainder_is_cancelled(chain: Chain) -> None:
    seller, buyer = chain.keys[0], chain.keys[1]
    chain.run(seller, limit(False, P, 2))
    ioc = chain.run(buyer, limit(True, P, 5, TIF_IOC))
    assert OrderDone(2, BTC_USD, buyer.address, REASON_UNFILLED_IOC, 3) in ioc.events
    assert chain.held(buyer, USD) == 0
    chain.run(seller, limit(False, P, 2))
    gtc = chain.run(buyer, limit(True, P, 5, TIF_GTC))
    assert chain.state.orders[gtc.receipts[0].results[0].order_id].size_lots == 3


def test_market_order_stops_at_worst_price(chain: Chain) -> None:
    seller, buyer = chain.keys[0], chain.keys[1]
    chain.block(chain.tx(seller, limit(False, P, 1), limit(False, P + 100, 1), limit(False, P + 200, 1)))
    result = chain.run(buyer, MarketOrder(BTC_USD, True, 5, P + 150, None, False))
    assert [e.price for e in result.events if type(e) is Trade] == [P, P + 100]
    assert result.receipts[0].results[0].filled_lots == 2
    assert chain.state.markets[BTC_USD].book.asks.best_price() == P + 200


def test_self_trade_prevention_expires_resting_order_without_trade_or_fee(chain: Chain) -> None:
    maker, other = chain.keys[0], chain.keys[1]
    chain.block(chain.tx(maker, limit(False, P, 2)), chain.tx(other, limit(False, P, 3)))
    usd_before = chain.balance(maker, USD)
    result = chain.run(maker, limit(True, P, 3, TIF_IOC))
    assert OrderDone(1, BTC_USD, maker.address, REASON_SELF_TRADE, 2) in result.events
    trades = [e for e in result.events if type(e) is Trade]
    assert [(t.maker_order_id, t.size_lots) for t in trades] == [(2, 3)]
    assert chain.held(maker, BTC) == 0
    assert chain.balance(maker, USD) == usd_before - 3 * P - 1500


def test_post_only_rests_when_it_does_not_cross(chain: Chain) -> None:
    chain.run(chain.keys[0], limit(False, P, 1))
    assert code_of(chain.run(chain.keys[1], limit(True, P - 1, 1, TIF_ALO))) == R.OK


def test_invalid_post_only_that_would_cross(chain: Chain) -> None:
    chain.run(chain.keys[0], limit(False, P, 1))
    before = encode_account(chain.state.accounts[chain.keys[1].address])
    result = chain.run(chain.keys[1], limit(True, P, 1, TIF_ALO))
    assert code_of(result) == R.POST_ONLY_WOULD_CROSS
    assert result.events == []
    assert encode_account(chain.state.accounts[chain.keys[1].address]) == before


def test_fok_fills_completely_or_not_at_all(chain: Chain) -> None:
    chain.run(chain.keys[0], limit(False, P, 3))
    assert code_of(chain.run(chain.keys[1], limit(True, P, 3, TIF_FOK))) == R.OK
    assert chain.state.markets[BTC_USD].book.asks.best_price() is None


def test_invalid_fok_not_filled_counts_only_other_accounts(chain: Chain) -> None:
    chain.block(chain.tx(chain.keys[0], limit(False, P, 2)), chain.tx(chain.keys[1], limit(False, P, 2)))
    result = chain.run(chain.keys[1], limit(True, P, 3, TIF_FOK))
    assert code_of(result) == R.FOK_NOT_FILLED
    assert result.events == [] and len(chain.state.orders) == 2


@pytest.mark.parametrize("action, expected", [
    (limit(True, P, 1, market=9), R.UNKNOWN_MARKET),
    (PlaceOrder(BTC_USD, True, P, 1, TIF_GTC, None, 0, True), R.REDUCE_ONLY_UNSUPPORTED),
    (limit(True, P, 10**9), R.INSUFFICIENT_BALANCE),
    (limit(False, P, FUNDED_BTC // 1000 + 1), R.INSUFFICIENT_BALANCE),
    (MarketOrder(BTC_USD, True, 10**9, P, None, False), R.INSUFFICIENT_BALANCE),
])
def test_invalid_order_parameters(chain: Chain, action, expected) -> None:
    result = chain.run(chain.keys[0], action)
    assert code_of(result) == expected
    assert result.events == [] and chain.state.orders == {}


def test_invalid_price_off_tick() -> None:
    chain = Chain(accounts=1)
    market = chain.state.markets[BTC_USD]
    market.params = type(market.params)(**{**_fields(market.params), "tick_size": 10})
    assert code_of(chain.run(chain.keys[0], limit(True, P + 5, 1))) == R.INVALID_PRICE


def test_invalid_size_below_minimum() -> None:
    chain = Chain(accounts=1)
    market = chain.state.markets[BTC_USD]
    market.params = type(market.params)(**{**_fields(market.params), "min_size_lots": 5})
    assert code_of(chain.run(chain.keys[0], limit(True, P, 4))) == R.BELOW_MIN_SIZE


def test_invalid_order_on_halted_market(chain: Chain) -> None:
    chain.state.markets[BTC_USD].halted = True
    assert code_of(chain.run(chain.keys[0], limit(True, P, 1))) == R.MARKET_HALTED


def test_invalid_duplicate_client_id_among_open_orders_in_any_market(chain: Chain) -> None:
    key = chain.keys[0]
    chain.run(key, limit(True, P, 1, cid=42))
    assert code_of(chain.run(key, limit(True, 30_000, 1, cid=42, market=ETH_USD))) == R.DUPLICATE_CLIENT_ID
    chain.run(key, CancelByClientId(BTC_USD, 42))
    assert code_of(chain.run(key, limit(True, P, 1, cid=42))) == R.OK


def test_invalid_too_many_open_orders() -> None:
    chain = Chain(accounts=1, max_open_orders_per_account=2)
    key = chain.keys[0]
    chain.block(chain.tx(key, limit(True, P, 1), limit(True, P - 1, 1)))
    assert code_of(chain.run(key, limit(True, P - 2, 1))) == R.TOO_MANY_OPEN_ORDERS
    assert code_of(chain.run(key, limit(True, P - 2, 1, TIF_IOC))) == R.OK  # never rests, so allowed


def test_invalid_expiry_in_the_past(chain: Chain) -> None:
    assert code_of(chain.run(chain.keys[0], limit(True, P, 1, expires=chain.time_ms))) == R.INVALID_EXPIRY


def test_good_til_time_order_expires_at_first_block_at_or_after_expiry(chain: Chain) -> None:
    key = chain.keys[0]
    chain.run(key, limit(True, P, 2, expires=chain.time_ms + 2500))   # placed in the block at +1000 ms
    assert chain.held(key, USD) == 2 * P
    assert chain.block().events == []                        # block at +2000 ms: not yet
    result = chain.block()                                    # block at +3000 ms: expired
    assert result.events == [OrderDone(1, BTC_USD, key.address, REASON_EXPIRED, 2)]
    assert chain.held(key, USD) == 0 and chain.state.orders == {}


def test_cancel_by_id_and_by_client_id_release_holds_exactly(chain: Chain) -> None:
    key = chain.keys[0]
    chain.run(key, limit(True, P, 2), limit(False, P + 10, 3, cid=5))
    r1 = chain.run(key, Cancel(BTC_USD, 1))
    assert r1.events == [OrderDone(1, BTC_USD, key.address, REASON_CANCELLED, 2)] and chain.held(key, USD) == 0
    r2 = chain.run(key, CancelByClientId(BTC_USD, 5))
    assert code_of(r2) == R.OK and chain.held(key, BTC) == 0


@pytest.mark.parametrize("action", [Cancel(BTC_USD, 1), CancelByClientId(BTC_USD, 5), Modify(BTC_USD, 1, P, 1)])
def test_invalid_cancel_or_modify_of_another_accounts_order(chain: Chain, action) -> None:
    chain.run(chain.keys[0], limit(True, P, 2, cid=5))
    result = chain.run(chain.keys[1], action)
    assert code_of(result) == R.UNKNOWN_ORDER and result.events == []


@pytest.mark.parametrize("action", [Cancel(ETH_USD, 1), CancelByClientId(ETH_USD, 5), Cancel(BTC_USD, 99)])
def test_invalid_cancel_wrong_market_or_unknown_id(chain: Chain, action) -> None:
    chain.run(chain.keys[0], limit(True, P, 2, cid=5))
    assert code_of(chain.run(chain.keys[0], action)) == R.UNKNOWN_ORDER


def test_cancel_all_in_one_market_and_in_all(chain: Chain) -> None:
    key = chain.keys[0]
    chain.run(key, limit(True, P, 1), limit(True, 30_000, 1, market=ETH_USD), limit(True, P - 1, 1))
    one = chain.run(key, CancelAll(BTC_USD))
    assert [e.order_id for e in one.events] == [1, 3]
    rest = chain.run(key, CancelAll(None))
    assert [e.order_id for e in rest.events] == [2]
    assert chain.held(key, USD) == 0


def test_invalid_cancel_all_unknown_market(chain: Chain) -> None:
    assert code_of(chain.run(chain.keys[0], CancelAll(7))) == R.UNKNOWN_MARKET


def test_modify_size_decrease_keeps_priority(chain: Chain) -> None:
    a, b, taker = chain.keys[0], chain.keys[1], chain.keys[2]
    chain.block(chain.tx(a, limit(False, P, 5)), chain.tx(b, limit(False, P, 5)))
    result = chain.run(a, Modify(BTC_USD, 1, P, 2))
    assert result.events == [OrderModified(1, BTC_USD, a.address, P, 2, True)]
    assert chain.held(a, BTC) == 2000
    fills = [e.maker_order_id for e in chain.run(taker, limit(True, P, 1, TIF_IOC)).events if type(e) is Trade]
    assert fills == [1]


@pytest.mark.parametrize("new_price, new_size", [(P, 6), (P + 1, 5)])
def test_modify_size_increase_or_price_change_loses_priority_keeps_id(chain: Chain, new_price, new_size) -> None:
    a, b, taker = chain.keys[0], chain.keys[1], chain.keys[2]
    chain.block(chain.tx(a, limit(False, P, 5)), chain.tx(b, limit(False, P, 5)))
    assert code_of(chain.run(a, Modify(BTC_USD, 1, new_price, new_size))) == R.OK
    assert chain.state.orders[1].seq > chain.state.orders[2].seq
    assert chain.held(a, BTC) == new_size * 1000
    fills = [e.maker_order_id for e in chain.run(taker, limit(True, P + 1, 1, TIF_IOC)).events if type(e) is Trade]
    assert fills == [2]


def test_modify_to_a_crossing_price_trades(chain: Chain) -> None:
    a, b = chain.keys[0], chain.keys[1]
    chain.block(chain.tx(a, limit(False, P, 5)), chain.tx(b, limit(True, P - 10, 2)))
    result = chain.run(b, Modify(BTC_USD, 2, P, 2))
    assert [type(e).__name__ for e in result.events] == ["OrderModified", "OrderAccepted", "Trade", "OrderDone"]
    assert result.events[-1] == OrderDone(2, BTC_USD, b.address, REASON_FILLED, 0)


def test_invalid_modify_needing_more_funds_than_available_leaves_order(chain: Chain) -> None:
    key = chain.keys[0]
    chain.run(key, limit(False, P, FUNDED_BTC // 1000))
    result = chain.run(key, Modify(BTC_USD, 1, P, FUNDED_BTC // 1000 + 1))
    assert code_of(result) == R.INSUFFICIENT_BALANCE and result.events == []
    assert chain.state.orders[1].size_lots == FUNDED_BTC // 1000


def test_invalid_modify_off_tick() -> None:
    chain = Chain(accounts=1)
    market = chain.state.markets[BTC_USD]
    market.params = type(market.params)(**{**_fields(market.params), "tick_size": 10})
    chain.run(chain.keys[0], limit(True, P, 1))
    assert code_of(chain.run(chain.keys[0], Modify(BTC_USD, 1, P + 3, 1))) == R.INVALID_PRICE


def test_many_actions_in_one_transaction_each_with_its_own_result(chain: Chain) -> None:
    key = chain.keys[0]
    result = chain.run(key, limit(True, P, 1), Cancel(BTC_USD, 99), limit(True, P, 1, TIF_ALO), Cancel(BTC_USD, 1))
    assert [r.code for r in result.receipts[0].results] == [R.OK, R.UNKNOWN_ORDER, R.OK, R.OK]
    assert sorted(chain.state.orders) == [2]


def test_makers_run_before_takers_within_a_block(chain: Chain) -> None:
    maker, taker = chain.keys[0], chain.keys[1]
    result = chain.block(chain.tx(taker, limit(True, P, 1, TIF_IOC)), chain.tx(maker, limit(False, P, 1, TIF_ALO)))
    assert kinds(result) == ["OrderAccepted", "OrderAccepted", "Trade", "OrderDone", "OrderDone"]
    assert [r.results[0].filled_lots for r in result.receipts] == [1, 0]


def test_invariants_hold_through_a_busy_block(chain: Chain) -> None:
    supply = compute_supply(chain.state)
    a, b, c, d = chain.keys
    chain.block(
        chain.tx(a, *[limit(False, P + i, 3) for i in range(5)]),
        chain.tx(b, *[limit(True, P - 1 - i, 3) for i in range(5)]),
        chain.tx(c, limit(True, P + 3, 10, TIF_IOC), limit(False, P - 2, 4, TIF_IOC)),
        chain.tx(d, MarketOrder(BTC_USD, True, 100, P + 100, None, False)),
    )
    check_invariants(chain.state, supply)


def _fields(params) -> dict:
    return {name: getattr(params, name) for name in params.__slots__}
