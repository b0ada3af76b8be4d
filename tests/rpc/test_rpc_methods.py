"""rpc/methods.py and rpc/views.py against a real STF chain, called through the Router (no sockets)."""

import asyncio
import gc
import hashlib
import json
from typing import Any

import pytest

from genesis import minimal_genesis, validate_genesis
from rpc.jsonrpc import INVALID_PARAMS, CallContext, Router
from rpc.channels import make_channels, publish_block_messages
from rpc.methods import HEIGHT_NOT_AVAILABLE, ORDER_NOT_FOUND, TX_NOT_FOUND, make_router
from rpc.subscriptions import Hub, Session
from rpc.views import HOT_BLOCKS, InMemoryChainView
from stf.block import apply_block, make_block
from stf.crypto import PrivateKey
from stf.proof import Proof, verify_proof
from stf.state import account_key, initialize_state
from stf.tx import TIF_GTC, TIF_IOC, Cancel, PlaceOrder, Transfer, sign_transaction

USD, BTC, ETH = 0, 1, 2
BTC_USD, ETH_USD = 0, 1


class RpcChain:
    """A chain on the minimal genesis, a view fed after every block, and a router over the view."""

    def __init__(self, accounts: int = 3, window: int = 1000, feed_depth: int = 50, **params: Any) -> None:
        self.keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(accounts)]
        balances = [(k.address.hex(), a, n) for k in self.keys for a, n in ((USD, 10**12), (BTC, 10**9), (ETH, 10**10))]
        self.genesis = validate_genesis(minimal_genesis(balances=balances, **params))
        self.state = initialize_state(self.genesis)
        self.view = InMemoryChainView(self.state, window=window, feed_depth=feed_depth)
        self.router = make_router(self.view)
        self.time_ms = self.genesis.genesis_time_ms
        self.nonce = self.time_ms
        self.feed_messages: list[dict[int, dict]] = []
        self.hub: Hub | None = None  # when set, every block is published on it (rpc.channels)

    def tx(self, key: PrivateKey, *actions: Any) -> bytes:
        self.nonce += 1
        return sign_transaction(key, self.state.params.chain_id, self.nonce, list(actions))

    def block(self, *txs: bytes) -> None:
        self.time_ms += 1000
        self.nonce = max(self.nonce, self.time_ms)
        block = make_block(self.state, self.time_ms, list(txs))
        result = apply_block(self.state, block)
        self.feed_messages.append(self.view.add_block(block, result))
        if self.hub is not None:
            publish_block_messages(self.hub, self.view, block, result, self.feed_messages[-1])

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """The whole JSON-RPC response object."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            request["params"] = params
        text = asyncio.run(self.router.handle(json.dumps(request), CallContext(self.view)))
        assert text is not None
        return json.loads(text)

    def result(self, method: str, params: Any = None) -> Any:
        response = self.call(method, params)
        assert "result" in response, response
        return response["result"]

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        response = self.call(method, params)
        assert "error" in response, response
        return response["error"]


def place(market: int, is_buy: bool, price: int, size: int, client_id: int | None = None, tif: int = TIF_GTC):
    return PlaceOrder(market, is_buy, price, size, tif, client_id, 0, False)


@pytest.fixture
def chain() -> RpcChain:
    c = RpcChain()
    a, b, _ = c.keys
    c.block(c.tx(a, place(BTC_USD, True, 999_000, 5, client_id=7), place(BTC_USD, True, 998_000, 2)),
            c.tx(b, place(BTC_USD, False, 1_001_000, 3)))
    c.block(c.tx(b, place(BTC_USD, False, 999_000, 2, tif=TIF_IOC)))  # trades 2 lots with a's bid
    return c


def test_status_has_cometbft_shape(chain: RpcChain) -> None:
    status = chain.result("status")
    assert status["node_info"]["network"] == "kabuto-test"
    sync = status["sync_info"]
    assert sync["latest_block_height"] == "2" and sync["catching_up"] is False
    assert sync["latest_block_hash"] == chain.state.last_block_hash.hex()
    assert sync["latest_app_hash"] == chain.state.merkle.root().hex()
    assert sync["earliest_block_height"] == "1"
    assert chain.result("health") == {}


def test_markets_lists_params_with_units(chain: RpcChain) -> None:
    result = chain.result("markets")
    btc = result["markets"][0]
    assert btc["symbol"] == "BTC-USD" and btc["market"] == 0
    assert btc["lot_size"] == "1000" and btc["tick_size"] == "1" and btc["maker_fee_bps"] == -1
    assert btc["base_asset"] == {"id": 1, "symbol": "BTC", "decimals": 8}
    assert btc["last_trade_price"] == "999000"
    assert result["units"]["price"] == "quote atoms per lot"
    assert [a["symbol"] for a in result["assets"]] == ["USD", "BTC", "ETH"]


def test_book_levels_as_decimal_strings(chain: RpcChain) -> None:
    book = chain.result("book", {"market": 0, "depth": 10})
    assert book["bids"] == [["999000", "3"], ["998000", "2"]]
    assert book["asks"] == [["1001000", "3"]]
    assert book["seq"] == "2" and book["height"] == "2"
    assert chain.result("book", ["BTC-USD", "1"])["bids"] == [["999000", "3"]]
    assert chain.result("book", {"market": "1"})["bids"] == []


@pytest.mark.parametrize("params, param", [
    ({"market": 9}, "market"), ({"market": "DOGE-USD"}, "market"), ({"market": 0, "depth": 0}, "depth"),
    ({"market": 0, "depth": 501}, "depth"), ({"market": 0, "depth": 1.5}, "depth"), ({}, "market"),
    ({"market": True}, "market"), ({"market": 0, "levels": 3}, "levels"),
])
def test_book_bad_params_name_the_param(chain: RpcChain, params: dict, param: str) -> None:
    error = chain.error("book", params)
    assert error["code"] == INVALID_PARAMS and error["data"] == {"param": param}


def test_account_balances_holds_and_orders(chain: RpcChain) -> None:
    a = chain.keys[0]
    result = chain.result("account", {"address": a.address.hex()})
    usd = next(b for b in result["balances"] if b["symbol"] == "USD")
    acct = chain.state.accounts[a.address]
    assert usd["balance"] == str(acct.balances[USD]) and usd["hold"] == str(acct.holds[USD])
    assert int(usd["available"]) == int(usd["balance"]) - int(usd["hold"])
    assert int(usd["hold"]) == 3 * 999_000 + 2 * 998_000  # maker rebate: no fee bound in the hold
    assert result["open_orders"] == 2 and result["agents"] == []
    empty = chain.result("account", {"address": "0x" + "ab" * 20})
    assert empty["balances"] == [] and empty["open_orders"] == 0
    assert chain.error("account", {"address": "ab" * 19})["data"] == {"param": "address"}


def test_open_orders_and_order_status(chain: RpcChain) -> None:
    a, b, _ = chain.keys
    orders = chain.result("open_orders", {"address": a.address.hex()})["orders"]
    assert [(o["price"], o["size_lots"], o["side"], o["client_id"]) for o in orders] == [
        ("999000", "3", "buy", "7"), ("998000", "2", "buy", None)]
    assert chain.result("open_orders", {"address": a.address.hex(), "market": "ETH-USD"})["orders"] == []
    first = orders[0]["order_id"]
    status = chain.result("order_status", {"order_id": first})
    assert status["status"] == "open" and status["order"]["orig_size_lots"] == "5"
    assert chain.result("order_status", {"address": a.address.hex(), "client_id": "7"})["order_id"] == first
    # b's IOC filled completely in block 2; find it through the receipt.
    receipt = chain.result("block_results", {"height": 2})["txs_results"][0]["results"][0]
    done = chain.result("order_status", {"order_id": receipt["order_id"]})
    assert done["status"] == "filled" and done["height"] == "2" and done["remaining_lots"] == "0"
    chain.block(chain.tx(a, Cancel(BTC_USD, int(first))))
    cancelled = chain.result("order_status", {"address": a.address.hex(), "client_id": 7})
    assert cancelled["status"] == "cancelled" and cancelled["remaining_lots"] == "3"
    error = chain.error("order_status", {"order_id": 999})
    assert error["code"] == ORDER_NOT_FOUND and error["data"] == {"order_id": "999"}
    assert chain.error("order_status", {})["data"] == {"param": "order_id"}
    assert chain.error("order_status", {"address": a.address.hex()})["data"] == {"param": "client_id"}
    assert chain.error("order_status", {"order_id": 1, "client_id": 1})["data"] == {"param": "order_id"}


def test_account_proof_verifies_against_the_app_hash(chain: RpcChain) -> None:
    a = chain.keys[0]
    result = chain.result("account_proof", {"address": a.address.hex()})
    assert result["root"] == chain.result("status")["sync_info"]["latest_app_hash"] and result["height"] == "2"
    entries, siblings = result["proof"]
    proof = Proof.from_wire([[[bytes.fromhex(k), bytes.fromhex(d)] for k, d in entries],
                             [[bytes.fromhex(h) for h in group] for group in siblings]])
    key = bytes.fromhex(result["key"])
    assert key == account_key(a.address)
    assert verify_proof(bytes.fromhex(result["root"]), key, bytes.fromhex(result["value"]), proof)
    absent = chain.result("account_proof", {"address": "cd" * 20})
    assert absent["value"] is None


def test_block_results_diff_and_tx(chain: RpcChain) -> None:
    block = chain.result("block", {"height": "1"})
    assert block["header"]["height"] == "1" and block["num_txs"] == 2 and len(block["tx_hashes"]) == 2
    assert chain.result("block")["header"]["height"] == "2"  # latest by default
    results = chain.result("block_results", {"height": 1})
    assert chain.result("block", [2])["header"]["app_hash"] == results["app_hash"]  # the root after block 1
    assert [r["results"][0]["name"] for r in results["txs_results"]] == ["OK", "OK"]
    diff = chain.result("block_diff", {"height": 2})
    kinds = [e["type"] for e in diff["events"]]
    assert kinds == ["OrderAccepted", "Trade", "OrderDone"]
    trade = diff["events"][1]
    assert trade["price"] == "999000" and trade["size_lots"] == "2" and trade["market"] == 0
    assert trade["taker"] == chain.keys[1].address.hex() and isinstance(trade["taker_fee"], str)
    assert diff["events"][2]["reason_name"] == "filled"
    assert {"account", "global", "order", "nonces", "market"} <= {e["kind"] for e in diff["entries"]}
    assert diff["state_root"] == chain.state.merkle.root().hex()
    tx_hash = block["tx_hashes"][1]
    tx = chain.result("tx", {"hash": tx_hash})
    assert tx["height"] == "1" and tx["index"] == 1 and tx["account"] == chain.keys[1].address.hex()
    assert hashlib.sha256(bytes.fromhex(tx["tx"])).hexdigest() == tx_hash
    assert tx["tx_result"]["results"][0]["code"] == 0


@pytest.mark.parametrize("method", ["block", "block_results", "block_diff"])
def test_unknown_height_has_its_own_code(chain: RpcChain, method: str) -> None:
    for height in (0, 3, "99"):
        error = chain.error(method, {"height": height})
        assert error["code"] == HEIGHT_NOT_AVAILABLE
        assert error["data"] == {"height": str(height), "earliest": "1", "latest": "2"}
    assert chain.error(method, {"height": -1})["data"] == {"param": "height"}
    assert chain.error(method, {"height": "01"})["data"] == {"param": "height"}


def test_unknown_tx_and_bad_hash(chain: RpcChain) -> None:
    error = chain.error("tx", {"hash": "00" * 32})
    assert error["code"] == TX_NOT_FOUND and error["data"] == {"hash": "00" * 32}
    assert chain.error("tx", {"hash": "zz"})["data"] == {"param": "hash"}


def test_window_forgets_old_blocks_txs_and_orders() -> None:
    c = RpcChain(window=2)
    a, b, _ = c.keys
    c.block(c.tx(a, Transfer(b.address, USD, 5)))
    first = c.view.get_result(1).receipts[0].tx_hash.hex()
    c.block(c.tx(a, place(BTC_USD, True, 1000, 1, tif=TIF_IOC)))  # unfilled IOC: done at height 2
    ioc = c.view.get_result(2).receipts[0].results[0].order_id
    assert c.result("tx", {"hash": first})["height"] == "1"
    c.block()
    assert c.result("status")["sync_info"]["earliest_block_height"] == "2"
    assert c.error("block", {"height": 1})["code"] == HEIGHT_NOT_AVAILABLE
    assert c.error("tx", {"hash": first})["code"] == TX_NOT_FOUND
    assert c.result("order_status", {"order_id": ioc})["status"] == "unfilled_remainder"
    c.block()
    assert c.error("order_status", {"order_id": ioc})["code"] == ORDER_NOT_FOUND


def test_results_past_the_newest_blocks_read_back_unchanged_and_untracked(chain: RpcChain) -> None:
    a, b, _ = chain.keys
    chain.block(chain.tx(a, place(ETH_USD, True, 2_000_000, 4, client_id=9)),
                chain.tx(b, place(ETH_USD, False, 2_000_000, 3, tif=TIF_IOC), Transfer(a.address, USD, 5)))
    heights = range(1, chain.view.latest_height() + 1)
    fresh = {h: chain.view.get_result(h) for h in heights}
    trades, fills = list(chain.view.iter_trades(ETH_USD)), list(chain.view.iter_fills(a.address))
    hashes = [r.tx_hash for h in heights for r in fresh[h].receipts]
    locations = [chain.view.find_tx(t) for t in hashes]
    ioc = fresh[2].receipts[0].results[0].order_id
    outcome = chain.view.find_order_outcome(ioc)
    for _ in range(HOT_BLOCKS + 1):
        chain.block()
    assert [chain.view.get_result(h) for h in heights] == [fresh[h] for h in heights]
    assert len(trades) == 1 and len(fills) == 2
    assert list(chain.view.iter_trades(ETH_USD)) == trades and list(chain.view.iter_fills(a.address)) == fills
    assert [chain.view.find_tx(t) for t in hashes] == locations and None not in locations
    assert outcome is not None and chain.view.find_order_outcome(ioc) == outcome
    assert chain.result("tx", {"hash": hashes[-1].hex()})["tx_result"]["results"][1]["code"] == 0
    gc.collect()  # untracks what there is one of per transaction: receipts, events and index entries
    kept = [result for _, result in chain.view._blocks]
    per_tx = [x for r in kept[:-HOT_BLOCKS] for x in (*r[1], *r[2])]
    per_tx += [*chain.view._txs.values(), *chain.view._outcomes.values(), *chain.view._trades[ETH_USD]]
    assert per_tx and not any(gc.is_tracked(x) for x in per_tx)
    gc.collect()
    gc.collect()  # one level of nesting a pass: then every result past the newest blocks
    assert not any(gc.is_tracked(r) for r in kept[:-HOT_BLOCKS])
    assert all(type(r).__name__ == "BlockResult" for r in kept[-HOT_BLOCKS:])


def test_window_evicts_results_kept_as_tuples() -> None:
    c = RpcChain(window=HOT_BLOCKS + 2)
    a, b, _ = c.keys
    c.block(c.tx(a, place(BTC_USD, True, 1000, 2, client_id=5)), c.tx(b, place(BTC_USD, False, 1000, 1)))
    trade_hash = c.view.get_result(1).receipts[1].tx_hash
    assert len(list(c.view.iter_fills(b.address))) == 1
    for _ in range(HOT_BLOCKS + 2):
        c.block()
    assert c.view.earliest_height() == 2 and c.view.find_tx(trade_hash) is None
    assert list(c.view.iter_trades(BTC_USD)) == [] and list(c.view.iter_fills(b.address)) == []
    assert c.view.find_client_order(a.address, 5) is None


def test_add_block_refuses_a_block_not_just_applied(chain: RpcChain) -> None:
    block = make_block(chain.state, chain.time_ms + 1000, [])
    with pytest.raises(ValueError):
        chain.view.add_block(block, chain.view.get_result(2))


def test_router_routes_every_method(chain: RpcChain) -> None:
    assert set(chain.router.routes) == {
        "status", "health", "markets", "book", "account", "open_orders", "order_status", "account_proof",
        "block", "block_results", "block_diff", "tx", "genesis", "validators", "fills", "trades", "funding_history",
        "evidence"}
    assert isinstance(chain.router, Router)


def test_book_channel_snapshot_through_the_hub(chain: RpcChain) -> None:
    hub = Hub(make_channels())
    session = Session("peer", 16, 4)
    hub.subscribe(session, chain.view, "book", {"market": "0"})
    frames = [json.loads(f) for f in session._frames]
    snapshot = frames[0]["params"]["result"]
    book = chain.result("book", {"market": 0, "depth": 50})
    assert snapshot["type"] == "snapshot"
    assert (snapshot["bids"], snapshot["asks"], snapshot["seq"], snapshot["checksum"]) == (
        book["bids"], book["asks"], book["seq"], book["checksum"])
    with pytest.raises(Exception) as info:
        hub.subscribe(session, chain.view, "book", {"market": 7})
    assert getattr(info.value, "code", None) == INVALID_PARAMS


def test_served_end_to_end_over_http_and_websocket(chain: RpcChain) -> None:
    """One real server on 127.0.0.1 port 0: a method over HTTP, the book channel over WebSocket (published by
    rpc.channels.publish_block_messages)."""
    import aiohttp
    from aiohttp import web

    from rpc.bookfeed import LocalBook
    from rpc.server import make_app

    async def scenario() -> None:
        hub = Hub(make_channels())
        runner = web.AppRunner(make_app(chain.router, chain.view, hub=hub))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as http:
                body = {"jsonrpc": "2.0", "id": 1, "method": "book", "params": {"market": "BTC-USD"}}
                async with http.post(f"http://{host}:{port}/", json=body) as response:
                    served = (await response.json())["result"]
                async with http.ws_connect(f"http://{host}:{port}/websocket") as ws:
                    await ws.send_json({"jsonrpc": "2.0", "id": 2, "method": "subscribe",
                                        "params": {"channel": "book", "market": 0}})
                    subscription = (await ws.receive_json())["result"]
                    snapshot = (await ws.receive_json())["params"]
                    assert snapshot["subscription"] == subscription
                    local = LocalBook()
                    local.apply(snapshot["result"])
                    assert local.checksum() == served["checksum"]
                    a = chain.keys[0]
                    chain.hub = hub
                    chain.block(chain.tx(a, place(BTC_USD, True, 999_500, 4)))
                    diff = (await ws.receive_json())["params"]["result"]
                    local.apply(diff)
                    assert diff["changes"] == [["bid", "999500", "4"]] and local.seq == 3
        finally:
            await runner.cleanup()

    async def bounded() -> None:
        async with asyncio.timeout(10):
            await scenario()

    asyncio.run(bounded())
