"""Spec vectors for perpetual markets in the STF: the worked examples of the issue (liquidation prices, funding
rates and payments) through real blocks, the margin rules, every rejection path, triggers, governance, and each
liquidation stage (book in chunks, backstop, auto-deleveraging)."""

import pytest

from stf.errors import ResultCode as R
from stf.events import (
    LIQUIDATION_ADL, LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK, REASON_MARGIN, AdlEvent, FundingEvent, FundingPayment,
    GovernanceEvent, LiquidationEvent, OrderDone, OrderModified, Trade, TriggerEvent,
)
from stf.perp_math import compute_liquidation_price
from stf.tx import (
    Cancel, CancelTrigger, CollateralTransfer, Govern, IsolatedMargin, MarketOrder, PlaceOrder, PlaceTrigger,
    SetLeverage, Withdraw,
)

from perp_helpers import BTC_PERP, BTC_PRICE, ETH_PERP, INSURANCE, PerpChain
from stf_helpers import BTC_USD, FUNDED_USD, USD

USD1 = 10**6
UNIT = 100_000 * USD1  # the worked examples' market: 1 lot = 1 BTC, price 100,000 USD in micro-dollars
UNIT_MARKET = {"tick_size": 10_000, "lot_size": 100_000_000, "margin_tiers": [[0, 40]], "maker_fee_bps": 0,
               "taker_fee_bps": 0, "impact_notional": 1_000 * USD1, "oracle_max_age_ms": 3_600_000}


def events_of(result, kind) -> list:
    return [e for e in result.events if type(e) is kind]


def unit_chain(**kwargs) -> PerpChain:
    chain = PerpChain(perp_overrides={BTC_PERP: UNIT_MARKET}, **kwargs)
    chain.oracle[BTC_PERP] = UNIT
    chain.deposit(*chain.keys[1:])
    return chain


def isolated_position(chain: PerpChain, is_long: bool) -> None:
    """Key 1 holds 1 lot at 100,000 USD in isolated margin of 10,000 USD (10x); key 2 the other side, cross."""
    long_key, short_key = (chain.keys[1], chain.keys[2]) if is_long else (chain.keys[2], chain.keys[1])
    assert chain.codes(chain.run(chain.keys[1], SetLeverage(BTC_PERP, 10, False))) == [R.OK]
    chain.open_position(long_key, short_key, 1, UNIT)
    position = chain.position(chain.keys[1])
    assert (position.size_lots, position.margin, position.is_cross) == ((1 if is_long else -1), 10_000 * USD1, False)


# --- worked examples -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("is_long, safe, liquidated", [
    (True, 91_139_250_000, 91_139_240_000),     # long: liquidation price 91,139.24
    (False, 108_641_970_000, 108_641_980_000),  # short: 108,641.98
])
def test_worked_example_liquidation_price_through_blocks(is_long, safe, liquidated) -> None:
    chain = unit_chain()
    isolated_position(chain, is_long)
    position = chain.position(chain.keys[1])
    entry = position.cost // position.size_lots
    assert compute_liquidation_price(((0, 40),), position.size_lots, entry, position.margin, 10_000) == liquidated
    result = chain.block(chain.oracle_tx(btc=safe))
    assert chain.state.markets[BTC_PERP].mark_price == safe
    assert events_of(result, LiquidationEvent) == []
    result = chain.block(chain.oracle_tx(btc=liquidated))
    stages = events_of(result, LiquidationEvent)
    assert {(e.account, e.market) for e in stages} == {(chain.keys[1].address, BTC_PERP)}
    assert stages[0].equity < stages[0].maintenance and chain.size(chain.keys[1]) == 0


