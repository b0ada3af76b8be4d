"""Model-based test: the fast book and matching against `ReferenceBook` on the same random operations.

Every operation is one signed transaction in its own block, through the real `apply_block`; after each block the
trades, the self-trade expiries, the acceptance of the action and the whole resting book must equal the
reference's, and the invariant checker must pass.
"""

from hypothesis import HealthCheck, given, settings, strategies as st

from invariants import check_invariants, compute_supply
from reference_book import ReferenceBook
from stf.errors import ResultCode
from stf.events import REASON_SELF_TRADE, OrderDone, Trade
from stf.tx import CancelAll, Cancel, Modify, PlaceOrder
from stf_helpers import BTC_USD, Chain

MID = 1_000_000
place = st.tuples(
    st.just("place"), st.integers(0, 2), st.booleans(), st.integers(MID - 8, MID + 8), st.integers(1, 6),
    st.sampled_from([0, 0, 1, 2, 3]),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 40))
modify = st.tuples(st.just("modify"), st.integers(0, 2), st.integers(0, 40), st.integers(MID - 8, MID + 8), st.integers(1, 6))
cancel_all = st.tuples(st.just("cancel_all"), st.integers(0, 2))
operations = st.lists(st.one_of(place, place, place, cancel, modify, cancel_all), min_size=1, max_size=40)


def book_snapshot(chain: Chain) -> list[tuple]:
    book = chain.state.markets[BTC_USD].book
    out = []
    for side in (book.bids, book.asks):
        for _, level in side.iter_levels():
            out += [(o.order_id, o.is_buy, o.price, o.size_lots) for o in level]
    return out


def observed(result) -> tuple[list, list]:
    trades = [(e.maker_order_id, e.price, e.size_lots) for e in result.events if type(e) is Trade]
    expired = [e.order_id for e in result.events if type(e) is OrderDone and e.reason == REASON_SELF_TRADE]
    return trades, expired


def apply_op(chain: Chain, ref: ReferenceBook, op: tuple) -> None:
    kind, who = op[0], op[1]
    key = chain.keys[who]
    if kind == "place":
        _, _, is_buy, price, size, tif = op
        result = chain.run(key, PlaceOrder(BTC_USD, is_buy, price, size, tif, None, 0, False))
        accepted, order_id, trades, expired = ref.place(who, is_buy, price, size, tif)
        code = result.receipts[0].results[0].code
        assert (code == ResultCode.OK) == accepted, (op, code)
        assert observed(result) == (trades, expired)
    elif kind == "cancel":
        result = chain.run(key, Cancel(BTC_USD, op[2] or 1))
        ok = ref.cancel(who, op[2] or 1)
        assert (result.receipts[0].results[0].code == ResultCode.OK) == ok
    elif kind == "modify":
        _, _, order_id, price, size = op
        result = chain.run(key, Modify(BTC_USD, order_id or 1, price, size))
        ok, trades, expired = ref.modify(who, order_id or 1, price, size)
        assert (result.receipts[0].results[0].code == ResultCode.OK) == ok
        assert observed(result) == (trades, expired)
    else:
        result = chain.run(key, CancelAll(BTC_USD))
        gone = ref.cancel_all(who)
        assert [e.order_id for e in result.events if type(e) is OrderDone] == gone


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_fast_book_matches_reference_book(ops: list[tuple]) -> None:
    chain = Chain(accounts=3)
    ref = ReferenceBook()
    supply = compute_supply(chain.state)
    for op in ops:
        apply_op(chain, ref, op)
        assert book_snapshot(chain) == ref.snapshot()
        check_invariants(chain.state, supply)
