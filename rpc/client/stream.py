"""WebSocket streams: `StreamClient` (calls, subscriptions, reconnect with resubscribe), `BookStream` (a
`LocalBook` that resyncs by itself) and `AccountStream` (an account's balances and open orders, kept live).

    async with StreamClient("ws://127.0.0.1:26657/websocket") as stream:
        book = await BookStream.open(stream, market=0)
        account = await AccountStream.open(stream, wallet.account)
        await book.wait_for_seq(height)
        book.book.get_bids(), account.orders, account.balances

Contract:

- One background task owns the connection: it connects, resubscribes every live subscription, reads frames and
  dispatches them (responses to the waiting call, notifications to their subscription's callback, synchronously
  and in order). When the connection ends for any reason (server close such as 4008 "slow consumer" or 1001, a
  dropped socket, a missed pong), it reconnects with exponential backoff (`reconnect_delay` doubling up to
  `max_reconnect_delay`) and resubscribes; each subscription's `on_reset` runs first, so a stream discards what
  it held and starts again from the new snapshot. Calls in flight fail with `ConnectionError`.
- A subscription's notifications are delivered only after the server answered its subscribe, and never after
  it was replaced: notifications of an old subscription id are dropped.
- `BookStream` applies the snapshot and each diff to an `rpc.bookfeed.LocalBook`; a diff whose `prev_seq` is
  not the local `seq` (a gap) or a checksum that differs (a wrong book) makes it resubscribe: the server sends a
  fresh snapshot and the book continues from there. `gaps`, `mismatches` and `resyncs` count what happened.
- `AccountStream` starts from the account snapshot and applies each block message: the balances when the
  account entry changed, and the order events (accepted, traded, modified, done) to the open orders.
- Entering the `async with` waits for the first connection (`ConnectionError` after `connect_timeout`);
  leaving it cancels the tasks and closes the socket. Callbacks must not block.
"""

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from rpc.bookfeed import BookGap, BookMismatch, LocalBook
from rpc.client.client import Balance, RpcCallError, parse_balances

__all__ = ["StreamClient", "Subscription", "BookStream", "AccountStream", "LiveOrder"]

log = logging.getLogger(__name__)

OnMessage = Callable[[Any], None]
OnReset = Callable[[], None]


class Subscription:
    """One channel subscription that survives reconnects (its server id changes each time)."""

    def __init__(self, channel: str, params: dict[str, Any], on_message: OnMessage, on_reset: OnReset | None):
        self.channel = channel
        self.params = params
        self.on_message = on_message
        self.on_reset = on_reset
        self.id: str | None = None
        self.is_resyncing = False
        self.subscribes = 0


@dataclass
class _Pending:
    future: "asyncio.Future[Any]"
    on_result: Callable[[Any], None] | None