@pytest.mark.parametrize("premium_bid, hourly_rate", [
    (101_000 * USD1, 1_187_500),   # average premium 0.01: F = 0.0095, hourly 0.0011875
    (100_030 * USD1, 12_500),      # premium 0.0003: F = 0.0001, hourly 0.0000125
    (150_000 * USD1, 40_000_000),  # premium 0.5: capped at 0.04 per hour
])
def test_worked_example_funding_rates_and_payments_through_blocks(premium_bid, hourly_rate) -> None:
    chain = unit_chain()
    chain.open_position(chain.keys[1], chain.keys[2], 1, UNIT)
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, premium_bid, 1, 0, None, 0, False))
    funding = []
    for _ in range(12):  # two hours, one block every 10 minutes: the second hour is all at this premium
        funding.append(chain.block(advance_ms=600_000))
    second = [r for r in funding if events_of(r, FundingEvent)][-1]
    event, = [e for e in events_of(second, FundingEvent) if e.market == BTC_PERP]
    assert (event.rate, event.oracle_price) == (hourly_rate, UNIT)  # a one-hour interval
    payments = {p.account: p.amount for p in events_of(second, FundingPayment) if p.market == BTC_PERP}
    owed = UNIT * hourly_rate // 10**9   # size x oracle x rate: 118.75 USD at 0.0011875
    assert payments[chain.keys[1].address] == owed and payments[chain.keys[2].address] == -owed


def test_funding_moves_no_value_beyond_the_insurance_funds_dust() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 3, BTC_PRICE)
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE + 100_000, 5000, 0, None, 0, False))
    before = sum(chain.collateral(k) for k in chain.keys) + chain.collateral(INSURANCE)
    results = [chain.block(advance_ms=1_200_000) for _ in range(7)]
    paid = [p.amount for r in results for p in events_of(r, FundingPayment)]
    assert paid and sum(paid) >= 0
    assert sum(chain.collateral(k) for k in chain.keys) + chain.collateral(INSURANCE) == before


# --- margin --------------------------------------------------------------------------------------------------

def test_initial_margin_counts_open_orders() -> None:
    chain = PerpChain()
    chain.block(chain.tx(chain.keys[1], CollateralTransfer(1_000 * USD1, True)))
    # 10x default leverage: $1,000 backs $10,000 of orders, fees included; each lot is $10 at the oracle.
    first = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 600, 0, None, 0, False))
    second = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 500, 0, None, 0, False))
    third = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 390, 0, None, 0, False))
    assert (chain.codes(first)[0], chain.codes(second)[0], chain.codes(third)[0]) == (R.OK, R.INSUFFICIENT_MARGIN, R.OK)
    assert chain.state.accounts[chain.keys[1].address].order_margin <= 1_000 * USD1


def test_closing_order_needs_no_margin_and_reduce_only_never_grows() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 10, BTC_PRICE)
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE, 100, 0, None, 0, False))
    result = chain.run(chain.keys[1], MarketOrder(BTC_PERP, False, 50, BTC_PRICE, None, True))
    assert chain.codes(result)[0] == R.OK and result.receipts[0].results[0].filled_lots == 10   # cut to the position
    assert chain.size(chain.keys[1]) == 0
    result = chain.run(chain.keys[1], MarketOrder(BTC_PERP, False, 5, BTC_PRICE, None, True))
    assert chain.codes(result)[0] == R.REDUCE_ONLY_WOULD_INCREASE


def test_realized_pnl_accumulates_over_partial_closes_and_sums_exactly() -> None:
    """A 3-lot long bought at 10,000,001 (entry not a whole number of atoms after averaging with a second
    price) closed in three fills: each realized part rounds down, the remaining cost carries the rest, and
    the parts sum to exactly size x (exit - average entry)."""
    chain = PerpChain(perp_overrides={BTC_PERP: {"maker_fee_bps": 0, "taker_fee_bps": 0}})
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 2, BTC_PRICE)
    chain.open_position(chain.keys[1], chain.keys[2], 1, BTC_PRICE + 100)
    assert chain.position(chain.keys[1]).cost == 3 * BTC_PRICE + 100
    exit_price = BTC_PRICE + 1_000
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, exit_price, 3, 0, None, 0, False))
    realized = []
    for _ in range(2):
        chain.run(chain.keys[1], MarketOrder(BTC_PERP, False, 1, exit_price, None, True))
        realized.append(chain.position(chain.keys[1]).realized_pnl)
    assert realized[0] == 1_000 - 34 and realized[1] == 2 * 1_000 - 67   # ceil(100 / 3) = 34 of the cost first
    before = chain.collateral(chain.keys[1])
    chain.run(chain.keys[1], MarketOrder(BTC_PERP, False, 1, exit_price, None, True))
    assert chain.position(chain.keys[1]) is None
    assert chain.collateral(chain.keys[1]) - before == 1_000 - 33              # the last lot takes what is left
    assert realized[1] + 1_000 - 33 == 3 * exit_price - (3 * BTC_PRICE + 100)  # exact in total


