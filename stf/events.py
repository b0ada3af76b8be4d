"""Events: every change the STF makes is announced by one. Events are immutable named tuples,
encoded as `[kind, field, ...]` in block diffs (docs/PROTOCOL.md §Events lists the kinds and fields)."""

from typing import NamedTuple

REASON_CANCELLED = 0
REASON_FILLED = 1
REASON_EXPIRED = 2
REASON_SELF_TRADE = 3
REASON_UNFILLED_IOC = 4
REASON_SCHEDULED_CANCEL = 5
DONE_REASON_NAMES = {
    REASON_CANCELLED: "cancelled", REASON_FILLED: "filled", REASON_EXPIRED: "expired",
    REASON_SELF_TRADE: "self_trade_prevented", REASON_UNFILLED_IOC: "unfilled_remainder",
    REASON_SCHEDULED_CANCEL: "scheduled_cancel",
}


class OrderAccepted(NamedTuple):
    KIND = 1
    order_id: int
    market: int
    owner: bytes
    is_buy: bool
    price: int
    size_lots: int
    client_id: int | None
    time_in_force: int


class Trade(NamedTuple):
    """One fill, at the maker's price. Fees are signed: negative is a rebate paid to that side."""

    KIND = 2
    market: int
    price: int
    size_lots: int
    taker_is_buy: bool
    taker_order_id: int
    maker_order_id: int
    taker: bytes
    maker: bytes
    taker_fee: int
    maker_fee: int


class OrderDone(NamedTuple):
    """An order left the book (or was never rested); `remaining_lots` is what was not filled."""

    KIND = 3
    order_id: int
    market: int
    owner: bytes
    reason: int
    remaining_lots: int


class OrderModified(NamedTuple):
    KIND = 4
    order_id: int
    market: int
    owner: bytes
    price: int
    size_lots: int
    kept_priority: bool


class TransferEvent(NamedTuple):
    KIND = 5
    sender: bytes
    recipient: bytes
    asset: int
    amount: int


class WithdrawalEvent(NamedTuple):
    KIND = 6
    account: bytes
    asset: int
    amount: int
    destination: bytes


class FaucetEvent(NamedTuple):
    KIND = 7
    account: bytes
    asset: int
    amount: int


class AgentEvent(NamedTuple):
    KIND = 8
    account: bytes
    agent: bytes
    approved: bool


class ScheduleEvent(NamedTuple):
    """The dead-man's switch was set (at_ms > 0), cleared (0) or fired (fired True)."""

    KIND = 9
    account: bytes
    at_ms: int
    fired: bool


Event = OrderAccepted | Trade | OrderDone | OrderModified | TransferEvent | WithdrawalEvent | FaucetEvent \
    | AgentEvent | ScheduleEvent
EVENT_TYPES: dict[int, type] = {
    cls.KIND: cls for cls in (
        OrderAccepted, Trade, OrderDone, OrderModified, TransferEvent, WithdrawalEvent, FaucetEvent, AgentEvent,
        ScheduleEvent,
    )
}


def encode_event(event: Event) -> list:
    return [event.KIND, *event]


def decode_event(raw: list) -> Event:
    return EVENT_TYPES[raw[0]](*raw[1:])
