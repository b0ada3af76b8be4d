"""rpc/bookfeed.py: a LocalBook fed by the feed equals the `book` method after every block of a random flow;
gaps and wrong books are detected; the documented checksum example holds."""

import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpc.bookfeed import (
    CHECKSUM_LEVELS, _changes, BookFeed, BookGap, BookMismatch, LocalBook, compute_checksum, format_checksum_string,
)
from stf.tx import TIF_ALO, TIF_GTC, TIF_IOC, Cancel, CancelAll, MarketOrder, Modify, PlaceOrder
from test_rpc_methods import BTC_USD, ETH_USD, RpcChain, place

ROOT = Path(__file__).resolve().parents[2]
MIDS = {BTC_USD: 1_000_000, ETH_USD: 30_000}


def test_documented_checksum_example() -> None:
    bids, asks = [(1_000_000, 5), (999_999, 2)], [(1_000_001, 3)]
    text = "b:1000000:5|a:1000001:3|b:999999:2"
    assert format_checksum_string(bids, asks) == text
    assert compute_checksum(bids, asks) == zlib.crc32(text.encode()) == 1322115694
    for doc in (ROOT / "rpc" / "bookfeed.py", ROOT / "docs" / "API.md"):
        assert text in doc.read_text() and "1322115694" in doc.read_text(), doc


def test_checksum_edges() -> None:
    assert compute_checksum([], []) == 0
    # The side letters keep a short bid side apart from a short ask side.
    assert format_checksum_string([(5, 1)], [(6, 1), (7, 1)]) != format_checksum_string([(5, 1), (7, 1)], [(6, 1)])
    many = [(1000 - i, 1) for i in range(15)]
    assert format_checksum_string(many, []).count("|") == CHECKSUM_LEVELS - 1  # top 10 only


def random_action(rng: random.Random, chain: RpcChain, who: int):
    market = rng.choice((BTC_USD, ETH_USD))
    mid = MIDS[market]
    account = chain.state.accounts.get(chain.keys[who].address)
    own = sorted(account.orders) if account else []
    roll = rng.random()
    if roll < 0.55:
        is_buy = rng.random() < 0.5
        offset = rng.randint(-5, 80)  # mostly resting: bids below the mid, asks above, many levels
        price = mid - offset if is_buy else mid + offset
        return place(market, is_buy, price, rng.randint(1, 20), tif=rng.choice((TIF_GTC, TIF_GTC, TIF_IOC, TIF_ALO)))
    if roll < 0.62:
        return MarketOrder(market, rng.random() < 0.5, rng.randint(1, 40), mid + rng.choice((-30, 30)), None, False)
    if roll < 0.85 and own:
        order = account.orders[rng.choice(own)]
        return Cancel(order.market_id, order.order_id)
    if roll < 0.95 and own:
        order = account.orders[rng.choice(own)]
        return Modify(order.market_id, order.order_id, order.price + rng.randint(-2, 2),
                      max(1, order.size_lots + rng.randint(-5, 5)))
    if roll < 0.97:
        return CancelAll(rng.choice((None, market)))
    return place(market, True, mid - 1, 1)


@pytest.mark.parametrize("seed, depth", [(1, 10), (2, 50), (3, 10)])
def test_local_book_follows_the_feed_exactly(seed: int, depth: int) -> None:
    rng = random.Random(seed)
    chain = RpcChain(accounts=12, feed_depth=depth)
    local = {m: LocalBook() for m in (BTC_USD, ETH_USD)}
    for market, book in local.items():
        book.apply(chain.view.book_feed.snapshot(market))
    truncated = 0
    for _ in range(200):
        txs = []
        for _ in range(rng.randint(0, 10)):
            who = rng.randrange(len(chain.keys))
            txs.append(chain.tx(chain.keys[who], *[random_action(rng, chain, who) for _ in range(rng.randint(1, 3))]))
        chain.block(*txs)
        messages = chain.feed_messages[-1]
        assert sorted(messages) == [BTC_USD, ETH_USD]  # one message per market per block, changes or not
        for market, message in messages.items():
            local[market].apply(message)  # raises on a gap or a checksum mismatch
            served = chain.result("book", {"market": market, "depth": depth})
            assert message["seq"] == served["seq"] == str(chain.state.height)
            assert message["prev_seq"] == str(chain.state.height - 1)
            assert [[str(p), str(s)] for p, s in local[market].get_bids()] == served["bids"]
            assert [[str(p), str(s)] for p, s in local[market].get_asks()] == served["asks"]
            assert local[market].checksum() == served["checksum"] == message["checksum"]
            full = chain.state.markets[market].book
            truncated += len(full.bids.keys) > depth or len(full.asks.keys) > depth
    if depth == 10:
        assert truncated > 0, "the flow should push levels below the feed depth"


