"""The invariant checker, run after every block in the property tests.

`check_invariants(state, supply)` raises AssertionError naming the first broken rule:
- books: every level non-empty and in `keys` exactly once, keys sorted, FIFO by seq within a level, every order on
  the right side and price, and never crossed (best bid < best ask);
- indexes: the books, `state.orders`, the accounts' order maps and client-id maps hold exactly the same orders;
- holds: for every account and asset, the hold equals what its open orders need, and 0 <= hold <= balance;
- supply: for each asset, the sum of all balances equals `supply[asset]`, which the caller keeps as genesis
  supply + faucet mints - withdrawals (from the events); for the collateral asset the sum also counts every
  account's cross collateral, isolated margins and unrealized PnL at the mark (value is conserved exactly);
- perps: each market's long open interest equals its short open interest and its recorded `open_interest`;
  the markets' position indexes match the accounts'; every account's `order_margin` equals what its resting perp
  orders reserve; no account or isolated position ends a block below maintenance margin in a market that can
  trade unless the block liquidated it (`check_perp_invariants`, given the block's events).
"""

from stf.events import FaucetEvent, LiquidationEvent, WithdrawalEvent
from stf.liquidation import is_liquidatable_market
from stf.positions import compute_cross_summary, compute_isolated_equity, compute_position_maintenance
from stf.spot import compute_order_hold
from stf.state import State, compute_resting_margin


def check_books(state: State) -> list:
    seen = []
    for market_id in sorted(state.markets):
        book = state.markets[market_id].book
        for side in (book.bids, book.asks):
            assert side.keys == sorted(side.keys), f"market {market_id}: level keys not sorted"
            assert len(side.keys) == len(set(side.keys)) == len(side.levels), f"market {market_id}: keys and levels differ"
            assert sorted(side.totals) == sorted(side.levels), f"market {market_id}: level totals and levels differ"
            for price, level in side.iter_levels():
                assert level, f"market {market_id}: empty level at {price}"
                assert side.totals[price] == sum(o.size_lots for o in level), f"market {market_id}: total at {price}"
                seqs = [o.seq for o in level]
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"market {market_id}: level {price} not FIFO"
                for order in level:
                    assert order.price == price and order.is_buy == side.is_bid and order.market_id == market_id
                    assert 0 < order.size_lots <= order.orig_size_lots or order.size_lots > 0
                    seen.append(order)
        bid, ask = book.bids.best_price(), book.asks.best_price()
        assert bid is None or ask is None or bid < ask, f"market {market_id}: crossed book {bid} >= {ask}"
    return seen


def check_indexes(state: State, booked: list) -> None:
    booked_ids = sorted(o.order_id for o in booked)
    assert booked_ids == sorted(state.orders), "books and state.orders differ"
    for order in booked:
        assert state.orders[order.order_id] is order
    by_account = sorted(oid for a in state.accounts.values() for oid in a.orders)
    assert by_account == booked_ids, "accounts' order maps and books differ"
    for address in sorted(state.accounts):
        account = state.accounts[address]
        for order_id, order in account.orders.items():
            assert order.owner == address and order.order_id == order_id
        expected_cids = {o.client_id: o for o in account.orders.values() if o.client_id is not None}
        assert account.client_ids == expected_cids, f"client ids of {address.hex()} out of sync"


def check_holds(state: State) -> None:
    for address in sorted(state.accounts):
        account = state.accounts[address]
        need: dict[int, int] = {}
        margin = 0
        for order in account.orders.values():
            market = state.markets[order.market_id]
            if market.is_perp:
                if not order.reduce_only:
                    margin += compute_resting_margin(market, account, order.price, order.size_lots)
                continue
            asset, atoms = compute_order_hold(market, order.is_buy, order.price, order.size_lots)
            need[asset] = need.get(asset, 0) + atoms
        assert account.holds == need, f"holds of {address.hex()}: {account.holds} != open orders' {need}"
        assert account.order_margin == margin, f"order margin of {address.hex()}: {account.order_margin} != {margin}"
        for asset, amount in account.balances.items():
            assert amount > 0, f"balance of {address.hex()} in {asset} is {amount}"
            assert account.holds.get(asset, 0) <= amount, f"hold above balance for {address.hex()}"


def compute_supply(state: State) -> dict[int, int]:
    """Every asset's total over all accounts; the collateral asset also counts the perp side at the marks."""
    supply: dict[int, int] = {}
    perp_value = 0
    for account in state.accounts.values():
        for asset, amount in account.balances.items():
            supply[asset] = supply.get(asset, 0) + amount
        perp_value += account.collateral
        for market_id, position in account.positions.items():
            mark = state.markets[market_id].mark_price
            perp_value += position.margin + position.size_lots * mark - position.cost
    if perp_value:
        asset = state.params.collateral_asset
        supply[asset] = supply.get(asset, 0) + perp_value
    return supply


def check_perp_invariants(state: State, events: list) -> None:
    liquidated = {(e.account, e.market) for e in events if type(e) is LiquidationEvent}
    liquidated_accounts = {account for account, _ in liquidated}
    for market_id in sorted(state.markets):
        market = state.markets[market_id]
        if not market.is_perp:
            continue
        sizes = [p.size_lots for p in market.positions.values()]
        assert 0 not in sizes, f"market {market_id}: an empty position is kept"
        longs, shorts = sum(s for s in sizes if s > 0), -sum(s for s in sizes if s < 0)
        assert longs == shorts == market.open_interest, f"market {market_id}: OI {longs} long, {shorts} short, " \
            f"recorded {market.open_interest}"
        indexed = {(a, m) for a, acc in state.accounts.items() for m in acc.positions if m == market_id}
        assert indexed == {(a, market_id) for a in market.positions}, f"market {market_id}: position index"
        for address, position in market.positions.items():
            assert state.accounts[address].positions[market_id] is position
    fund = state.params.insurance_account
    for address in sorted(state.accounts):
        account = state.accounts[address]
        if address == fund or not account.positions:
            continue
        tradable = [m for m in account.positions if is_liquidatable_market(state, state.markets[m])]
        cross = [m for m in tradable if account.positions[m].is_cross]
        if cross and len(cross) == sum(p.is_cross for p in account.positions.values()):
            equity, _, maintenance, _ = compute_cross_summary(state, account)
            assert equity >= maintenance or address in liquidated_accounts, \
                f"{address.hex()} ends the block below maintenance ({equity} < {maintenance}) with no liquidation"
        for market_id in tradable:
            position = account.positions[market_id]
            if position.is_cross:
                continue
            market = state.markets[market_id]
            equity, maintenance = compute_isolated_equity(market, position), compute_position_maintenance(market, position)
            assert equity >= maintenance or (address, market_id) in liquidated, \
                f"{address.hex()} isolated in {market_id} below maintenance ({equity} < {maintenance}), no liquidation"


def update_supply(supply: dict[int, int], events: list) -> None:
    """Apply the block's mints and burns to the expected supply."""
    for event in events:
        if type(event) is FaucetEvent:
            supply[event.asset] = supply.get(event.asset, 0) + event.amount
        elif type(event) is WithdrawalEvent:
            supply[event.asset] -= event.amount


def check_invariants(state: State, supply: dict[int, int]) -> None:
    booked = check_books(state)
    check_indexes(state, booked)
    check_holds(state)
    actual = compute_supply(state)
    expected = {asset: amount for asset, amount in supply.items() if amount}
    assert actual == expected, f"supply not conserved: {actual} != {expected}"
    assert actual == {asset: amount for asset, amount in state.supply.items() if amount}, "state.supply drifted"