def test_invalid_reduce_only_without_a_position() -> None:
    chain = PerpChain()
    chain.deposit(chain.keys[1])
    result = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 1, 0, None, 0, True))
    assert chain.codes(result)[0] == R.REDUCE_ONLY_WOULD_INCREASE


def test_resting_reduce_only_order_shrinks_to_the_position_when_it_fills() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 10, BTC_PRICE)
    chain.run(chain.keys[1], PlaceOrder(BTC_PERP, False, BTC_PRICE + 100, 6, 0, None, 0, True))
    chain.run(chain.keys[1], PlaceOrder(BTC_PERP, False, BTC_PRICE + 200, 6, 0, None, 0, True))
    chain.run(chain.keys[1], PlaceOrder(BTC_PERP, False, BTC_PRICE + 300, 6, 0, None, 0, True))
    result = chain.run(chain.keys[3], MarketOrder(BTC_PERP, True, 20, BTC_PRICE + 1000, None, False))
    assert [t.size_lots for t in events_of(result, Trade)] == [6, 4]
    shrunk, = events_of(result, OrderModified)      # the second order: only 4 lots left to reduce
    assert (shrunk.size_lots, shrunk.kept_priority) == (4, True)
    dropped = [e for e in events_of(result, OrderDone) if e.owner == chain.keys[1].address and e.reason == 7]
    assert len(dropped) == 1                         # the third: nothing left to reduce
    assert chain.size(chain.keys[1]) == 0 and chain.size(chain.keys[3]) == 10


def test_maker_without_margin_at_fill_time_is_dropped() -> None:
    chain = PerpChain()
    chain.deposit(chain.keys[2], chain.keys[3])
    chain.block(chain.tx(chain.keys[1], CollateralTransfer(130 * USD1, True)))
    chain.run(chain.keys[1], SetLeverage(BTC_PERP, 50, True))
    chain.open_position(chain.keys[1], chain.keys[2], 400, BTC_PRICE)       # $4,000 at 50x on $130
    placed = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE - 20_000, 100, 0, None, 0, False))
    assert chain.codes(placed) == [R.OK]
    # The mark falls 1.5 %: the account keeps maintenance (1 %) but no longer has initial margin for more.
    chain.block(chain.oracle_tx(btc=BTC_PRICE - 150_000))
    assert chain.summary(chain.keys[1])[0] >= chain.summary(chain.keys[1])[2]
    result = chain.run(chain.keys[3], MarketOrder(BTC_PERP, False, 100, BTC_PRICE - 300_000, None, False))
    done, = [e for e in events_of(result, OrderDone) if e.owner == chain.keys[1].address]
    assert done.reason == REASON_MARGIN and events_of(result, Trade) == []


def test_invalid_withdrawal_below_ten_percent_of_notional() -> None:
    chain = PerpChain()
    chain.deposit(chain.keys[2])
    chain.block(chain.tx(chain.keys[1], CollateralTransfer(1_000 * USD1, True)))
    chain.open_position(chain.keys[1], chain.keys[2], 500, BTC_PRICE)        # $5,000 notional at 10x
    too_much = chain.run(chain.keys[1], CollateralTransfer(600 * USD1, False))
    assert chain.codes(too_much) == [R.INSUFFICIENT_MARGIN]                        # would leave < $500 = 10 %
    fine = chain.run(chain.keys[1], CollateralTransfer(400 * USD1, False))
    assert chain.codes(fine) == [R.OK] and chain.balance(chain.keys[1], USD) == FUNDED_USD - 600 * USD1


def test_collateral_transfer_moves_spot_balance_and_refuses_more_than_available() -> None:
    chain = PerpChain()
    result = chain.run(chain.keys[1], CollateralTransfer(FUNDED_USD + 1, True))
    assert chain.codes(result) == [R.INSUFFICIENT_BALANCE]
    chain.run(chain.keys[1], CollateralTransfer(5 * USD1, True))
    assert (chain.collateral(chain.keys[1]), chain.balance(chain.keys[1], USD)) == (5 * USD1, FUNDED_USD - 5 * USD1)
    assert chain.codes(chain.run(chain.keys[1], Withdraw(USD, FUNDED_USD, b"x"))) == [R.INSUFFICIENT_BALANCE]


