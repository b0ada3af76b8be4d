"""Spot order actions: place (limit and market), cancel, cancel by client id, cancel-all, modify; matching.

Matching is price-time: the taker walks the opposite side from the best level, FIFO within a level, and every
fill is at the maker's price. Self-trade prevention expires the resting order of the same account (no trade, no
fee) and matching continues behind it. IOC, FOK and market orders never rest; a FOK that cannot fill completely
(counting only other accounts' orders) fails with no trace; a post-only order that would cross fails.

Holds: a resting order locks exactly `compute_order_hold(market, order)`: base atoms for a sell;
`size * (price + maker fee bound per lot)` quote atoms for a buy. Every change of a resting order's size moves
the hold by the difference, so the sum of an account's holds always equals the sum over its open orders
(checked by the invariant checker). Placement requires funds for the worst case (the whole size at the limit
price with the higher of the two fee rates), which covers any mix of taking and resting.

Fees are in the quote asset. A fill moves `price * size` quote atoms; the taker pays (or, selling, gives up)
`compute_fee(notional, taker_fee_bps)` rounded up, the maker `compute_fee(notional, maker_fee_bps)` (a negative
rate is a rebate, rounded down), and the fee account receives their sum, which is never negative.
"""

from stf.book import Order
from stf.errors import ResultCode
from stf.events import (
    REASON_CANCELLED, REASON_FILLED, REASON_SELF_TRADE, REASON_UNFILLED_IOC, OrderAccepted,
    OrderDone, OrderModified, Trade,
)
from stf.oracle import validate_price_band
from stf.positions import check_perp_maker, compute_reducible, settle_perp_fill, validate_perp_order
from stf.receipts import ActionResult
from stf.state import (
    Account, Market, State, add_order, allocate_seq, compute_resting_margin, credit, debit, get_account, hold,
    release, remove_order, resize_order, unindex_order,
)
from stf.tx import (
    TIF_ALO, TIF_FOK, TIF_GTC, TIF_IOC, Cancel, CancelAll, CancelByClientId, MarketOrder, Modify, PlaceOrder,
)
from stf.units import Atoms, PriceQuote, SizeLots, compute_fee, compute_fee_bound_per_lot

R = ResultCode


# --- pure helpers --------------------------------------------------------------------------------------------

def compute_order_hold(market: Market, is_buy: bool, price: PriceQuote, size_lots: SizeLots) -> tuple[int, Atoms]:
    """(asset, atoms) a resting order of this side, price and size locks."""
    p = market.params
    if is_buy:
        return p.quote_asset, size_lots * (price + compute_fee_bound_per_lot(price, p.maker_fee_bps))
    return p.base_asset, size_lots * p.lot_size


def compute_placement_need(market: Market, is_buy: bool, price: PriceQuote, size_lots: SizeLots) -> tuple[int, Atoms]:
    """(asset, atoms) that must be available to place an order that may both take and rest."""
    p = market.params
    if is_buy:
        worst_bps = max(p.maker_fee_bps, p.taker_fee_bps)
        return p.quote_asset, size_lots * (price + compute_fee_bound_per_lot(price, worst_bps))
    return p.base_asset, size_lots * p.lot_size


def is_crossing(is_buy: bool, limit: PriceQuote, resting_price: PriceQuote) -> bool:
    return resting_price <= limit if is_buy else resting_price >= limit


def compute_fillable(market: Market, owner: bytes, is_buy: bool, limit: PriceQuote, size_lots: SizeLots) -> SizeLots:
    """Lots of other accounts' orders this taker could fill, up to `size_lots` (for fill-or-kill)."""
    found = 0
    for price, level in market.book.opposite(is_buy).iter_levels():
        if not is_crossing(is_buy, limit, price):
            break
        for order in level:
            if order.owner != owner:
                found += order.size_lots
                if found >= size_lots:
                    return size_lots
    return found


def validate_order_params(state: State, market: Market | None, price: int, size_lots: int) -> ResultCode:
    """The rules every new order or re-priced order meets; a perp market's price band and oracle rules are in
    `stf.positions.validate_perp_order` (a reduce-only perp order may trade while the oracle is stale)."""
    if market is None:
        return R.UNKNOWN_MARKET
    if market.halted or state.halted:
        return R.MARKET_HALTED
    if price % market.params.tick_size:
        return R.INVALID_PRICE
    if size_lots < market.params.min_size_lots:
        return R.BELOW_MIN_SIZE
    if market.is_perp:
        return R.OK
    return validate_price_band(market, price, state.time_ms)


