"""Adapters that replay the benchmark's logical order stream through pure-Python order books from PyPI.

Each adapter exposes the same three operations, in the stream's execution order:

- `place(market, is_buy, price, size, oid)`: a limit order (the stream only places orders that rest);
- `cancel(market, oid)`: cancel a resting order by the stream's order id;
- `take(market, is_buy, size, worst_price, oid) -> filled lots`: a marketable order with a worst-price bound that
  must never rest (immediate-or-cancel).

Neither peer has an immediate-or-cancel order with a price bound (lobby's market order has no bound; pyorderbook
has no market order at all), so `take` is a limit order at the worst price followed by a cancel of any
remainder; that cancel is counted inside the timed operation. The adapters keep a map from the stream's order id
to the peer's handle because both peers name orders by ids (or objects) of their own. The peers check no
signature, move no balance, hold no funds, charge no fee, allocate no sequence in a shared state, emit no event or
receipt and keep no state root: they only match.
"""

from __future__ import annotations

PEER_NAMES = ("lobby", "pyorderbook")


class LobbyPeer:
    """lobby 0.1.3 (a PyLOB fork): a red-black tree of price levels (pure Python), doubly linked orders."""

    name = "lobby"

    def __init__(self, markets: tuple[int, ...]) -> None:
        from lobby.orderbook import OrderBook

        self.books = {m: OrderBook(price_digits=0) for m in markets}
        self.handles: dict[int, tuple[str, int]] = {}

    def place(self, market: int, is_buy: bool, price: int, size: int, oid: int) -> None:
        side = "bid" if is_buy else "ask"
        quote = {"type": "limit", "side": side, "qty": size, "price": price, "tid": 0}
        _trades, in_book = self.books[market].processOrder(quote, False, False)
        if in_book is not None:
            self.handles[oid] = (side, in_book["idNum"])

    def cancel(self, market: int, oid: int) -> None:
        side, id_num = self.handles.pop(oid)
        self.books[market].cancelOrder(side, id_num)

    def take(self, market: int, is_buy: bool, size: int, worst_price: int, oid: int) -> int:
        side = "bid" if is_buy else "ask"
        book = self.books[market]
        quote = {"type": "limit", "side": side, "qty": size, "price": worst_price, "tid": 1}
        trades, in_book = book.processOrder(quote, False, False)
        if in_book is not None:
            book.cancelOrder(side, in_book["idNum"])
        return sum(t["qty"] for t in trades)

    def resting_count(self) -> int:
        return sum(len(b.bids) + len(b.asks) for b in self.books.values())


class PyOrderBookPeer:
    """pyorderbook 0.4.9: a heap of price levels, each a dict of orders; Decimal prices and uuid4 ids.

    Calls `Book._match` directly rather than the public `Book.match` (which only dispatches on list or single
    order), to give the peer its fastest path.
    """

    name = "pyorderbook"

    def __init__(self, markets: tuple[int, ...]) -> None:
        from pyorderbook import Book, Order, Side

        self._order = Order
        self._bid, self._ask = Side.BID, Side.ASK
        self.book = Book()
        self.symbols = {m: f"M{m}" for m in markets}
        self.handles: dict[int, object] = {}

    def place(self, market: int, is_buy: bool, price: int, size: int, oid: int) -> None:
        order = self._order(self._bid if is_buy else self._ask, self.symbols[market], price, size)
        self.book._match(order)
        if order.quantity:
            self.handles[oid] = order

    def cancel(self, market: int, oid: int) -> None:
        self.book.cancel(self.handles.pop(oid))

    def take(self, market: int, is_buy: bool, size: int, worst_price: int, oid: int) -> int:
        order = self._order(self._bid if is_buy else self._ask, self.symbols[market], worst_price, size)
        self.book._match(order)
        if order.quantity:
            self.book.cancel(order)
        return size - order.quantity

    def resting_count(self) -> int:
        return len(self.book.order_map)


PEERS = {"lobby": LobbyPeer, "pyorderbook": PyOrderBookPeer}


def make_peer(name: str, markets: tuple[int, ...]):
    """A fresh adapter, or None when the peer's package is not installed."""
    try:
        return PEERS[name](markets)
    except ImportError:
        return None


def replay(peer, ops: list[tuple]) -> int:
    """Replay logical ops (see scripts/benchmarks/stf.py) through `peer`; returns the lots filled by takes."""
    place, cancel, take = peer.place, peer.cancel, peer.take
    filled = 0
    for op in ops:
        kind = op[0]
        if kind == "P":
            place(op[1], op[2], op[3], op[4], op[5])
        elif kind == "C":
            cancel(op[1], op[2])
        else:
            filled += take(op[1], op[2], op[3], op[4], op[5])
    return filled