# --- leverage and isolated margin ----------------------------------------------------------------------------

def test_invalid_set_leverage_paths() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    assert chain.codes(chain.run(chain.keys[1], SetLeverage(BTC_PERP, 51, True))) == [R.LEVERAGE_TOO_HIGH]
    assert chain.codes(chain.run(chain.keys[1], SetLeverage(BTC_USD, 5, True))) == [R.NOT_A_PERP_MARKET]
    assert chain.codes(chain.run(chain.keys[1], SetLeverage(99, 5, True))) == [R.UNKNOWN_MARKET]
    chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE - 1000, 1, 0, None, 0, False))
    assert chain.codes(chain.run(chain.keys[1], SetLeverage(BTC_PERP, 5, True))) == [R.OPEN_ORDERS_IN_MARKET]
    chain.open_position(chain.keys[2], chain.keys[3], 5, BTC_PRICE)
    assert chain.codes(chain.run(chain.keys[2], SetLeverage(BTC_PERP, 5, False))) == [R.POSITION_OPEN]
    assert chain.codes(chain.run(chain.keys[2], SetLeverage(BTC_PERP, 20, True))) == [R.OK]


def test_isolated_margin_add_remove_and_its_limits() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    assert chain.codes(chain.run(chain.keys[1], IsolatedMargin(BTC_PERP, 1, True))) == [R.NO_POSITION]
    chain.run(chain.keys[1], SetLeverage(BTC_PERP, 10, False))
    chain.open_position(chain.keys[1], chain.keys[2], 100, BTC_PRICE)       # $1,000 at 10x: $100 margin
    assert chain.position(chain.keys[1]).margin == 100 * USD1
    assert chain.codes(chain.run(chain.keys[1], IsolatedMargin(BTC_PERP, 50 * USD1, True))) == [R.OK]
    assert chain.position(chain.keys[1]).margin == 150 * USD1
    assert chain.codes(chain.run(chain.keys[1], IsolatedMargin(BTC_PERP, 60 * USD1, False))) == [R.INSUFFICIENT_MARGIN]
    assert chain.codes(chain.run(chain.keys[1], IsolatedMargin(BTC_PERP, 50 * USD1, False))) == [R.OK]


def test_order_beyond_the_tier_of_its_leverage_is_refused() -> None:
    chain = PerpChain(perp_overrides={BTC_PERP: {"margin_tiers": [[0, 50], [10_000 * USD1, 5]]}})
    chain.deposit(chain.keys[1])
    chain.run(chain.keys[1], SetLeverage(BTC_PERP, 50, True))
    small = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 999, 0, None, 0, False))
    large = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 1_000, 0, None, 0, False))
    assert (chain.codes(small)[0], chain.codes(large)[0]) == (R.OK, R.LEVERAGE_TOO_HIGH)


def test_invalid_open_interest_cap() -> None:
    chain = PerpChain(perp_overrides={BTC_PERP: {"max_open_interest_lots": 10}})
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 10, BTC_PRICE)
    result = chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE, 1, 0, None, 0, False))
    assert chain.codes(result)[0] == R.OPEN_INTEREST_CAP
    closing = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, False, BTC_PRICE, 5, 0, None, 0, False))
    assert chain.codes(closing)[0] == R.OK


# --- oracle and guardrails -----------------------------------------------------------------------------------

def test_stale_oracle_allows_reduce_only_orders_only() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 10, BTC_PRICE)
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE, 10, 0, None, 0, False))
    chain.block(oracle=False, advance_ms=61_000)
    opening = chain.block(chain.tx(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE, 1, 0, None, 0, False)),
                          oracle=False)
    closing = chain.block(chain.tx(chain.keys[2], MarketOrder(BTC_PERP, True, 10, BTC_PRICE, None, True)),
                          oracle=False)
    assert (chain.codes(opening)[0], chain.codes(closing)[0]) == (R.ORACLE_STALE, R.OK)


