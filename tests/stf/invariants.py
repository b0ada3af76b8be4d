"""The invariant checker, run after every block in the property tests.

`check_invariants(state, supply)` raises AssertionError naming the first broken rule:
- books: every level non-empty and in `keys` exactly once, keys sorted, FIFO by seq within a level, every order on
  the right side and price, and never crossed (best bid < best ask);
- indexes: the books, `state.orders`, the accounts' order maps and client-id maps hold exactly the same orders;
- holds: for every account and asset, the hold equals what its open orders need, and 0 <= hold <= balance;
- supply: for each asset, the sum of all balances equals `supply[asset]`, which the caller keeps as genesis
  supply + faucet mints - withdrawals (from the events).
"""

from stf.events import FaucetEvent, WithdrawalEvent
from stf.spot import compute_order_hold
from stf.state import State


def check_books(state: State) -> list:
    seen = []
    for market_id in sorted(state.markets):
        book = state.markets[market_id].book
        for side in (book.bids, book.asks):
            assert side.keys == sorted(side.keys), f"market {market_id}: level keys not sorted"
            assert len(side.keys) == len(set(side.keys)) == len(side.levels), f"market {market_id}: keys and levels differ"
            for price, level in side.iter_levels():
                assert level, f"market {market_id}: empty level at {price}"
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
        for order in account.orders.values():
            market = state.markets[order.market_id]
            asset, atoms = compute_order_hold(market, order.is_buy, order.price, order.size_lots)
            need[asset] = need.get(asset, 0) + atoms
        assert account.holds == need, f"holds of {address.hex()}: {account.holds} != open orders' {need}"
        for asset, amount in account.balances.items():
            assert amount > 0, f"balance of {address.hex()} in {asset} is {amount}"
            assert account.holds.get(asset, 0) <= amount, f"hold above balance for {address.hex()}"


def compute_supply(state: State) -> dict[int, int]:
    supply: dict[int, int] = {}
    for account in state.accounts.values():
        for asset, amount in account.balances.items():
            supply[asset] = supply.get(asset, 0) + amount
    return supply


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
