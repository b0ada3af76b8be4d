"""Events: every change the STF makes is announced by one. Events are immutable named tuples,
encoded as `[kind, field, ...]` in block diffs (docs/PROTOCOL.md §Events lists the kinds and fields)."""

from typing import NamedTuple

REASON_CANCELLED = 0
REASON_FILLED = 1
REASON_EXPIRED = 2
REASON_SELF_TRADE = 3
REASON_UNFILLED_IOC = 4
REASON_SCHEDULED_CANCEL = 5
REASON_MARGIN = 6
REASON_REDUCE_ONLY = 7
REASON_LIQUIDATION = 8
DONE_REASON_NAMES = {
    REASON_CANCELLED: "cancelled", REASON_FILLED: "filled", REASON_EXPIRED: "expired",
    REASON_SELF_TRADE: "self_trade_prevented", REASON_UNFILLED_IOC: "unfilled_remainder",
    REASON_SCHEDULED_CANCEL: "scheduled_cancel", REASON_MARGIN: "insufficient_margin",
    REASON_REDUCE_ONLY: "reduce_only_nothing_to_reduce", REASON_LIQUIDATION: "liquidation",
}

LIQUIDATION_BOOK = 0
LIQUIDATION_BACKSTOP = 1
LIQUIDATION_ADL = 2
LIQUIDATION_STAGE_NAMES = {LIQUIDATION_BOOK: "book", LIQUIDATION_BACKSTOP: "backstop", LIQUIDATION_ADL: "adl"}

TRIGGER_PLACED = 0
TRIGGER_FIRED = 1
TRIGGER_CANCELLED = 2
TRIGGER_STATUS_NAMES = {TRIGGER_PLACED: "placed", TRIGGER_FIRED: "fired", TRIGGER_CANCELLED: "cancelled"}


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


class FundingEvent(NamedTuple):
    """A market's funding payment: the rate for the whole interval (the hourly rate times the interval's hours,
    RATE_SCALE, positive: longs pay), the new cumulative index, the oracle price it was applied at and the
    interval's average premium."""

    KIND = 10
    market: int
    rate: int
    funding_index: int
    oracle_price: int
    average_premium: int


class FundingPayment(NamedTuple):
    """One position's funding settlement; `amount` > 0 is paid by the account, < 0 received."""

    KIND = 11
    account: bytes
    market: int
    size_lots: int
    amount: int


class LiquidationEvent(NamedTuple):
    """A liquidation step of one position: `stage` book (closed through the book; `amount` is the liquidation
    fee paid to the insurance fund), backstop (the insurance fund took it at `price`, the mark; `amount` is the
    loss the fund covered) or adl (closed against opposite positions at `price`, the bankruptcy price).
    `size_lots` is the signed change of the position; `equity` and `maintenance` are what triggered it."""

    KIND = 12
    account: bytes
    market: int
    stage: int
    size_lots: int
    price: int
    amount: int
    equity: int
    maintenance: int


class AdlEvent(NamedTuple):
    """An opposite position reduced by auto-deleveraging: `counterparty`'s position changed by `size_lots` at
    `price` against the bankrupt `account`."""

    KIND = 13
    market: int
    account: bytes
    counterparty: bytes
    size_lots: int
    price: int


class CollateralEvent(NamedTuple):
    """Collateral moved between the spot balance and the cross margin (`to_perp` True: into the margin)."""

    KIND = 14
    account: bytes
    amount: int
    to_perp: bool


class LeverageEvent(NamedTuple):
    KIND = 15
    account: bytes
    market: int
    leverage: int
    is_cross: bool


class MarginEvent(NamedTuple):
    """Isolated margin added (amount > 0) to or removed (amount < 0) from a position."""

    KIND = 16
    account: bytes
    market: int
    amount: int


class TriggerEvent(NamedTuple):
    """A trigger was placed, fired (`order_id` the order it became, `code` that order's result) or cancelled."""

    KIND = 17
    trigger_id: int
    market: int
    owner: bytes
    status: int
    order_id: int
    code: int


class GovernanceEvent(NamedTuple):
    """A governor approved the operation with `digest`; `executed` once `approvals` reached the threshold."""

    KIND = 18
    digest: bytes
    approver: bytes
    approvals: int
    executed: bool
    code: int


class EvidenceEvent(NamedTuple):
    """Double signing recorded (docs/PROTOCOL.md §5.21): `validator` signed two different votes of `vote_type`
    (2 prevote, 3 precommit) at (`height`, `round`); `reporter` is the account whose transaction proved it."""

    KIND = 19
    validator: bytes
    height: int
    round: int
    vote_type: int
    reporter: bytes


Event = OrderAccepted | Trade | OrderDone | OrderModified | TransferEvent | WithdrawalEvent | FaucetEvent \
    | AgentEvent | ScheduleEvent | FundingEvent | FundingPayment | LiquidationEvent | AdlEvent | CollateralEvent \
    | LeverageEvent | MarginEvent | TriggerEvent | GovernanceEvent | EvidenceEvent
EVENT_TYPES: dict[int, type] = {
    cls.KIND: cls for cls in (
        OrderAccepted, Trade, OrderDone, OrderModified, TransferEvent, WithdrawalEvent, FaucetEvent, AgentEvent,
        ScheduleEvent, FundingEvent, FundingPayment, LiquidationEvent, AdlEvent, CollateralEvent, LeverageEvent,
        MarginEvent, TriggerEvent, GovernanceEvent, EvidenceEvent,
    )
}


def encode_event(event: Event) -> list:
    return [event.KIND, *event]


def decode_event(raw: list) -> Event:
    return EVENT_TYPES[raw[0]](*raw[1:])