def test_invalid_order_outside_the_price_band() -> None:
    chain = PerpChain(perp_overrides={BTC_PERP: {"price_band_bps": 500}})
    chain.deposit(chain.keys[1])
    out = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE * 106 // 100, 1, 0, None, 0, False))
    inside = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE * 104 // 100, 1, 0, None, 0, False))
    assert (chain.codes(out)[0], chain.codes(inside)[0]) == (R.PRICE_OUT_OF_BAND, R.OK)


def test_governance_halts_and_resumes_a_market_at_the_threshold() -> None:
    chain = PerpChain(governance=([1, 2, 3], 2))
    chain.deposit(chain.keys[1])
    halt = Govern((1, 7, BTC_PERP))
    first = chain.run(chain.keys[1], halt)
    assert chain.codes(first) == [R.OK] and not chain.state.markets[BTC_PERP].halted
    assert chain.codes(chain.run(chain.keys[1], halt)) == [R.INVALID_PROPOSAL]     # the same governor twice
    second = chain.run(chain.keys[2], halt)
    assert events_of(second, GovernanceEvent)[0].executed and chain.state.markets[BTC_PERP].halted
    order = chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 1, 0, None, 0, False))
    assert chain.codes(order)[0] == R.MARKET_HALTED
    chain.run(chain.keys[2], Govern((2, 8, BTC_PERP)))
    chain.run(chain.keys[3], Govern((2, 8, BTC_PERP)))
    assert not chain.state.markets[BTC_PERP].halted


def test_governance_halt_all_and_parameter_change() -> None:
    chain = PerpChain(governance=([1], 1))
    chain.deposit(chain.keys[2])
    chain.run(chain.keys[1], Govern((3, 1)))
    assert chain.codes(chain.run(chain.keys[2], PlaceOrder(BTC_USD, True, 1000, 1, 0, None, 0, False)))[0] == R.MARKET_HALTED
    chain.run(chain.keys[1], Govern((4, 2)))
    change = Govern((5, 3, BTC_PERP, ((b"maker_fee_bps", 0), (b"taker_fee_bps", 9))))
    assert chain.codes(chain.run(chain.keys[1], change)) == [R.OK]
    assert chain.state.markets[BTC_PERP].params.taker_fee_bps == 9


@pytest.mark.parametrize("operation", [
    (1, 1, 99),                                              # unknown market
    (5, 1, BTC_PERP, ((b"taker_fee_bps", 10**6),)),           # out of range
    (5, 1, BTC_PERP, ((b"symbol", b"X"),)),                  # not settable
    (5, 1, BTC_PERP, ((b"taker_fee_bps", 9), (b"maker_fee_bps", 0))),   # not sorted
    (5, 1, BTC_PERP, ((b"margin_tiers", ((5, 10),)),),)[:4],  # first tier not at 0
    (9, 1),                                                  # unknown operation
])
def test_invalid_governance_proposal(operation) -> None:
    chain = PerpChain(governance=([1], 1))
    markets = {m: chain.state.markets[m].params for m in chain.state.markets}
    result = chain.block(chain.tx(chain.keys[1], Govern(operation)), oracle=False)
    assert chain.codes(result) == [R.INVALID_PROPOSAL]
    assert chain.state.proposals == {} and not chain.state.halted and events_of(result, GovernanceEvent) == []
    assert {m: chain.state.markets[m].params for m in chain.state.markets} == markets


def test_invalid_governance_from_a_non_governor() -> None:
    chain = PerpChain(governance=([1], 1))
    assert chain.codes(chain.run(chain.keys[2], Govern((3, 1)))) == [R.NOT_A_GOVERNOR]
    assert not chain.state.halted


def test_governance_adds_a_perp_market() -> None:
    chain = PerpChain(governance=([1], 1))
    fields = list(chain.state.markets[ETH_PERP].params.to_fields())
    fields[0], fields[1] = 12, b"SOL-PERP"
    assert chain.codes(chain.run(chain.keys[1], Govern((7, 1, tuple(fields))))) == [R.OK]
    assert chain.state.markets[12].is_perp and chain.state.markets[12].params.symbol == "SOL-PERP"


# --- triggers ------------------------------------------------------------------------------------------------

