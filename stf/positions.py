"""Perpetual positions: how a fill changes a position, the margin summaries, and the margin rules of orders.

Accounting (docs/RISK.md §7). A position keeps its signed size and its signed `cost` (lots times price of the
open lots), so its unrealized PnL at mark m is exactly `size * m - cost`. A fill of `delta` lots (signed, buy
positive) at price p:
- opening (no position, or the same direction): size += delta, cost += delta * p; an isolated position also
  moves the fill's initial margin, ceil(|delta| * p / leverage), plus |delta| times how much worse than the mark
  p is (`compute_adverse`), from the cross collateral into its margin;
- reducing (the opposite direction): k = min(|delta|, |size|) lots close; the cost they carry is
  removed = ceil(cost * k / |size|) (the ceiling of a signed fraction) and the realized PnL is
  sign(size) * k * p - removed, rounded down as a result; closing the whole position removes the whole cost, so
  nothing is lost, only spread between partial closes. Realized PnL goes to the cross collateral (cross), or to
  the isolated margin, which then returns floor(margin * k / |size|) of itself (all of it when closed) to the
  cross collateral;
- a fill larger than the position closes it and opens the rest in the other direction.

Value is conserved exactly: for both sides of any fill at p, collateral + margin + unrealized PnL at mark m
changes by delta * (m - p), which sums to zero over the two sides; fees move between accounts.

Margin (cross). Equity = collateral + sum of cross positions' unrealized PnL at the mark; initial margin = sum of
ceil(notional / leverage) over cross positions + `order_margin` (what resting orders reserve, in any perp
market); maintenance = sum of the tiered maintenance of cross positions. An isolated position has its own
equity (margin + unrealized PnL) against its own maintenance.
"""

from stf.events import REASON_MARGIN, REASON_REDUCE_ONLY, OrderModified
from stf.errors import ResultCode
from stf.margin import TRANSFER_MARGIN_BPS, compute_initial, compute_maintenance, compute_max_leverage, compute_order_margin
from stf.oracle import is_oracle_fresh, validate_price_band
from stf.perp_math import compute_liquidation_price_from_cost
from stf.state import Account, Market, Position, State, get_account, get_leverage, resize_order
from stf.units import BPS_DENOMINATOR, compute_fee

R = ResultCode


# --- summaries -----------------------------------------------------------------------------------------------

def compute_cross_summary(state: State, account: Account) -> tuple[int, int, int, int]:
    """(equity, initial margin including resting orders, maintenance margin, notional) of the cross account."""
    equity = account.collateral
    initial = account.order_margin
    maintenance = 0
    total_notional = 0
    markets = state.markets
    settings = account.leverage
    for market_id, position in account.positions.items():
        if not position.is_cross:
            continue
        market = markets[market_id]
        mark = market.mark_price
        size = position.size_lots
        equity += size * mark - position.cost
        notional = (size if size > 0 else -size) * mark
        total_notional += notional
        setting = settings.get(market_id)
        leverage = setting[0] if setting is not None else market.params.default_leverage
        initial -= (-notional) // leverage
        maintenance += compute_maintenance(market, notional)
    return equity, initial, maintenance, total_notional


def compute_isolated_equity(market: Market, position: Position) -> int:
    return position.margin + position.size_lots * market.mark_price - position.cost


def compute_position_maintenance(market: Market, position: Position) -> int:
    size = position.size_lots
    return compute_maintenance(market, (size if size > 0 else -size) * market.mark_price)


