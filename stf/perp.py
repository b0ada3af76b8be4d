"""Perpetual actions (collateral, leverage, isolated margin, triggers) and the per-block perp step: mark price,
funding and triggers (docs/PROTOCOL.md §Perpetuals, docs/RISK.md).

`process_perps(state, events)` runs once per block after the oracle step, for every perp market in id order:
1. `process_mark_price`: while the oracle is fresh, fold the previous premium sample into the interval's
   time-weighted sum (it held from the previous update until now), take a new sample from the impact bid and
   ask, step the EMA of the book premium and set the mark = median(oracle + EMA, impact mid, last trade).
   While the oracle is stale nothing is sampled and the mark holds (stale time is not averaged).
2. `process_funding` once the block time reaches the market's next funding time: the hourly rate from the
   interval's average premium, times the number of hours in the interval, added to the cumulative index at
   the oracle price; then every position settles (in address order) against the insurance fund, which keeps
   the rounding dust. No payment is made while the oracle is stale; the interval restarts either way.
Then `process_triggers` fires, market by market and in trigger-id order, every trigger the new mark has crossed.
(`stf.block.apply_block` then runs `stf.liquidation.process_liquidations` as its own step.)
"""

from stf.errors import ResultCode
from stf.events import (
    TRIGGER_CANCELLED, TRIGGER_FIRED, TRIGGER_PLACED, CollateralEvent, FundingEvent, FundingPayment,
    LeverageEvent, MarginEvent, TriggerEvent,
)
from stf.margin import TRANSFER_MARGIN_BPS, compute_initial, compute_max_leverage
from stf.oracle import is_oracle_fresh
from stf.perp_math import (
    HOUR_MS, compute_average_from_sums, compute_book_premium_sample, compute_ema_step, compute_funding_index_delta,
    compute_funding_payment, compute_hourly_funding_rate, compute_impact_mid, compute_impact_price,
    compute_mark_price, compute_premium_sample,
)
from stf.positions import (
    compute_cross_summary, compute_isolated_equity, compute_reducible, compute_withdrawable,
)
from stf.receipts import ActionResult
from stf.spot import execute_order, validate_new_order
from stf.state import (
    Account, Market, State, Trigger, add_trigger, allocate_seq, compute_next_funding_ms, credit, debit,
    get_account, get_leverage, remove_trigger,
)
from stf.tx import TIF_GTC, TIF_IOC, CancelTrigger, CollateralTransfer, IsolatedMargin, PlaceTrigger, SetLeverage
from stf.units import BPS_DENOMINATOR

R = ResultCode


def get_perp_market(state: State, market_id: int) -> tuple[Market | None, ResultCode]:
    market = state.markets.get(market_id)
    if market is None:
        return None, R.UNKNOWN_MARKET
    if not market.is_perp:
        return None, R.NOT_A_PERP_MARKET
    return market, R.OK


# --- actions -------------------------------------------------------------------------------------------------

def process_collateral_transfer(state: State, events: list, account: Account,
                                action: CollateralTransfer) -> ActionResult:
    asset = state.params.collateral_asset
    if action.to_perp:
        if account.get_available(asset) < action.amount:
            return ActionResult(R.INSUFFICIENT_BALANCE)
        debit(state, account, asset, action.amount)
        account.collateral += action.amount
    else:
        if compute_withdrawable(state, account) < action.amount:
            return ActionResult(R.INSUFFICIENT_MARGIN)
        account.collateral -= action.amount
        credit(state, account, asset, action.amount)
    state.dirty_accounts[account.address] = None
    events.append(CollateralEvent(account.address, action.amount, action.to_perp))
    return ActionResult(R.OK)


def process_set_leverage(state: State, events: list, account: Account, action: SetLeverage) -> ActionResult:
    market, code = get_perp_market(state, action.market)
    if code:
        return ActionResult(code)
    market_id = action.market
    if any(order.market_id == market_id for order in account.orders.values()):
        return ActionResult(R.OPEN_ORDERS_IN_MARKET)
    position = account.positions.get(market_id)
    notional = 0 if position is None else abs(position.size_lots) * market.mark_price
    if action.leverage > compute_max_leverage(market.params, notional):
        return ActionResult(R.LEVERAGE_TOO_HIGH)
    if position is not None:
        if position.is_cross != action.is_cross:
            return ActionResult(R.POSITION_OPEN)
        if position.is_cross:
            equity, initial, _, _ = compute_cross_summary(state, account)
            current = get_leverage(market, account)[0]
            initial += compute_initial(notional, action.leverage) - compute_initial(notional, current)
            if equity < initial:
                return ActionResult(R.INSUFFICIENT_MARGIN)
        elif compute_isolated_equity(market, position) < compute_initial(notional, action.leverage):
            return ActionResult(R.INSUFFICIENT_MARGIN)
    account.leverage[market_id] = (action.leverage, action.is_cross)
    state.dirty_accounts[account.address] = None
    events.append(LeverageEvent(account.address, market_id, action.leverage, action.is_cross))
    return ActionResult(R.OK)


