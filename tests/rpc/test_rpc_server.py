"""rpc/server.py over real sockets: an aiohttp server on 127.0.0.1 port 0 with a toy route table.

No test sleeps to synchronize: ordering comes from the protocol (a response follows the frames queued before
it) and from the hub's counters, which change synchronously inside `publish`.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter

from rpc.config import RpcConfig
from rpc.jsonrpc import (
    INVALID_REQUEST, LIMIT_EXCEEDED, METHOD_NOT_FOUND, PARSE_ERROR, CallContext, Int, Param, Route, Router, Str,
)
from rpc.server import HUB, SERVER, make_app
from rpc.subscriptions import CLOSE_GOING_AWAY, CLOSE_MESSAGE_TOO_BIG, CLOSE_SLOW_CONSUMER, Channel, Hub


class Views:
    """A stand-in for the node's read-only views."""

    height = 42


async def add(ctx: CallContext, a: int, b: int) -> int:
    return a + b


ROUTER = Router({
    "add": Route(add, Param("a", Int()), Param("b", Int())),
    "status": Route(lambda ctx: {"height": str(ctx.views.height), "peer": ctx.peer}),
    "noop": Route(lambda ctx: None),
})
CHANNELS = [Channel("blocks"), Channel("trades", Param("market", Str(16)))]


def frozen_clock() -> float:
    return 0.0