def test_stop_and_take_profit_fire_in_trigger_id_order_when_the_mark_crosses() -> None:
    chain = PerpChain()
    chain.deposit(*chain.keys[1:])
    chain.open_position(chain.keys[1], chain.keys[2], 10, BTC_PRICE)
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE - 300_000, 100, 0, None, 0, False))
    stop = chain.run(chain.keys[1], PlaceTrigger(BTC_PERP, False, 0, BTC_PRICE - 200_000, False, 0, True))
    take = chain.run(chain.keys[1], PlaceTrigger(BTC_PERP, False, 4, BTC_PRICE + 200_000, True, 0, True))
    stop_id, take_id = stop.receipts[0].results[0].order_id, take.receipts[0].results[0].order_id
    quiet = chain.block(chain.oracle_tx(btc=BTC_PRICE - 100_000))
    assert [e.status for e in events_of(quiet, TriggerEvent)] == []
    fired = chain.block(chain.oracle_tx(btc=BTC_PRICE - 250_000))
    event, = events_of(fired, TriggerEvent)
    assert (event.trigger_id, event.status, event.code) == (stop_id, 1, R.OK)
    assert chain.size(chain.keys[1]) == 0                      # the position stop closed all 10 lots
    assert take_id in chain.state.triggers
    assert chain.codes(chain.run(chain.keys[1], CancelTrigger(BTC_PERP, take_id))) == [R.OK]
    assert chain.codes(chain.run(chain.keys[1], CancelTrigger(BTC_PERP, take_id))) == [R.UNKNOWN_TRIGGER]


def test_invalid_trigger_paths() -> None:
    chain = PerpChain(max_open_orders_per_account=1)
    chain.deposit(chain.keys[1])
    assert chain.codes(chain.run(chain.keys[1], PlaceTrigger(BTC_PERP, False, 0, BTC_PRICE, False, 0, True))) == [
        R.NO_POSITION]
    assert chain.codes(chain.run(chain.keys[1], PlaceTrigger(BTC_PERP, False, 1, BTC_PRICE + 1, False, 0, False))) == [
        R.INVALID_PRICE]
    assert chain.codes(chain.run(chain.keys[1], PlaceTrigger(BTC_USD, False, 1, 1000, False, 0, False))) == [
        R.NOT_A_PERP_MARKET]
    stop = PlaceTrigger(BTC_PERP, False, 1, BTC_PRICE - 100_000, False, 0, False)
    assert chain.codes(chain.run(chain.keys[1], stop)) == [R.OK]
    assert chain.codes(chain.run(chain.keys[1], stop)) == [R.TOO_MANY_TRIGGERS]


# --- liquidation ---------------------------------------------------------------------------------------------

def leveraged_long(chain: PerpChain, lots: int, collateral: int) -> None:
    """Key 1 goes long `lots` at the oracle at 50x cross with `collateral`; key 2 is the short."""
    chain.block(chain.tx(chain.keys[1], CollateralTransfer(collateral, True)),
                chain.tx(chain.keys[1], SetLeverage(BTC_PERP, 50, True)))
    chain.deposit(chain.keys[2], chain.keys[3])
    chain.open_position(chain.keys[1], chain.keys[2], lots, BTC_PRICE)


def test_liquidation_through_the_book_in_chunks_across_blocks() -> None:
    chain = PerpChain(perp_overrides={BTC_PERP: {"liquidation_chunk_notional": 200 * USD1}})
    leveraged_long(chain, 500, 110 * USD1)                    # $5,000 at 50x: maintenance $50
    chain.run(chain.keys[3], PlaceOrder(BTC_PERP, True, BTC_PRICE - 150_000, 1_000, 0, None, 0, False))
    first = chain.block(chain.oracle_tx(btc=BTC_PRICE - 140_000))  # -1.4 %: equity $38, maintenance $49
    stage = [e for e in events_of(first, LiquidationEvent) if e.account == chain.keys[1].address]
    assert [(e.stage, e.size_lots) for e in stage] == [(LIQUIDATION_BOOK, -20)]    # $200 of lots at the mark
    assert stage[0].amount > 0 and chain.size(chain.keys[1]) == 480
    second = chain.block()
    assert any(e.stage == LIQUIDATION_BOOK for e in events_of(second, LiquidationEvent))
    assert chain.size(chain.keys[1]) == 460


