"""The exchange's JSON-RPC query methods: `make_router(view)` (docs/API.md is the reference).

Handlers read only the read-only `ChainView` (`rpc/views.py`) that `make_router(view)` was built over, and
change nothing. The node passes the same view to `rpc.server.make_app`, so it is also every call's `ctx.views`
and what the channels of `rpc/channels.py` read. The `format_*` functions are the JSON shapes shared by the
methods and the channels. Submission (`broadcast_tx_*`) is in `rpc/submit.py`.

Number rule: every quantity that may exceed 2^53 (amounts in atoms, prices, sizes in lots, heights, times in
ms, order ids, client ids, nonces, seq) is a decimal string; identifiers bounded by 65535 (market and asset
ids), result codes, fee rates in bps, decimals, counts and the book checksum are JSON integers. Hashes,
addresses, keys and values are lowercase hex without 0x. No float is ever sent or accepted.

Application errors (besides the JSON-RPC codes of rpc/jsonrpc.py):

| code   | name                  | when                                                        | data          |
|--------|-----------------------|-------------------------------------------------------------|---------------|
| -32001 | Height not available  | a height above the latest, 0, or older than the window kept | height,       |
|        |                       |                                                             | earliest,     |
|        |                       |                                                             | latest        |
| -32002 | Transaction not found | no transaction with that hash in the blocks kept            | hash          |
| -32003 | Order not found       | no open order, nor one finished within the blocks kept      | order_id, or  |
|        |                       |                                                             | address and   |
|        |                       |                                                             | client_id     |
| -32004 | Not available         | this node does not serve it (genesis document, submission)  | feature       |

Pages (`fills`, `trades`) list the newest first, at most `limit` (1..1000, default 100) items; `fills` returns
`next_cursor` ("HEIGHT:INDEX" of the last item, or null when nothing older remains), to be sent back as
`before` for the next page. Both read the blocks kept (the view's window).
"""

import hashlib
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any

from stf.block import Block, BlockResult
from stf.book import Order
from stf.errors import ResultCode
from stf.events import DONE_REASON_NAMES, FundingEvent, FundingPayment, OrderAccepted, OrderDone, Trade
from stf.params import GenesisConfig
from stf.proof import Proof
from stf.receipts import Receipt
from stf.positions import compute_cross_summary, compute_withdrawable, describe_position
from stf.state import Account, Market, State, account_key, prove_account
from stf.tx import TIME_IN_FORCE_NAMES, decode_transaction

from rpc.bookfeed import compute_checksum, get_levels
from rpc.jsonrpc import (
    INVALID_PARAMS, CallContext, Hex, Param, ParamError, Route, Router, RpcError, UInt,
)
from rpc.views import ChainView, TradeAt

__all__ = [
    "HEIGHT_NOT_AVAILABLE", "TX_NOT_FOUND", "ORDER_NOT_FOUND", "MAX_BOOK_DEPTH", "DEFAULT_BOOK_DEPTH",
    "NOT_AVAILABLE", "DEFAULT_PAGE", "MAX_PAGE", "make_router", "format_block", "format_block_diff",
    "format_trade", "format_fill", "format_balances", "format_genesis", "format_event", "format_receipt",
    "format_order", "compute_tx_path", "format_params", "get_event_name",
]

HEIGHT_NOT_AVAILABLE = -32001
TX_NOT_FOUND = -32002
ORDER_NOT_FOUND = -32003
NOT_AVAILABLE = -32004

DEFAULT_BOOK_DEPTH = 20
MAX_BOOK_DEPTH = 500
DEFAULT_PAGE = 100
MAX_PAGE = 1000

_SMALL_EVENT_FIELDS = frozenset({
    "market", "asset", "reason", "time_in_force", "stage", "status", "code", "leverage", "vote_type"})
# Small integers in the genesis document and market parameters; every other integer is a decimal string.
_SMALL_PARAM_FIELDS = frozenset({
    "market_id", "asset_id", "base_asset", "quote_asset", "collateral_asset", "decimals", "nonce_set_size",
    "max_open_orders_per_account", "max_agents_per_account", "threshold", "default_leverage",
})


def get_event_name(event: Any) -> str:
    """The event's type name in the API: its class name without an "Event" suffix (TransferEvent: Transfer)."""
    name = type(event).__name__
    return name[:-len("Event")] if name.endswith("Event") else name
