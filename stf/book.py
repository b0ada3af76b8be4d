"""The order book of one market: price levels in FIFO order, best price first.

Invariants (checked by tests/stf/invariants.py after every block in the property tests):
- priority is (price, seq): better price first, then the lower STF-assigned sequence number;
- every level in `levels` holds at least one order, and its key is in `keys` exactly once;
- the book is never crossed after an action completes (best bid < best ask).

Layout: each side keeps `keys`, a sorted list of level keys with the best level LAST so that taking the best
level is a pop from the end, and `levels`, a dict from price to a deque of orders in time priority. Bids use the
price as key (ascending, best = highest = last); asks use the negated price (best = lowest = last).
`totals` holds each level's resting lots, kept by every mutator (`insert`, `insert_by_seq`, `resize`, `remove`,
`pop_best_front`), so `depth` (the book feed's aggregated levels) costs one lookup per level. An order's size
changes only through `resize` while it rests.
Known limit: removing an order from the middle of a level is linear in the level's length (deque.remove);
levels are short in practice, and the benchmark measures it.
"""

from bisect import bisect_left, insort
from collections import deque

from stf.units import PriceQuote, SizeLots, TimeMs


class Order:
    """A resting order. Mutable only through the mutators in stf/state.py and stf/book.py."""

    __slots__ = (
        "order_id", "seq", "market_id", "owner", "is_buy", "price", "size_lots", "orig_size_lots", "client_id",
        "expires_at_ms", "post_only", "reduce_only",
    )

    def __init__(
        self, order_id: int, seq: int, market_id: int, owner: bytes, is_buy: bool, price: PriceQuote,
        size_lots: SizeLots, orig_size_lots: SizeLots, client_id: int | None, expires_at_ms: TimeMs,
        post_only: bool, reduce_only: bool = False,
    ) -> None:
        self.order_id = order_id
        self.seq = seq
        self.market_id = market_id
        self.owner = owner
        self.is_buy = is_buy
        self.price = price
        self.size_lots = size_lots
        self.orig_size_lots = orig_size_lots
        self.client_id = client_id
        self.expires_at_ms = expires_at_ms
        self.post_only = post_only
        self.reduce_only = reduce_only

    def to_fields(self) -> list:
        return [
            self.order_id, self.seq, self.market_id, self.owner, self.is_buy, self.price, self.size_lots,
            self.orig_size_lots, self.client_id, self.expires_at_ms, self.post_only, self.reduce_only,
        ]

    def __repr__(self) -> str:
        side = "buy" if self.is_buy else "sell"
        return f"Order(#{self.order_id} {side} {self.size_lots}@{self.price} seq={self.seq})"


class BookSide:
    __slots__ = ("is_bid", "keys", "levels", "totals")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.keys: list[int] = []
        self.levels: dict[int, deque[Order]] = {}
        self.totals: dict[int, int] = {}   # price -> lots resting at that level (derived, kept by every mutator)

    def best_price(self) -> PriceQuote | None:
        if not self.keys:
            return None
        key = self.keys[-1]
        return PriceQuote(key if self.is_bid else -key)

    def best_level(self) -> deque[Order] | None:
        if not self.keys:
            return None
        key = self.keys[-1]
        return self.levels[key if self.is_bid else -key]

    def insert(self, order: Order) -> None:
        """Append `order` at the back of its level; its seq must be the highest at that price."""
        level = self.levels.get(order.price)
        if level is None:
            self.levels[order.price] = deque((order,))
            self.totals[order.price] = order.size_lots
            insort(self.keys, order.price if self.is_bid else -order.price)
        else:
            level.append(order)
            self.totals[order.price] += order.size_lots

    def insert_by_seq(self, order: Order) -> None:
        """Insert at the position its seq gives (rebuilding a book from state entries, in any order)."""
        level = self.levels.get(order.price)
        if level is None or not level or level[-1].seq < order.seq:
            self.insert(order)
            return
        index = bisect_left([o.seq for o in level], order.seq)
        level.insert(index, order)
        self.totals[order.price] += order.size_lots

    def resize(self, order: Order, size_lots: SizeLots) -> None:
        """Set a resting order's size in place (its priority is kept)."""
        self.totals[order.price] += size_lots - order.size_lots
        order.size_lots = size_lots

    def remove(self, order: Order) -> None:
        level = self.levels[order.price]
        self.totals[order.price] -= order.size_lots
        if level[0] is order:
            level.popleft()
        else:
            level.remove(order)
        if not level:
            self._drop_level(order.price)

    def pop_best_front(self, level: deque[Order], price: PriceQuote) -> None:
        """Remove the first order of the best level (the one being filled or expired)."""
        self.totals[price] -= level.popleft().size_lots
        if not level:
            self._drop_level(price)

    def _drop_level(self, price: PriceQuote) -> None:
        del self.levels[price]
        del self.totals[price]
        key = price if self.is_bid else -price
        if self.keys[-1] == key:
            self.keys.pop()
        else:
            del self.keys[bisect_left(self.keys, key)]

    def iter_levels(self):
        """(price, level) from best to worst."""
        for key in reversed(self.keys):
            price = key if self.is_bid else -key
            yield PriceQuote(price), self.levels[price]

    def depth(self, max_levels: int) -> list[tuple[PriceQuote, SizeLots]]:
        """The best `max_levels` levels as (price, total lots), best first: O(levels), not O(orders)."""
        out = []
        totals = self.totals
        for key in reversed(self.keys[-max_levels:] if max_levels > 0 else ()):
            price = key if self.is_bid else -key
            out.append((PriceQuote(price), SizeLots(totals[price])))
        return out


class Book:
    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids = BookSide(True)
        self.asks = BookSide(False)

    def side(self, is_buy: bool) -> BookSide:
        return self.bids if is_buy else self.asks

    def opposite(self, is_buy: bool) -> BookSide:
        return self.asks if is_buy else self.bids