def test_backstop_takes_the_position_at_the_mark_and_covers_the_loss() -> None:
    chain = PerpChain(insurance=10_000 * USD1)
    leveraged_long(chain, 500, 110 * USD1)
    fund_before = chain.collateral(INSURANCE)
    result = chain.block(chain.oracle_tx(btc=BTC_PRICE - 300_000))  # -3 %: equity -$40, below the backstop
    stages = [e.stage for e in events_of(result, LiquidationEvent) if e.account == chain.keys[1].address]
    assert LIQUIDATION_BACKSTOP in stages and LIQUIDATION_ADL not in stages
    assert chain.size(chain.keys[1]) == 0 and chain.size(INSURANCE) == 500
    assert chain.collateral(chain.keys[1]) == 0
    assert chain.collateral(INSURANCE) < fund_before


def test_adl_closes_against_the_most_profitable_at_the_bankruptcy_price() -> None:
    chain = PerpChain()                                        # an empty insurance fund
    leveraged_long(chain, 500, 110 * USD1)
    chain.deposit(chain.keys[3])
    chain.open_position(chain.keys[2], chain.keys[3], 200, BTC_PRICE)   # key 3 short too: 200 lots
    result = chain.block(chain.oracle_tx(btc=BTC_PRICE - 300_000))
    adl = events_of(result, AdlEvent)
    assert adl and {e.counterparty for e in adl} <= {chain.keys[2].address, chain.keys[3].address}
    assert sum(e.size_lots for e in adl) == 500 and len({e.price for e in adl}) == 1
    assert chain.size(chain.keys[1]) == 0 and chain.collateral(chain.keys[1]) >= 0
    stage, = [e for e in events_of(result, LiquidationEvent) if e.account == chain.keys[1].address]
    assert stage.stage == LIQUIDATION_ADL and stage.price > BTC_PRICE - 300_000   # bankruptcy, above the mark
    assert chain.state.markets[BTC_PERP].open_interest == sum(
        max(0, p.size_lots) for p in chain.state.markets[BTC_PERP].positions.values())


def test_isolated_liquidation_leaves_cross_collateral_untouched() -> None:
    chain = unit_chain(insurance=100_000 * USD1)
    isolated_position(chain, True)
    cross_before = chain.collateral(chain.keys[1])
    chain.block(chain.oracle_tx(btc=85_000 * USD1))            # far below the bankruptcy price of 90,000
    assert chain.size(chain.keys[1]) == 0
    assert chain.collateral(chain.keys[1]) == cross_before      # the isolated loss stayed isolated


def test_an_order_to_a_perp_market_leaves_spot_holds_alone() -> None:
    chain = PerpChain()
    chain.deposit(chain.keys[1])
    chain.run(chain.keys[1], PlaceOrder(BTC_PERP, True, BTC_PRICE, 10, 0, None, 0, False))
    account = chain.state.accounts[chain.keys[1].address]
    assert account.holds == {} and account.order_margin > 0
    order_id = next(iter(account.orders))
    chain.run(chain.keys[1], Cancel(BTC_PERP, order_id))
    assert account.order_margin == 0


