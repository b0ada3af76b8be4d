"""Liquidation: through the book in chunks, the insurance fund's backstop, and auto-deleveraging (docs/RISK.md
§5 to §7, docs/PROTOCOL.md §Liquidation).

`process_liquidations` runs once per block, after marks, funding and triggers, over every account holding a
position (address order; the insurance fund itself is never liquidated). Only positions in markets that can
trade are touched: not halted, with a fresh oracle and a mark.

- **Cross**: when the account's cross equity < its cross maintenance margin, its open perp orders are
  cancelled; then, unless equity is below the backstop threshold (equity * 3 < maintenance * 2), each cross
  position in market-id order is reduced through the book by one chunk (at most `liquidation_chunk_notional`
  at the mark, at least one lot) with a reduce-only IOC limited to `liquidation_slippage_bps` from the mark,
  paying `liquidation_fee_bps` of the closed lots at the mark to the insurance fund (never more than the
  equity left). The account is re-checked after each chunk and left alone once back above maintenance; a chunk
  the book cannot fill completely sends every remaining cross position of the account (in markets that can
  trade) to the backstop. Larger positions take more blocks, one chunk a block.
- **Isolated**: the same for one position, with its own equity (margin + unrealized PnL) and maintenance, after
  cancelling the account's orders in that market.
- **Backstop**: the insurance fund takes the position at the mark, and pays the account's loss beyond its
  equity (the shortfall) so that no balance is left negative. For a cross account the cover is paid once no
  cross position is left, as its own event (stage backstop, size 0, price 0, `amount` the cover); an account
  that still holds a cross position in a market that cannot trade keeps its negative collateral until then. If the fund's collateral cannot pay the shortfall,
  the position is instead **auto-deleveraged**: closed at its bankruptcy price against the opposite positions in
  ADL order (most profitable and most leveraged first, ties by address; `stf.perp_math.compute_adl_rank_key`).
Every step is an event (`LiquidationEvent`, `AdlEvent`, and the orders and trades of the book stage).
"""

from stf.events import (
    LIQUIDATION_ADL, LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK, REASON_FILLED, REASON_LIQUIDATION,
    REASON_UNFILLED_IOC, AdlEvent, LiquidationEvent, OrderAccepted, OrderDone, Trade,
)
from stf.margin import compute_initial
from stf.oracle import is_oracle_fresh
from stf.perp import compute_slippage_limit
from stf.perp_math import compute_adl_rank_key
from stf.positions import (
    apply_fill, compute_cross_summary, compute_isolated_equity, compute_position_maintenance,
)
from stf.spot import expire_resting, match
from stf.state import Account, Market, Position, State, allocate_seq, get_account, get_leverage
from stf.tx import TIF_IOC
from stf.units import compute_fee


def is_liquidatable_market(state: State, market: Market) -> bool:
    return not (market.halted or state.halted) and market.mark_price > 0 and is_oracle_fresh(market, state.time_ms)


def process_liquidations(state: State, events: list) -> None:
    """Check every position holder in address order; then, because liquidating one account fills other
    accounts' resting orders and deleverages their positions, check again the accounts those steps touched,
    until a pass touches no account that was not liquidated yet (each pass liquidates at least one new account
    or ends, so this terminates)."""
    holders: dict[bytes, None] = {}
    for market_id in sorted(state.markets):
        market = state.markets[market_id]
        if market.is_perp and is_liquidatable_market(state, market):
            holders.update(dict.fromkeys(market.positions))
    fund = state.params.insurance_account
    liquidated: dict[bytes, None] = {}
    while holders:
        holders.pop(fund, None)
        start = len(events)
        for address in sorted(holders):
            if liquidate_account(state, events, state.accounts[address]):
                liquidated[address] = None
        holders = {}
        for event in events[start:]:
            kind = type(event)
            touched = event.maker if kind is Trade else event.counterparty if kind is AdlEvent else None
            if touched is not None and touched not in liquidated and touched in state.accounts \
                    and state.accounts[touched].positions:
                holders[touched] = None


def liquidate_account(state: State, events: list, account: Account) -> bool:
    """Liquidate what of the account is below maintenance; True if anything was."""
    found = False
    if any(position.is_cross for position in account.positions.values()):
        equity, _, maintenance, _ = compute_cross_summary(state, account)
        if equity < maintenance:
            found = True
            liquidate_cross(state, events, account, equity, maintenance)
    for market_id in sorted(account.positions):
        position = account.positions.get(market_id)
        market = state.markets[market_id]
        if position is None or position.is_cross or not is_liquidatable_market(state, market):
            continue
        equity = compute_isolated_equity(market, position)
        maintenance = compute_position_maintenance(market, position)
        if equity < maintenance:
            found = True
            liquidate_isolated(state, events, account, market, position, equity, maintenance)
    return found