# --- mutating steps ------------------------------------------------------------------------------------------

def settle_fill(
    state: State, market: Market, taker: Account, maker_order: Order, is_buy: bool, qty: SizeLots,
) -> tuple[int, int]:
    """Move funds for one fill at the maker's price; returns (taker fee, maker fee)."""
    p = market.params
    maker = state.accounts[maker_order.owner]
    price = maker_order.price
    notional = price * qty
    base_atoms = qty * p.lot_size
    taker_fee = compute_fee(notional, p.taker_fee_bps)
    maker_fee = compute_fee(notional, p.maker_fee_bps)
    hold_asset, held = compute_order_hold(market, maker_order.is_buy, price, qty)
    release(state, maker, hold_asset, held)
    if is_buy:
        debit(state, taker, p.quote_asset, notional + taker_fee)
        credit(state, taker, p.base_asset, base_atoms)
        debit(state, maker, p.base_asset, base_atoms)
        credit(state, maker, p.quote_asset, notional - maker_fee)
    else:
        debit(state, taker, p.base_asset, base_atoms)
        credit(state, taker, p.quote_asset, notional - taker_fee)
        debit(state, maker, p.quote_asset, notional + maker_fee)
        credit(state, maker, p.base_asset, base_atoms)
    credit(state, get_account(state, p.fee_account), p.quote_asset, taker_fee + maker_fee)
    return taker_fee, maker_fee


def expire_resting(state: State, events: list, market: Market, order: Order, reason: int) -> None:
    """Take a resting order off the book, release its hold and announce it."""
    remove_order(state, order)
    release_order_hold(state, market, order)
    events.append(OrderDone(order.order_id, order.market_id, order.owner, reason, order.size_lots))


def release_order_hold(state: State, market: Market, order: Order) -> None:
    """Release a spot order's hold (a perp order's margin is released by the order mutators themselves)."""
    if market.is_perp:
        return
    asset, atoms = compute_order_hold(market, order.is_buy, order.price, order.size_lots)
    release(state, state.accounts[order.owner], asset, atoms)


def match(
    state: State, events: list, market: Market, taker: Account, taker_order_id: int, is_buy: bool,
    limit: PriceQuote, size_lots: SizeLots,
) -> SizeLots:
    """Fill against the opposite side while it crosses `limit`; returns the lots filled."""
    side = market.book.opposite(is_buy)
    owner = taker.address
    market_id = market.params.market_id
    is_perp = market.is_perp
    settle = settle_perp_fill if is_perp else settle_fill
    remaining = size_lots
    last_price = 0
    while remaining:
        level = side.best_level()
        if level is None:
            break
        price = level[0].price
        if not is_crossing(is_buy, limit, price):
            break
        while remaining and level:
            maker = level[0]
            if maker.owner == owner:
                side.pop_best_front(level, price)
                unindex_order(state, maker)
                release_order_hold(state, market, maker)
                events.append(OrderDone(maker.order_id, market_id, owner, REASON_SELF_TRADE, maker.size_lots))
                continue
            if is_perp:
                reason = check_perp_maker(state, events, market, maker, remaining)
                if reason:
                    side.pop_best_front(level, price)
                    unindex_order(state, maker)
                    events.append(OrderDone(maker.order_id, market_id, maker.owner, reason, maker.size_lots))
                    continue
            qty = remaining if remaining < maker.size_lots else maker.size_lots
            taker_fee, maker_fee = settle(state, market, taker, maker, is_buy, qty)
            events.append(Trade(
                market_id, price, qty, is_buy, taker_order_id, maker.order_id, owner, maker.owner, taker_fee,
                maker_fee,
            ))
            remaining -= qty
            last_price = price
            if qty == maker.size_lots:
                side.pop_best_front(level, price)
                unindex_order(state, maker)
                events.append(OrderDone(maker.order_id, market_id, maker.owner, REASON_FILLED, 0))
            else:
                resize_order(state, maker, maker.size_lots - qty)
    filled = size_lots - remaining
    if last_price:
        market.last_trade_price = last_price
        state.dirty_markets[market_id] = None
    return filled


