"""WebSocket subscriptions: a hub that fans published messages out to bounded per-connection send buffers.

Methods (WebSocket only; over HTTP they answer -32601 "... requires a WebSocket connection"):

- `subscribe`, params `{"channel": NAME, <the channel's key param>: VALUE}` (or `[NAME]` for a channel without a
  key). Returns the subscription id, 32 lowercase hex characters. Unknown channel, missing or ill-typed key
  param, or an unknown extra param: -32602 naming it. More than `max_subscriptions_per_connection` live
  subscriptions on the connection: -32005 `{"limit": "max_subscriptions_per_connection", "max": N}`.
  Subscribing twice to the same stream gives two ids and each message twice.
- `unsubscribe`, params `{"subscription": ID}`: `true` if it was live on this connection, else `false`.
- `unsubscribe_all`, no params: the number of subscriptions removed (an integer).

Notifications have eth_subscribe's shape:
`{"jsonrpc":"2.0","method":"subscription","params":{"subscription":ID,"result":MESSAGE}}`.
A channel may have a `snapshot(views, key)` callable; its non-None result is the first notification, sent right
after the subscribe response and before anything published later. Every notification of a subscription follows
its subscribe response; the notifications of one stream arrive in publish order.

A channel may also take options (`from_height`) and a `replay(views, key, options)` callable whose list of
messages replaces the snapshot (rpc/channels.py). `Hub.add_listener(callback)` lets in-process code observe
every publish (the broadcast_tx_commit waiters of rpc/submit.py learn inclusion that way).

`Hub.publish(channel, key, message)` encodes `message` once (floats refused with ValueError, like results) and
appends one frame to the send buffer of every subscriber to (channel, key). It never awaits or blocks, and must be
called on the event loop's thread. Its cost is one dict lookup when nobody is subscribed.

Backpressure: each connection's send buffer holds at most `send_queue_messages` frames (responses and
notifications together). A frame that would overflow it closes that connection with code 4008 and reason
"slow consumer" (counted in `Hub.slow_consumer_closes`); its subscriptions are removed at once, the frame and
every frame still queued are dropped, and the close frame is the next thing written to it, so one slow client
costs others nothing. A client that reconnects must resubscribe (and resync from a snapshot).

WebSocket close codes sent by the server:

| code | reason                 | when                                                                         |
|------|------------------------|------------------------------------------------------------------------------|
| 1000 | (none)                 | answer to the client's own close                                             |
| 1001 | "server shutting down" | the node stops                                                               |
| 1009 | (empty)                | a message larger than `max_body_bytes` (nothing of it is answered)           |
| 4008 | "slow consumer"        | the send buffer overflowed                                                   |
| 1006 | (no frame)             | not sent: what a client sees when a ping went unanswered and the server      |
|      |                        | dropped the socket, or when the close handshake timed out and it aborted     |
"""

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rpc.jsonrpc import (
    INVALID_PARAMS, METHOD_NOT_FOUND, CallContext, Param, Route, RpcError, Str, convert_param, encode_json,
    limit_exceeded,
)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_SLOW_CONSUMER = 4008
REASON_SLOW_CONSUMER = "slow consumer"
REASON_SHUTDOWN = "server shutting down"

NOTIFICATION_METHOD = "subscription"
METHODS = ("subscribe", "unsubscribe", "unsubscribe_all")

Snapshot = Callable[[Any, Hashable], Any]
Replay = Callable[[Any, Hashable, dict[str, Any]], list[Any]]
Listener = Callable[[str, Hashable, Any], None]


@dataclass(frozen=True, slots=True)
class Channel:
    """A named stream. `key` is the subscribe param selecting one sub-stream (a market, an address), if any.

    `options` are further optional subscribe params (such as `from_height`). A channel with `replay` sends
    `replay(views, key, options)` (a list, maybe empty) as its first notifications instead of a snapshot;
    `options` then holds every declared option, absent ones as their default. Either may raise `RpcError`,
    which refuses the subscription before anything is registered.
    """

    name: str
    key: Param | None = None
    snapshot: Snapshot | None = None
    options: tuple[Param, ...] = ()
    replay: Replay | None = None