def cancel_perp_orders(state: State, events: list, account: Account, market_id: int | None) -> None:
    """Cancel the account's open perp orders (in one market, or all), in order-id order."""
    for order_id in sorted(account.orders):
        order = account.orders[order_id]
        market = state.markets[order.market_id]
        if market.is_perp and (market_id is None or order.market_id == market_id):
            expire_resting(state, events, market, order, REASON_LIQUIDATION)


def liquidate_cross(state: State, events: list, account: Account, equity: int, maintenance: int) -> None:
    markets = [state.markets[m] for m in sorted(account.positions)
               if account.positions[m].is_cross and is_liquidatable_market(state, state.markets[m])]
    if not markets:
        return
    cancel_perp_orders(state, events, account, None)
    if equity * 3 >= maintenance * 2:
        for market in markets:
            position = account.positions[market.params.market_id]
            absorbed = close_through_book(state, events, account, market, position, equity, maintenance)
            equity, _, maintenance, _ = compute_cross_summary(state, account)
            if equity >= maintenance:
                return
            if not absorbed:
                break  # the book could not absorb the chunk: the backstop takes the rest
        else:
            return  # every chunk filled: the next block takes the next chunks
    backstop_cross(state, events, account, markets, equity, maintenance)


def liquidate_isolated(state: State, events: list, account: Account, market: Market, position: Position,
                       equity: int, maintenance: int) -> None:
    market_id = market.params.market_id
    cancel_perp_orders(state, events, account, market_id)
    if equity * 3 >= maintenance * 2:
        if close_through_book(state, events, account, market, position, equity, maintenance):
            return
        position = account.positions.get(market_id)
        if position is None:
            return
        equity = compute_isolated_equity(market, position)
        maintenance = compute_position_maintenance(market, position)
        if equity >= maintenance:
            return
    backstop_isolated(state, events, account, market, position, equity, maintenance)