def execute_order(
    state: State, events: list, market: Market, account: Account, is_buy: bool, price: PriceQuote,
    size_lots: SizeLots, tif: int, client_id: int | None, expires_at_ms: int, order_id: int | None = None,
    reduce_only: bool = False,
) -> ActionResult:
    """Accept an order whose checks have all passed: match, then rest or finish it. A reduce-only perp order is
    first cut to the size of the position it closes."""
    if reduce_only:
        reducible = compute_reducible(account, market.params.market_id, is_buy)
        if size_lots > reducible:
            size_lots = reducible
    if order_id is None:
        order_id = allocate_seq(state)
        seq = order_id
    else:
        seq = allocate_seq(state)
    market_id = market.params.market_id
    events.append(OrderAccepted(order_id, market_id, account.address, is_buy, price, size_lots, client_id, tif))
    filled = match(state, events, market, account, order_id, is_buy, price, size_lots)
    remaining = size_lots - filled
    if not remaining:
        events.append(OrderDone(order_id, market_id, account.address, REASON_FILLED, 0))
    elif tif == TIF_GTC or tif == TIF_ALO:
        order = Order(
            order_id, seq, market_id, account.address, is_buy, price, remaining, size_lots, client_id, expires_at_ms,
            tif == TIF_ALO, reduce_only,
        )
        if not market.is_perp:
            asset, atoms = compute_order_hold(market, is_buy, price, remaining)
            hold(state, account, asset, atoms)
        add_order(state, order)
    else:
        events.append(OrderDone(order_id, market_id, account.address, REASON_UNFILLED_IOC, remaining))
    return ActionResult(R.OK, order_id, filled)


def validate_new_order(
    state: State, market: Market | None, account: Account, is_buy: bool, price: int, size_lots: int, tif: int,
    client_id: int | None, expires_at_ms: int, reduce_only: bool,
) -> ResultCode:
    code = validate_order_params(state, market, price, size_lots)
    if code:
        return code
    if reduce_only and not market.is_perp:
        return R.REDUCE_ONLY_UNSUPPORTED
    if expires_at_ms and expires_at_ms <= state.time_ms:
        return R.INVALID_EXPIRY
    if client_id is not None and client_id in account.client_ids:
        return R.DUPLICATE_CLIENT_ID
    rests = tif == TIF_GTC or tif == TIF_ALO
    if rests and len(account.orders) >= state.params.max_open_orders_per_account:
        return R.TOO_MANY_OPEN_ORDERS
    if market.is_perp:
        code = validate_perp_order(state, market, account, is_buy, price, size_lots, reduce_only)
        if code:
            return code
    else:
        asset, need = compute_placement_need(market, is_buy, price, size_lots)
        if account.get_available(asset) < need:
            return R.INSUFFICIENT_BALANCE
    if tif == TIF_ALO:
        best = market.book.opposite(is_buy).best_price()
        if best is not None and is_crossing(is_buy, price, best):
            return R.POST_ONLY_WOULD_CROSS
    if tif == TIF_FOK and compute_fillable(market, account.address, is_buy, price, size_lots) < size_lots:
        return R.FOK_NOT_FILLED
    return R.OK


# --- process_* actions ---------------------------------------------------------------------------------------

def process_place_order(state: State, events: list, account: Account, action: PlaceOrder) -> ActionResult:
    market = state.markets.get(action.market)
    code = validate_new_order(
        state, market, account, action.is_buy, action.price, action.size_lots, action.time_in_force,
        action.client_id, action.expires_at_ms, action.reduce_only,
    )
    if code:
        return ActionResult(code)
    return execute_order(
        state, events, market, account, action.is_buy, action.price, action.size_lots,
        action.time_in_force, action.client_id, action.expires_at_ms, None, action.reduce_only,
    )


def process_market_order(state: State, events: list, account: Account, action: MarketOrder) -> ActionResult:
    market = state.markets.get(action.market)
    code = validate_new_order(
        state, market, account, action.is_buy, action.worst_price, action.size_lots, TIF_IOC, action.client_id,
        0, action.reduce_only,
    )
    if code:
        return ActionResult(code)
    return execute_order(
        state, events, market, account, action.is_buy, action.worst_price, action.size_lots,
        TIF_IOC, action.client_id, 0, None, action.reduce_only,
    )


def find_own_order(state: State, account: Account, market_id: int, order: Order | None) -> Order | None:
    if order is None or order.owner != account.address or order.market_id != market_id:
        return None
    return order


