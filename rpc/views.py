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
"""

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from stf.block import Block, BlockResult
from stf.events import OrderAccepted, OrderDone, Trade
from stf.params import GenesisConfig
from stf.state import State

from rpc.bookfeed import FEED_DEPTH, BookFeed

__all__ = ["DEFAULT_WINDOW", "TxLocation", "OrderOutcome", "TradeAt", "ChainView", "InMemoryChainView"]

DEFAULT_WINDOW = 1000


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
        self._blocks: deque[tuple[Block, BlockResult]] = deque()
        self._txs: dict[bytes, TxLocation] = {}
        self._outcomes: dict[int, OrderOutcome] = {}
        self._client_orders: dict[tuple[bytes, int], tuple[int, int]] = {}  # -> (height, order id)
        self._trades: dict[int, deque[TradeAt]] = {}  # market -> oldest first
        self._fills: dict[bytes, deque[TradeAt]] = {}  # taker or maker address -> oldest first
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
        self._app_hash = result.state_root
        for index, receipt in enumerate(result.receipts):
            self._txs[receipt.tx_hash] = TxLocation(height, index)
        for index, event in enumerate(result.events):
            if isinstance(event, Trade):
                at = TradeAt(height, block.header.time_ms, index, event)
                self._trades.setdefault(event.market, deque()).append(at)
                self._fills.setdefault(event.taker, deque()).append(at)
                if event.maker != event.taker:
                    self._fills.setdefault(event.maker, deque()).append(at)
            elif isinstance(event, OrderDone):
                self._outcomes[event.order_id] = OrderOutcome(height, event)
            elif isinstance(event, OrderAccepted):
                self._outcomes.pop(event.order_id, None)  # a modify re-accepts under the same id
                if event.client_id is not None:
                    self._client_orders[(event.owner, event.client_id)] = (height, event.order_id)
        while len(self._blocks) > self.window:
            self._evict(*self._blocks.popleft())
        return self._feed.update(self._state)

    def _evict(self, block: Block, result: BlockResult) -> None:
        height = block.header.height
        for index, receipt in enumerate(result.receipts):
            if self._txs.get(receipt.tx_hash) == TxLocation(height, index):
                del self._txs[receipt.tx_hash]
        for event in result.events:
            if isinstance(event, Trade):
                _drop_oldest(self._trades, event.market, height)
                _drop_oldest(self._fills, event.taker, height)
                _drop_oldest(self._fills, event.maker, height)
            elif isinstance(event, OrderDone):
                outcome = self._outcomes.get(event.order_id)
                if outcome is not None and outcome.height == height:
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

    def _entry(self, height: int) -> tuple[Block, BlockResult] | None:
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
        return None if entry is None else entry[1]

    def find_tx(self, tx_hash: bytes) -> TxLocation | None:
        return self._txs.get(tx_hash)

    def find_order_outcome(self, order_id: int) -> OrderOutcome | None:
        return self._outcomes.get(order_id)

    def find_client_order(self, owner: bytes, client_id: int) -> int | None:
        found = self._client_orders.get((owner, client_id))
        return None if found is None else found[1]

    def get_genesis(self) -> GenesisConfig | None:
        return self._genesis

    def iter_trades(self, market: int) -> Iterator[TradeAt]:
        return reversed(self._trades.get(market, ()))

    def iter_fills(self, address: bytes) -> Iterator[TradeAt]:
        return reversed(self._fills.get(address, ()))

    def iter_heights(self) -> Iterator[int]:
        return (block.header.height for block, _ in self._blocks)


def _drop_oldest(index: dict, key: object, height: int) -> None:
    """Drop the entries of block `height` (the oldest kept) from one per-key trade index."""
    entries = index.get(key)
    while entries and entries[0].height <= height:
        entries.popleft()
    if entries is not None and not entries:
        del index[key]