@dataclass
class Server:
    url: str
    http: aiohttp.ClientSession
    app: web.Application
    runner: web.AppRunner

    @property
    def hub(self) -> Hub:
        return self.app[HUB]

    async def post(self, body: str | bytes) -> tuple[int, Any]:
        async with self.http.post(self.url + "/", data=body) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def ws(self, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(self.url + "/websocket", **kwargs)


@contextlib.asynccontextmanager
async def serve(config: RpcConfig = RpcConfig(), **kwargs: Any) -> AsyncIterator[Server]:
    kwargs.setdefault("hub", Hub(CHANNELS))
    app = make_app(ROUTER, Views(), config, **kwargs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as http:
            yield Server(f"http://{host}:{port}", http, app, runner)
    finally:
        await runner.cleanup()


class WatchedHub(Hub):
    """A hub that reports when a connection's handler has ended: the handler detaches the session last."""

    def __init__(self) -> None:
        super().__init__(CHANNELS)
        self.ended = asyncio.Event()

    def detach(self, session: Any) -> None:
        # The hub itself detaches a slow consumer at once (the first call); any other detach is the handler's.
        from_handler = session.is_detached or session.close_code != CLOSE_SLOW_CONSUMER
        super().detach(session)
        if from_handler:
            self.ended.set()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await scenario()

    asyncio.run(bounded())


def request(method: str, params: Any = None, id_: Any = 1) -> str:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    return json.dumps(body)


async def rpc(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any = None, id_: Any = 1) -> Any:
    await ws.send_str(request(method, params, id_))
    return json.loads(await ws.receive_str())


# --- HTTP -----------------------------------------------------------------------------------------------------


def test_http_single_and_batch() -> None:
    async def scenario() -> None:
        async with serve() as server:
            assert await server.post(request("add", [2, 3])) == (200, {"jsonrpc": "2.0", "id": 1, "result": 5})
            status, body = await server.post(request("status", id_="s"))
            assert body["result"] == {"height": "42", "peer": "127.0.0.1"} and body["id"] == "s"
            batch = "[" + ",".join([request("add", [1, 1], 1), '{"jsonrpc":"2.0","method":"noop"}',
                                    request("missing", id_=3)]) + "]"
            status, body = await server.post(batch)
            assert status == 200 and [r["id"] for r in body] == [1, 3]
            assert body[0]["result"] == 2 and body[1]["error"]["code"] == METHOD_NOT_FOUND
            async with server.http.post(server.url + "/", data=request("noop")) as response:
                assert response.headers["Content-Type"].startswith("application/json")

    run(scenario)


def test_http_notifications_only_get_204() -> None:
    async def scenario() -> None:
        async with serve() as server:
            assert await server.post('{"jsonrpc":"2.0","method":"noop"}') == (204, None)
            assert await server.post('[{"jsonrpc":"2.0","method":"noop"},{"jsonrpc":"2.0","method":"x"}]') == \
                (204, None)

    run(scenario)


def test_http_parse_error_and_invalid_request() -> None:
    async def scenario() -> None:
        async with serve() as server:
            status, body = await server.post(b"{not json")
            assert status == 200 and body["error"]["code"] == PARSE_ERROR and body["id"] is None
            status, body = await server.post(b"[]")
            assert body["error"]["code"] == INVALID_REQUEST

    run(scenario)


def test_http_oversize_body_is_413() -> None:
    async def scenario() -> None:
        async with serve(RpcConfig(max_body_bytes=200)) as server:
            assert (await server.post(request("add", [1, 2])))[0] == 200
            status, body = await server.post(request("status", ["x" * 300]))
            assert status == 413 and body["error"]["code"] == INVALID_REQUEST
            assert body["error"]["data"] == {"limit": "max_body_bytes", "max": 200}

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
                for _ in range(10):
                    yield b" " * 50

            async with server.http.post(server.url + "/", data=chunks()) as response:
                assert response.status == 413

    run(scenario)


def test_http_get_on_root_is_not_allowed() -> None:
    async def scenario() -> None:
        async with serve() as server:
            async with server.http.get(server.url + "/") as response:
                assert response.status == 405

    run(scenario)


def test_subscribe_over_http_is_method_not_found() -> None:
    async def scenario() -> None:
        async with serve() as server:
            _, body = await server.post(request("subscribe", {"channel": "blocks"}))
            assert body["error"]["code"] == METHOD_NOT_FOUND and "/websocket" in body["error"]["message"]

    run(scenario)


# --- WebSocket ------------------------------------------------------------------------------------------------


def test_websocket_request_response() -> None:
    async def scenario() -> None:
        async with serve() as server:
            ws = await server.ws()
            assert await rpc(ws, "add", {"a": 40, "b": 2}, "x") == {"jsonrpc": "2.0", "id": "x", "result": 42}
            await ws.send_str('{"jsonrpc":"2.0","method":"noop"}')  # a notification: nothing comes back
            await ws.send_str("[" + request("add", [1, 2], 1) + "," + request("add", [3, 4], 2) + "]")
            assert [r["result"] for r in json.loads(await ws.receive_str())] == [3, 7]
            await ws.send_bytes(request("add", [5, 5], 3).encode())
            assert json.loads(await ws.receive_str())["result"] == 10
            assert (await rpc(ws, "add", [1.5, 2]))["error"]["code"] == -32602
            await ws.send_bytes(b"\xff\xfe garbage")
            assert json.loads(await ws.receive_str())["error"]["code"] == PARSE_ERROR
            assert (await rpc(ws, "add", [2, 2], 4))["result"] == 4  # the connection survives bad input
            await ws.close()

    run(scenario)


def test_subscribe_publish_unsubscribe() -> None:
    async def scenario() -> None:
        async with serve() as server:
            ws = await server.ws()
            subscription = (await rpc(ws, "subscribe", {"channel": "trades", "market": "BTC"}))["result"]
            other = (await rpc(ws, "subscribe", {"channel": "blocks"}, 2))["result"]
            assert server.hub.publish("trades", "BTC", {"price": "101", "size_lots": "3"}) == 1
            assert server.hub.publish("trades", "ETH", {"price": "1"}) == 0
            assert json.loads(await ws.receive_str()) == {
                "jsonrpc": "2.0", "method": "subscription",
                "params": {"subscription": subscription, "result": {"price": "101", "size_lots": "3"}},
            }
            assert await rpc(ws, "unsubscribe", {"subscription": subscription}, 3) == \
                {"jsonrpc": "2.0", "id": 3, "result": True}
            assert server.hub.publish("trades", "BTC", {"price": "102"}) == 0
            server.hub.publish("blocks", None, {"height": "43"})
            assert json.loads(await ws.receive_str())["params"] == {"subscription": other, "result": {"height": "43"}}
            assert (await rpc(ws, "unsubscribe_all", id_=4))["result"] == 1
            assert server.hub.publish("blocks", None, {"height": "44"}) == 0
            assert (await rpc(ws, "add", [1, 1], 5))["result"] == 2  # the next frame is a response, no notification
            await ws.close()
            assert server.hub.get_subscriber_count("blocks", None) == 0

    run(scenario)


def test_disconnect_removes_subscriptions() -> None:
    async def scenario() -> None:
        hub = WatchedHub()
        async with serve(hub=hub) as server:
            ws = await server.ws()
            await rpc(ws, "subscribe", {"channel": "blocks"})
            assert server.hub.get_subscriber_count("blocks", None) == 1
            await ws.close()
            await hub.ended.wait()
            assert server.hub.get_subscriber_count("blocks", None) == 0 and server.app[SERVER].aborted == 0

    run(scenario)


def test_slow_consumer_is_closed_while_a_fast_one_keeps_receiving() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        async with serve(RpcConfig(send_queue_messages=4), registry=registry) as server:
            slow, fast = await server.ws(), await server.ws()
            await rpc(slow, "subscribe", {"channel": "blocks"})
            fast_id = (await rpc(fast, "subscribe", {"channel": "blocks"}))["result"]
            payload = "x" * 65536
            published = 0
            while server.hub.slow_consumer_closes == 0:  # the slow client never reads: its socket fills up
                assert published < 2000, "the slow consumer was never closed"
                server.hub.publish("blocks", None, {"n": published, "payload": payload})
                message = json.loads(await fast.receive_str())
                assert message["params"]["subscription"] == fast_id and message["params"]["result"]["n"] == published
                published += 1
            assert server.hub.publish("blocks", None, {"n": "after"}) == 1
            assert json.loads(await fast.receive_str())["params"]["result"] == {"n": "after"}
            while (message := await slow.receive()).type is WSMsgType.TEXT:
                pass  # what was in flight before the close
            assert (message.type, message.data, message.extra) == (WSMsgType.CLOSE, CLOSE_SLOW_CONSUMER,
                                                                    "slow consumer")
            assert "kabuto_rpc_slow_consumer_closes_total 1.0" in await (await server.http.get(
                server.url + "/metrics")).text()
            await fast.close()

    run(scenario)


def test_a_client_that_never_reads_is_aborted_after_the_close_timeout() -> None:
    async def scenario() -> None:
        hub = WatchedHub()
        async with serve(RpcConfig(send_queue_messages=2, ws_close_timeout_seconds=0.2), hub=hub) as server:
            stuck = await server.ws()
            await rpc(stuck, "subscribe", {"channel": "blocks"})
            payload = "y" * 65536
            for n in range(2000):
                if hub.slow_consumer_closes:
                    break
                hub.publish("blocks", None, {"n": n, "payload": payload})
                await asyncio.sleep(0)  # let the writer run, as a live node would between blocks
            assert hub.slow_consumer_closes == 1
            await hub.ended.wait()  # the handler ended although the client never read its close frame
            assert len(server.app[SERVER].sessions) == 0 and server.app[SERVER].aborted == 1
            while (await stuck.receive()).type is WSMsgType.TEXT:
                pass  # whatever reached it before the abort (possibly the close frame), then the end

    run(scenario)


def test_rate_limit_returns_32005() -> None:
    async def scenario() -> None:
        config = RpcConfig(burst_per_ip=3, requests_per_second_per_ip=1.0)
        async with serve(config, clock=frozen_clock) as server:
            assert (await server.post(request("add", [1, 1])))[1]["result"] == 2
            status, body = await server.post("[" + request("add", [1, 2], 1) + "," + request("add", [1, 3], 2) +
                                             "," + request("add", [1, 4], 3) + "]")
            assert status == 200 and [r.get("result") for r in body] == [3, 4, None]
            assert body[2]["error"]["code"] == LIMIT_EXCEEDED and body[2]["id"] == 3
            assert body[2]["error"]["data"] == {"limit": "requests_per_second_per_ip", "max": 1}
            ws = await server.ws()  # the same address shares the bucket across transports
            refused = await rpc(ws, "add", [1, 1], 9)
            assert refused["error"]["code"] == LIMIT_EXCEEDED and refused["id"] is None  # refused unparsed
            await ws.close()
            metrics = await (await server.http.get(server.url + "/metrics")).text()
            assert "kabuto_rpc_rate_limited_total 2.0" in metrics

    run(scenario)


def test_oversize_websocket_message_closes_with_1009() -> None:
    async def scenario() -> None:
        async with serve(RpcConfig(max_body_bytes=256)) as server:
            ws = await server.ws()
            assert (await rpc(ws, "add", [1, 1]))["result"] == 2
            await ws.send_str(request("status", ["x" * 300]))
            message = await ws.receive()
            assert message.type is WSMsgType.CLOSE and message.data == CLOSE_MESSAGE_TOO_BIG

    run(scenario)


def test_connection_caps() -> None:
    async def scenario() -> None:
        async with serve(RpcConfig(max_connections_per_ip=2, max_connections=3)) as server:
            first, second = await server.ws(), await server.ws()
            async with server.http.get(server.url + "/websocket") as response:
                assert response.status == 503
                body = await response.json()
            assert body["error"]["code"] == LIMIT_EXCEEDED
            assert body["error"]["data"] == {"limit": "max_connections_per_ip", "max": 2}
            with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
                await server.ws()
            assert raised.value.status == 503
            await first.close()
            third = await server.ws()
            assert (await rpc(third, "add", [1, 1]))["result"] == 2
            await second.close()
            await third.close()

    run(scenario)


def test_subscription_cap_over_websocket() -> None:
    async def scenario() -> None:
        async with serve(RpcConfig(max_subscriptions_per_connection=1)) as server:
            ws = await server.ws()
            assert "result" in await rpc(ws, "subscribe", {"channel": "blocks"})
            refused = await rpc(ws, "subscribe", {"channel": "blocks"}, 2)
            assert refused["error"]["code"] == LIMIT_EXCEEDED
            assert refused["error"]["data"] == {"limit": "max_subscriptions_per_connection", "max": 1}
            await ws.close()

    run(scenario)


def test_unanswered_ping_drops_the_peer() -> None:
    async def scenario() -> None:
        async with serve(RpcConfig(ws_heartbeat_seconds=0.2)) as server:
            ws = await server.ws(autoping=False)
            assert (await ws.receive()).type is WSMsgType.PING  # not answered
            assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)

    run(scenario)


def test_shutdown_closes_websockets_with_1001() -> None:
    async def scenario() -> None:
        async with serve() as server:
            ws = await server.ws()
            await rpc(ws, "subscribe", {"channel": "blocks"})
            cleanup = asyncio.ensure_future(server.runner.cleanup())
            message = await ws.receive()
            assert (message.type, message.data, message.extra) == (WSMsgType.CLOSE, CLOSE_GOING_AWAY,
                                                                    "server shutting down")
            await cleanup

    run(scenario)


# --- health, readiness, metrics -------------------------------------------------------------------------------


def test_health() -> None:
    async def scenario() -> None:
        async with serve() as server:
            async with server.http.get(server.url + "/health") as response:
                assert response.status == 200 and await response.json() == {"status": "ok"}

    run(scenario)


@pytest.mark.parametrize(("ready", "status"), [
    (None, 200),
    (lambda: True, 200),
    (lambda: False, 503),
    (lambda: 1, 503),
    (lambda: 1 / 0, 503),
])
def test_ready(ready: Any, status: int) -> None:
    async def scenario() -> None:
        async with serve(ready=ready) as server:
            async with server.http.get(server.url + "/ready") as response:
                assert response.status == status
                assert await response.json() == {"ready": status == 200}

    run(scenario)


def test_ready_async_callback() -> None:
    async def is_caught_up() -> bool:
        return True

    async def scenario() -> None:
        async with serve(ready=is_caught_up) as server:
            async with server.http.get(server.url + "/ready") as response:
                assert response.status == 200

    run(scenario)


def test_metrics_of_the_injected_registry() -> None:
    registry = CollectorRegistry()
    blocks = Counter("kabuto_blocks_applied", "blocks applied", registry=registry)
    blocks.inc(3)

    async def scenario() -> None:
        async with serve(registry=registry) as server:
            await server.post(request("add", [1, 1]))
            await server.post("[" + request("add", [1.5, 1]) + "," + request("no_such_method_" + "x" * 50) + ","
                              + request("add", [1, 2]) + ", 7]")
            ws = await server.ws()
            await rpc(ws, "subscribe", {"channel": "blocks"})
            async with server.http.get(server.url + "/metrics") as response:
                assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
            await ws.close()
        for line in ["kabuto_blocks_applied_total 3.0", 'kabuto_rpc_messages_total{transport="http"} 2.0',
                     'kabuto_rpc_calls_total{code="0",method="add"} 2.0',
                     'kabuto_rpc_calls_total{code="-32602",method="add"} 1.0',
                     'kabuto_rpc_calls_total{code="-32601",method="unknown"} 1.0',
                     'kabuto_rpc_calls_total{code="-32600",method="invalid"} 1.0',
                     'kabuto_rpc_calls_total{code="0",method="subscribe"} 1.0',
                     'kabuto_rpc_messages_total{transport="websocket"} 1.0', "kabuto_rpc_websocket_connections 1.0",
                     "kabuto_rpc_subscriptions 1.0"]:
            assert line in text

    run(scenario)


def test_router_may_not_define_subscription_methods() -> None:
    with pytest.raises(ValueError, match="subscribe"):
        make_app(Router({"subscribe": Route(lambda ctx: None)}), Views())
