"""The aiohttp application: JSON-RPC over HTTP and WebSocket, health, readiness and metrics.

`make_app(router, views, config, *, hub, ready, registry, clock)` builds it; the node runs it with an
`aiohttp.web.AppRunner` inside its TaskGroup and publishes through `hub` (also at `app[HUB]`). The app owns no
state the node needs: `views` are read-only objects handed to every handler as `ctx.views`.

    hub = Hub([Channel("new_block"), Channel("trades", Param("market", Str(32)))])
    app = make_app(Router(ROUTES), views, RpcConfig(...), hub=hub, ready=node.is_caught_up, registry=registry)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        ...                                   # hub.publish("new_block", None, block_json) after each commit
    finally:
        await runner.cleanup()                # closes every WebSocket with 1001, then stops

Endpoints:

| endpoint         | answer                                                                                        |
|------------------|-----------------------------------------------------------------------------------------------|
| `POST /`         | 200 with the JSON-RPC response (`application/json`); 204 with no body when the body held only  |
|                  | notifications; 413 with a -32600 response when the body exceeds `max_body_bytes`. Any       |
|                  | Content-Type is read as UTF-8 JSON. Every JSON-RPC error, -32005 included, is sent with 200. |
| `GET /websocket` | upgrade to WebSocket; each text (or binary UTF-8) message is a JSON-RPC body, answered with   |
|                  | one text frame (none for notifications); subscriptions as in `rpc/subscriptions.py`. Over    |
|                  | `max_connections` or `max_connections_per_ip` the upgrade gets 503 with a -32005 response.    |
| `GET /health`    | 200 `{"status":"ok"}` while the process serves requests (liveness)                            |
| `GET /ready`     | 200 `{"ready":true}` when the injected `ready()` says so, else 503 `{"ready":false}` (a raising |
|                  | or missing callback: see `make_app`)                                                          |
| `GET /metrics`   | Prometheus text exposition of the injected registry, which also gets the `kabuto_rpc_*` metrics |

WebSocket behaviour: messages of one connection are answered one after another, in order; the server pings
every `ws_heartbeat_seconds` and drops a peer that has not answered within half of that; a message larger than
`max_body_bytes` closes the connection with 1009; an overflowing send buffer closes it with 4008
"slow consumer"; shutdown closes every connection with 1001 "server shutting down". A close that the peer does
not complete within `ws_close_timeout_seconds` of the close request aborts the TCP connection (so a peer that
stopped reading cannot pin a socket and its buffer). Close codes: `rpc/subscriptions.py`.

Rate limiting (`rpc/limits.py`) is per client address and shared by HTTP and WebSocket. A body that arrives
when the address has no token left is answered with a single -32005 error (id null) without being parsed.

Metrics (registered on `registry`): `kabuto_rpc_messages_total{transport}` (HTTP bodies and WebSocket
messages), `kabuto_rpc_calls_total{method,code}` (every call or batch entry; code 0 for a result, else the error
code; method is a routed name, "unknown" or "invalid", so clients cannot grow the label set),
`kabuto_rpc_rate_limited_total`, `kabuto_rpc_connections_refused_total`, `kabuto_rpc_connections_aborted_total`,
`kabuto_rpc_websocket_connections`, `kabuto_rpc_subscriptions`, `kabuto_rpc_notifications_total`,
`kabuto_rpc_slow_consumer_closes_total`. One app per registry (a second would register the names twice).
"""

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rpc.config import RpcConfig
from rpc.jsonrpc import INVALID_REQUEST, CallContext, Router, RpcError, encode_error
from rpc.limits import Clock, ConnectionLimiter, RateLimiter, get_client_key
from rpc.submit import Submission, TxSubmitter
from rpc.subscriptions import CLOSE_GOING_AWAY, CLOSE_NORMAL, REASON_SHUTDOWN, Hub, Session

__all__ = ["HUB", "SERVER", "SUBMISSION", "make_app", "RpcServer"]

log = logging.getLogger(__name__)

Ready = Callable[[], bool | Awaitable[bool]]

JSON = "application/json"


