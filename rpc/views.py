"""The read-only chain view that RPC handlers see as `ctx.views`.

`ChainView` is the protocol the node implements; `InMemoryChainView` is a complete implementation that a test
(and, until it has its own store, the node) feeds with `add_block(block, result)` right after each
`stf.block.apply_block(view.state, block)`.

Contract: everything reached through a view is read-only. `state` is the node's live `stf.state.State`; the
handlers only read it, and they run on the event loop's thread between blocks (the node applies a block and
calls `add_block` in one synchronous step, or otherwise keeps handlers from running while a block applies).

Window: `InMemoryChainView` keeps the blocks, block results (receipts, events, changed entries) and the
transaction, order, trade (per market) and fill (per account) indexes of the last `window` blocks (default
`DEFAULT_WINDOW` = 1000). Older heights
answer "not available" (`earliest_height()` says where the window starts), their transactions "not found",
and their finished orders are forgotten by `order_status`. Open orders, balances and books come from the
state and are always current. Memory is bounded by the window times the block size.

Retention: past its newest `HOT_BLOCKS` blocks, the view keeps each block's result, and every index entry, as
plain tuples of plain values (bytes, integers, None), and rebuilds the named tuples and records when it is asked.
CPython's cyclic collector stops tracking such tuples the first time it meets them, so a full window of a loaded
chain (hundreds of thousands of receipts and events) adds nothing to the collector's full passes. Kept as
objects, a 2,000 orders/s load made each full pass walk every receipt of the window: 1.5 s pauses of the event
loop within 90 s, growing with the window.
"""

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from stf.block import Block, BlockResult
from stf.events import OrderAccepted, OrderDone, Trade, decode_event, encode_event
from stf.errors import ResultCode
from stf.receipts import ActionResult, Receipt
from stf.params import GenesisConfig
from stf.state import State

from rpc.bookfeed import FEED_DEPTH, BookFeed

__all__ = ["DEFAULT_WINDOW", "TxLocation", "OrderOutcome", "TradeAt", "ChainView", "InMemoryChainView"]

DEFAULT_WINDOW = 1000
HOT_BLOCKS = 8  # the newest blocks keep their results as objects: commit waiters and streams read those at once
_INDEXED_EVENT_KINDS = (Trade.KIND, OrderDone.KIND, OrderAccepted.KIND)


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """How an order that no longer rests ended: the OrderDone event and the height of its block."""

    height: int
    done: OrderDone


@dataclass(frozen=True, slots=True)
class TradeAt:
    """A Trade event and where it happened: block height and time, and its index among the block's events."""

    height: int
    time_ms: int
    index: int
    trade: Trade


class ChainView(Protocol):
    """What RPC may read of the chain. Heights are block heights; the genesis state has height 0."""

    @property
    def chain_id(self) -> str: ...

    @property
    def state(self) -> State:
        """The state after the latest block; read-only by contract."""

    @property
    def book_feed(self) -> BookFeed: ...

    def latest_height(self) -> int: ...

    def latest_block_hash(self) -> bytes:
        """Hash of the latest block (32 zero bytes at height 0)."""

    def latest_app_hash(self) -> bytes:
        """State root after the latest block (the next block's `app_hash`)."""

    def latest_time_ms(self) -> int: ...

    def earliest_height(self) -> int:
        """The lowest height whose block and result are still served (latest + 1 when none is)."""

    def is_catching_up(self) -> bool: ...

    def get_block(self, height: int) -> Block | None: ...

    def get_result(self, height: int) -> BlockResult | None:
        """Receipts (block order), events and changed entries of the block at `height`."""

    def find_tx(self, tx_hash: bytes) -> TxLocation | None: ...

    def find_order_outcome(self, order_id: int) -> OrderOutcome | None: ...

    def find_client_order(self, owner: bytes, client_id: int) -> int | None:
        """The order id most recently accepted for (owner, client id) within the window, or None."""

    def get_genesis(self) -> GenesisConfig | None:
        """The genesis configuration the chain started from, if the node has it."""

    def iter_trades(self, market: int) -> Iterator[TradeAt]:
        """The market's trades within the window, newest first."""

    def iter_fills(self, address: bytes) -> Iterator[TradeAt]:
        """The trades within the window in which `address` was the taker or the maker, newest first."""


