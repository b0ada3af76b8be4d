"""The WebSocket channels and what the node publishes on them after each block (docs/API.md §5).

`make_channels()` is the channel table for `rpc.subscriptions.Hub`; `publish_block(hub, view, block, result)` is
the one call the node makes after each committed block: it records the block in the view
(`InMemoryChainView.add_block`) and publishes every channel's message for it, synchronously, on the event loop's
thread. Because recording and publishing happen in one step, a subscription made between two blocks sees
everything up to the latest block in its first notifications (snapshot or replay) and everything after it live,
with no gap and no repeat.

| channel       | key param               | first notifications                 | then, per block                    |
|---------------|-------------------------|-------------------------------------|------------------------------------|
| `book`        | `market` (id)           | a `snapshot`                        | one `diff` (rpc/bookfeed.py)       |
| `blocks`      |                         | replayed headers (`from_height`)    | the header (`block`'s shape)       |
| `block_diffs` |                         | replayed diffs (`from_height`)      | the diff (`block_diff`'s shape)    |
| `trades`      | `market` (id)           | replayed trades (`from_height`)     | the block's trades, if any         |
| `account`     | `address` (20-byte hex) | a `snapshot`, or replayed blocks    | the events touching the address,   |
|               |                         | (`from_height`)                     | and its balances if they changed   |

Replay: with `from_height = h`, the first notifications are the messages of blocks h .. latest that the channel
would have sent live, then the live ones follow. `h` may be from `max(earliest kept, latest + 1 -
REPLAY_WINDOW)` to `latest + 1` (nothing to replay); anything else is -32001 "height not available" with the
bounds in `data`. An `account` subscription with `from_height` gets no snapshot: the client is expected to hold
the account as of block h - 1.

An account is touched by an event that names it as `owner`, `taker`, `maker`, `sender`, `recipient`, `account`,
`agent`, `counterparty` or `approver`. Its message lists those events in execution order and, when the block
changed the account's state entry, the balances and holds after the block (`account`: null when the entry did
not change).
"""

from collections.abc import Container, Hashable
from typing import Any, Protocol

from stf import codec
from stf.block import Block, BlockResult
from stf.events import Trade
from stf.state import KEY_ACCOUNT, State

from rpc.jsonrpc import INVALID_PARAMS, Hex, Param, RpcError, UInt
from rpc.methods import (
    HEIGHT_NOT_AVAILABLE, format_balances, format_block, format_block_diff, format_event, format_order,
    format_perp_account,
    format_trade,
)
from rpc.subscriptions import Channel, Hub
from rpc.views import ChainView

__all__ = [
    "BOOK", "BLOCKS", "BLOCK_DIFFS", "TRADES", "ACCOUNT", "REPLAY_WINDOW", "make_channels", "publish_block",
    "publish_block_messages",
]

BOOK, BLOCKS, BLOCK_DIFFS, TRADES, ACCOUNT = "book", "blocks", "block_diffs", "trades", "account"
REPLAY_WINDOW = 256
ADDRESS_FIELDS = (
    "owner", "taker", "maker", "sender", "recipient", "account", "agent", "counterparty", "approver",
    "validator", "reporter",   # Evidence: the offender and the reporting account
)

_MARKET = Param("market", UInt(65535))
_FROM_HEIGHT = Param("from_height", UInt(), required=False)


class RecordingView(ChainView, Protocol):
    def add_block(self, block: Block, result: BlockResult) -> dict[int, dict]: ...


# --- per-block messages ---------------------------------------------------------------------------------------

def compute_touched(result: BlockResult, addresses: Container[bytes] | None = None) -> dict[bytes, list[int]]:
    """Address -> indexes of the block's events that name it, in execution order (only `addresses`, if given)."""
    touched: dict[bytes, list[int]] = {}
    for index, event in enumerate(result.events):
        names = _ADDRESS_FIELDS_BY_TYPE.get(type(event))
        if names is None:
            names = _ADDRESS_FIELDS_BY_TYPE[type(event)] = tuple(n for n in ADDRESS_FIELDS if hasattr(event, n))
        seen = []
        for name in names:
            address = getattr(event, name)
            if isinstance(address, bytes) and address not in seen and (addresses is None or address in addresses):
                seen.append(address)
                touched.setdefault(address, []).append(index)
    return touched