_ENTRY_KINDS = {b"a": "account", b"g": "global", b"m": "market", b"n": "nonces", b"o": "order", b"s": "asset",
                b"e": "evidence"}
VOTE_TYPE_NAMES = {2: "prevote", 3: "precommit"}

UNITS = {
    "price": "quote atoms per lot",
    "size": "lots",
    "lot_size": "base atoms per lot",
    "tick_size": "quote atoms per lot",
    "min_size_lots": "lots",
    "fees": "basis points of the notional (price * size_lots quote atoms); a negative maker fee is a rebate",
    "amounts": "atoms: 10^-decimals of the asset",
}


# --- parameter types ------------------------------------------------------------------------------------------

_U64 = UInt()
_U16 = UInt(65535)
_ADDRESS = Hex(length=20)
_HASH = Hex(length=32)


def _market_type(value: Any) -> int | str:
    """A market id (integer or decimal string) or its symbol ("BTC-USD")."""
    if isinstance(value, str) and value and not value.isdigit():
        if len(value) > 32:
            raise ParamError("must be a market id or a symbol of at most 32 characters")
        return value
    try:
        return _U16(value)
    except ParamError:
        raise ParamError("must be a market id (0 to 65535) or a market symbol") from None


def _depth_type(value: Any) -> int:
    depth = UInt(MAX_BOOK_DEPTH)(value)
    if depth < 1:
        raise ParamError(f"must be from 1 to {MAX_BOOK_DEPTH}")
    return depth


def _limit_type(value: Any) -> int:
    limit = UInt(MAX_PAGE)(value)
    if limit < 1:
        raise ParamError(f"must be from 1 to {MAX_PAGE}")
    return limit


def _cursor_type(value: Any) -> tuple[int, int]:
    """A page cursor "HEIGHT:INDEX", as returned in `next_cursor`."""
    parts = value.split(":") if isinstance(value, str) and len(value) <= 41 else []
    if len(parts) != 2 or not all(_U64.accepts(part) for part in parts):
        raise ParamError('must be a cursor "HEIGHT:INDEX" as returned in next_cursor')
    return int(parts[0]), int(parts[1])


def _page(
    items: Iterable[TradeAt], market: int | None, limit: int, before: tuple[int, int] | None,
) -> tuple[list[TradeAt], bool]:
    """Up to `limit` items (newest first) strictly older than `before`, in `market`; and whether more remain."""
    page: list[TradeAt] = []
    for item in items:
        if before is not None and (item.height, item.index) >= before:
            continue
        if market is not None and item.trade.market != market:
            continue
        if len(page) == limit:
            return page, True
        page.append(item)
    return page, False