class StreamClient:
    """A JSON-RPC WebSocket client with subscriptions, reconnecting by itself."""

    def __init__(self, url: str, *, session: aiohttp.ClientSession | None = None, reconnect_delay: float = 0.05,
                 max_reconnect_delay: float = 5.0, heartbeat: float | None = 10.0,
                 connect_timeout: float = 10.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.heartbeat = heartbeat
        self.connections = 0
        self.last_close_code: int | None = None
        self._session = session
        self._owns_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subscriptions: list[Subscription] = []
        self._by_id: dict[str, Subscription] = {}
        self._connected = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "StreamClient":
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._runner = asyncio.get_running_loop().create_task(self._run())
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.wait_connected()
        except TimeoutError:
            await self.__aexit__(None, None, None)
            raise ConnectionError(f"could not connect to {self.url} within {self.connect_timeout} s") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def wait_connected(self) -> None:
        while not self._connected.is_set():
            if self._runner is not None and self._runner.done():
                self._runner.result()  # re-raise what ended it
            waiter = asyncio.ensure_future(self._connected.wait())
            try:
                await asyncio.wait({waiter, *(t for t in (self._runner,) if t is not None)},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The live subscriptions, kept across reconnects."""
        return tuple(self._subscriptions)

    # -- calls and subscriptions ---------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None) -> Any:
        """A call over the socket (e.g. `broadcast_tx_sync`); waits for a connection first."""
        await self.wait_connected()
        return await self._request(method, params)

    async def subscribe(self, channel: str, on_message: OnMessage, on_reset: OnReset | None = None,
                        **params: Any) -> Subscription:
        """Subscribe and keep the subscription across reconnects; RpcCallError if the server refuses it.

        If the connection drops before the server answers, the subscription is kept and made by the reconnect.
        """
        subscription = Subscription(channel, params, on_message, on_reset)
        await self.wait_connected()
        self._subscriptions.append(subscription)  # first: a reconnect from now on resubscribes it
        try:
            await self._subscribe(subscription)
        except RpcCallError:
            self._subscriptions.remove(subscription)
            raise
        except ConnectionError:
            pass
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        old = self._forget(subscription)
        if old is not None and self.is_connected:
            await self._request("unsubscribe", {"subscription": old})

    def request_resync(self, subscription: Subscription) -> None:
        """Replace the subscription by a new one (a fresh snapshot) once; used on a detected gap."""
        if subscription.is_resyncing or subscription not in self._subscriptions:
            return
        subscription.is_resyncing = True
        task = asyncio.get_running_loop().create_task(self._resync(subscription))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resync(self, subscription: Subscription) -> None:
        old = self._forget(subscription)
        if subscription.on_reset is not None:
            subscription.on_reset()
        try:
            await self.wait_connected()
            if old is not None:
                await self._send("unsubscribe", {"subscription": old}, None)
            await self._subscribe(subscription)
        except (ConnectionError, RpcCallError) as exc:
            log.info("resync of %s failed (%s); the reconnect resubscribes", subscription.channel, exc)
        finally:
            subscription.is_resyncing = False

    def _forget(self, subscription: Subscription) -> str | None:
        old, subscription.id = subscription.id, None
        if old is not None:
            self._by_id.pop(old, None)
        return old

    async def _subscribe(self, subscription: Subscription) -> None:
        def register(subscription_id: Any) -> None:  # runs in the reader, before any notification of the id
            subscription.id = subscription_id
            subscription.subscribes += 1
            self._by_id[subscription_id] = subscription

        await (await self._send("subscribe", {"channel": subscription.channel, **subscription.params}, register))

    async def _request(self, method: str, params: Any) -> Any:
        return await (await self._send(method, params, None))

    async def _send(self, method: str, params: Any, on_result: Callable[[Any], None] | None) -> "asyncio.Future":
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionError("not connected")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, on_result)
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            body["params"] = params
        await ws.send_str(json.dumps(body))
        return future

    # -- the connection ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.reconnect_delay
        assert self._session is not None
        while True:
            try:
                async with self._session.ws_connect(self.url, heartbeat=self.heartbeat, autoping=True,
                                                    max_msg_size=0) as ws:
                    self._ws = ws
                    self.connections += 1
                    await self._resubscribe_all()
                    self._connected.set()
                    delay = self.reconnect_delay
                    await self._read(ws)
                    self.last_close_code = ws.close_code
            except (aiohttp.ClientError, OSError) as exc:
                log.info("stream connection failed: %s", exc)
            finally:
                self._ws = None
                self._connected.clear()
                self._fail_pending()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _resubscribe_all(self) -> None:
        self._by_id.clear()
        for subscription in self._subscriptions:
            subscription.id = None
            if subscription.on_reset is not None:
                subscription.on_reset()
            register_later = self._subscribe(subscription)
            task = asyncio.get_running_loop().create_task(register_later)  # its answer comes through _read
            self._tasks.add(task)
            task.add_done_callback(self._on_resubscribed)

    def _on_resubscribed(self, task: "asyncio.Task[None]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("resubscribe failed: %s", task.exception())

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            for item in data if isinstance(data, list) else [data]:
                self._dispatch(item)

    def _dispatch(self, item: dict[str, Any]) -> None:
        if item.get("method") == "subscription":
            params = item["params"]
            subscription = self._by_id.get(params["subscription"])
            if subscription is not None:
                try:
                    subscription.on_message(params["result"])
                except Exception:
                    log.exception("subscription callback of %s failed", subscription.channel)
            return
        pending = self._pending.pop(item.get("id"), None)  # type: ignore[arg-type]
        if pending is None or pending.future.done():
            return
        if "error" in item:
            error = item["error"]
            pending.future.set_exception(RpcCallError(error["code"], error["message"], error.get("data")))
            return
        if pending.on_result is not None:
            pending.on_result(item["result"])
        pending.future.set_result(item["result"])

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(ConnectionError("the WebSocket connection ended"))
                entry.future.exception()  # retrieved here: a caller may have gone


class _Watched:
    """A change counter with `wait_until(predicate)`."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


class BookStream(_Watched):
    """A market's L2 book kept from the `book` channel; resubscribes by itself on a gap or a wrong checksum."""

    def __init__(self, stream: StreamClient, market: int) -> None:
        super().__init__()
        self.stream = stream
        self.market = market
        self.book = LocalBook()
        self.gaps = 0
        self.mismatches = 0
        self.subscription: Subscription | None = None

    @classmethod
    async def open(cls, stream: StreamClient, market: int) -> "BookStream":
        book = cls(stream, market)
        book.subscription = await stream.subscribe("book", book.on_message, book.on_reset, market=market)
        return book

    @property
    def resyncs(self) -> int:
        return 0 if self.subscription is None else self.subscription.subscribes - 1

    @property
    def seq(self) -> int | None:
        return self.book.seq if self.book.is_synced else None

    def on_reset(self) -> None:
        self.book = LocalBook()

    def on_message(self, message: dict[str, Any]) -> None:
        try:
            self.book.apply(message)
        except BookGap:
            self.gaps += 1
            self._resync()
        except BookMismatch:
            self.mismatches += 1
            self._resync()
        self.notify()

    def _resync(self) -> None:
        if self.subscription is not None:
            self.stream.request_resync(self.subscription)

    async def wait_for_seq(self, seq: int, timeout: float = 10.0) -> None:
        """Until the book is in sync at `seq` or later."""
        await self.wait_until(lambda: self.seq is not None and self.seq >= seq, timeout)


@dataclass
class LiveOrder:
    order_id: int
    market: int
    is_buy: bool
    price: int
    size_lots: int


class AccountStream(_Watched):
    """An account's balances and open orders, from the `account` channel's snapshot and block messages."""

    def __init__(self, stream: StreamClient, address: bytes) -> None:
        super().__init__()
        self.stream = stream
        self.address = address
        self.height: int | None = None
        self.balances: dict[int, Balance] = {}
        self.orders: dict[int, LiveOrder] = {}
        self.events: list[dict[str, Any]] = []
        self.subscription: Subscription | None = None

    @classmethod
    async def open(cls, stream: StreamClient, address: bytes) -> "AccountStream":
        account = cls(stream, address)
        account.subscription = await stream.subscribe(
            "account", account.on_message, account.on_reset, address=address.hex())
        return account

    def on_reset(self) -> None:
        self.height = None

    def on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "snapshot":
            self.balances = parse_balances(message["balances"])
            self.orders = {
                int(o["order_id"]): LiveOrder(int(o["order_id"]), o["market"], o["side"] == "buy", int(o["price"]),
                                              int(o["size_lots"]))
                for o in message["orders"]
            }
        else:
            for event in message["events"]:
                self.apply_event(event)
            self.events.extend(message["events"])
            if message["account"] is not None:
                self.balances = parse_balances(message["account"]["balances"])
        self.height = int(message["height"])
        self.notify()

    def apply_event(self, event: dict[str, Any]) -> None:
        me = self.address.hex()
        kind = event["type"]
        if kind == "OrderAccepted" and event["owner"] == me:
            order_id = int(event["order_id"])
            self.orders[order_id] = LiveOrder(order_id, event["market"], event["is_buy"], int(event["price"]),
                                              int(event["size_lots"]))
        elif kind == "Trade":
            for side, order_key in (("maker", "maker_order_id"), ("taker", "taker_order_id")):
                order = self.orders.get(int(event[order_key]))
                if event[side] == me and order is not None:
                    order.size_lots -= int(event["size_lots"])
        elif kind == "OrderModified" and event["owner"] == me:
            order = self.orders.get(int(event["order_id"]))
            if order is not None:
                order.price, order.size_lots = int(event["price"]), int(event["size_lots"])
        elif kind == "OrderDone" and event["owner"] == me:
            self.orders.pop(int(event["order_id"]), None)

    async def wait_for_height(self, height: int, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: self.height is not None and self.height >= height, timeout)