def compute_withdrawable(state: State, account: Account) -> int:
    """Collateral the account may move out of the cross margin: never more than its collateral, and leaving
    equity >= max(initial margin, 10 % of the cross notional)."""
    equity, initial, _, notional = compute_cross_summary(state, account)
    floor_margin = max(initial, -((-notional * TRANSFER_MARGIN_BPS) // BPS_DENOMINATOR))
    return max(0, min(account.collateral, equity - floor_margin))


def compute_reducible(account: Account, market_id: int, is_buy: bool) -> int:
    """Lots an order on this side can close of the account's position (0 if none or the same side)."""
    position = account.positions.get(market_id)
    if position is None:
        return 0
    size = position.size_lots
    if is_buy:
        return -size if size < 0 else 0
    return size if size > 0 else 0


# --- fills ---------------------------------------------------------------------------------------------------

def apply_fill(state: State, market: Market, account: Account, delta: int, price: int) -> int:
    """Change the account's position by `delta` lots (buy positive) at `price`; returns the realized PnL."""
    market_id = market.params.market_id
    position = account.positions.get(market_id)
    if position is None:
        is_cross = get_leverage(market, account)[1]
        position = Position(market_id, 0, 0, market.funding_index, 0, is_cross)
        account.positions[market_id] = position
        market.positions[account.address] = position
    old = position.size_lots
    realized = 0
    if old == 0 or (old > 0) == (delta > 0):
        _open(market, account, position, delta, price)
    else:
        held = old if old > 0 else -old
        moved = delta if delta > 0 else -delta
        closed = moved if moved < held else held
        removed = -((-position.cost * closed) // held)  # ceiling of the signed share of the cost
        realized = (closed if old > 0 else -closed) * price - removed
        position.realized_pnl += realized
        position.cost -= removed
        position.size_lots = old + (closed if delta > 0 else -closed)
        if position.is_cross:
            account.collateral += realized
        else:
            position.margin += realized
            released = position.margin if position.size_lots == 0 else (
                position.margin * closed // held if position.margin > 0 else 0)
            position.margin -= released
            account.collateral += released
        if moved > closed:
            _open(market, account, position, delta - closed if delta > 0 else delta + closed, price)
    new = position.size_lots
    market.open_interest += (new if new > 0 else 0) - (old if old > 0 else 0)
    if new == 0:
        del account.positions[market_id]
        del market.positions[account.address]
    state.dirty_accounts[account.address] = None
    state.dirty_markets[market_id] = None
    return realized


def _open(market: Market, account: Account, position: Position, delta: int, price: int) -> None:
    if position.size_lots == 0:
        position.funding_index = market.funding_index
    position.size_lots += delta
    position.cost += delta * price
    if not position.is_cross:
        lots = delta if delta > 0 else -delta
        margin = compute_initial(lots * price, get_leverage(market, account)[0])
        margin += lots * compute_adverse(market, delta > 0, price)
        account.collateral -= margin
        position.margin += margin


def compute_adverse(market: Market, is_buy: bool, price: int) -> int:
    """How much worse than the mark a buy (above it) or a sell (below it) at `price` is, per lot; 0 if better.
    Lots opened that much worse start with that loss: an isolated position is funded with it on top of its
    initial margin, and a resting order's fill must be covered by its owner's free margin."""
    mark = market.mark_price
    if not mark:
        return 0
    adverse = price - mark if is_buy else mark - price
    return adverse if adverse > 0 else 0


def settle_perp_fill(state: State, market: Market, taker: Account, maker_order, is_buy: bool,
                     qty: int) -> tuple[int, int]:
    """Move positions and fees for one perp fill at the maker's price; returns (taker fee, maker fee). The maker
    order's reserved margin is released by the order mutators that shrink or remove it."""
    p = market.params
    price = maker_order.price
    notional = price * qty
    taker_fee = compute_fee(notional, p.taker_fee_bps)
    maker_fee = compute_fee(notional, p.maker_fee_bps)
    maker = state.accounts[maker_order.owner]
    apply_fill(state, market, taker, qty if is_buy else -qty, price)
    apply_fill(state, market, maker, -qty if is_buy else qty, price)
    taker.collateral -= taker_fee
    maker.collateral -= maker_fee
    fee_account = get_account(state, p.fee_account)
    fee_account.collateral += taker_fee + maker_fee
    state.dirty_accounts[fee_account.address] = None
    return taker_fee, maker_fee


def check_perp_maker(state: State, events: list, market: Market, maker_order, remaining: int) -> int:
    """Before a resting perp order fills: 0 to go ahead, or the reason to take it off the book instead.

    A reduce-only order is shrunk to what it can still close, keeping its priority (an `OrderModified` event),
    and dropped when that is nothing. An order whose
    fill would grow its owner's exposure is checked again for initial margin (with its own reservation counted),
    less the loss the opening lots start with when the order's price is worse than the mark; if the account no
    longer has it, the order is dropped (REASON_MARGIN) and matching goes on behind it."""
    account = state.accounts[maker_order.owner]
    reducible = compute_reducible(account, maker_order.market_id, maker_order.is_buy)
    if maker_order.reduce_only:
        if reducible == 0:
            return REASON_REDUCE_ONLY
        if maker_order.size_lots > reducible:
            resize_order(state, maker_order, reducible)
            events.append(OrderModified(maker_order.order_id, maker_order.market_id, maker_order.owner,
                                        maker_order.price, reducible, True))
        return 0
    qty = remaining if remaining < maker_order.size_lots else maker_order.size_lots
    if qty > reducible:
        equity, initial, _, _ = compute_cross_summary(state, account)
        loss = (qty - reducible) * compute_adverse(market, maker_order.is_buy, maker_order.price)
        if equity - loss < initial:
            return REASON_MARGIN
    return 0


# --- order rules ---------------------------------------------------------------------------------------------

def validate_perp_order(state: State, market: Market, account: Account, is_buy: bool, price: int, size_lots: int,
                        reduce_only: bool, released: int = 0) -> ResultCode:
    """The perp rules of a new order (after the common ones: market, halt, tick, size, expiry, client id).
    `released` is margin the order frees when it replaces a resting one (a re-pricing modify)."""
    if state.halted:
        return R.MARKET_HALTED
    oracle_fresh = is_oracle_fresh(market, state.time_ms)
    if not oracle_fresh and not reduce_only:
        return R.ORACLE_STALE
    if oracle_fresh:
        code = validate_price_band(market, price, state.time_ms)
        if code:
            return code
    market_id = market.params.market_id
    reducible = compute_reducible(account, market_id, is_buy)
    if reduce_only:
        return R.OK if reducible else R.REDUCE_ONLY_WOULD_INCREASE
    opening = size_lots - reducible if size_lots > reducible else 0
    if opening:
        cap = market.params.max_open_interest_lots
        if cap and market.open_interest + opening > cap:
            return R.OPEN_INTEREST_CAP
        leverage = get_leverage(market, account)[0]
        position = account.positions.get(market_id)
        held = 0 if position is None else abs(position.size_lots)
        if leverage > compute_max_leverage(market.params, (held - reducible + opening) * price):
            return R.LEVERAGE_TOO_HIGH
        equity, initial, _, _ = compute_cross_summary(state, account)
        need = compute_order_margin(market.params, leverage, price, opening) - released
        if equity < initial + need + compute_fee_reserve(market, price, size_lots - opening):
            return R.INSUFFICIENT_MARGIN
    return R.OK


def compute_fee_reserve(market: Market, price: int, size_lots: int) -> int:
    """The most `size_lots` lots at `price` can be charged in fees (no margin: the part closing a position)."""
    return compute_order_margin(market.params, 1, price, size_lots) - price * size_lots


# --- read-only views for clients -----------------------------------------------------------------------------

def describe_position(state: State, account: Account, market: Market, position: Position) -> dict:
    """A position as a client sees it, at the current mark: integers only (the RPC layer formats them).

    `entry_price` is cost / size rounded toward zero (the exact average is cost over size); `margin` is the
    isolated margin, or for a cross position what it would need at its leverage; `liquidation_price` comes from
    `stf.perp_math.compute_liquidation_price_from_cost`, with, for cross, the account's equity without this
    position's PnL and without the other positions' maintenance (valid while the other marks hold)."""
    size, cost, mark = position.size_lots, position.cost, market.mark_price
    held = size if size > 0 else -size
    notional = held * mark
    unrealized = size * mark - cost
    leverage = get_leverage(market, account)[0]
    maintenance = compute_maintenance(market, notional)
    if position.is_cross:
        equity, _, cross_maintenance, _ = compute_cross_summary(state, account)
        base = equity - unrealized - (cross_maintenance - maintenance)
        margin = compute_initial(notional, leverage)
    else:
        base = margin = position.margin
    liquidation = compute_liquidation_price_from_cost(
        market.params.margin_tiers, size, cost, base, market.params.tick_size)
    return {
        "market": market.params.market_id, "size_lots": size, "cost": cost,
        "entry_price": cost // size if cost * size >= 0 else -((-cost) // size), "mark_price": mark,
        "notional": notional, "unrealized_pnl": unrealized, "is_cross": position.is_cross, "leverage": leverage,
        "margin": margin, "maintenance_margin": maintenance, "funding_index": position.funding_index,
        "realized_pnl": position.realized_pnl, "liquidation_price": liquidation,
    }
