"""Receipts: the outcome of each action of each included transaction."""

from typing import NamedTuple


class ActionResult(NamedTuple):
    """`code` is a ResultCode; `order_id` is set for order actions that got or named an order;
    `filled_lots` is what the action traded immediately."""

    code: int
    order_id: int | None = None
    filled_lots: int = 0


class Receipt(NamedTuple):
    tx_hash: bytes
    results: tuple[ActionResult, ...]

    def to_wire(self) -> list:
        return [self.tx_hash, [list(r) for r in self.results]]