class InMemoryChainView:
    """A `ChainView` over a live state plus the last `window` blocks and results, kept in memory.

    `catching_up` is a plain attribute the node sets while it syncs (reported by `status`). `feed_depth` is the
    number of levels per side the book feed keeps (`rpc.bookfeed.FEED_DEPTH` by default). `genesis` is what
    the `genesis` method serves (None: "not available").
    """

    def __init__(
        self, state: State, window: int = DEFAULT_WINDOW, catching_up: bool = False, feed_depth: int = FEED_DEPTH,
        genesis: GenesisConfig | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._state = state
        self.window = window
        self.catching_up = catching_up
        self._feed = BookFeed(state, feed_depth)
        # Plain tuples throughout (see Retention): a result is a BlockResult or pack_result's tuple.
        self._blocks: deque[tuple[Block, BlockResult | tuple]] = deque()
        self._txs: dict[bytes, tuple[int, int]] = {}  # -> (height, index)
        self._outcomes: dict[int, tuple] = {}  # order id -> (height, the OrderDone's fields...)
        self._client_orders: dict[tuple[bytes, int], tuple[int, int]] = {}  # -> (height, order id)
        # (height, time, event index, the Trade's fields...), oldest first
        self._trades: dict[int, deque[tuple]] = {}  # per market
        self._fills: dict[bytes, deque[tuple]] = {}  # per taker or maker address
        self._genesis = genesis
        self._app_hash = state.merkle.root()

    # -- feeding -------------------------------------------------------------------------------------------

    def add_block(self, block: Block, result: BlockResult) -> dict[int, dict]:
        """Record a block just applied to `state`; returns the book feed's diff message per market id.

        The node publishes each message on the `book` channel with the market id as key.
        """
        height = block.header.height
        if height != self._state.height or result.block_hash != self._state.last_block_hash:
            raise ValueError(f"block {height} is not the block just applied (state at {self._state.height})")
        self._blocks.append((block, result))
        if len(self._blocks) > HOT_BLOCKS:
            cooled, cooled_result = self._blocks[-HOT_BLOCKS - 1]
            if type(cooled_result) is BlockResult:
                self._blocks[-HOT_BLOCKS - 1] = (cooled, pack_result(cooled_result))
        self._app_hash = result.state_root
        for index, receipt in enumerate(result.receipts):
            self._txs[receipt.tx_hash] = (height, index)
        for index, event in enumerate(result.events):
            if isinstance(event, Trade):
                at = (height, block.header.time_ms, index, *event)
                self._trades.setdefault(event.market, deque()).append(at)
                self._fills.setdefault(event.taker, deque()).append(at)
                if event.maker != event.taker:
                    self._fills.setdefault(event.maker, deque()).append(at)
            elif isinstance(event, OrderDone):
                self._outcomes[event.order_id] = (height, *event)
            elif isinstance(event, OrderAccepted):
                self._outcomes.pop(event.order_id, None)  # a modify re-accepts under the same id
                if event.client_id is not None:
                    self._client_orders[(event.owner, event.client_id)] = (height, event.order_id)
        while len(self._blocks) > self.window:
            self._evict(*self._blocks.popleft())
        return self._feed.update(self._state)

    def _evict(self, block: Block, result: BlockResult | tuple) -> None:
        height = block.header.height
        if type(result) is BlockResult:
            hashes, events = [r.tx_hash for r in result.receipts], result.events
        else:  # packed: read it as it is, rebuilding only the events the indexes hold
            hashes = [flat[0] for flat in result[1]]
            events = [decode_event(e) for e in result[2] if e[0] in _INDEXED_EVENT_KINDS]
        for index, tx_hash in enumerate(hashes):
            if self._txs.get(tx_hash) == (height, index):
                del self._txs[tx_hash]
        for event in events:
            if isinstance(event, Trade):
                _drop_oldest(self._trades, event.market, height)
                _drop_oldest(self._fills, event.taker, height)
                _drop_oldest(self._fills, event.maker, height)
            elif isinstance(event, OrderDone):
                outcome = self._outcomes.get(event.order_id)
                if outcome is not None and outcome[0] == height:
                    del self._outcomes[event.order_id]
            elif isinstance(event, OrderAccepted) and event.client_id is not None:
                key = (event.owner, event.client_id)
                if self._client_orders.get(key, (None,))[0] == height:
                    del self._client_orders[key]

    # -- ChainView -----------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self._state.params.chain_id

    @property
    def state(self) -> State:
        return self._state

    @property
    def book_feed(self) -> BookFeed:
        return self._feed

    def latest_height(self) -> int:
        return self._state.height

    def latest_block_hash(self) -> bytes:
        return self._state.last_block_hash

    def latest_app_hash(self) -> bytes:
        return self._app_hash

    def latest_time_ms(self) -> int:
        return self._state.time_ms

    def earliest_height(self) -> int:
        return self._blocks[0][0].header.height if self._blocks else self._state.height + 1

    def is_catching_up(self) -> bool:
        return self.catching_up

    def _entry(self, height: int) -> tuple[Block, BlockResult | tuple] | None:
        if not self._blocks:
            return None
        index = height - self._blocks[0][0].header.height
        if 0 <= index < len(self._blocks):
            return self._blocks[index]
        return None

    def get_block(self, height: int) -> Block | None:
        entry = self._entry(height)
        return None if entry is None else entry[0]

    def get_result(self, height: int) -> BlockResult | None:
        entry = self._entry(height)
        return None if entry is None else unpack_result(entry[1])

    def find_tx(self, tx_hash: bytes) -> TxLocation | None:
        found = self._txs.get(tx_hash)
        return None if found is None else TxLocation(*found)

    def find_order_outcome(self, order_id: int) -> OrderOutcome | None:
        found = self._outcomes.get(order_id)
        return None if found is None else OrderOutcome(found[0], OrderDone(*found[1:]))

    def find_client_order(self, owner: bytes, client_id: int) -> int | None:
        found = self._client_orders.get((owner, client_id))
        return None if found is None else found[1]

    def get_genesis(self) -> GenesisConfig | None:
        return self._genesis

    def iter_trades(self, market: int) -> Iterator[TradeAt]:
        return map(_trade_at, reversed(self._trades.get(market, ())))

    def iter_fills(self, address: bytes) -> Iterator[TradeAt]:
        return map(_trade_at, reversed(self._fills.get(address, ())))

    def iter_heights(self) -> Iterator[int]:
        return (block.header.height for block, _ in self._blocks)


def pack_result(result: BlockResult) -> tuple:
    """`result` as plain tuples of plain values, which the cyclic collector stops tracking (see Retention).

    A receipt is one flat tuple `(tx hash, code, order id, filled lots, code, ...)` and an event its wire form,
    `(kind, field, ...)`: the collector untracks a tuple once everything in it is untracked, one level per pass,
    so what there is one of per transaction is untracked at its first pass."""
    return (
        result.block_hash,
        tuple([(r.tx_hash, *[x for a in r.results for x in (int(a.code), a.order_id, a.filled_lots)])
               for r in result.receipts]),
        tuple([tuple(encode_event(e)) for e in result.events]),
        tuple(result.entries),
        result.state_root,
    )


def unpack_result(packed: BlockResult | tuple) -> BlockResult:
    """The BlockResult `pack_result` packed (a BlockResult is returned as it is)."""
    if type(packed) is BlockResult:
        return packed
    block_hash, receipts, events, entries, state_root = packed
    return BlockResult(
        block_hash, tuple(_unpack_receipt(r) for r in receipts), [decode_event(e) for e in events], list(entries),
        state_root,
    )


def _unpack_receipt(flat: tuple) -> Receipt:
    return Receipt(flat[0], tuple(
        ActionResult(ResultCode(flat[i]), flat[i + 1], flat[i + 2]) for i in range(1, len(flat), 3)))


def _trade_at(flat: tuple) -> TradeAt:
    return TradeAt(flat[0], flat[1], flat[2], Trade(*flat[3:]))


def _drop_oldest(index: dict, key: object, height: int) -> None:
    """Drop the entries of block `height` (the oldest kept) from one per-key trade index."""
    entries = index.get(key)
    while entries and entries[0][0] <= height:
        entries.popleft()
    if entries is not None and not entries:
        del index[key]
