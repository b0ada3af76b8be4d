"""rpc/subscriptions.py without sockets: the hub's fan-out, bounded session buffers and the subscription methods."""

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rpc.subscriptions as subscriptions
from rpc.jsonrpc import INVALID_PARAMS, LIMIT_EXCEEDED, METHOD_NOT_FOUND, CallContext, Param, Router, RpcError, Str
from rpc.subscriptions import CLOSE_GOING_AWAY, CLOSE_SLOW_CONSUMER, REASON_SLOW_CONSUMER, Channel, Hub, Session


def make_hub(snapshot: Any = None) -> Hub:
    counter = iter(range(1, 1000))
    return Hub(
        [Channel("blocks"), Channel("book", Param("market", Str(16)), snapshot)],
        new_id=lambda: f"{next(counter):032x}",
    )


def drain(session: Session) -> list[dict[str, Any]]:
    """Frames queued so far, decoded (without waiting)."""
    frames = list(session._frames)
    session._frames.clear()
    return [json.loads(f) for f in frames]


def notification(subscription_id: str, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "subscription", "params": {"subscription": subscription_id, "result": result}}


def test_publish_reaches_subscribers_of_the_stream_only() -> None:
    hub, a, b = make_hub(), Session("a", 8, 8), Session("b", 8, 8)
    sub_a = hub.subscribe(a, None, "book", {"market": "BTC-PERP"})
    sub_b = hub.subscribe(b, None, "book", {"market": "ETH-PERP"})
    assert hub.publish("book", "BTC-PERP", {"seq": "1"}) == 1
    assert hub.publish("blocks", None, {"height": "1"}) == 0
    assert drain(a) == [notification(sub_a, {"seq": "1"})] and drain(b) == []
    assert hub.publish("book", "ETH-PERP", [1, "2"]) == 1
    assert drain(b) == [notification(sub_b, [1, "2"])]


def test_publish_encodes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = make_hub()
    sessions = [Session(str(i), 8, 8) for i in range(5)]
    for session in sessions:
        hub.subscribe(session, None, "blocks", {})
    calls = []
    real = subscriptions.encode_json
    monkeypatch.setattr(subscriptions, "encode_json", lambda value: calls.append(value) or real(value))
    assert hub.publish("blocks", None, {"height": "7"}) == 5
    assert len(calls) == 1
    assert all(drain(s)[0]["params"]["result"] == {"height": "7"} for s in sessions)


def test_publish_refuses_floats() -> None:
    hub, session = make_hub(), Session("a", 8, 8)
    hub.subscribe(session, None, "blocks", {})
    with pytest.raises(ValueError):
        hub.publish("blocks", None, {"price": 1.5})


def test_unsubscribe() -> None:
    hub, session = make_hub(), Session("a", 8, 8)
    first = hub.subscribe(session, None, "blocks", {})
    second = hub.subscribe(session, None, "blocks", {})
    assert hub.publish("blocks", None, 1) == 2
    assert hub.unsubscribe(session, first) is True
    assert hub.unsubscribe(session, first) is False
    assert hub.unsubscribe(Session("other", 8, 8), second) is False
    drain(session)
    hub.publish("blocks", None, 2)
    assert drain(session) == [notification(second, 2)]
    hub.subscribe(session, None, "book", {"market": "X"})
    assert hub.unsubscribe_all(session) == 2 and hub.get_subscriber_count("blocks", None) == 0
    assert hub.publish("blocks", None, 3) == 0


def test_subscribed_keys_follow_subscriptions() -> None:
    hub, a, b = make_hub(), Session("a", 8, 8), Session("b", 8, 8)
    assert dict(hub.get_subscribed_keys("book")) == {}
    first = hub.subscribe(a, None, "book", {"market": "X"})
    hub.subscribe(b, None, "book", {"market": "X"})
    hub.subscribe(b, None, "book", {"market": "Y"})
    assert list(hub.get_subscribed_keys("book")) == ["X", "Y"]
    hub.unsubscribe(a, first)
    assert list(hub.get_subscribed_keys("book")) == ["X", "Y"]
    hub.unsubscribe_all(b)
    assert dict(hub.get_subscribed_keys("book")) == {} and dict(hub.get_subscribed_keys("blocks")) == {}


@pytest.mark.parametrize(("channel", "extra", "named"), [
    ("trades", {}, "channel"),
    ("book", {}, "market"),
    ("book", {"market": 5}, "market"),
    ("book", {"market": "X", "depth": 5}, "depth"),
    ("blocks", {"market": "X"}, "market"),
    (7, {}, "channel"),
])
def test_subscribe_invalid_params_name_the_parameter(channel: Any, extra: dict[str, Any], named: str) -> None:
    with pytest.raises(RpcError) as raised:
        make_hub().subscribe(Session("a", 8, 8), None, channel, extra)
    assert raised.value.code == INVALID_PARAMS and raised.value.data == {"param": named}