class RpcServer:
    """The request handlers and their shared state; one per app."""

    def __init__(
        self, router: Router, views: Any, config: RpcConfig, hub: Hub, ready: Ready | None, clock: Clock,
    ) -> None:
        self.router = router.with_routes(hub.get_routes())
        self.views = views
        self.config = config
        self.hub = hub
        self.ready = ready
        self.limits = config.parse_limits
        self.rate = RateLimiter(config.requests_per_second_per_ip, config.burst_per_ip, clock, config.max_tracked_ips)
        self.connections = ConnectionLimiter(config.max_connections, config.max_connections_per_ip)
        self.sessions: set[Session] = set()
        self.messages = {"http": 0, "websocket": 0}
        self.calls: dict[tuple[str, int], int] = {}  # (method label, 0 or error code) -> count
        self.aborted = 0

    # -- JSON-RPC over either transport ----------------------------------------------------------------------

    async def answer_body(self, body: bytes | str, ctx: CallContext) -> str | None:
        if not self.rate.has_token(ctx.peer):
            refusal = self.rate.admit(ctx.peer)  # refuses (and counts) for want of a token
            assert refusal is not None
            return encode_error(None, refusal)
        return await self.router.handle(body, ctx, self.limits, lambda: self.rate.admit(ctx.peer), self.count_call)

    def count_call(self, method: str, code: int) -> None:
        self.calls[(method, code)] = self.calls.get((method, code), 0) + 1

    # -- HTTP ------------------------------------------------------------------------------------------------

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        self.messages["http"] += 1
        ctx = CallContext(self.views, get_client_key(request.remote))
        body = await self._read_body(request)
        if body is None:
            error = RpcError(INVALID_REQUEST, f"request too large: limit {self.config.max_body_bytes} bytes",
                             {"limit": "max_body_bytes", "max": self.config.max_body_bytes})
            return web.Response(status=413, text=encode_error(None, error), content_type=JSON)
        response = await self.answer_body(body, ctx)
        if response is None:
            return web.Response(status=204)
        return web.Response(text=response, content_type=JSON)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None as soon as it is known to exceed `max_body_bytes` (the rest is not read)."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def handle_ready(self, request: web.Request) -> web.Response:
        is_ready = True
        if self.ready is not None:
            try:
                answer = self.ready()
                if inspect.isawaitable(answer):
                    answer = await answer
                is_ready = answer is True
            except Exception:
                log.exception("readiness callback failed")
                is_ready = False
        return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)

    # -- WebSocket -------------------------------------------------------------------------------------------

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        key = get_client_key(request.remote)
        refusal = self.connections.try_open(key)
        if refusal is not None:
            return web.Response(status=503, text=encode_error(None, refusal), content_type=JSON)
        try:
            ws = web.WebSocketResponse(
                heartbeat=self.config.ws_heartbeat_seconds, max_msg_size=self.config.max_body_bytes,
                compress=False, timeout=self.config.ws_close_timeout_seconds,
            )
            await ws.prepare(request)
            session = Session(key, self.config.send_queue_messages, self.config.max_subscriptions_per_connection)
            self.sessions.add(session)
            try:
                await self._serve_session(request, ws, session)
            finally:
                self.sessions.discard(session)
                self.hub.detach(session)
        finally:
            self.connections.close(key)
        return ws

    async def _serve_session(self, request: web.Request, ws: web.WebSocketResponse, session: Session) -> None:
        """Reader and writer run until a close is requested; the writer then closes the socket.

        A peer that has not completed the close handshake within `ws_close_timeout_seconds` of the request
        (it stopped reading, or never answers) is aborted: a graceful close would keep the socket, and what is
        buffered for it, for as long as the peer keeps its receive window at zero.
        """
        ctx = CallContext(self.views, session.peer, session)
        transport = request.transport
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(self._read_messages(ws, session, ctx))
            writer = tasks.create_task(self._write_frames(request, ws, session))
            await session.wait_closing()
            reader.cancel()  # so that close() reads the peer's close frame itself
            await asyncio.wait({writer}, timeout=self.config.ws_close_timeout_seconds)
            writer.cancel()
        clean = not writer.cancelled() and writer.result()
        if not clean and transport is not None:
            transport.abort()
            self.aborted += 1

    async def _read_messages(self, ws: web.WebSocketResponse, session: Session, ctx: CallContext) -> None:
        try:
            while not session.is_closing:
                message = await ws.receive()
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                self.messages["websocket"] += 1
                session.begin_call()
                response = None
                try:
                    response = await self.answer_body(message.data, ctx)
                finally:
                    session.end_call(response)
        finally:
            session.request_close(CLOSE_NORMAL, "")

    async def _write_frames(self, request: web.Request, ws: web.WebSocketResponse, session: Session) -> bool:
        """Write queued frames until a close is requested, then close; True if the close handshake completed.

        The one task that writes data frames also writes the close frame, so no two tasks wait on aiohttp's
        shared drain future (cancelling one waiter would cancel it for the other). Every batch of queued
        frames goes to the transport in one write (one system call instead of one per frame: the fan-out's
        largest cost), then waits for the transport's buffer to drain below its high-water mark, so a
        client that does not read fills its session's buffer (close 4008) rather than the transport's.
        """
        transport = request.transport
        try:
            while (frames := await session.take_frames()) is not None:
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("the transport is closing")
                transport.write(b"".join(map(encode_text_frame, frames)))
                await request.writer.drain()
            if ws.closed:
                return True  # the peer closed first and aiohttp answered it
            await ws.close(code=session.close_code or CLOSE_NORMAL, message=session.close_reason.encode())
            return ws.close_code != WSCloseCode.ABNORMAL_CLOSURE  # aiohttp's mark for "no close frame came back"
        except ConnectionError:
            return False
        finally:
            session.request_close(CLOSE_NORMAL, "")

    async def on_shutdown(self, app: web.Application) -> None:
        for session in list(self.sessions):
            session.request_close(CLOSE_GOING_AWAY, REASON_SHUTDOWN)

    # -- metrics ---------------------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "kabuto_rpc_messages", "JSON-RPC bodies received (HTTP) and messages received (WebSocket)",
            labels=["transport"])
        for transport, count in sorted(self.messages.items()):
            messages.add_metric([transport], count)
        yield messages
        calls = CounterMetricFamily(
            "kabuto_rpc_calls", "JSON-RPC calls by method and outcome (code 0: result, else the error code)",
            labels=["method", "code"])
        for (method, code), count in sorted(self.calls.items()):
            calls.add_metric([method, str(code)], count)
        yield calls
        yield CounterMetricFamily(
            "kabuto_rpc_rate_limited", "calls and bodies refused by the per-address rate limit (-32005)",
            value=self.rate.refused)
        yield CounterMetricFamily(
            "kabuto_rpc_connections_refused", "WebSocket upgrades refused by a connection cap",
            value=self.connections.refused)
        yield CounterMetricFamily(
            "kabuto_rpc_connections_aborted", "WebSockets aborted because the peer did not complete the close in time",
            value=self.aborted)
        yield GaugeMetricFamily("kabuto_rpc_websocket_connections", "open WebSocket connections",
                                value=len(self.sessions))
        yield GaugeMetricFamily("kabuto_rpc_subscriptions", "live subscriptions",
                                value=sum(len(s.subscriptions) for s in self.sessions))
        yield CounterMetricFamily("kabuto_rpc_notifications", "subscription notifications queued",
                                  value=self.hub.notifications_sent)
        yield CounterMetricFamily(
            "kabuto_rpc_slow_consumer_closes", "WebSocket connections closed with 4008 (send buffer overflow)",
            value=self.hub.slow_consumer_closes)