_ADDRESS_FIELDS_BY_TYPE: dict[type, tuple[str, ...]] = {}


def format_account_entry(state: State, value: bytes | None) -> dict[str, Any]:
    """An account state entry (docs/PROTOCOL.md §7.7) as balances, holds, agents and switch time."""
    if value is None:
        return {"balances": [], "agents": [], "cancel_all_at_ms": "0", "collateral": "0", "positions": [],
                "leverage": []}
    balances, holds, agents, cancel_all_at_ms, collateral, positions, leverage = codec.decode(value, len(value))
    held = dict(holds)
    assets = sorted(set(dict(balances)) | set(held))
    amounts = dict(balances)
    return {
        "balances": [
            {"asset": a, "symbol": state.assets[a].symbol, "balance": str(amounts.get(a, 0)),
             "hold": str(held.get(a, 0)), "available": str(amounts.get(a, 0) - held.get(a, 0))}
            for a in assets
        ],
        "agents": [agent.hex() for agent in agents], "cancel_all_at_ms": str(cancel_all_at_ms),
        "collateral": str(collateral),
        "positions": [{"market": m, "size_lots": str(size), "cost": str(cost), "funding_index": str(index),
                       "margin": str(margin), "margin_mode": "cross" if cross else "isolated",
                       "realized_pnl": str(realized)}
                      for m, size, cost, index, margin, cross, realized in positions],
        "leverage": [{"market": m, "leverage": lev, "margin_mode": "cross" if cross else "isolated"}
                     for m, lev, cross in leverage],
    }


def format_account_block(
    state: State, address: bytes, block: Block, result: BlockResult, indexes: list[int],
) -> dict[str, Any]:
    key = KEY_ACCOUNT + address
    changed = [value for k, value in result.entries if k == key]
    return {
        "type": "block", "address": address.hex(), "height": str(block.header.height),
        "time_ms": str(block.header.time_ms), "events": [format_event(result.events[i]) for i in indexes],
        "account": format_account_entry(state, changed[0]) if changed else None,
    }


def collect_trades(block: Block, result: BlockResult) -> dict[int, dict[str, Any]]:
    """Market id -> the `trades` message of this block, for markets that traded."""
    header = block.header
    by_market: dict[int, list[dict[str, Any]]] = {}
    for event in result.events:
        if isinstance(event, Trade):
            by_market.setdefault(event.market, []).append(format_trade(header.height, header.time_ms, event))
    return {
        market: {"market": market, "height": str(header.height), "time_ms": str(header.time_ms), "trades": trades}
        for market, trades in by_market.items()
    }


# --- publishing -----------------------------------------------------------------------------------------------

def publish_block(hub: Hub, view: RecordingView, block: Block, result: BlockResult) -> None:
    """Record `block` (just applied to `view.state`) in the view and publish it on every channel."""
    publish_block_messages(hub, view, block, result, view.add_block(block, result))


def publish_block_messages(
    hub: Hub, view: ChainView, block: Block, result: BlockResult, book_messages: dict[int, dict[str, Any]],
) -> None:
    """Publish a block the view has recorded; `book_messages` is what `add_block` returned."""
    height = block.header.height
    for market_id, message in book_messages.items():
        hub.publish(BOOK, market_id, message)
    hub.publish(BLOCKS, None, format_block(block, result))
    if hub.get_subscriber_count(BLOCK_DIFFS, None):
        hub.publish(BLOCK_DIFFS, None, format_block_diff(height, result))
    for market_id, message in collect_trades(block, result).items():
        hub.publish(TRADES, market_id, message)
    watched = hub.get_subscribed_keys(ACCOUNT)
    if watched:
        for address, indexes in compute_touched(result, watched).items():
            hub.publish(ACCOUNT, address, format_account_block(view.state, address, block, result, indexes))


