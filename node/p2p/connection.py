"""Thin asyncio loops around the sans-IO handshake and frame codecs: `open_connection`, `serve`, `Peer`.

Contract:

- `open_connection(...)` is an async context manager: it dials, runs the handshake (initiator) under
  `handshake_timeout_s`, and yields a `Peer`; leaving the block closes the peer gracefully (bounded by
  `close_timeout_s`). It raises a `HandshakeError` subclass (including `HandshakeTimeout`), `PeerRefused` or
  `OSError` (`TimeoutError` if the dial itself exceeds `handshake_timeout_s`), and never leaves a socket open
  behind an exception; an exception raised inside the block aborts the connection instead.
- `serve(...)` is an async context manager yielding a `Server` listening on (host, port) (port 0 picks one).
  Each accepted socket is handled by a task in the server's TaskGroup: handshake (responder) under the timeout,
  then refusal if the peer is banned, already connected or not allowed, else `await on_peer(peer)`. When
  `on_peer` returns the peer is closed; when the peer closes, iterating it ends, so `on_peer` should return.
  An exception from `on_peer` is a bug and propagates (it stops the server). At most `max_inbound` sockets are
  open at once; more are closed on accept. Handshake failures close the socket and ban nobody.
- `Peer`: one TaskGroup per connection with a reader task and a writer task. `send(type, payload)` seals the
  frame immediately and never blocks: it returns False if the peer is closed, and if the send queue is over
  `send_queue_max_messages` or `send_queue_max_bytes` the connection is dropped (reason `send_queue_full`) so a
  slow peer cannot hold memory or stall the caller. `async for message in peer` yields received `Message`s in
  order; the receive queue is bounded (`recv_queue_max_messages`), and a full queue stops reading from the socket
  (TCP back-pressure reaches the sender). A `FrameError` from an authenticated peer (bad length, bad MAC,
  malformed msgpack, a second AUTH, a reserved transport type) aborts the connection and bans the peer's node id
  for `ban_seconds`. Keepalive: a PING every `ping_interval_s`, answered by a PONG; a peer from which no byte
  arrived for `idle_timeout_s` is dropped (reason `idle_timeout`), which finds half-open TCP connections.
- `close()` is graceful: sends already queued are flushed (within `close_timeout_s`), then the socket is closed;
  messages already in the receive queue can still be iterated, anything not yet read from the socket is dropped.
  Errors abort (RST). `disconnect(detail, ban=True)` is for the layers above: a message that decodes but is
  invalid (a bad signature, a consensus message from a non-validator that should know better) bans the peer.
  `close_reason` says why a peer closed; `closed` is set once the socket is closed and iteration has ended.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from node.p2p.bans import BanList
from node.p2p.errors import (
    CounterExhausted, FrameError, HandshakeTimeout, P2PError, PeerRefused, UnexpectedMessage,
)
from node.p2p.frames import DEFAULT_MAX_FRAME_SIZE, FIRST_APPLICATION_TYPE, MSG_PING, MSG_PONG, Message
from node.p2p.handshake import (
    MAX_AUTH_FRAME_BYTES, Handshake, HandshakeResult, ReplayGuard, Role, encode_chain_id,
)
from stf.crypto import PrivateKey

log = logging.getLogger("node.p2p")

CLOSE_LOCAL = "local"
CLOSE_REMOTE = "remote_closed"
CLOSE_SEND_QUEUE_FULL = "send_queue_full"
CLOSE_PROTOCOL_ERROR = "protocol_error"
CLOSE_MISBEHAVIOR = "misbehavior"
CLOSE_IO_ERROR = "io_error"
CLOSE_CANCELLED = "cancelled"
CLOSE_IDLE = "idle_timeout"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    handshake_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    send_queue_max_messages: int = 1024
    send_queue_max_bytes: int = 16 << 20
    recv_queue_max_messages: int = 1024
    ban_seconds: float = 600.0
    read_chunk_bytes: int = 1 << 16
    max_inbound: int = 128
    ping_interval_s: float = 15.0
    idle_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_frame_size < MAX_AUTH_FRAME_BYTES:
            raise ValueError(f"max_frame_size must be at least {MAX_AUTH_FRAME_BYTES}")
        counts = (self.send_queue_max_messages, self.recv_queue_max_messages, self.max_inbound,
                  self.send_queue_max_bytes, self.read_chunk_bytes)
        if min(counts) < 1:
            raise ValueError("queue sizes, max_inbound and read_chunk_bytes must be positive")
        if self.idle_timeout_s <= self.ping_interval_s:
            raise ValueError("idle_timeout_s must exceed ping_interval_s, or a quiet healthy peer is dropped")


@dataclass(frozen=True, slots=True)
class CloseReason:
    code: str
    detail: str


_END = object()


class Peer:
    """An authenticated, encrypted connection to one node. Created by `open_connection` and `serve`."""

    def __init__(
        self, result: HandshakeResult, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
        outbound: bool, config: ConnectionConfig, bans: BanList | None,
    ) -> None:
        self.node_id = result.peer_id
        self.public_key = result.peer_public_key
        self.outbound = outbound
        self.remote_address = writer.get_extra_info("peername")
        self.config = config
        self.close_reason: CloseReason | None = None
        self.closed = asyncio.Event()
        self._bans = bans
        self._encoder = result.encoder
        self._decoder = result.decoder
        self._reader = reader
        self._writer = writer
        self._send_queue: deque[bytes] = deque()
        self._send_queue_bytes = 0
        self._wakeup_writer = asyncio.Event()
        self._close_requested = asyncio.Event()
        self._graceful = False
        self._abort_transport = False
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._inbox_space = asyncio.Semaphore(config.recv_queue_max_messages)
        self._loop = asyncio.get_running_loop()
        self._last_received = self._loop.time()
        self.pongs_received = 0
        self.messages_sent = self.messages_received = 0
        self.bytes_sent = self.bytes_received = 0  # on the wire, frames included

    def __repr__(self) -> str:
        return f"<Peer {self.node_id.hex()[:12]} {'out' if self.outbound else 'in'} {self.remote_address}>"

    @property
    def is_closing(self) -> bool:
        return self.close_reason is not None

    def send(self, msg_type: int, payload: Any) -> bool:
        """Queue one message; False if the peer is closing. Raises MessageTooLarge/TypeError on a bad message."""
        if self.is_closing:
            return False
        try:
            frame = self._encoder.encode(msg_type, payload)
        except CounterExhausted as exc:
            self._request_close(CloseReason(CLOSE_PROTOCOL_ERROR, str(exc)), abort=True)
            return False
        queued, limit_bytes = len(self._send_queue), self.config.send_queue_max_bytes
        if queued >= self.config.send_queue_max_messages or (
                queued and self._send_queue_bytes + len(frame) > limit_bytes):
            detail = f"{queued} messages, {self._send_queue_bytes} bytes queued"
            self._request_close(CloseReason(CLOSE_SEND_QUEUE_FULL, detail), abort=True)
            return False
        self._send_queue.append(frame)
        self._send_queue_bytes += len(frame)
        self.messages_sent += msg_type >= FIRST_APPLICATION_TYPE  # like messages_received: keepalive excluded
        self._wakeup_writer.set()
        return True

    def close(self, detail: str = "closed locally") -> None:
        """Flush what is queued, then close. Idempotent; the first reason wins."""
        if not self.is_closing:
            self._graceful = True
            self._request_close(CloseReason(CLOSE_LOCAL, detail), abort=False)

    def disconnect(self, detail: str, *, ban: bool = False) -> None:
        """Drop the connection now, discarding queued sends; with `ban`, the peer misbehaved (e.g. a message
        that decodes but carries a bad signature) and its node id is banned for `ban_seconds`."""
        if ban and self._bans is not None:
            self._bans.ban_for(self.node_id, self.config.ban_seconds, detail)
        self._request_close(CloseReason(CLOSE_MISBEHAVIOR if ban else CLOSE_LOCAL, detail), abort=True)

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def __aiter__(self) -> "Peer":
        return self

    async def __anext__(self) -> Message:
        item = await self._inbox.get()
        if item is _END:
            self._inbox.put_nowait(_END)
            raise StopAsyncIteration
        self._inbox_space.release()
        return item

    def _request_close(self, reason: CloseReason, *, abort: bool) -> None:
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self._abort_transport = abort
        self._close_requested.set()
        self._wakeup_writer.set()
        log.info("peer %s closing: %s (%s)", self.node_id.hex(), reason.code, reason.detail)

    async def run(self) -> None:
        """Run the reader and writer until the connection closes; always leaves the socket closed."""
        try:
            async with asyncio.TaskGroup() as tg:
                read_task = tg.create_task(self._read_loop())
                write_task = tg.create_task(self._write_loop())
                keepalive_task = tg.create_task(self._keepalive_loop())
                await self._close_requested.wait()
                if self._graceful:
                    _, pending = await asyncio.wait({write_task}, timeout=self.config.close_timeout_s)
                    self._abort_transport = bool(pending)  # the peer would not take what was queued
                read_task.cancel()
                write_task.cancel()
                keepalive_task.cancel()
        finally:
            try:
                if self.close_reason is not None:
                    await self._close_transport()
            finally:
                self.finish()

    def finish(self) -> None:
        """Abort the socket if it is still open and end iteration. Idempotent; `run` ends with it, and its
        owner calls it again after `run` so a task cancelled before it ever started leaks nothing."""
        if self.closed.is_set():
            return
        if self.close_reason is None:
            self.close_reason = CloseReason(CLOSE_CANCELLED, "connection task cancelled")
        self._writer.transport.abort()
        self._inbox.put_nowait(_END)
        self.closed.set()

    async def _close_transport(self) -> None:
        transport = self._writer.transport
        if self._abort_transport:
            transport.abort()
            return
        self._writer.close()
        try:
            async with asyncio.timeout(self.config.close_timeout_s):
                await self._writer.wait_closed()
        except (TimeoutError, OSError):
            pass
        finally:
            transport.abort()  # no-op once closed; drops a buffer the peer never read

    async def _read_loop(self) -> None:
        try:
            while True:
                while (message := self._decoder.next_message()) is not None:
                    if message.type < FIRST_APPLICATION_TYPE:
                        self._receive_transport_message(message)
                        continue
                    await self._inbox_space.acquire()
                    self._inbox.put_nowait(message)
                    self.messages_received += 1
                data = await self._reader.read(self.config.read_chunk_bytes)
                if not data:
                    self._request_close(CloseReason(CLOSE_REMOTE, "peer closed the connection"), abort=False)
                    return
                self._last_received = self._loop.time()
                self.bytes_received += len(data)
                self._decoder.feed(data)
        except FrameError as exc:
            detail = f"{exc.code}: {exc}"
            if self._bans is not None:
                self._bans.ban_for(self.node_id, self.config.ban_seconds, detail)
            self._request_close(CloseReason(CLOSE_PROTOCOL_ERROR, detail), abort=True)
        except OSError as exc:
            self._request_close(CloseReason(CLOSE_IO_ERROR, f"read: {exc!r}"), abort=True)

    def _receive_transport_message(self, message: Message) -> None:
        if message.type == MSG_PING and message.payload is None:
            self.send(MSG_PONG, None)
        elif message.type == MSG_PONG and message.payload is None:
            self.pongs_received += 1
        else:
            raise UnexpectedMessage(f"transport message type {message.type} is not allowed here")

    async def _keepalive_loop(self) -> None:
        """Ping every `ping_interval_s`; drop a peer from which nothing arrived for `idle_timeout_s`."""
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            idle_s = self._loop.time() - self._last_received
            if idle_s >= self.config.idle_timeout_s:
                self._request_close(CloseReason(CLOSE_IDLE, f"nothing received for {idle_s:.1f} s"), abort=True)
                return
            self.send(MSG_PING, None)

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._send_queue:
                    if self.is_closing:
                        return
                    self._wakeup_writer.clear()
                    await self._wakeup_writer.wait()
                    continue
                frames = list(self._send_queue)
                self.bytes_sent += self._send_queue_bytes
                self._send_queue.clear()
                self._send_queue_bytes = 0
                self._writer.writelines(frames)
                await self._writer.drain()
        except OSError as exc:
            self._request_close(CloseReason(CLOSE_IO_ERROR, f"write: {exc!r}"), abort=True)


async def run_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: Handshake, config: ConnectionConfig,
) -> HandshakeResult:
    """Drive `handshake` over a stream under the handshake timeout."""
    try:
        async with asyncio.timeout(config.handshake_timeout_s):
            while True:
                out = handshake.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
                if handshake.is_complete:
                    return handshake.result
                data = await reader.read(config.read_chunk_bytes)
                if not data:
                    handshake.receive_eof()
                handshake.receive_data(data)
    except TimeoutError:
        raise HandshakeTimeout(f"no handshake within {config.handshake_timeout_s} s") from None


def _check_admission(peer_id: bytes, bans: BanList | None, is_allowed: Callable[[bytes], bool] | None) -> None:
    if bans is not None and (ban := bans.get_ban(peer_id)) is not None:
        raise PeerRefused(f"peer {peer_id.hex()} is banned until {ban.until} ({ban.reason})")
    if is_allowed is not None and not is_allowed(peer_id):
        raise PeerRefused(f"peer {peer_id.hex()} is not allowed")


@contextlib.asynccontextmanager
async def open_connection(
    host: str, port: int, *, node_key: PrivateKey, chain_id: str, expected_peer_id: bytes | None = None,
    config: ConnectionConfig = ConnectionConfig(), bans: BanList | None = None,
    replay_guard: ReplayGuard | None = None,
) -> AsyncIterator[Peer]:
    """Dial (host, port), authenticate, and yield the connected `Peer` (see the module docstring)."""
    if expected_peer_id is not None:
        _check_admission(expected_peer_id, bans, None)
    handshake = Handshake(
        Role.INITIATOR, node_key, chain_id, expected_peer_id=expected_peer_id,
        max_frame_size=config.max_frame_size, replay_guard=replay_guard)
    async with asyncio.timeout(config.handshake_timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        result = await run_handshake(reader, writer, handshake, config)
        _check_admission(result.peer_id, bans, None)
    except BaseException:
        writer.transport.abort()
        raise
    peer = Peer(result, reader, writer, outbound=True, config=config, bans=bans)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(peer.run())
            try:
                yield peer
            except BaseException as exc:
                peer.disconnect(f"caller raised {type(exc).__name__}")
                raise
            finally:
                peer.close()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:  # the caller's own exception, not wrapped by our TaskGroup
            raise group.exceptions[0] from None
        raise
    finally:
        peer.finish()


class Server:
    """The listening side; see `serve`. `peers` maps node id to the connected inbound `Peer`."""

    def __init__(
        self, *, node_key: PrivateKey, chain_id: str, on_peer: Callable[[Peer], Awaitable[None]],
        config: ConnectionConfig, bans: BanList, replay_guard: ReplayGuard,
        is_allowed: Callable[[bytes], bool] | None, task_group: asyncio.TaskGroup,
    ) -> None:
        self.node_key = node_key
        self.chain_id = chain_id
        self.config = config
        self.bans = bans
        self.replay_guard = replay_guard
        self.peers: dict[bytes, Peer] = {}
        self.handshake_failures = 0
        self.refused = 0
        self.port = 0
        self._on_peer = on_peer
        self._is_allowed = is_allowed
        self._tg = task_group
        self._sockets = 0
        self._handshaking: set[asyncio.Task[None]] = set()

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._sockets >= self.config.max_inbound:
            self.refused += 1
            writer.transport.abort()
            return
        handler = self._handle(reader, writer)
        try:
            task = self._tg.create_task(handler)
        except RuntimeError:  # accepted just as the server's TaskGroup is shutting down
            handler.close()
            writer.transport.abort()
            return
        self._sockets += 1
        self._handshaking.add(task)
        task.add_done_callback(lambda _: self._on_handled(task, writer))

    def _on_handled(self, task: asyncio.Task[None], writer: asyncio.StreamWriter) -> None:
        # Runs even if the task was cancelled before it started, so the socket is always closed.
        self._handshaking.discard(task)
        self._sockets -= 1
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        try:
            peer = await self._accept_peer(reader, writer)
        finally:
            self._handshaking.discard(task)  # type: ignore[arg-type]
        if peer is not None:
            await self._serve_peer(peer)

    async def _accept_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Peer | None:
        handshake = Handshake(
            Role.RESPONDER, self.node_key, self.chain_id, max_frame_size=self.config.max_frame_size,
            replay_guard=self.replay_guard)
        try:
            result = await run_handshake(reader, writer, handshake, self.config)
            _check_admission(result.peer_id, self.bans, self._is_allowed)
            if result.peer_id in self.peers:
                raise PeerRefused(f"peer {result.peer_id.hex()} is already connected")
        except (P2PError, OSError) as exc:
            if isinstance(exc, PeerRefused):
                self.refused += 1
            else:
                self.handshake_failures += 1
            writer.transport.abort()
            log.info("inbound %s rejected: %r", writer.get_extra_info("peername"), exc)
            return None
        except BaseException:
            writer.transport.abort()
            raise
        return Peer(result, reader, writer, outbound=False, config=self.config, bans=self.bans)

    async def _serve_peer(self, peer: Peer) -> None:
        self.peers[peer.node_id] = peer
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(peer.run())
                try:
                    await self._on_peer(peer)
                finally:
                    peer.close()
        finally:
            del self.peers[peer.node_id]
            peer.finish()

    def _shutdown(self) -> None:
        for task in list(self._handshaking):
            task.cancel()
        for peer in list(self.peers.values()):
            peer.close("server shutting down")


@contextlib.asynccontextmanager
async def serve(
    *, node_key: PrivateKey, chain_id: str, on_peer: Callable[[Peer], Awaitable[None]], host: str = "127.0.0.1",
    port: int = 0, config: ConnectionConfig = ConnectionConfig(), bans: BanList | None = None,
    replay_guard: ReplayGuard | None = None, is_allowed: Callable[[bytes], bool] | None = None,
) -> AsyncIterator[Server]:
    """Listen on (host, port) and hand each authenticated inbound peer to `on_peer` (see the module docstring)."""
    encode_chain_id(chain_id)
    async with asyncio.TaskGroup() as tg:
        server = Server(
            node_key=node_key, chain_id=chain_id, on_peer=on_peer, config=config,
            bans=bans if bans is not None else BanList(time.monotonic),
            replay_guard=replay_guard if replay_guard is not None else ReplayGuard(),
            is_allowed=is_allowed, task_group=tg)
        listener = await asyncio.start_server(server._on_accept, host, port)
        server.port = listener.sockets[0].getsockname()[1]
        try:
            yield server
        finally:
            listener.close()
            server._shutdown()