def test_subscription_cap() -> None:
    hub, session = make_hub(), Session("a", 8, 2)
    hub.subscribe(session, None, "blocks", {})
    hub.subscribe(session, None, "blocks", {})
    with pytest.raises(RpcError) as raised:
        hub.subscribe(session, None, "blocks", {})
    assert raised.value.code == LIMIT_EXCEEDED
    assert raised.value.data == {"limit": "max_subscriptions_per_connection", "max": 2}


def test_overflow_closes_only_the_slow_session() -> None:
    hub, slow, fast = make_hub(), Session("slow", 2, 8), Session("fast", 2, 8)
    hub.subscribe(slow, None, "blocks", {})
    fast_id = hub.subscribe(fast, None, "blocks", {})
    for height in range(3):
        hub.publish("blocks", None, height)
        assert drain(fast) == [notification(fast_id, height)]
    assert slow.close_code == CLOSE_SLOW_CONSUMER and slow.close_reason == REASON_SLOW_CONSUMER
    assert slow.subscriptions == {} and hub.get_subscriber_count("blocks", None) == 1
    assert hub.slow_consumer_closes == 1
    assert asyncio.run(slow.take_frames()) is None  # pending frames dropped, the writer closes
    hub.detach(slow)
    assert hub.slow_consumer_closes == 1


def test_first_close_request_wins() -> None:
    session = Session("a", 1, 1)
    session.request_close(CLOSE_GOING_AWAY, "server shutting down")
    session.request_close(CLOSE_SLOW_CONSUMER, REASON_SLOW_CONSUMER)
    assert (session.close_code, session.close_reason) == (CLOSE_GOING_AWAY, "server shutting down")


def test_notifications_wait_behind_the_response_of_a_call() -> None:
    hub, session = make_hub(), Session("a", 8, 8)
    session.begin_call()
    subscription_id = hub.subscribe(session, None, "blocks", {})
    hub.publish("blocks", None, "during the call")
    assert drain(session) == []
    assert session.end_call('{"jsonrpc":"2.0","id":1,"result":"%s"}' % subscription_id)
    assert drain(session) == [
        {"jsonrpc": "2.0", "id": 1, "result": subscription_id}, notification(subscription_id, "during the call")]


def test_held_notifications_count_against_the_bound() -> None:
    hub, session = make_hub(), Session("a", 2, 8)
    hub.subscribe(session, None, "blocks", {})
    session.begin_call()
    hub.publish("blocks", None, 1)
    hub.publish("blocks", None, 2)
    assert session.close_code is None
    hub.publish("blocks", None, 3)
    assert session.close_code == CLOSE_SLOW_CONSUMER


def test_nothing_is_queued_after_an_overflow_during_a_call() -> None:
    # Found by the model test below: the third subscription's frame was held after the second overflowed.
    hub, session = make_hub(), Session("a", 1, 3)
    for _ in range(3):
        hub.subscribe(session, None, "blocks", {})
    session.begin_call()
    assert hub.publish("blocks", None, 0) == 1
    assert session.close_code == CLOSE_SLOW_CONSUMER and not session._held and not session._frames


def test_snapshot_is_the_first_notification() -> None:
    hub = make_hub(snapshot=lambda views, market: {"snapshot": market, "views": views})
    session = Session("a", 8, 8)
    session.begin_call()
    subscription_id = hub.subscribe(session, "V", "book", {"market": "BTC"})
    hub.publish("book", "BTC", {"diff": "1"})
    session.end_call("{}")
    assert drain(session)[1:] == [
        notification(subscription_id, {"snapshot": "BTC", "views": "V"}), notification(subscription_id, {"diff": "1"})]


def test_take_frames_waits_for_a_frame() -> None:
    async def scenario() -> list[str] | None:
        session = Session("a", 8, 8)
        waiter = asyncio.ensure_future(session.take_frames())
        await asyncio.sleep(0)
        assert not waiter.done()
        session.begin_call()
        session.end_call("x")
        return await waiter

    assert asyncio.run(scenario()) == ["x"]


def test_methods_need_a_websocket_session() -> None:
    router = Router().with_routes(make_hub().get_routes())
    for body in ['{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"blocks"},"id":1}',
                 '{"jsonrpc":"2.0","method":"unsubscribe","params":["x"],"id":1}',
                 '{"jsonrpc":"2.0","method":"unsubscribe_all","id":1}']:
        response = json.loads(asyncio.run(router.handle(body, CallContext(views=None))))
        assert response["error"]["code"] == METHOD_NOT_FOUND and "WebSocket" in response["error"]["message"]