def _invalid(param: str, message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {param}: {message}", {"param": param})


# --- JSON shapes ----------------------------------------------------------------------------------------------

def format_order(order: Order) -> dict[str, Any]:
    return {
        "order_id": str(order.order_id), "market": order.market_id, "side": "buy" if order.is_buy else "sell",
        "price": str(order.price), "size_lots": str(order.size_lots), "orig_size_lots": str(order.orig_size_lots),
        "client_id": None if order.client_id is None else str(order.client_id),
        "expires_at_ms": str(order.expires_at_ms), "post_only": order.post_only, "seq": str(order.seq),
    }


def _value_json(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, int):
        return value if name in _SMALL_EVENT_FIELDS else str(value)
    return value


def format_event(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.KIND, "type": get_event_name(event)}
    out.update((name, _value_json(name, value)) for name, value in zip(event._fields, event))
    if isinstance(event, OrderDone):
        out["reason_name"] = DONE_REASON_NAMES[event.reason]
    elif isinstance(event, OrderAccepted):
        out["time_in_force_name"] = TIME_IN_FORCE_NAMES[event.time_in_force]
    return out


def format_receipt(index: int, receipt: Receipt) -> dict[str, Any]:
    return {
        "index": index, "tx_hash": receipt.tx_hash.hex(),
        "results": [
            {"code": int(r.code), "name": ResultCode(r.code).name,
             "order_id": None if r.order_id is None else str(r.order_id), "filled_lots": str(r.filled_lots)}
            for r in receipt.results
        ],
    }


def _proof_json(proof: Proof) -> list[Any]:
    entries, siblings = proof.to_wire()
    return [[[k.hex(), d.hex()] for k, d in entries], [[h.hex() for h in group] for group in siblings]]


def compute_tx_path(tx_hashes: list[bytes], index: int) -> list[tuple[str, bytes]]:
    """The inclusion path of transaction `index` in the tree of `stf.block.compute_txs_root`, bottom up: per
    level that gives the node a sibling, ("left" or "right": where the sibling sits, its hash). A node without a
    sibling (the last of an odd level) is carried up unchanged and adds nothing."""
    level = [hashlib.sha256(b"\x00" + h).digest() for h in tx_hashes]
    path = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(("left" if sibling < index else "right", level[sibling]))
        upper = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            upper.append(level[-1])
        level, index = upper, index // 2
    return path


def format_block(block: Block, result: BlockResult) -> dict[str, Any]:
    """The `block` result, also the `blocks` channel's message."""
    h = block.header
    return {
        "block_id": {"hash": result.block_hash.hex()},
        "header": {
            "chain_id": h.chain_id, "height": str(h.height), "time_ms": str(h.time_ms),
            "prev_hash": h.prev_hash.hex(), "app_hash": h.app_hash.hex(), "proposer": h.proposer.hex(),
            "txs_root": h.txs_root.hex(),
        },
        "num_txs": len(block.txs),
        "tx_hashes": [r.tx_hash.hex() for r in result.receipts],
    }


def format_block_diff(height: int, result: BlockResult) -> dict[str, Any]:
    """The `block_diff` result, also the `block_diffs` channel's message."""
    return {
        "height": str(height), "block_hash": result.block_hash.hex(), "state_root": result.state_root.hex(),
        "events": [format_event(e) for e in result.events],
        "entries": [
            {"kind": _ENTRY_KINDS.get(k[:1], "unknown"), "key": k.hex(), "value": None if v is None else v.hex()}
            for k, v in result.entries
        ],
    }


def format_trade(height: int, time_ms: int, trade: Trade) -> dict[str, Any]:
    """One trade of the `trades` method and channel: at the maker's price; `side` is the taker's."""
    return {
        "height": str(height), "time_ms": str(time_ms), "market": trade.market, "price": str(trade.price),
        "size_lots": str(trade.size_lots), "side": "buy" if trade.taker_is_buy else "sell",
        "taker_order_id": str(trade.taker_order_id), "maker_order_id": str(trade.maker_order_id),
        "taker": trade.taker.hex(), "maker": trade.maker.hex(),
    }


def format_fill(address: bytes, height: int, time_ms: int, trade: Trade) -> dict[str, Any]:
    """`address`'s side of one trade (the `fills` method). A self-trade cannot happen (STP expires the maker)."""
    is_taker = trade.taker == address
    is_buy = trade.taker_is_buy == is_taker
    return {
        "height": str(height), "time_ms": str(time_ms), "market": trade.market,
        "order_id": str(trade.taker_order_id if is_taker else trade.maker_order_id),
        "side": "buy" if is_buy else "sell", "liquidity": "taker" if is_taker else "maker",
        "price": str(trade.price), "size_lots": str(trade.size_lots),
        "fee": str(trade.taker_fee if is_taker else trade.maker_fee),
        "counterparty": (trade.maker if is_taker else trade.taker).hex(),
    }


def format_perp_account(state: State, account: Account | None) -> dict[str, Any]:
    """The perpetual side of an account at the current marks: cross collateral and margin summary, positions
    (with unrealized PnL and liquidation price), leverage settings and waiting triggers (docs/API.md)."""
    if account is None:
        account = Account(b"")
    equity, initial, maintenance, notional = compute_cross_summary(state, account)
    positions = []
    for market_id in sorted(account.positions):
        described = describe_position(state, account, state.markets[market_id], account.positions[market_id])
        positions.append({
            name: (value if isinstance(value, bool) or name in ("market", "leverage") else
                   None if value is None else str(value))
            for name, value in described.items()
        })
    triggers = [
        {"trigger_id": str(t.trigger_id), "market": t.market_id, "side": "buy" if t.is_buy else "sell",
         "size_lots": str(t.size_lots), "trigger_price": str(t.trigger_price),
         "kind": "take_profit" if t.take_profit else "stop", "limit_price": str(t.limit_price),
         "reduce_only": t.reduce_only}
        for t in (account.triggers[i] for i in sorted(account.triggers))
    ]
    return {
        "collateral": str(account.collateral), "equity": str(equity), "initial_margin": str(initial),
        "maintenance_margin": str(maintenance), "order_margin": str(account.order_margin),
        "notional": str(notional), "withdrawable": str(compute_withdrawable(state, account)),
        "positions": positions,
        "leverage": [{"market": m, "leverage": lev, "margin_mode": "cross" if cross else "isolated"}
                     for m, (lev, cross) in sorted(account.leverage.items())],
        "triggers": triggers,
    }


def format_perp_market(market: Market) -> dict[str, Any]:
    """The perp-only part of a market: parameters and the live mark, funding and open interest."""
    p = market.params
    return {
        "oracle_price": str(market.oracle_price), "oracle_time_ms": str(market.oracle_time_ms),
        "mark_price": str(market.mark_price), "funding_index": str(market.funding_index),
        "last_funding_rate": str(market.last_funding_rate), "next_funding_ms": str(market.next_funding_ms),
        "open_interest_lots": str(market.open_interest),
        "margin_tiers": [[str(bound), leverage] for bound, leverage in p.margin_tiers],
        "default_leverage": p.default_leverage, "funding_interest_rate": str(p.funding_interest_rate),
        "funding_clamp_rate": str(p.funding_clamp_rate), "funding_cap_hourly": str(p.funding_cap_hourly),
        "funding_interval_ms": str(p.funding_interval_ms), "impact_notional": str(p.impact_notional),
        "mark_ema_ms": str(p.mark_ema_ms), "max_open_interest_lots": str(p.max_open_interest_lots),
        "liquidation_fee_bps": p.liquidation_fee_bps, "liquidation_slippage_bps": p.liquidation_slippage_bps,
        "liquidation_chunk_notional": str(p.liquidation_chunk_notional), "price_band_bps": p.price_band_bps,
        "oracle_max_age_ms": str(p.oracle_max_age_ms),
    }


def format_balances(state: State, account: Account | None) -> list[dict[str, Any]]:
    """Balance, hold and available per asset the account holds any of, by asset id."""
    if account is None:
        return []
    balances = []
    for asset_id in sorted(set(account.balances) | set(account.holds)):
        balance, held = account.balances.get(asset_id, 0), account.holds.get(asset_id, 0)
        balances.append({
            "asset": asset_id, "symbol": state.assets[asset_id].symbol, "balance": str(balance),
            "hold": str(held), "available": str(balance - held),
        })
    return balances


def format_params(value: Any, name: str = "") -> Any:
    """Chain or market parameters in API encoding: dataclasses as objects (`market_id` as `id`), bytes as hex,
    integers as decimal strings except small ones (ids, decimals, bps, leverage, counts), tuples as arrays."""
    if is_dataclass(value):
        return {("id" if f.name == "market_id" else f.name): format_params(getattr(value, f.name), f.name)
                for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [format_params(item, name) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return value if name in _SMALL_PARAM_FIELDS or name.endswith("_bps") else str(value)


def format_genesis(genesis: GenesisConfig) -> dict[str, Any]:
    """The genesis configuration in API encoding (names of docs/PROTOCOL.md §8; see `format_params`)."""
    params = format_params(genesis.params)
    del params["chain_id"]
    return {
        "chain_id": genesis.params.chain_id, "genesis_time_ms": str(genesis.genesis_time_ms), "params": params,
        "assets": [{"id": a.asset_id, "symbol": a.symbol, "decimals": a.decimals} for a in genesis.assets],
        "spot_markets": format_params(genesis.spot_markets),
        "perp_markets": format_params(getattr(genesis, "perp_markets", ())),
        "balances": [{"address": a.hex(), "asset": asset, "amount": str(n)} for a, asset, n in genesis.balances],
        "validators": [{"address": a.hex(), "power": str(power)} for a, power in genesis.validators],
    }


# --- the methods ----------------------------------------------------------------------------------------------

def make_router(view: ChainView) -> Router:
    """The route table of every exchange query, over `view` (subscribe & co. come from the hub)."""

    def require_height(height: int | None) -> int:
        latest = view.latest_height()
        if height is None:
            height = latest
        earliest = view.earliest_height()
        if not (earliest <= height <= latest) or height == 0:
            raise RpcError(HEIGHT_NOT_AVAILABLE, f"height {height} is not available (served: {earliest} to {latest})",
                           {"height": str(height), "earliest": str(earliest), "latest": str(latest)})
        return height

    def resolve_market(market: int | str) -> int:
        markets = view.state.markets
        if isinstance(market, int):
            if market in markets:
                return market
        else:
            for market_id in sorted(markets):
                if markets[market_id].params.symbol == market:
                    return market_id
        raise _invalid("market", f"unknown market {market!r}")

    def status(ctx: CallContext) -> dict[str, Any]:
        return {
            "node_info": {"network": view.chain_id, "protocol_version": "1"},
            "sync_info": {
                "latest_block_hash": view.latest_block_hash().hex(),
                "latest_app_hash": view.latest_app_hash().hex(),
                "latest_block_height": str(view.latest_height()),
                "latest_block_time_ms": str(view.latest_time_ms()),
                "earliest_block_height": str(view.earliest_height()),
                "catching_up": bool(view.is_catching_up()),
            },
        }

    def health(ctx: CallContext) -> dict[str, Any]:
        return {}

    def markets(ctx: CallContext) -> dict[str, Any]:
        state = view.state

        def asset(asset_id: int) -> dict[str, Any]:
            a = state.assets[asset_id]
            return {"id": a.asset_id, "symbol": a.symbol, "decimals": a.decimals}

        result = []
        for market_id in sorted(state.markets):
            market = state.markets[market_id]
            p = market.params
            base = getattr(p, "base_asset", None)  # a perpetual market moves no base asset
            result.append({
                "market": p.market_id, "kind": "perp" if getattr(market, "is_perp", False) else "spot",
                "symbol": p.symbol, "base_asset": None if base is None else asset(base),
                "quote_asset": asset(p.quote_asset), "tick_size": str(p.tick_size), "lot_size": str(p.lot_size),
                "min_size_lots": str(p.min_size_lots), "maker_fee_bps": p.maker_fee_bps,
                "taker_fee_bps": p.taker_fee_bps, "fee_account": p.fee_account.hex(),
                "last_trade_price": str(market.last_trade_price), "halted": market.halted,
                **({"perp": format_perp_market(market)} if market.is_perp else {}),
            })
        assets = [{**asset(a), "supply": str(state.supply.get(a, 0))} for a in sorted(state.assets)]
        return {"height": str(state.height), "markets": result, "assets": assets, "units": UNITS}

    def book(ctx: CallContext, market: int | str, depth: int) -> dict[str, Any]:
        market_id = resolve_market(market)
        bids, asks = get_levels(view.state.markets[market_id].book, depth)
        height = str(view.state.height)
        return {
            "market": market_id, "seq": height, "height": height,
            "bids": [[str(p), str(s)] for p, s in bids], "asks": [[str(p), str(s)] for p, s in asks],
            "checksum": compute_checksum(bids, asks),
        }

    def account(ctx: CallContext, address: bytes) -> dict[str, Any]:
        state = view.state
        acct = state.accounts.get(address)
        return {
            "address": address.hex(), "height": str(state.height), "balances": format_balances(state, acct),
            "open_orders": 0 if acct is None else len(acct.orders),
            "agents": [] if acct is None else sorted(a.hex() for a in acct.agents),
            "cancel_all_at_ms": "0" if acct is None else str(acct.cancel_all_at_ms),
            "perp": format_perp_account(state, acct),
        }

    def funding_history(ctx: CallContext, market: int | str, address: bytes | None, limit: int) -> dict[str, Any]:
        """The market's funding payments in the blocks kept, newest first: the market-wide rate and index, or,
        with `address`, that account's payments."""
        market_id = resolve_market(market)
        if not view.state.markets[market_id].is_perp:
            raise _invalid("market", f"market {market_id} is not a perpetual market")
        items: list[dict[str, Any]] = []
        for height in sorted(view.iter_heights(), reverse=True):
            if len(items) >= limit:
                break
            result = view.get_result(height)
            time_ms = str(view.get_block(height).header.time_ms)
            for event in reversed(result.events):
                if type(event) is FundingEvent and address is None and event.market == market_id:
                    items.append({"height": str(height), "time_ms": time_ms, "rate": str(event.rate),
                                  "funding_index": str(event.funding_index), "oracle_price": str(event.oracle_price),
                                  "average_premium": str(event.average_premium)})
                elif type(event) is FundingPayment and event.account == address and event.market == market_id:
                    items.append({"height": str(height), "time_ms": time_ms, "size_lots": str(event.size_lots),
                                  "amount": str(event.amount)})
        return {"market": market_id, "height": str(view.latest_height()), "address": address and address.hex(),
                "funding": items[:limit]}

    def open_orders(ctx: CallContext, address: bytes, market: int | str | None) -> dict[str, Any]:
        market_id = None if market is None else resolve_market(market)
        acct = view.state.accounts.get(address)
        orders = [] if acct is None else [
            format_order(acct.orders[o]) for o in sorted(acct.orders)
            if market_id is None or acct.orders[o].market_id == market_id
        ]
        return {"address": address.hex(), "height": str(view.state.height), "orders": orders}

    def order_status(
        ctx: CallContext, order_id: int | None, address: bytes | None, client_id: int | None,
    ) -> dict[str, Any]:
        state = view.state
        if order_id is not None:
            if address is not None or client_id is not None:
                raise _invalid("order_id", "give either order_id, or address and client_id")
            not_found = {"order_id": str(order_id)}
        elif address is None:
            raise _invalid("order_id", "give either order_id, or address and client_id")
        elif client_id is None:
            raise _invalid("client_id", "required with address")
        else:
            not_found = {"address": address.hex(), "client_id": str(client_id)}
            acct = state.accounts.get(address)
            resting = None if acct is None else acct.client_ids.get(client_id)
            order_id = resting.order_id if resting is not None else view.find_client_order(address, client_id)
        order = None if order_id is None else state.orders.get(order_id)
        if order is not None:
            return {"order_id": str(order_id), "status": "open", "height": str(state.height),
                    "order": format_order(order)}
        outcome = None if order_id is None else view.find_order_outcome(order_id)
        if outcome is None:
            raise RpcError(ORDER_NOT_FOUND, "order not found (not open, and not finished in the blocks kept)",
                           not_found)
        done = outcome.done
        return {
            "order_id": str(order_id), "status": DONE_REASON_NAMES[done.reason], "height": str(outcome.height),
            "market": done.market, "owner": done.owner.hex(), "reason": done.reason,
            "remaining_lots": str(done.remaining_lots),
        }

    def account_proof(ctx: CallContext, address: bytes) -> dict[str, Any]:
        state = view.state
        value, proof = prove_account(state, address)
        return {
            "address": address.hex(), "key": account_key(address).hex(),
            "value": None if value is None else value.hex(), "proof": _proof_json(proof),
            "root": state.merkle.root().hex(), "height": str(state.height),
        }

    def block(ctx: CallContext, height: int | None) -> dict[str, Any]:
        height = require_height(height)
        blk, result = view.get_block(height), view.get_result(height)
        assert blk is not None and result is not None
        return format_block(blk, result)

    def block_results(ctx: CallContext, height: int | None) -> dict[str, Any]:
        height = require_height(height)
        result = view.get_result(height)
        assert result is not None
        return {
            "height": str(height), "block_hash": result.block_hash.hex(), "app_hash": result.state_root.hex(),
            "txs_results": [format_receipt(i, r) for i, r in enumerate(result.receipts)],
        }

    def block_diff(ctx: CallContext, height: int | None) -> dict[str, Any]:
        height = require_height(height)
        result = view.get_result(height)
        assert result is not None
        return format_block_diff(height, result)

    def tx(ctx: CallContext, hash: bytes) -> dict[str, Any]:
        location = view.find_tx(hash)
        blk = None if location is None else view.get_block(location.height)
        result = None if location is None else view.get_result(location.height)
        if location is None or blk is None or result is None:
            raise RpcError(TX_NOT_FOUND, "transaction not found in the blocks kept", {"hash": hash.hex()})
        decoded = decode_transaction(blk.txs[location.index])
        return {
            "hash": hash.hex(), "height": str(location.height), "index": location.index,
            "account": decoded.account.hex(), "signer": decoded.signer.hex(), "nonce": str(decoded.nonce),
            "tx": decoded.wire.hex(),
            "tx_result": format_receipt(location.index, result.receipts[location.index]),
            "proof": {
                "txs_root": blk.header.txs_root.hex(), "index": location.index, "total": len(blk.txs),
                "path": [[side, sibling.hex()] for side, sibling in
                         compute_tx_path([r.tx_hash for r in result.receipts], location.index)],
            },
        }

    def genesis(ctx: CallContext) -> dict[str, Any]:
        config = view.get_genesis()
        if config is None:
            raise RpcError(NOT_AVAILABLE, "the genesis document is not available on this node",
                           {"feature": "genesis"})
        return format_genesis(config)

    def validators(ctx: CallContext) -> dict[str, Any]:
        state = view.state
        listed = [{"address": a.hex(), "power": str(state.validators[a])} for a in sorted(state.validators)]
        return {"height": str(state.height), "validators": listed, "total_power": str(sum(state.validators.values()))}

    def evidence(ctx: CallContext, validator: bytes | None, limit: int) -> dict[str, Any]:
        """The double signing recorded in the committed state (docs/PROTOCOL.md §5.21), newest offence first."""
        recorded = view.state.evidence
        found: list[dict[str, Any]] = []
        for address, height in sorted(recorded, key=lambda where: (-where[1], where[0])):
            if validator is not None and address != validator:
                continue
            for (round_, vote_type), at in sorted(recorded[(address, height)].items()):
                found.append({"validator": address.hex(), "height": str(height), "round": str(round_),
                              "vote_type": vote_type, "vote_type_name": VOTE_TYPE_NAMES.get(vote_type, "unknown"),
                              "recorded_height": str(at)})
        return {"height": str(view.state.height), "count": len(found), "evidence": found[:limit]}

    def fills(
        ctx: CallContext, address: bytes, market: int | str | None, limit: int, before: tuple[int, int] | None,
    ) -> dict[str, Any]:
        market_id = None if market is None else resolve_market(market)
        page, more = _page(view.iter_fills(address), market_id, limit, before)
        return {
            "address": address.hex(), "height": str(view.latest_height()),
            "fills": [format_fill(address, t.height, t.time_ms, t.trade) for t in page],
            "next_cursor": f"{page[-1].height}:{page[-1].index}" if more else None,
        }

    def trades(ctx: CallContext, market: int | str, limit: int) -> dict[str, Any]:
        market_id = resolve_market(market)
        page, _ = _page(view.iter_trades(market_id), None, limit, None)
        return {
            "market": market_id, "height": str(view.latest_height()),
            "trades": [format_trade(t.height, t.time_ms, t.trade) for t in page],
        }

    market = Param("market", _market_type)
    address = Param("address", _ADDRESS)
    height = Param("height", _U64, required=False)
    limit = Param("limit", _limit_type, required=False, default=DEFAULT_PAGE)
    return Router({
        "genesis": Route(genesis),
        "validators": Route(validators),
        "evidence": Route(evidence, Param("validator", _ADDRESS, required=False), limit),
        "fills": Route(fills, address, Param("market", _market_type, required=False), limit,
                       Param("before", _cursor_type, required=False)),
        "trades": Route(trades, market, limit),
        "funding_history": Route(funding_history, market, Param("address", _ADDRESS, required=False), limit),
        "status": Route(status),
        "health": Route(health),
        "markets": Route(markets),
        "book": Route(book, market, Param("depth", _depth_type, required=False, default=DEFAULT_BOOK_DEPTH)),
        "account": Route(account, address),
        "open_orders": Route(open_orders, address, Param("market", _market_type, required=False)),
        "order_status": Route(
            order_status, Param("order_id", _U64, required=False), Param("address", _ADDRESS, required=False),
            Param("client_id", _U64, required=False)),
        "account_proof": Route(account_proof, address),
        "block": Route(block, height),
        "block_results": Route(block_results, height),
        "block_diff": Route(block_diff, height),
        "tx": Route(tx, Param("hash", _HASH)),
    })
