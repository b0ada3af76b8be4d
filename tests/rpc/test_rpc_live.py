"""Submission and channels over real sockets: an aiohttp server on 127.0.0.1 (port 0) over an InMemoryChainView
of a real STF chain, a test submitter that admits to a list, and blocks built from that list with
stf.block.make_block/apply_block and published with rpc.channels.publish_block.

`LiveNode` is also the harness of tests/rpc/test_rpc_client.py (the SDK against the same server).
"""

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from genesis import minimal_genesis, validate_genesis
from genesis.presets import perp_genesis
from rpc.channels import REPLAY_WINDOW, make_channels, publish_block, publish_block_messages
from rpc.config import RpcConfig
from rpc.jsonrpc import INVALID_PARAMS, LIMIT_EXCEEDED, encode_json
from rpc.methods import HEIGHT_NOT_AVAILABLE, NOT_AVAILABLE, format_event, make_router
from rpc.server import HUB, SERVER, make_app
from rpc.submit import COMMIT_TIMEOUT, SubmitResult
from rpc.subscriptions import CLOSE_SLOW_CONSUMER, Hub
from rpc.views import InMemoryChainView
from stf.block import apply_block, make_block
from stf.crypto import PrivateKey
from stf.errors import KabutoError
from stf.events import EVENT_TYPES
from stf.state import initialize_state
from stf.tx import TIF_GTC, TIF_IOC, PlaceOrder, Transfer, decode_transaction, sign_transaction, validate_signature

