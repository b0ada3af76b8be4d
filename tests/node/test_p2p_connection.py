"""Two real endpoints on 127.0.0.1 (port 0): handshake, ordered messages, bans, slow peers, refusals.

No test sleeps to wait for something: each waits on an event set by the code under test, and the whole test
runs under one `asyncio.timeout` so a bug fails fast instead of hanging.
"""

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest

from node.p2p import errors
from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig, Peer, open_connection, run_handshake, serve
from node.p2p.frames import FIRST_APPLICATION_TYPE, MSG_AUTH, MSG_PING, Message
from node.p2p.handshake import Handshake, HandshakeResult, Role
from stf.crypto import PrivateKey

CHAIN = "kabuto-test"
SERVER_KEY = PrivateKey(b"\x10" * 32)
GOOD = PrivateKey(b"\x20" * 32)
BAD = PrivateKey(b"\x30" * 32)
CONFIG = ConnectionConfig(handshake_timeout_s=5.0, close_timeout_s=2.0, ban_seconds=60.0)
HOST = "127.0.0.1"
PING_APP, PONG_APP = FIRST_APPLICATION_TYPE, FIRST_APPLICATION_TYPE + 1  # EchoApp answers type t with t + 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await test()
    asyncio.run(bounded())


class EchoApp:
    """Answers each message with type + 1 and the same payload; records what it saw and why peers closed."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.received: dict[bytes, list[Message]] = defaultdict(list)
        self.reasons: dict[bytes, object] = {}
        self.done: dict[bytes, asyncio.Event] = defaultdict(asyncio.Event)

    async def on_peer(self, peer: Peer) -> None:
        async for message in peer:
            self.received[peer.node_id].append(message)
            if self.echo:
                peer.send(message.type + 1, message.payload)
        self.reasons[peer.node_id] = peer.close_reason
        self.done[peer.node_id].set()


async def raw_client(port: int, key: PrivateKey) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, HandshakeResult]:
    """A client that does the handshake by hand and then writes whatever the test wants."""
    reader, writer = await asyncio.open_connection(HOST, port)
    result = await run_handshake(reader, writer, Handshake(Role.INITIATOR, key, CHAIN), CONFIG)
    return reader, writer, result


async def read_until_closed(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(1 << 16):
            pass
    except ConnectionError:
        pass


def connect(port: int, key: PrivateKey = GOOD, **kwargs: object):  # noqa: ANN201
    kwargs.setdefault("config", CONFIG)
    return open_connection(HOST, port, node_key=key, chain_id=CHAIN, expected_peer_id=SERVER_KEY.address, **kwargs)


def test_handshake_and_messages_both_ways_in_order() -> None:
    async def test() -> None:
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG) as server:
            async with connect(server.port) as peer:
                assert peer.node_id == SERVER_KEY.address and peer.outbound
                sent = [Message(PING_APP + i % 7, [i, b"x" * (i * 37 % 3000)]) for i in range(300)]
                for message in sent:
                    assert peer.send(message.type, message.payload)
                replies = [await anext(peer) for _ in sent]
                assert replies == [Message(m.type + 1, m.payload) for m in sent]
                assert app.received[GOOD.address] == sent
                assert list(server.peers) == [GOOD.address]
                inbound = server.peers[GOOD.address]
                assert peer.messages_sent == inbound.messages_received == 300
                assert inbound.messages_sent == peer.messages_received == 300
                assert peer.bytes_sent > 300 * (16 + 4) and peer.bytes_received > 300 * (16 + 4)
            await app.done[GOOD.address].wait()
            assert app.reasons[GOOD.address].code == "remote_closed"
    run(test)


def test_graceful_close_flushes_queued_messages() -> None:
    async def test() -> None:
        app = EchoApp(echo=False)
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG) as server:
            async with connect(server.port) as peer:
                for i in range(100):
                    peer.send(PING_APP, i)
            assert peer.close_reason.code == "local" and peer.closed.is_set()
            assert not peer.send(PING_APP, "after close")
            await app.done[GOOD.address].wait()
            assert [m.payload for m in app.received[GOOD.address]] == list(range(100))
            assert app.reasons[GOOD.address].code == "remote_closed"
    run(test)


def test_garbage_after_handshake_is_banned_while_server_keeps_serving() -> None:
    async def test() -> None:
        clock = FakeClock()
        bans = BanList(clock)
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG,
                         bans=bans) as server:
            async with connect(server.port) as good:
                good.send(PING_APP, b"before")
                assert await anext(good) == Message(PONG_APP, b"before")

                reader, writer, _ = await raw_client(server.port, BAD)
                writer.write((64).to_bytes(4, "big") + b"garbage!" * 8)
                await app.done[BAD.address].wait()
                reason = app.reasons[BAD.address]
                assert reason.code == "protocol_error" and "frame_authentication_failed" in reason.detail
                assert bans.is_banned(BAD.address) and not bans.is_banned(GOOD.address)
                await read_until_closed(reader)
                writer.close()

                good.send(PING_APP, b"after")
                assert await anext(good) == Message(PONG_APP, b"after")

                async with connect(server.port, BAD) as refused:
                    assert [m async for m in refused] == []
                assert server.refused == 1 and BAD.address not in server.peers

                clock.now += CONFIG.ban_seconds
                async with connect(server.port, BAD) as forgiven:
                    forgiven.send(PING_APP, b"hello again")
                    assert await anext(forgiven) == Message(PONG_APP, b"hello again")
    run(test)


@pytest.mark.parametrize(("msg_type", "payload"), [(MSG_AUTH, [b"again"]), (MSG_PING, b"x"), (3, None), (15, None)])
def test_transport_message_misuse_is_a_protocol_error(msg_type: int, payload: object) -> None:
    async def test() -> None:
        bans = BanList(FakeClock())
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG,
                         bans=bans) as server:
            reader, writer, result = await raw_client(server.port, BAD)
            writer.write(result.encoder.encode(PING_APP, b"fine") + result.encoder.encode(msg_type, payload))
            await app.done[BAD.address].wait()
            assert app.received[BAD.address] == [Message(PING_APP, b"fine")]
            assert "unexpected_message" in app.reasons[BAD.address].detail
            assert bans.is_banned(BAD.address)
            await read_until_closed(reader)
            writer.close()
    run(test)


def test_silent_peer_is_dropped_after_the_idle_timeout() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, ping_interval_s=0.05, idle_timeout_s=0.25)
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            reader, writer, _ = await raw_client(server.port, BAD)  # never answers a PING
            await app.done[BAD.address].wait()
            assert app.reasons[BAD.address].code == "idle_timeout"
            await read_until_closed(reader)
            writer.close()
    run(test)


def test_pings_keep_a_quiet_connection_open() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, ping_interval_s=0.05, idle_timeout_s=0.6)
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            async with connect(server.port, config=config) as peer:
                while peer.pongs_received < 15:  # 15 pings take longer than the idle timeout
                    await asyncio.sleep(0.01)
                assert not peer.is_closing and GOOD.address in server.peers
                assert server.peers[GOOD.address].pongs_received > 0
    run(test)


def test_full_send_queue_drops_the_slow_peer() -> None:
    """The client never reads: kernel buffers fill, the writer blocks, the bounded queue fills, the peer is dropped."""
    async def test() -> None:
        config = dataclasses.replace(CONFIG, send_queue_max_messages=8)
        outcome: dict[str, object] = {}
        dropped = asyncio.Event()

        async def flood(peer: Peer) -> None:
            for sent in range(1_000_000):
                if not peer.send(PING_APP, b"x" * 65536):
                    break
                await asyncio.sleep(0)  # a yield, not a timed wait: let the writer task run
            outcome.update(sent=sent, reason=peer.close_reason)
            dropped.set()
            assert [m async for m in peer] == []

        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=flood, config=config) as server:
            _, writer, _ = await raw_client(server.port, GOOD)
            await dropped.wait()
            assert outcome["reason"].code == "send_queue_full"
            assert outcome["sent"] >= 8
            writer.transport.abort()
    run(test)


def test_full_receive_queue_pauses_reading_without_losing_messages() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, recv_queue_max_messages=3)
        start_reading, registered, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
        got: list[Message] = []

        async def lazy(peer: Peer) -> None:
            registered.set()
            await start_reading.wait()
            got.extend([m async for m in peer])
            finished.set()

        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=lazy, config=config) as server:
            async with connect(server.port) as peer:
                for i in range(50):
                    assert peer.send(PING_APP, i)
                await registered.wait()
                (inbound,) = server.peers.values()
                while inbound._inbox.qsize() < 3:  # a yield, not a timed wait: until the reader fills the queue
                    await asyncio.sleep(0)
                assert inbound._inbox.qsize() == 3 and not inbound.is_closing
                start_reading.set()
            await finished.wait()
        assert [m.payload for m in got] == list(range(50))
    run(test)


def test_graceful_close_gives_up_on_a_peer_that_does_not_read() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, close_timeout_s=0.2)
        outcome: dict[str, object] = {}
        closed = asyncio.Event()

        async def stuck_flush(peer: Peer) -> None:
            while peer.send(PING_APP, b"x" * 65536) and len(peer._send_queue) < 100:
                await asyncio.sleep(0)  # a yield: until the kernel buffers are full and frames wait in our queue
            peer.close()
            await peer.wait_closed()
            outcome["reason"] = peer.close_reason
            closed.set()

        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=stuck_flush, config=config) as server:
            _, writer, _ = await raw_client(server.port, GOOD)  # never reads
            await closed.wait()
            assert outcome["reason"].code == "local"
            writer.transport.abort()
    run(test)


def test_send_queue_bound_never_blocks_the_caller() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, send_queue_max_messages=4)
        app = EchoApp(echo=False)
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            async with connect(server.port, config=config) as peer:
                assert [peer.send(PING_APP, i) for i in range(6)] == [True] * 4 + [False, False]
                assert peer.close_reason.code == "send_queue_full"
                assert [m async for m in peer] == []
    run(test)


def test_send_queue_byte_bound() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, send_queue_max_bytes=10_000)
        app = EchoApp(echo=False)
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            async with connect(server.port, config=config) as peer:
                assert peer.send(PING_APP, b"x" * 6000)
                assert not peer.send(PING_APP, b"x" * 6000)
                assert peer.close_reason.code == "send_queue_full"
    run(test)


def test_message_too_large_is_raised_to_the_sender_and_keeps_the_connection() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, max_frame_size=4096)
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            async with connect(server.port, config=config) as peer:
                with pytest.raises(errors.MessageTooLarge):
                    peer.send(PING_APP, b"x" * 4096)
                peer.send(PING_APP, b"small")
                assert await anext(peer) == Message(PONG_APP, b"small")
    run(test)


def test_disconnect_with_ban_for_a_message_the_layer_above_rejects() -> None:
    async def test() -> None:
        bans = BanList(FakeClock())

        async def strict(peer: Peer) -> None:
            async for message in peer:
                if message.payload == b"bad signature":
                    peer.disconnect("vote signature does not verify", ban=True)
            app.reasons[peer.node_id] = peer.close_reason
            app.done[peer.node_id].set()

        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=strict, config=CONFIG, bans=bans) as server:
            async with connect(server.port, BAD) as peer:
                peer.send(PING_APP, b"bad signature")
                assert [m async for m in peer] == []
            await app.done[BAD.address].wait()
            assert app.reasons[BAD.address].code == "misbehavior"
            assert bans.get_ban(BAD.address).reason == "vote signature does not verify"
    run(test)


def test_exception_inside_open_connection_aborts_and_propagates() -> None:
    async def test() -> None:
        app = EchoApp(echo=False)
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG) as server:
            with pytest.raises(KeyError):
                async with connect(server.port) as peer:
                    raise KeyError("application bug")
            assert peer.close_reason.code == "local" and "KeyError" in peer.close_reason.detail
            assert peer.closed.is_set()
            await app.done[GOOD.address].wait()
    run(test)


def test_invalid_chain_id_in_local_config() -> None:
    async def test() -> None:
        with pytest.raises(ValueError):
            async with serve(node_key=SERVER_KEY, chain_id="", on_peer=EchoApp().on_peer):
                pass
    run(test)


def test_invalid_wrong_chain_fails_the_handshake() -> None:
    async def test() -> None:
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id="other-chain", on_peer=app.on_peer, config=CONFIG) as server:
            with pytest.raises((errors.HandshakeError, ConnectionError)):
                async with connect(server.port):
                    pass
            assert server.handshake_failures == 1 and not server.peers
    run(test)


def test_invalid_unexpected_peer_fails_the_handshake() -> None:
    async def test() -> None:
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG) as server:
            with pytest.raises(errors.UnexpectedPeer):
                async with open_connection(HOST, server.port, node_key=GOOD, chain_id=CHAIN,
                                           expected_peer_id=BAD.address, config=CONFIG):
                    pass
    run(test)


def test_dialing_a_banned_peer_is_refused_before_connecting() -> None:
    async def test() -> None:
        bans = BanList(FakeClock())
        bans.ban_for(SERVER_KEY.address, 10, "test")
        with pytest.raises(errors.PeerRefused):
            async with connect(1, bans=bans):  # port 1: nothing is dialed
                pass
    run(test)


def test_invalid_silent_client_times_out() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, handshake_timeout_s=0.2)
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            await read_until_closed(reader)
            assert server.handshake_failures == 1
            writer.close()
    run(test)


def test_duplicate_connection_is_refused() -> None:
    async def test() -> None:
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG) as server:
            async with connect(server.port) as first:
                first.send(PING_APP, b"x")
                assert await anext(first) == Message(PONG_APP, b"x")
                async with connect(server.port) as second:
                    assert [m async for m in second] == []
                assert server.refused == 1
                first.send(PING_APP, b"still here")
                assert await anext(first) == Message(PONG_APP, b"still here")
    run(test)


def test_allow_list_refuses_other_peers() -> None:
    async def test() -> None:
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG,
                         is_allowed=lambda node_id: node_id == GOOD.address) as server:
            async with connect(server.port, BAD) as refused:
                assert [m async for m in refused] == []
            async with connect(server.port, GOOD) as allowed:
                allowed.send(PING_APP, b"ok")
                assert await anext(allowed) == Message(PONG_APP, b"ok")
            assert server.refused == 1
    run(test)


def test_inbound_connection_limit() -> None:
    async def test() -> None:
        config = dataclasses.replace(CONFIG, max_inbound=1)
        app = EchoApp()
        async with serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=config) as server:
            async with connect(server.port, config=config) as first:
                reader, writer = await asyncio.open_connection(HOST, server.port)
                await read_until_closed(reader)
                writer.close()
                assert server.refused == 1
                first.send(PING_APP, b"x")
                assert await anext(first) == Message(PONG_APP, b"x")
    run(test)


def test_server_shutdown_closes_connected_peers() -> None:
    async def test() -> None:
        app = EchoApp()
        listening = serve(node_key=SERVER_KEY, chain_id=CHAIN, on_peer=app.on_peer, config=CONFIG)
        server = await listening.__aenter__()
        async with connect(server.port) as peer:
            peer.send(PING_APP, b"x")
            assert await anext(peer) == Message(PONG_APP, b"x")
            await listening.__aexit__(None, None, None)
            assert app.reasons[GOOD.address].code == "local"
            assert [m async for m in peer] == []
            assert peer.close_reason.code == "remote_closed"
        with pytest.raises(ConnectionError):
            await asyncio.open_connection(HOST, server.port)
    run(test)


@pytest.mark.parametrize("change", [
    {"max_frame_size": 100}, {"send_queue_max_messages": 0}, {"recv_queue_max_messages": 0},
    {"ping_interval_s": 60.0, "idle_timeout_s": 60.0},
])
def test_invalid_connection_config(change: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CONFIG, **change)