def encode_text_frame(text: str) -> bytes:
    """One unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


HUB = web.AppKey("kabuto_rpc_hub", Hub)
SERVER = web.AppKey("kabuto_rpc_server", RpcServer)
SUBMISSION = web.AppKey("kabuto_rpc_submission", Submission)


def make_app(
    router: Router, views: Any, config: RpcConfig = RpcConfig(), *, hub: Hub | None = None,
    ready: Ready | None = None, registry: CollectorRegistry | None = None, clock: Clock = time.monotonic,
    submitter: TxSubmitter | None = None,
) -> web.Application:
    """The RPC application. `router` must define neither the subscription methods (the hub provides them) nor
    the `broadcast_tx_*` methods (rpc/submit.py provides them, over `submitter`; without one they answer
    -32004 "transaction submission is not available on this node").

    `ready()` (plain or async) returning True makes `/ready` answer 200; False, anything else or an exception
    gives 503; without a callback the server reports ready. `registry` defaults to a fresh one (so `/metrics`
    shows only the RPC metrics); the node passes its own. `clock` is the rate limiter's time source (seconds).
    """
    hub = hub if hub is not None else Hub()
    registry = registry if registry is not None else CollectorRegistry()
    submission = Submission(submitter, config.commit_timeout_seconds, config.max_pending_submissions)
    hub.add_listener(submission.waiters.on_publish)
    server = RpcServer(router.with_routes(submission.get_routes()), views, config, hub, ready, clock)
    registry.register(server)  # type: ignore[arg-type]

    async def close_submission(app: web.Application) -> None:
        await submission.close()

    async def handle_metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=config.max_body_bytes + 1)
    app[HUB] = hub
    app[SERVER] = server
    app[SUBMISSION] = submission
    app.router.add_post("/", server.handle_post)
    app.router.add_get("/websocket", server.handle_websocket)
    app.router.add_get("/health", server.handle_health)
    app.router.add_get("/ready", server.handle_ready)
    app.router.add_get("/metrics", handle_metrics)
    app.on_shutdown.append(close_submission)   # first: commit waits end, so WebSocket answers behind them go out
    app.on_shutdown.append(server.on_shutdown)
    return app