def cancel_own_order(state: State, events: list, account: Account, market_id: int, order: Order | None) -> ActionResult:
    """Cancel `order` if it is the account's and in `market_id`; otherwise UNKNOWN_ORDER, with no trace."""
    order = find_own_order(state, account, market_id, order)
    if order is None:
        return ActionResult(R.UNKNOWN_ORDER)
    expire_resting(state, events, state.markets[order.market_id], order, REASON_CANCELLED)
    return ActionResult(R.OK, order.order_id)


def process_cancel(state: State, events: list, account: Account, action: Cancel) -> ActionResult:
    return cancel_own_order(state, events, account, action.market, account.orders.get(action.order_id))


def process_cancel_by_client_id(state: State, events: list, account: Account, action: CancelByClientId) -> ActionResult:
    return cancel_own_order(state, events, account, action.market, account.client_ids.get(action.client_id))


def cancel_all_orders(state: State, events: list, account: Account, market_id: int | None, reason: int) -> int:
    """Cancel the account's open orders (in one market or all), in order-id order; returns how many."""
    cancelled = 0
    for order_id in sorted(account.orders):
        order = account.orders[order_id]
        if market_id is None or order.market_id == market_id:
            expire_resting(state, events, state.markets[order.market_id], order, reason)
            cancelled += 1
    return cancelled


def process_cancel_all(state: State, events: list, account: Account, action: CancelAll) -> ActionResult:
    if action.market is not None and action.market not in state.markets:
        return ActionResult(R.UNKNOWN_MARKET)
    cancel_all_orders(state, events, account, action.market, REASON_CANCELLED)
    return ActionResult(R.OK)


def process_modify(state: State, events: list, account: Account, action: Modify) -> ActionResult:
    order = find_own_order(state, account, action.market, account.orders.get(action.order_id))
    if order is None:
        return ActionResult(R.UNKNOWN_ORDER)
    market = state.markets[order.market_id]
    if action.price == order.price and action.size_lots <= order.size_lots:
        # A partial cancel: allowed like a cancel, even on a halted market or with a stale oracle.
        if action.size_lots < market.params.min_size_lots:
            return ActionResult(R.BELOW_MIN_SIZE)
        return modify_keeping_priority(state, events, market, account, order, action.size_lots)
    code = validate_order_params(state, market, action.price, action.size_lots)
    if code:
        return ActionResult(code)
    if market.is_perp:
        code = validate_perp_modify(state, market, account, order, action.price, action.size_lots)
        if code:
            return ActionResult(code)
    else:
        asset, old_hold = compute_order_hold(market, order.is_buy, order.price, order.size_lots)
        need_asset, need = compute_placement_need(market, order.is_buy, action.price, action.size_lots)
        if account.get_available(need_asset) + old_hold < need:
            return ActionResult(R.INSUFFICIENT_BALANCE)
    best = market.book.opposite(order.is_buy).best_price()
    if order.post_only and best is not None and is_crossing(order.is_buy, action.price, best):
        return ActionResult(R.POST_ONLY_WOULD_CROSS)
    remove_order(state, order)
    release_order_hold(state, market, order)
    events.append(OrderModified(
        order.order_id, order.market_id, account.address, action.price, action.size_lots, False,
    ))
    return execute_order(
        state, events, market, account, order.is_buy, action.price, action.size_lots,
        TIF_ALO if order.post_only else TIF_GTC, order.client_id, order.expires_at_ms, order.order_id,
        order.reduce_only,
    )


def validate_perp_modify(state: State, market: Market, account: Account, order: Order, price: int,
                         size_lots: int) -> ResultCode:
    """A re-priced or grown perp order is judged as a new order with its own reservation given back first."""
    if order.reduce_only:
        return validate_perp_order(state, market, account, order.is_buy, price, size_lots, True)
    own = compute_resting_margin(market, account, order.price, order.size_lots)
    return validate_perp_order(state, market, account, order.is_buy, price, size_lots, False, own)


def modify_keeping_priority(
    state: State, events: list, market: Market, account: Account, order: Order, size_lots: SizeLots,
) -> ActionResult:
    if market.is_perp:
        resize_order(state, order, size_lots)
    else:
        asset, old_hold = compute_order_hold(market, order.is_buy, order.price, order.size_lots)
        _, new_hold = compute_order_hold(market, order.is_buy, order.price, size_lots)
        resize_order(state, order, size_lots)
        release(state, account, asset, old_hold - new_hold)
    events.append(OrderModified(order.order_id, order.market_id, account.address, order.price, size_lots, True))
    return ActionResult(R.OK, order.order_id)