class Session:
    """The outgoing side of one WebSocket connection: a bounded frame buffer and its subscriptions.

    The server's writer drains `take_frames()`; a close request (slow consumer, shutdown, client gone) is
    sticky and wakes it. While a call is being answered (`begin_call`/`end_call`) notifications are held back,
    so a subscribe response always precedes the subscription's first notification.
    """

    def __init__(self, peer: str, capacity: int, max_subscriptions: int) -> None:
        self.peer = peer
        self.capacity = capacity
        self.max_subscriptions = max_subscriptions
        self.subscriptions: dict[str, tuple[str, Hashable]] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.is_detached = False
        self._frames: deque[str] = deque()
        self._held: list[str] = []
        self._calls = 0
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()

    @property
    def is_closing(self) -> bool:
        return self.close_code is not None

    def request_close(self, code: int, reason: str) -> None:
        """Ask the writer to close the socket with (code, reason); the first request wins."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._frames.clear()
            self._held.clear()
        self._wakeup.set()
        self._closing.set()

    def get_queued(self) -> int:
        """Frames waiting to be written (queued and held behind a call)."""
        return len(self._frames) + len(self._held)

    async def wait_closing(self) -> None:
        await self._closing.wait()

    def begin_call(self) -> None:
        """From now until `end_call`, notifications wait behind the response being computed."""
        self._calls += 1

    def end_call(self, response: str | None) -> bool:
        """Queue the response (None for notifications), then the held notifications. False if this overflowed."""
        self._calls -= 1
        ok = self._push(response) if response is not None else not self.is_closing
        held, self._held = self._held, []
        for notification in held:
            ok = ok and self._push(notification)
        return ok

    def send_notification(self, frame: str) -> bool:
        if self.is_closing:
            return False
        if self._calls:
            if len(self._frames) + len(self._held) >= self.capacity:
                return self._overflow()
            self._held.append(frame)
            return True
        return self._push(frame)

    def _push(self, frame: str) -> bool:
        if self.is_closing:
            return False
        if len(self._frames) >= self.capacity:
            return self._overflow()
        self._frames.append(frame)
        self._wakeup.set()
        return True

    def _overflow(self) -> bool:
        self.request_close(CLOSE_SLOW_CONSUMER, REASON_SLOW_CONSUMER)
        return False

    async def take_frames(self) -> list[str] | None:
        """Wait for frames to write; None once a close was requested (pending frames are then dropped)."""
        while True:
            if self.is_closing:
                return None
            if self._frames:
                frames = list(self._frames)
                self._frames.clear()
                return frames
            self._wakeup.clear()
            await self._wakeup.wait()


class Hub:
    """Subscriptions of every connection, indexed by (channel, key); publish fans out without awaiting."""

    def __init__(self, channels: Iterable[Channel] = (), new_id: Callable[[], str] = lambda: secrets.token_hex(16)):
        self.channels: Mapping[str, Channel] = {c.name: c for c in channels}
        self._new_id = new_id
        self._streams: dict[tuple[str, Hashable], dict[str, Session]] = {}
        self._keys: dict[str, dict[Hashable, None]] = {}      # channel -> its keys with subscribers
        self._listeners: list[Listener] = []
        self.slow_consumer_closes = 0
        self.notifications_sent = 0

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(channel, key, message)` on every publish, subscribers or not (in-process observers)."""
        self._listeners.append(listener)

    # -- publishing ------------------------------------------------------------------------------------------

    def publish(self, channel: str, key: Hashable, message: Any) -> int:
        """Send `message` to every subscriber of (channel, key); returns how many frames were queued."""
        for listener in self._listeners:
            listener(channel, key, message)
        subscribers = self._streams.get((channel, key))
        if not subscribers:
            return 0
        result = encode_json(message)
        sent = 0
        for subscription_id, session in list(subscribers.items()):
            if session.send_notification(format_notification(subscription_id, result)):
                sent += 1
            else:
                self._drop(session)
        self.notifications_sent += sent
        return sent

    def get_subscriber_count(self, channel: str, key: Hashable) -> int:
        return len(self._streams.get((channel, key), ()))

    def get_subscribed_keys(self, channel: str) -> Mapping[Hashable, None]:
        """The keys of `channel` that have at least one subscriber (read only)."""
        return self._keys.get(channel, {})

    # -- sessions --------------------------------------------------------------------------------------------

    def subscribe(self, session: Session, views: Any, channel_name: Any, extra: dict[str, Any]) -> str:
        channel = self.channels.get(channel_name)
        if channel is None:
            known = ", ".join(sorted(self.channels)) or "none"
            raise RpcError(INVALID_PARAMS, f"Invalid params: channel: unknown channel {str(channel_name)[:64]!r}"
                           f" (known: {known})", {"param": "channel"})
        key, options = self._bind_params(channel, extra)
        if len(session.subscriptions) >= session.max_subscriptions:
            raise limit_exceeded(
                f"subscription limit reached: at most {session.max_subscriptions} per connection",
                "max_subscriptions_per_connection", session.max_subscriptions)
        if channel.replay is not None:
            first = channel.replay(views, key, options)
        elif channel.snapshot is not None:
            snapshot = channel.snapshot(views, key)
            first = [] if snapshot is None else [snapshot]
        else:
            first = []
        encoded = [encode_json(message) for message in first]
        subscription_id = self._new_id()
        session.subscriptions[subscription_id] = (channel.name, key)
        self._streams.setdefault((channel.name, key), {})[subscription_id] = session
        self._keys.setdefault(channel.name, {})[key] = None
        for result in encoded:
            if not session.send_notification(format_notification(subscription_id, result)):
                self._drop(session)
                break
        return subscription_id

    def unsubscribe(self, session: Session, subscription_id: str) -> bool:
        stream = session.subscriptions.pop(subscription_id, None)
        if stream is None:
            return False
        subscribers = self._streams[stream]
        del subscribers[subscription_id]
        if not subscribers:
            del self._streams[stream]
            keys = self._keys[stream[0]]
            del keys[stream[1]]
            if not keys:
                del self._keys[stream[0]]
        return True

    def unsubscribe_all(self, session: Session) -> int:
        ids = list(session.subscriptions)
        for subscription_id in ids:
            self.unsubscribe(session, subscription_id)
        return len(ids)

    def detach(self, session: Session) -> None:
        """Forget a connection that is closing or gone (idempotent); a slow consumer is counted once here."""
        self.unsubscribe_all(session)
        if session.close_code == CLOSE_SLOW_CONSUMER and not session.is_detached:
            self.slow_consumer_closes += 1
        session.is_detached = session.is_closing

    def _drop(self, session: Session) -> None:
        self.detach(session)

    @staticmethod
    def _bind_params(channel: Channel, extra: dict[str, Any]) -> tuple[Hashable, dict[str, Any]]:
        given = dict(extra)
        key: Hashable = None
        if channel.key is not None:
            if channel.key.name not in given:
                raise RpcError(INVALID_PARAMS, f"Invalid params: missing required param {channel.key.name!r} for "
                               f"channel {channel.name!r}", {"param": channel.key.name})
            key = convert_param(channel.key.name, channel.key.type, given.pop(channel.key.name))
        options = {}
        for option in channel.options:
            if option.name in given:
                options[option.name] = convert_param(option.name, option.type, given.pop(option.name))
            else:
                options[option.name] = option.default
        if given:
            name = sorted(given)[0]
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown param {name!r} for channel {channel.name!r}",
                           {"param": name})
        return key, options

    # -- routes ----------------------------------------------------------------------------------------------

    def get_routes(self) -> dict[str, Route]:
        """The subscription methods, to be merged into the node's router by `rpc.server.make_app`."""
        return {
            "subscribe": Route(self._rpc_subscribe, Param("channel", Str(64)), extra_params=True),
            "unsubscribe": Route(self._rpc_unsubscribe, Param("subscription", Str(64))),
            "unsubscribe_all": Route(self._rpc_unsubscribe_all),
        }

    def _rpc_subscribe(self, ctx: CallContext, channel: str, extra: dict[str, Any]) -> str:
        return self.subscribe(require_session(ctx, "subscribe"), ctx.views, channel, extra)

    def _rpc_unsubscribe(self, ctx: CallContext, subscription: str) -> bool:
        return self.unsubscribe(require_session(ctx, "unsubscribe"), subscription)

    def _rpc_unsubscribe_all(self, ctx: CallContext) -> int:
        return self.unsubscribe_all(require_session(ctx, "unsubscribe_all"))


def require_session(ctx: CallContext, method: str) -> Session:
    if not isinstance(ctx.session, Session):
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method} requires a WebSocket connection (/websocket)")
    return ctx.session


def format_notification(subscription_id: str, result_json: str) -> str:
    """The eth_subscribe-shaped frame; `subscription_id` is hex, so it needs no escaping."""
    return (f'{{"jsonrpc":"2.0","method":"{NOTIFICATION_METHOD}","params":'
            f'{{"subscription":"{subscription_id}","result":{result_json}}}}}')
