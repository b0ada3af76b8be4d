"""A deliberately simple reference order book: a flat list, sorted on every use.

It implements the documented matching rules (price-time priority, fills at the maker's price, self-trade
prevention expiring the resting order, GTC/IOC/FOK/ALO, cancel, modify keeping priority only for the same price
and a size that does not grow) with no attention to speed, so the fast book can be compared against it.
"""

from dataclasses import dataclass

GTC, IOC, FOK, ALO = 0, 1, 2, 3


@dataclass
class RefOrder:
    order_id: int
    seq: int
    owner: int
    is_buy: bool
    price: int
    size: int


class ReferenceBook:
    def __init__(self) -> None:
        self.orders: list[RefOrder] = []
        self.next_seq = 1

    def _crossing(self, is_buy: bool, limit: int) -> list[RefOrder]:
        opposite = [o for o in self.orders if o.is_buy != is_buy]
        if is_buy:
            return sorted((o for o in opposite if o.price <= limit), key=lambda o: (o.price, o.seq))
        return sorted((o for o in opposite if o.price >= limit), key=lambda o: (-o.price, o.seq))

    def place(self, owner: int, is_buy: bool, price: int, size: int, tif: int, order_id: int | None = None):
        """Returns (accepted, order_id, trades as (maker_id, price, qty), self-trade-expired ids)."""
        crossing = self._crossing(is_buy, price)
        if tif == ALO and crossing:
            return False, None, [], []
        if tif == FOK and sum(o.size for o in crossing if o.owner != owner) < size:
            return False, None, [], []
        seq = self.next_seq
        self.next_seq += 1
        order_id = seq if order_id is None else order_id
        trades, expired, remaining = [], [], size
        for maker in crossing:
            if not remaining:
                break
            if maker.owner == owner:
                self.orders.remove(maker)
                expired.append(maker.order_id)
                continue
            qty = min(remaining, maker.size)
            trades.append((maker.order_id, maker.price, qty))
            maker.size -= qty
            remaining -= qty
            if not maker.size:
                self.orders.remove(maker)
        if remaining and tif in (GTC, ALO):
            self.orders.append(RefOrder(order_id, seq, owner, is_buy, price, remaining))
        return True, order_id, trades, expired

    def find(self, order_id: int) -> RefOrder | None:
        return next((o for o in self.orders if o.order_id == order_id), None)

    def cancel(self, owner: int, order_id: int) -> bool:
        order = self.find(order_id)
        if order is None or order.owner != owner:
            return False
        self.orders.remove(order)
        return True

    def cancel_all(self, owner: int) -> list[int]:
        gone = sorted(o.order_id for o in self.orders if o.owner == owner)
        self.orders = [o for o in self.orders if o.owner != owner]
        return gone

    def modify(self, owner: int, order_id: int, price: int, size: int):
        order = self.find(order_id)
        if order is None or order.owner != owner:
            return False, [], []
        if price == order.price and size <= order.size:
            order.size = size
            return True, [], []
        self.orders.remove(order)
        _, _, trades, expired = self.place(owner, order.is_buy, price, size, GTC, order_id)
        return True, trades, expired

    def snapshot(self) -> list[tuple]:
        """Resting orders in priority order per side: bids best first, then asks best first."""
        bids = sorted((o for o in self.orders if o.is_buy), key=lambda o: (-o.price, o.seq))
        asks = sorted((o for o in self.orders if not o.is_buy), key=lambda o: (o.price, o.seq))
        return [(o.order_id, o.is_buy, o.price, o.size) for o in bids + asks]