def test_methods_over_a_session() -> None:
    hub = make_hub()
    router = Router().with_routes(hub.get_routes())
    ctx = CallContext(views=None, session=Session("a", 8, 8))

    def call(body: str) -> Any:
        return json.loads(asyncio.run(router.handle(body, ctx)))

    subscription_id = call('{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"book","market":"BTC"},"id":1}')
    assert subscription_id["result"] == "1".rjust(32, "0")
    assert call('{"jsonrpc":"2.0","method":"subscribe","params":["blocks"],"id":2}')["result"] == "2".rjust(32, "0")
    float_key = call('{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"book","market":1.5},"id":3}')
    assert float_key["error"]["code"] == INVALID_PARAMS and float_key["error"]["data"] == {"param": "market"}
    float_extra = call('{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"blocks","x":[0.5]},"id":3}')
    assert float_extra["error"]["code"] == INVALID_PARAMS and float_extra["error"]["data"] == {"param": "x[0]"}
    assert call('{"jsonrpc":"2.0","method":"unsubscribe","params":{"subscription":"nope"},"id":4}')["result"] is False
    assert call('{"jsonrpc":"2.0","method":"unsubscribe_all","id":5}')["result"] == 2


# --- model-based: random operations against invariants --------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.integers(0, 2), st.sampled_from(["blocks", "A", "B"])),
        st.tuples(st.just("unsubscribe"), st.integers(0, 2), st.integers(0, 5)),
        st.tuples(st.just("unsubscribe_all"), st.integers(0, 2), st.none()),
        st.tuples(st.just("publish"), st.sampled_from(["blocks", "A", "B"]), st.integers(0, 10**6)),
        st.tuples(st.just("drain"), st.integers(0, 2), st.none()),
        st.tuples(st.just("call"), st.integers(0, 2), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.integers(1, 4))
def test_hub_invariants_under_random_operations(ops: list[tuple[str, Any, Any]], capacity: int) -> None:
    hub = make_hub()
    sessions = [Session(str(i), capacity, 3) for i in range(3)]
    in_call = [False] * 3
    received: dict[str, list[int]] = {}  # subscription id -> published values, in arrival order
    published: dict[str, list[int]] = {}  # subscription id -> values published while it was live
    for op, a, b in ops:
        if op == "subscribe" and not sessions[a].is_closing:
            stream = ("blocks", None) if b == "blocks" else ("book", b)
            try:
                subscription_id = hub.subscribe(sessions[a], None, stream[0], {} if b == "blocks" else {"market": b})
            except RpcError:
                assert len(sessions[a].subscriptions) == 3
                continue
            published[subscription_id] = []
        elif op == "unsubscribe":
            ids = sorted(sessions[a].subscriptions)
            if ids:
                assert hub.unsubscribe(sessions[a], ids[b % len(ids)])
        elif op == "unsubscribe_all":
            hub.unsubscribe_all(sessions[a])
        elif op == "publish":
            stream = ("blocks", None) if a == "blocks" else ("book", a)
            for session in sessions:
                for subscription_id, subscribed in session.subscriptions.items():
                    if subscribed == stream:
                        published[subscription_id].append(b)
            hub.publish(stream[0], stream[1], b)
        elif op == "drain":
            for frame in drain(sessions[a]):
                if frame.get("method") == "subscription":
                    received.setdefault(frame["params"]["subscription"], []).append(frame["params"]["result"])
        elif op == "call":
            if in_call[a]:
                if not sessions[a].end_call('{"jsonrpc":"2.0","id":1,"result":null}'):
                    hub.detach(sessions[a])  # as the server does when the connection ends
            else:
                sessions[a].begin_call()
            in_call[a] = not in_call[a]
        for session in sessions:
            assert len(session._frames) + len(session._held) <= session.capacity
            if session.is_closing:
                assert session.subscriptions == {} and not session._frames and not session._held
        live = {(sid, stream) for s in sessions for sid, stream in s.subscriptions.items()}
        assert live == {(sid, stream) for stream, subs in hub._streams.items() for sid in subs}
    assert hub.slow_consumer_closes == sum(s.close_code == CLOSE_SLOW_CONSUMER for s in sessions)
    for subscription_id, values in received.items():  # each stream in publish order, nothing invented
        expected = iter(published[subscription_id])
        assert all(value in expected for value in values)


def test_account_channel_touches_every_address_an_event_names_including_evidence() -> None:
    from types import SimpleNamespace

    from rpc.channels import compute_touched
    from stf.events import EvidenceEvent, TransferEvent
    offender, reporter, other = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
    events = [EvidenceEvent(offender, 5, 0, 2, reporter), TransferEvent(reporter, other, 0, 7)]
    result = SimpleNamespace(events=events)
    assert compute_touched(result) == {offender: [0], reporter: [0, 1], other: [1]}
    assert compute_touched(result, {other: None}) == {other: [1]}