def close_through_book(state: State, events: list, account: Account, market: Market, position: Position,
                       equity: int, maintenance: int) -> bool:
    """One chunk through the book; True when the chunk filled completely (or closed the position)."""
    p = market.params
    market_id = p.market_id
    mark = market.mark_price
    size = position.size_lots
    held = size if size > 0 else -size
    lots = min(held, max(1, p.liquidation_chunk_notional // mark))
    is_buy = size < 0
    limit = compute_slippage_limit(market, is_buy, mark)
    collateral_before = account.collateral
    order_id = allocate_seq(state)
    events.append(OrderAccepted(order_id, market_id, account.address, is_buy, limit, lots, None, TIF_IOC))
    filled = match(state, events, market, account, order_id, is_buy, limit, lots)
    events.append(OrderDone(order_id, market_id, account.address,
                            REASON_FILLED if filled == lots else REASON_UNFILLED_IOC, lots - filled))
    fee = 0
    if filled:
        fee = compute_fee(filled * mark, p.liquidation_fee_bps)
        remaining = account.positions.get(market_id)
        if position.is_cross:
            left = compute_cross_summary(state, account)[0]
        elif remaining is not None:
            left = compute_isolated_equity(market, remaining)
        else:
            left = account.collateral - collateral_before  # what the closed isolated position gave back
        fee = min(fee, max(0, left))
        if fee:
            if position.is_cross or remaining is None:
                account.collateral -= fee
            else:
                remaining.margin -= fee
            fund = get_account(state, state.params.insurance_account)
            fund.collateral += fee
            state.dirty_accounts[fund.address] = None
            state.dirty_accounts[account.address] = None
    events.append(LiquidationEvent(account.address, market_id, LIQUIDATION_BOOK, filled if is_buy else -filled,
                                   limit, fee, equity, maintenance))
    return filled == lots


def backstop_cross(state: State, events: list, account: Account, markets: list[Market], equity: int,
                   maintenance: int) -> None:
    fund = get_account(state, state.params.insurance_account)
    shortfall = -equity if equity < 0 else 0
    if shortfall and fund.collateral < shortfall:
        for market in markets:
            position = account.positions.get(market.params.market_id)
            if position is not None:
                equity_now = compute_cross_summary(state, account)[0]
                unrealized = position.size_lots * market.mark_price - position.cost
                auto_deleverage(state, events, account, market, position, equity_now - unrealized, equity,
                                maintenance)
        report_cover(state, events, account, fund, markets[0], equity, maintenance)
        return
    for market in markets:
        position = account.positions.get(market.params.market_id)
        if position is not None:
            transfer_to_fund(state, events, account, fund, market, position, 0, equity, maintenance)
    report_cover(state, events, account, fund, markets[0], equity, maintenance)


def report_cover(state: State, events: list, account: Account, fund: Account, market: Market, equity: int,
                 maintenance: int) -> None:
    """Once a liquidated cross account holds no cross position, the fund pays back its negative collateral (as
    far as the fund's collateral goes), announced as a backstop event of size 0."""
    if any(p.is_cross for p in account.positions.values()):
        return
    covered = cover_shortfall(state, account, fund)
    if covered:
        events.append(LiquidationEvent(account.address, market.params.market_id, LIQUIDATION_BACKSTOP, 0, 0,
                                       covered, equity, maintenance))


def cover_shortfall(state: State, account: Account, fund: Account) -> int:
    """The fund pays a negative cross collateral back to zero, as far as its collateral goes; returns the
    amount paid."""
    if account.collateral >= 0 or fund.collateral <= 0:
        return 0
    paid = min(-account.collateral, fund.collateral)
    account.collateral += paid
    fund.collateral -= paid
    state.dirty_accounts[account.address] = None
    state.dirty_accounts[fund.address] = None
    return paid


def backstop_isolated(state: State, events: list, account: Account, market: Market, position: Position,
                      equity: int, maintenance: int) -> None:
    fund = get_account(state, state.params.insurance_account)
    shortfall = -equity if equity < 0 else 0
    if shortfall and fund.collateral < shortfall:
        auto_deleverage(state, events, account, market, position, position.margin, equity, maintenance)
        return
    if shortfall:
        fund.collateral -= shortfall
        position.margin += shortfall
    transfer_to_fund(state, events, account, fund, market, position, shortfall, equity, maintenance)


def transfer_to_fund(state: State, events: list, account: Account, fund: Account, market: Market,
                     position: Position, covered: int, equity: int, maintenance: int) -> None:
    """The insurance fund takes the whole position at the mark (a transfer with no fee)."""
    size = position.size_lots
    mark = market.mark_price
    apply_fill(state, market, account, -size, mark)
    apply_fill(state, market, fund, size, mark)
    events.append(LiquidationEvent(account.address, market.params.market_id, LIQUIDATION_BACKSTOP, -size, mark,
                                   covered, equity, maintenance))


def compute_bankruptcy_price_from_cost(size: int, cost: int, margin: int) -> int:
    """The price where margin + size * price - cost = 0, to the atom toward the mark (a long up, a short down) so
    closing there leaves the position's equity >= 0; at least 1."""
    if size > 0:
        return max(1, -((margin - cost) // size))  # ceil((cost - margin) / size)
    return max(1, (margin - cost) // -size)  # floor((margin - cost) / |size|)


def auto_deleverage(state: State, events: list, account: Account, market: Market, position: Position,
                    margin: int, equity: int, maintenance: int) -> None:
    """Close the position at its bankruptcy price against the opposite positions in ADL order."""
    size = position.size_lots
    price = compute_bankruptcy_price_from_cost(size, position.cost, margin)
    mark = market.mark_price
    ranked = []
    for address, other in market.positions.items():
        if address == account.address or (other.size_lots > 0) == (size > 0):
            continue
        owner = state.accounts[address]
        notional = abs(other.size_lots) * mark
        attributed = other.margin if not other.is_cross else compute_initial(notional, get_leverage(market, owner)[0])
        key = compute_adl_rank_key(other.size_lots * mark - other.cost, notional, max(1, attributed), address)
        ranked.append((key, owner))
    ranked.sort(key=lambda pair: pair[0])
    remaining = abs(size)
    sign = 1 if size > 0 else -1
    for _, owner in ranked:
        if not remaining:
            break
        other = owner.positions[market.params.market_id]
        lots = min(remaining, abs(other.size_lots))
        apply_fill(state, market, account, -sign * lots, price)
        apply_fill(state, market, owner, sign * lots, price)
        events.append(AdlEvent(market.params.market_id, account.address, owner.address, sign * lots, price))
        remaining -= lots
    events.append(LiquidationEvent(account.address, market.params.market_id, LIQUIDATION_ADL,
                                   -sign * (abs(size) - remaining), price, 0, equity, maintenance))