USD, BTC, ETH = 0, 1, 2
BTC_USD, ETH_USD = 0, 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ListSubmitter:
    """Admits a transaction that decodes and whose signature verifies, to a list the next block takes."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        self.pending: list[bytes] = []
        self.calls = 0

    async def submit(self, wire: bytes) -> SubmitResult:
        self.calls += 1
        tx_hash = hashlib.sha256(wire).digest()
        try:
            validate_signature(decode_transaction(wire), self.chain_id)
        except KabutoError as exc:
            return SubmitResult(tx_hash, exc.code, str(exc))
        self.pending.append(wire)
        return SubmitResult(tx_hash, "ok", "")


class LiveNode:
    """A chain, its view and hub, and a real server over them (started by `serve`)."""

    def __init__(self, accounts: int = 4, with_submitter: bool = True, **config: Any) -> None:
        self.keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(accounts)]
        balances = [(k.address.hex(), a, n) for k in self.keys for a, n in ((USD, 10**12), (BTC, 10**9), (ETH, 10**10))]
        self.genesis = validate_genesis(minimal_genesis(balances=balances, faucet=True))
        self.state = initialize_state(self.genesis)
        self.chain_id = self.state.params.chain_id
        self.view = InMemoryChainView(self.state, genesis=self.genesis)
        self.hub = Hub(make_channels())
        self.submitter = ListSubmitter(self.chain_id) if with_submitter else None
        self.config = RpcConfig(**{"requests_per_second_per_ip": 100_000.0, "burst_per_ip": 100_000, **config})
        self.nonce = 0
        self.url = ""
        self.app: web.Application | None = None
        self.skip_book_once = False

    def tx(self, key: PrivateKey, *actions: Any) -> bytes:
        self.nonce = max(self.nonce + 1, now_ms())
        return sign_transaction(key, self.chain_id, self.nonce, list(actions))

    def block(self, *txs: bytes) -> int:
        """Apply a block of `txs` plus everything the submitter admitted, and publish it; its height."""
        pending = self.submitter.pending if self.submitter is not None else []
        body, pending[:] = [*pending, *txs], []
        block = make_block(self.state, max(self.state.time_ms + 1, now_ms()), body)
        result = apply_block(self.state, block)
        if self.skip_book_once:  # an injected gap: the book channel misses this block's diffs
            self.skip_book_once = False
            assert self.view.add_block(block, result)
            publish_block_messages(self.hub, self.view, block, result, {})
        else:
            publish_block(self.hub, self.view, block, result)
        return block.header.height

    @property
    def ws_url(self) -> str:
        return self.url + "/websocket"


@contextlib.asynccontextmanager
async def serve(node: LiveNode) -> AsyncIterator[LiveNode]:
    app = make_app(make_router(node.view), node.view, node.config, hub=node.hub, submitter=node.submitter)
    assert app[HUB] is node.hub
    node.app = app
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    node.url = f"http://{host}:{port}"
    try:
        yield node
    finally:
        await runner.cleanup()


def run(scenario: Callable[[], Awaitable[None]], limit: float = 20) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await scenario()

    asyncio.run(bounded())


async def post(http: aiohttp.ClientSession, node: LiveNode, method: str, params: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    async with http.post(node.url + "/", json=body) as response:
        return await response.json()


async def ws_call(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any = None, id_: int = 1) -> Any:
    await ws.send_json({"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}})
    return await ws.receive_json()


async def notification(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive_json()
    assert message["method"] == "subscription", message
    return message["params"]


def order(market: int, is_buy: bool, price: int, size: int, tif: int = TIF_GTC, client_id: int | None = None):
    return PlaceOrder(market, is_buy, price, size, tif, client_id, 0, False)


# --- submission -----------------------------------------------------------------------------------------------


def test_broadcast_tx_sync_answers_admission_over_http_and_websocket() -> None:
    node = LiveNode()

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            wire = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5))
            answer = (await post(http, node, "broadcast_tx_sync", {"tx": wire.hex()}))["result"]
            assert answer == {"hash": hashlib.sha256(wire).hexdigest(), "code": "ok", "message": ""}
            assert node.submitter.pending == [wire]
            forged = wire[:-1] + bytes([wire[-1] ^ 1])  # the last signature byte flipped
            refused = (await post(http, node, "broadcast_tx_sync", ["0x" + forged.hex().upper()]))["result"]
            assert refused["code"] == "bad_signature" and refused["hash"] == hashlib.sha256(forged).hexdigest()
            async with http.ws_connect(node.ws_url) as ws:
                other = node.tx(node.keys[1], order(BTC_USD, False, 1_001_000, 3))
                encoded = base64.b64encode(other).decode()
                answer = await ws_call(ws, "broadcast_tx_sync", {"tx": encoded, "encoding": "base64"})
                assert answer["result"]["code"] == "ok" and node.submitter.pending == [wire, other]
                garbage = await ws_call(ws, "broadcast_tx_sync", {"tx": "c0ffee"})
                assert garbage["result"]["code"] == "malformed_transaction"

    run(scenario)


def test_broadcast_tx_async_returns_the_hash_and_admits_in_the_background() -> None:
    node = LiveNode()

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            wire = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5))
            answer = await post(http, node, "broadcast_tx_async", {"tx": wire.hex()})
            assert answer["result"] == {"hash": hashlib.sha256(wire).hexdigest()}
            for _ in range(100):
                if node.submitter.pending:
                    break
                await asyncio.sleep(0.01)
            assert node.submitter.pending == [wire]

    run(scenario)


def test_broadcast_tx_commit_waits_for_the_block_and_returns_the_receipt() -> None:
    node = LiveNode()

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            node.block()
            wire = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5, client_id=3))
            call = asyncio.ensure_future(post(http, node, "broadcast_tx_commit", {"tx": wire.hex()}))
            while not node.submitter.pending:
                await asyncio.sleep(0.005)
            assert not call.done()
            height = node.block()
            answer = (await call)["result"]
            assert answer["height"] == str(height) and answer["check_tx"] == {"code": "ok", "message": ""}
            assert answer["hash"] == hashlib.sha256(wire).hexdigest()
            assert answer["tx_result"]["results"] == [{"code": 0, "name": "OK", "order_id": "1", "filled_lots": "0"}]
            forged = wire[:-1] + bytes([wire[-1] ^ 1])
            refused = (await post(http, node, "broadcast_tx_commit", {"tx": forged.hex()}))["result"]
            assert refused["check_tx"]["code"] == "bad_signature"
            assert refused["height"] is None and refused["tx_result"] is None

    run(scenario)


def test_broadcast_tx_commit_times_out_with_32010() -> None:
    node = LiveNode(commit_timeout_seconds=0.15)

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            wire = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5))
            started = time.monotonic()
            error = (await post(http, node, "broadcast_tx_commit", {"tx": wire.hex()}))["error"]
            assert error["code"] == COMMIT_TIMEOUT and 0.1 < time.monotonic() - started < 5
            assert error["data"] == {"hash": hashlib.sha256(wire).hexdigest(), "timeout_ms": "150"}
            second = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 6))
            error = (await post(http, node, "broadcast_tx_commit", {"tx": second.hex(), "timeout_ms": 20}))["error"]
            assert error["data"]["timeout_ms"] == "20"
            assert len(node.submitter.pending) == 2  # admitted, just not included yet

    run(scenario)


def test_shutdown_ends_a_commit_wait_at_once_with_32010() -> None:
    node = LiveNode(commit_timeout_seconds=60)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            async with serve(node):
                wire = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5))
                call = asyncio.ensure_future(post(http, node, "broadcast_tx_commit", {"tx": wire.hex()}))
                while not node.submitter.pending:
                    await asyncio.sleep(0.005)
                started = time.monotonic()
            assert time.monotonic() - started < 5   # not the 60 s commit timeout
            error = (await call)["error"]
            assert error["code"] == COMMIT_TIMEOUT and error["data"]["timeout_ms"] == "0"
            assert "shutting down" in error["message"]

    run(scenario)


def test_without_a_submitter_broadcast_answers_32004() -> None:
    node = LiveNode(with_submitter=False)

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            wire = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5))
            for method in ("broadcast_tx_async", "broadcast_tx_sync", "broadcast_tx_commit"):
                error = (await post(http, node, method, {"tx": wire.hex()}))["error"]
                assert error["code"] == NOT_AVAILABLE and error["data"] == {"feature": "submission"}
                assert "not available on this node" in error["message"]

    run(scenario)


def test_broadcast_param_errors_name_the_param() -> None:
    node = LiveNode(max_pending_submissions=1, commit_timeout_seconds=0.5)

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            for params, param in (({"tx": "zz"}, "tx"), ({"tx": ""}, "tx"), ({"tx": "00" * 16_385}, "tx"),
                                  ({"tx": "AA==", "encoding": "base58"}, "encoding"), ({}, "tx"),
                                  ({"tx": "%%", "encoding": "base64"}, "tx")):
                error = (await post(http, node, "broadcast_tx_sync", params))["error"]
                assert error["code"] == INVALID_PARAMS and error["data"] == {"param": param}, (params, error)
            first = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5))
            waiting = asyncio.ensure_future(post(http, node, "broadcast_tx_commit", {"tx": first.hex()}))
            while not node.submitter.pending:
                await asyncio.sleep(0.005)
            second = node.tx(node.keys[0], order(BTC_USD, True, 999_000, 6))
            error = (await post(http, node, "broadcast_tx_commit", {"tx": second.hex()}))["error"]
            assert error["code"] == LIMIT_EXCEEDED and error["data"] == {"limit": "max_pending_submissions", "max": 1}
            node.block()
            assert (await waiting)["result"]["height"] == "1"

    run(scenario)


# --- channels -------------------------------------------------------------------------------------------------


def test_blocks_block_diffs_trades_and_account_channels_live() -> None:
    node = LiveNode()
    a, b = node.keys[0], node.keys[1]

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http, http.ws_connect(node.ws_url) as ws:
            ids = {}
            for i, (channel, params) in enumerate((("blocks", {}), ("block_diffs", {}), ("trades", {"market": 0}),
                                                   ("account", {"address": b.address.hex()}))):
                ids[channel] = (await ws_call(ws, "subscribe", {"channel": channel, **params}, i))["result"]
            snapshot = await notification(ws)  # only the account channel sends one without from_height
            assert snapshot["subscription"] == ids["account"] and snapshot["result"]["type"] == "snapshot"
            assert snapshot["result"]["orders"] == [] and snapshot["result"]["balances"][0]["balance"] == str(10**12)
            node.block(node.tx(a, order(BTC_USD, True, 999_000, 5)))
            node.block(node.tx(b, order(BTC_USD, False, 999_000, 2, TIF_IOC)),
                       node.tx(a, Transfer(node.keys[2].address, USD, 7)))
            got: dict[str, list[Any]] = {name: [] for name in ids}
            by_id = {v: k for k, v in ids.items()}
            for _ in range(2 + 2 + 1 + 1):
                params = await notification(ws)
                got[by_id[params["subscription"]]].append(params["result"])
            assert [m["header"]["height"] for m in got["blocks"]] == ["1", "2"]
            assert got["blocks"][1] == (await post(http, node, "block", {"height": 2}))["result"]
            assert got["block_diffs"][1] == (await post(http, node, "block_diff", {"height": 2}))["result"]
            [trades] = got["trades"]
            assert trades["height"] == "2" and [(t["price"], t["size_lots"], t["side"]) for t in trades["trades"]] == [
                ("999000", "2", "sell")]
            [account] = got["account"]
            assert account["type"] == "block" and account["height"] == "2"
            assert [e["type"] for e in account["events"]] == ["OrderAccepted", "Trade", "OrderDone"]
            usd = account["account"]["balances"][0]
            current = (await post(http, node, "account", [b.address.hex()]))["result"]["balances"][0]
            assert usd == current and int(usd["balance"]) > 10**12  # sold 2 lots

    run(scenario)


def test_from_height_replays_then_continues_live_without_gap() -> None:
    node = LiveNode()
    a = node.keys[0]

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http, http.ws_connect(node.ws_url) as ws:
            for i in range(6):
                node.block(node.tx(a, order(BTC_USD, True, 990_000 + i, 1)))
            answer = await ws_call(ws, "subscribe", {"channel": "block_diffs", "from_height": "3"})
            assert "result" in answer, answer
            heights = [(await notification(ws))["result"]["height"] for _ in range(4)]
            assert heights == ["3", "4", "5", "6"]
            account = await ws_call(ws, "subscribe", {"channel": "account", "address": a.address.hex(),
                                                      "from_height": 5}, 2)
            replayed = [(await notification(ws))["result"] for _ in range(2)]
            assert [(m["type"], m["height"]) for m in replayed] == [("block", "5"), ("block", "6")]
            assert replayed[1]["events"][0]["price"] == "990005"
            node.block(node.tx(a, order(BTC_USD, True, 980_000, 1)))
            live = [(await notification(ws)) for _ in range(2)]
            assert sorted(m["result"]["height"] for m in live) == ["7", "7"]
            assert {m["subscription"] for m in live} == {answer["result"], account["result"]}
            for bad, code in ((0, HEIGHT_NOT_AVAILABLE), (9, HEIGHT_NOT_AVAILABLE), ("x", INVALID_PARAMS)):
                error = (await ws_call(ws, "subscribe", {"channel": "blocks", "from_height": bad}))["error"]
                assert error["code"] == code, error
            assert error["data"] == {"param": "from_height"}
            error = (await ws_call(ws, "subscribe", {"channel": "blocks", "from_height": 9}))["error"]
            assert error["data"] == {"height": "9", "earliest": "1", "latest": "7"}
            assert (await ws_call(ws, "subscribe", {"channel": "blocks", "from_height": 8}))["result"]  # live only
            assert (await ws_call(ws, "subscribe", {"channel": "blocks", "from_height": 7}))["result"]
            assert (await notification(ws))["result"]["header"]["height"] == "7"
            error = (await ws_call(ws, "subscribe", {"channel": "trades", "market": 9}))["error"]
            assert error["code"] == INVALID_PARAMS and error["data"] == {"param": "market"}

    run(scenario)


def test_replay_window_bounds_from_height() -> None:
    node = LiveNode(accounts=1)

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http, http.ws_connect(node.ws_url) as ws:
            for _ in range(REPLAY_WINDOW + 2):
                node.block()
            error = (await ws_call(ws, "subscribe", {"channel": "blocks", "from_height": 2}))["error"]
            assert error["code"] == HEIGHT_NOT_AVAILABLE and error["data"]["earliest"] == "3"
            assert "result" in await ws_call(ws, "subscribe", {"channel": "blocks", "from_height": 3})
            replayed = [(await notification(ws))["result"]["header"]["height"] for _ in range(REPLAY_WINDOW)]
            assert replayed == [str(h) for h in range(3, REPLAY_WINDOW + 3)]

    run(scenario)


def test_slow_consumer_is_closed_with_4008_while_a_fast_one_keeps_up() -> None:
    node = LiveNode(accounts=8, send_queue_messages=64, max_subscriptions_per_connection=64)

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            slow = await http.ws_connect(node.ws_url)
            for i in range(64):  # never reads: 64 copies of every block diff fill its socket, then its buffer
                await slow.send_json({"jsonrpc": "2.0", "id": i, "method": "subscribe",
                                      "params": {"channel": "block_diffs"}})
            async with http.ws_connect(node.ws_url) as fast:
                assert "result" in await ws_call(fast, "subscribe", {"channel": "blocks"})
                height = 0
                while node.hub.slow_consumer_closes == 0:
                    assert height < 400, "the slow consumer was never closed"
                    txs = [node.tx(k, order(BTC_USD, i % 2 == 0, 990_000 + height % 50, 1 + i))
                           for i, k in enumerate(node.keys)]
                    height = node.block(*txs)
                    message = await notification(fast)
                    assert message["result"]["header"]["height"] == str(height)  # the fast one is never behind
                assert height > 1  # its socket took some blocks before its buffer overflowed
                frames = []
                while (message := await slow.receive()).type is WSMsgType.TEXT:
                    frames.append(message)
                assert message.type is WSMsgType.CLOSE and message.data == CLOSE_SLOW_CONSUMER
                assert message.extra == "slow consumer"
                height = node.block()
                assert (await notification(fast))["result"]["header"]["height"] == str(height)

    run(scenario, limit=40)


# --- methods added with the channels --------------------------------------------------------------------------


def test_genesis_validators_fills_and_trades_methods() -> None:
    node = LiveNode()
    a, b = node.keys[0], node.keys[1]

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            node.block(node.tx(a, order(BTC_USD, True, 999_000, 5), order(BTC_USD, True, 998_000, 5)))
            for size in (1, 2, 3):
                node.block(node.tx(b, order(BTC_USD, False, 998_000, size, TIF_IOC)))
            genesis = (await post(http, node, "genesis"))["result"]
            assert genesis["chain_id"] == "kabuto-test" and genesis["spot_markets"][0]["lot_size"] == "1000"
            assert {"address": a.address.hex(), "asset": 0, "amount": str(10**12)} in genesis["balances"]
            validators = (await post(http, node, "validators"))["result"]
            assert validators == {"height": "4", "validators": [], "total_power": "0"}
            trades = (await post(http, node, "trades", {"market": "BTC-USD", "limit": 10}))["result"]["trades"]
            assert [(t["height"], t["price"], t["size_lots"]) for t in trades] == [
                ("4", "998000", "1"), ("4", "999000", "2"), ("3", "999000", "2"), ("2", "999000", "1")]
            page = (await post(http, node, "fills", {"address": b.address.hex(), "limit": 3}))["result"]
            assert [(f["height"], f["side"], f["liquidity"]) for f in page["fills"]] == [
                ("4", "sell", "taker"), ("4", "sell", "taker"), ("3", "sell", "taker")]
            assert page["next_cursor"] is not None
            rest = (await post(http, node, "fills", {"address": b.address.hex(), "before": page["next_cursor"]}))
            assert [f["height"] for f in rest["result"]["fills"]] == ["2"] and rest["result"]["next_cursor"] is None
            maker = (await post(http, node, "fills", [a.address.hex(), 0, 100]))["result"]["fills"]
            assert [f["liquidity"] for f in maker] == ["maker"] * 4 and maker[0]["counterparty"] == b.address.hex()
            assert int(maker[0]["fee"]) <= 0  # the BTC-USD maker rebate
            for params, param in (({"address": a.address.hex(), "limit": 0}, "limit"),
                                  ({"address": a.address.hex(), "before": "4"}, "before"),
                                  ({"address": a.address.hex(), "market": "DOGE"}, "market")):
                error = (await post(http, node, "fills", params))["error"]
                assert error["code"] == INVALID_PARAMS and error["data"] == {"param": param}

    run(scenario)


def test_genesis_not_available_without_the_document() -> None:
    node = LiveNode(accounts=1)
    node.view = InMemoryChainView(node.state)

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            error = (await post(http, node, "genesis"))["error"]
            assert error["code"] == NOT_AVAILABLE and error["data"] == {"feature": "genesis"}

    run(scenario)


def test_notifications_are_json_without_floats() -> None:
    node = LiveNode()

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http, http.ws_connect(node.ws_url) as ws:
            await ws_call(ws, "subscribe", {"channel": "block_diffs"})
            node.block(node.tx(node.keys[0], order(BTC_USD, True, 999_000, 5)))
            raw = (await ws.receive()).data
            json.loads(raw, parse_float=lambda text: (_ for _ in ()).throw(AssertionError(text)))

    run(scenario)


def test_api_doc_covers_every_method_and_channel() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text()
    node = LiveNode(accounts=1)
    app = make_app(make_router(node.view), node.view, node.config, hub=node.hub, submitter=node.submitter)
    for method in app[SERVER].router.routes:
        assert f"`{method}`" in doc, method
    for channel in node.hub.channels:
        assert f"`{channel}`" in doc, channel
    for code in ("-32001", "-32002", "-32003", "-32004", "-32005", "-32010", "4008"):
        assert code in doc, code


def test_every_event_kind_formats_without_floats() -> None:
    samples = {int: 1, bytes: b"\x01" * 20, bool: True}  # 1 is a valid reason and time in force
    for kind, cls in sorted(EVENT_TYPES.items()):
        event = cls(*(samples.get(cls.__annotations__[name], 2) for name in cls._fields))
        formatted = format_event(event)
        assert formatted["kind"] == kind and formatted["type"] and not formatted["type"].endswith("Event")
        encode_json(formatted)  # raises on a float or an unencodable value


def test_perp_markets_are_listed_and_served_without_their_positions() -> None:
    keys = [PrivateKey(bytes([9]) * 32)]
    doc = perp_genesis(balances=[(keys[0].address.hex(), USD, 10**12)], validators=[(keys[0].address.hex(), 10)])
    genesis = validate_genesis(doc)
    state = initialize_state(genesis)
    node = LiveNode(accounts=1)
    node.state, node.view = state, InMemoryChainView(state, genesis=genesis)
    node.hub = Hub(make_channels())

    async def scenario() -> None:
        async with serve(node), aiohttp.ClientSession() as http:
            markets = (await post(http, node, "markets"))["result"]["markets"]
            kinds = {m["symbol"]: (m["kind"], m["base_asset"]) for m in markets}
            assert kinds["BTC-PERP"] == ("perp", None) and kinds["BTC-USD"][0] == "spot"
            served = (await post(http, node, "genesis"))["result"]
            perp = served["perp_markets"][0]
            assert perp["id"] == 10 and perp["symbol"] == "BTC-PERP" and perp["tick_size"] == "100"
            assert perp["margin_tiers"][1] == [str(500_000 * 10**6), "20"]
            assert (await post(http, node, "book", {"market": "BTC-PERP"}))["result"]["bids"] == []

    run(scenario)