@pytest.mark.parametrize("market, maker_fee", [(BTC_USD, 30), (BTC_PERP, 30)])
def test_fee_change_keeps_holds_and_reserved_margin_exact(market, maker_fee) -> None:
    """A parameter change moves what resting orders lock to the new fees (or cancels an order whose owner
    cannot cover more), so holds and reserved margins still equal what the open orders need."""
    from invariants import check_holds
    chain = PerpChain(governance=([1], 1))
    chain.deposit(chain.keys[2])
    price = 1_000 if market == BTC_USD else BTC_PRICE
    chain.run(chain.keys[2], PlaceOrder(market, True, price, 10, 0, None, 0, False))
    poor = chain.keys[3]
    spend = FUNDED_USD - 10 * (price + price // 10_000 + 1)
    if market == BTC_USD:
        chain.run(poor, Withdraw(USD, spend, b"x"))   # just enough for its order at today's fee
        chain.run(poor, PlaceOrder(market, True, price, 10, 0, None, 0, False))
    result = chain.run(chain.keys[1], Govern((5, 1, market, ((b"maker_fee_bps", maker_fee),))))
    assert chain.codes(result) == [R.OK]
    check_holds(chain.state)
    if market == BTC_USD:
        assert [e.owner for e in events_of(result, OrderDone)] == [poor.address]


@pytest.mark.parametrize("raw, message", [
    ([30, 0, True], "amount"),                                   # collateral transfer of nothing
    ([30, 5, 1], "to_perp"),                                     # a bool field given as an integer
    ([31, BTC_PERP, 0, True], "leverage"),                       # leverage 0
    ([32, BTC_PERP, 0, True], "amount"),
    ([33, BTC_PERP, True, 1, 0, False, 0, False], "trigger_price"),
    ([33, BTC_PERP, True, 1, 100, False, 0], "takes 7 fields"),
    ([34, BTC_PERP, 0], "trigger_id"),
    ([40, [1]], "operation"),                                    # no proposal id
    ([40, 3], "operation"),
    ([40, [3, 1, 1.5]], "not float"),                            # floats never enter the state machine
    ([40, [3, 1, {}]], "not dict"),
    ([40, [3, 1, [[[[[[1]]]]]]]], "nest at most"),
])
def test_invalid_perp_action_fields(raw, message) -> None:
    from stf.errors import MalformedAction
    from stf.tx import decode_action
    with pytest.raises(MalformedAction, match=message):
        decode_action(raw)


def test_perp_actions_round_trip_through_the_wire() -> None:
    from stf import codec
    from stf.tx import decode_action, encode_action
    for action in (CollateralTransfer(5, True), SetLeverage(BTC_PERP, 20, False), IsolatedMargin(ETH_PERP, 7, False),
                   PlaceTrigger(BTC_PERP, True, 0, 100, True, 0, True), CancelTrigger(BTC_PERP, 9),
                   Govern((5, 1, BTC_PERP, ((b"taker_fee_bps", 9),)))):
        assert decode_action(codec.decode(codec.encode(encode_action(action)), 1 << 16)) == action


def test_invalid_agent_may_not_move_collateral_or_govern() -> None:
    from stf.errors import InvalidBlock
    from stf.tx import ApproveAgent
    from stf_helpers import make_key
    chain = PerpChain(governance=([1], 1))
    agent = make_key(77)
    chain.run(chain.keys[1], ApproveAgent(agent.address))
    for action in (CollateralTransfer(1, True), Govern((3, 1))):
        with pytest.raises(InvalidBlock, match="unauthorized"):
            chain.block(chain.tx(agent, action, account=chain.keys[1].address))
    result = chain.block(chain.tx(agent, SetLeverage(BTC_PERP, 5, True), account=chain.keys[1].address))
    assert chain.codes(result) == [R.OK]


@pytest.mark.parametrize("collateral, fills", [(200 * USD1, False), (1_000 * USD1, True)])
def test_resting_order_filled_worse_than_the_mark_needs_margin_for_the_loss(collateral, fills) -> None:
    """An isolated short rests at 100,000; the mark rises 15 %. Filling it would start the position $150 under
    water: the fill needs that much free margin on top (else the order is dropped), and the isolated position
    is funded with it, so it starts at its initial margin at the mark, not below maintenance."""
    chain = PerpChain()
    chain.deposit(chain.keys[3])
    chain.block(chain.tx(chain.keys[1], CollateralTransfer(collateral, True)),
                chain.tx(chain.keys[1], SetLeverage(BTC_PERP, 10, False)))
    chain.run(chain.keys[1], PlaceOrder(BTC_PERP, False, BTC_PRICE, 100, 0, None, 0, False))
    chain.block(chain.oracle_tx(btc=BTC_PRICE * 115 // 100))
    result = chain.run(chain.keys[3], MarketOrder(BTC_PERP, True, 100, BTC_PRICE * 12 // 10, None, False))
    if not fills:
        done, = [e for e in events_of(result, OrderDone) if e.owner == chain.keys[1].address]
        assert done.reason == REASON_MARGIN and chain.size(chain.keys[1]) == 0
        return
    position = chain.position(chain.keys[1])
    assert position.size_lots == -100 and position.margin == 100 * USD1 + 150 * USD1
    assert events_of(result, LiquidationEvent) == []