def process_isolated_margin(state: State, events: list, account: Account, action: IsolatedMargin) -> ActionResult:
    market, code = get_perp_market(state, action.market)
    if code:
        return ActionResult(code)
    position = account.positions.get(action.market)
    if position is None or position.is_cross:
        return ActionResult(R.NO_POSITION)
    amount = action.amount
    if action.add:
        if compute_withdrawable(state, account) < amount:
            return ActionResult(R.INSUFFICIENT_MARGIN)
        account.collateral -= amount
        position.margin += amount
    else:
        notional = abs(position.size_lots) * market.mark_price
        keep = max(compute_initial(notional, get_leverage(market, account)[0]),
                   -((-notional * TRANSFER_MARGIN_BPS) // BPS_DENOMINATOR))
        if amount > position.margin or compute_isolated_equity(market, position) - amount < keep:
            return ActionResult(R.INSUFFICIENT_MARGIN)
        position.margin -= amount
        account.collateral += amount
    state.dirty_accounts[account.address] = None
    events.append(MarginEvent(account.address, action.market, amount if action.add else -amount))
    return ActionResult(R.OK)


def process_place_trigger(state: State, events: list, account: Account, action: PlaceTrigger) -> ActionResult:
    market, code = get_perp_market(state, action.market)
    if code:
        return ActionResult(code)
    if market.halted or state.halted:
        return ActionResult(R.MARKET_HALTED)
    p = market.params
    if action.trigger_price % p.tick_size or action.limit_price % p.tick_size:
        return ActionResult(R.INVALID_PRICE)
    if action.size_lots == 0:
        if not compute_reducible(account, action.market, action.is_buy):
            return ActionResult(R.NO_POSITION)
    elif action.size_lots < p.min_size_lots:
        return ActionResult(R.BELOW_MIN_SIZE)
    if len(account.triggers) >= state.params.max_open_orders_per_account:
        return ActionResult(R.TOO_MANY_TRIGGERS)
    trigger_id = allocate_seq(state)
    add_trigger(state, Trigger(
        trigger_id, action.market, account.address, action.is_buy, action.size_lots, action.trigger_price,
        action.take_profit, action.limit_price, action.reduce_only or action.size_lots == 0,
    ))
    events.append(TriggerEvent(trigger_id, action.market, account.address, TRIGGER_PLACED, 0, R.OK))
    return ActionResult(R.OK, trigger_id)


def process_cancel_trigger(state: State, events: list, account: Account, action: CancelTrigger) -> ActionResult:
    trigger = account.triggers.get(action.trigger_id)
    if trigger is None or trigger.market_id != action.market:
        return ActionResult(R.UNKNOWN_TRIGGER)
    remove_trigger(state, trigger)
    events.append(TriggerEvent(trigger.trigger_id, trigger.market_id, account.address, TRIGGER_CANCELLED, 0, R.OK))
    return ActionResult(R.OK, trigger.trigger_id)


# --- the per-block step --------------------------------------------------------------------------------------

def process_perps(state: State, events: list) -> None:
    for market_id in sorted(state.markets):
        market = state.markets[market_id]
        if market.is_perp:
            process_mark_price(state, market)
            if state.time_ms >= market.next_funding_ms:
                process_funding(state, events, market)
    process_triggers(state, events)


def _side_depth(side):
    """(price, lots) of a book side, best first, computed lazily level by level."""
    for price, level in side.iter_levels():
        yield price, sum(order.size_lots for order in level)


def compute_impact_prices(market: Market) -> tuple[int | None, int | None]:
    notional = market.params.impact_notional
    book = market.book
    return (compute_impact_price(_side_depth(book.bids), notional, False),
            compute_impact_price(_side_depth(book.asks), notional, True))


def process_mark_price(state: State, market: Market) -> None:
    now = state.time_ms
    elapsed = now - market.mark_time_ms
    market.mark_time_ms = now
    state.dirty_markets[market.params.market_id] = None
    if not is_oracle_fresh(market, now):
        return
    oracle = market.oracle_price
    market.premium_sum += market.last_premium * elapsed
    market.premium_time_ms += elapsed
    impact_bid, impact_ask = compute_impact_prices(market)
    market.last_premium = compute_premium_sample(impact_bid, impact_ask, oracle)
    impact_mid = compute_impact_mid(impact_bid, impact_ask)
    market.premium_ema = compute_ema_step(
        market.premium_ema, compute_book_premium_sample(impact_mid, oracle), elapsed, market.params.mark_ema_ms)
    market.mark_price = compute_mark_price(oracle, market.premium_ema, impact_mid, market.last_trade_price or None)


def compute_interval_rate(market: Market) -> tuple[int, int]:
    """(rate for the whole funding interval, average premium), both in RATE_SCALE."""
    p = market.params
    average = compute_average_from_sums(market.premium_sum, market.premium_time_ms)
    hourly = compute_hourly_funding_rate(average, p.funding_interest_rate, p.funding_clamp_rate, p.funding_cap_hourly)
    return hourly * (p.funding_interval_ms // HOUR_MS), average


def process_funding(state: State, events: list, market: Market) -> None:
    now = state.time_ms
    p = market.params
    if is_oracle_fresh(market, now) and market.mark_price:
        rate, average = compute_interval_rate(market)
        oracle = market.oracle_price
        index = market.funding_index + compute_funding_index_delta(oracle, rate)
        market.funding_index = index
        market.last_funding_rate = rate
        events.append(FundingEvent(p.market_id, rate, index, oracle, average))
        settle_funding(state, events, market)
    market.premium_sum = 0
    market.premium_time_ms = 0
    market.next_funding_ms = compute_next_funding_ms(now, p.funding_interval_ms)
    state.dirty_markets[p.market_id] = None


def settle_funding(state: State, events: list, market: Market) -> None:
    """Every position pays or receives size * (index - its index) / RATE_SCALE (a payment rounded up, a receipt
    toward zero) against the insurance fund, which therefore keeps the dust."""
    market_id = market.params.market_id
    index = market.funding_index
    fund = get_account(state, state.params.insurance_account)
    net = 0
    for address in sorted(market.positions):
        position = market.positions[address]
        payment = compute_funding_payment(position.size_lots, index, position.funding_index)
        position.funding_index = index
        if payment:
            account = state.accounts[address]
            if position.is_cross:
                account.collateral -= payment
            else:
                position.margin -= payment
            net += payment
            events.append(FundingPayment(address, market_id, position.size_lots, payment))
        state.dirty_accounts[address] = None
    fund.collateral += net
    state.dirty_accounts[fund.address] = None


def is_trigger_crossed(trigger: Trigger, mark: int) -> bool:
    return mark >= trigger.trigger_price if trigger.fires_above() else mark <= trigger.trigger_price


def process_triggers(state: State, events: list) -> None:
    for market_id in sorted(state.markets):
        market = state.markets[market_id]
        if not market.triggers or market.halted or state.halted or not is_oracle_fresh(market, state.time_ms):
            continue
        mark = market.mark_price
        for trigger_id in sorted(market.triggers):
            trigger = market.triggers.get(trigger_id)
            if trigger is not None and is_trigger_crossed(trigger, mark):
                fire_trigger(state, events, market, trigger)


def compute_slippage_limit(market: Market, is_buy: bool, reference: int) -> int:
    """The worst price of a market order from the mark: `liquidation_slippage_bps` away from `reference`, on
    the tick grid toward the reference (a buy rounds down, a sell up), at least one tick."""
    p = market.params
    tick = p.tick_size
    if is_buy:
        limit = reference * (BPS_DENOMINATOR + p.liquidation_slippage_bps) // (BPS_DENOMINATOR * tick) * tick
    else:
        raw = reference * (BPS_DENOMINATOR - p.liquidation_slippage_bps)
        limit = -((-raw) // (BPS_DENOMINATOR * tick)) * tick
    return max(limit, tick)


def fire_trigger(state: State, events: list, market: Market, trigger: Trigger) -> None:
    """Turn a crossed trigger into an order: a market order limited to the slippage bound from the mark, or a
    GTC limit order; a position trigger (size 0) closes whatever the position is at that moment."""
    remove_trigger(state, trigger)
    account = state.accounts[trigger.owner]
    size = trigger.size_lots or compute_reducible(account, trigger.market_id, trigger.is_buy)
    is_market = trigger.limit_price == 0
    price = compute_slippage_limit(market, trigger.is_buy, market.mark_price) if is_market else trigger.limit_price
    tif = TIF_IOC if is_market else TIF_GTC
    if size == 0:
        code, order_id = R.REDUCE_ONLY_WOULD_INCREASE, 0
    else:
        code = validate_new_order(state, market, account, trigger.is_buy, price, size, tif, None, 0,
                                  trigger.reduce_only)
        order_id = 0
        if not code:
            result = execute_order(state, events, market, account, trigger.is_buy, price, size, tif, None, 0,
                                   None, trigger.reduce_only)
            order_id = result.order_id
    events.append(TriggerEvent(trigger.trigger_id, trigger.market_id, trigger.owner, TRIGGER_FIRED, order_id, code))