def make_feed_messages(blocks: int = 4) -> tuple[RpcChain, list[dict]]:
    chain = RpcChain()
    a, b, _ = chain.keys
    snapshot = chain.view.book_feed.snapshot(BTC_USD)
    messages = [snapshot]
    for i in range(blocks):
        chain.block(chain.tx(a, place(BTC_USD, True, 999_000 - i, 1 + i)),
                    chain.tx(b, place(BTC_USD, False, 1_001_000 + i, 2)))
        messages.append(chain.feed_messages[-1][BTC_USD])
    return chain, messages


def test_gap_is_detected_and_a_snapshot_resyncs() -> None:
    chain, messages = make_feed_messages()
    book = LocalBook()
    book.apply(messages[0])
    book.apply(messages[1])
    with pytest.raises(BookGap):
        book.apply(messages[3])  # messages[2] was lost
    assert not book.is_synced and book.seq == 1
    with pytest.raises(BookGap):
        book.apply(messages[4])  # still out of sync: diffs are refused until a snapshot
    book.apply(chain.view.book_feed.snapshot(BTC_USD))
    assert book.is_synced and book.seq == 4
    assert book.checksum() == messages[4]["checksum"]
    with pytest.raises(BookGap):
        LocalBook().apply(messages[1])  # a diff before any snapshot


def test_corrupted_level_is_caught_by_the_checksum() -> None:
    _, messages = make_feed_messages()
    book = LocalBook()
    book.apply(messages[0])
    book.apply(messages[1])
    price = next(iter(book.bids))
    book.bids[price] += 1  # the local copy went wrong
    with pytest.raises(BookMismatch):
        book.apply(messages[2])
    assert not book.is_synced
    tampered = dict(messages[2], changes=[[s, p, "999"] for s, p, _ in messages[2]["changes"]])
    fresh = LocalBook()
    fresh.apply(messages[0])
    fresh.apply(messages[1])
    with pytest.raises(BookMismatch):
        fresh.apply(tampered)


def test_empty_blocks_still_send_a_message_and_the_feed_refuses_skipped_heights() -> None:
    chain = RpcChain()
    chain.block()
    message = chain.feed_messages[-1][ETH_USD]
    assert message == {"type": "diff", "market": ETH_USD, "seq": "1", "prev_seq": "0", "height": "1",
                       "changes": [], "checksum": 0}
    feed = BookFeed(chain.state)
    chain.block()
    chain.block()
    with pytest.raises(ValueError):
        feed.update(chain.state)
    with pytest.raises(ValueError):
        BookFeed(chain.state, depth=CHECKSUM_LEVELS - 1)


levels = st.dictionaries(st.integers(1, 60), st.integers(1, 5), max_size=25).map(
    lambda d: sorted(d.items(), reverse=True))


@given(levels, levels)
def test_changes_turn_the_old_levels_into_the_new(old: list, new: list) -> None:
    book = dict(old)
    for side, price, size in _changes("bid", old, new):
        assert side == "bid"
        if size == "0":
            del book[int(price)]
        else:
            book[int(price)] = int(size)
    assert sorted(book.items(), reverse=True) == new
    assert len(_changes("bid", new, new)) == 0