# --- first notifications ----------------------------------------------------------------------------------------

def get_replay_heights(views: ChainView, from_height: int | None) -> range:
    """The heights to replay for `from_height` (empty when None); -32001 outside the replay window."""
    latest = views.latest_height()
    if from_height is None:
        return range(0)
    earliest = max(views.earliest_height(), latest + 1 - REPLAY_WINDOW, 1)
    if not earliest <= from_height <= latest + 1:
        raise RpcError(
            HEIGHT_NOT_AVAILABLE,
            f"from_height {from_height} is not available (replay from {earliest} to {latest + 1})",
            {"height": str(from_height), "earliest": str(earliest), "latest": str(latest)})
    return range(from_height, latest + 1)


def _stored(views: ChainView, height: int) -> tuple[Block, BlockResult]:
    block, result = views.get_block(height), views.get_result(height)
    assert block is not None and result is not None, "replay heights are within the window"
    return block, result


def replay_blocks(views: ChainView, key: Hashable, options: dict[str, Any]) -> list[Any]:
    return [format_block(*_stored(views, h)) for h in get_replay_heights(views, options["from_height"])]


def replay_block_diffs(views: ChainView, key: Hashable, options: dict[str, Any]) -> list[Any]:
    return [format_block_diff(h, _stored(views, h)[1]) for h in get_replay_heights(views, options["from_height"])]


def _require_market(views: ChainView, market: Any) -> None:
    if market not in views.state.markets:
        raise RpcError(INVALID_PARAMS, f"Invalid params: market: unknown market {market}", {"param": "market"})


def replay_trades(views: ChainView, key: Hashable, options: dict[str, Any]) -> list[Any]:
    _require_market(views, key)
    messages = []
    for height in get_replay_heights(views, options["from_height"]):
        message = collect_trades(*_stored(views, height)).get(key)  # type: ignore[call-overload]
        if message is not None:
            messages.append(message)
    return messages


def format_account_snapshot(state: State, address: bytes) -> dict[str, Any]:
    account = state.accounts.get(address)
    return {
        "type": "snapshot", "address": address.hex(), "height": str(state.height),
        "balances": format_balances(state, account),
        "orders": [] if account is None else [format_order(account.orders[o]) for o in sorted(account.orders)],
        "agents": [] if account is None else sorted(a.hex() for a in account.agents),
        "cancel_all_at_ms": "0" if account is None else str(account.cancel_all_at_ms),
        "perp": format_perp_account(state, account),
    }


def replay_account(views: ChainView, key: Hashable, options: dict[str, Any]) -> list[Any]:
    assert isinstance(key, bytes)
    if options["from_height"] is None:
        return [format_account_snapshot(views.state, key)]
    messages = []
    for height in get_replay_heights(views, options["from_height"]):
        block, result = _stored(views, height)
        indexes = compute_touched(result).get(key)
        if indexes:
            messages.append(format_account_block(views.state, key, block, result, indexes))
    return messages


def snapshot_book(views: ChainView, market: Hashable) -> dict[str, Any]:
    snapshot = views.book_feed.snapshot(market)  # type: ignore[arg-type]
    if snapshot is None:
        raise RpcError(INVALID_PARAMS, f"Invalid params: market: unknown market {market}", {"param": "market"})
    return snapshot


def make_channels() -> list[Channel]:
    """Every channel of the API, for `Hub(make_channels())`."""
    return [
        Channel(BOOK, _MARKET, snapshot_book),
        Channel(BLOCKS, None, options=(_FROM_HEIGHT,), replay=replay_blocks),
        Channel(BLOCK_DIFFS, None, options=(_FROM_HEIGHT,), replay=replay_block_diffs),
        Channel(TRADES, _MARKET, options=(_FROM_HEIGHT,), replay=replay_trades),
        Channel(ACCOUNT, Param("address", Hex(length=20)), options=(_FROM_HEIGHT,), replay=replay_account),
    ]
