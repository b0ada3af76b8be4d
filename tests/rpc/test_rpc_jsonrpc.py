"""JSON-RPC 2.0 conformance of rpc/jsonrpc.py: each case is (request body, exact response or None).

The cases follow the examples of https://www.jsonrpc.org/specification §7 plus this project's rules (floats
refused, exact Request members, size and depth limits). A hypothesis fuzz checks that no body makes the
dispatcher raise and that every answer is well-formed.
"""

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpc.jsonrpc import (
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, LIMIT_EXCEEDED, METHOD_NOT_FOUND, PARSE_ERROR, AnyValue, Bool,
    CallContext, OneOf, Hex, Int, InvalidEntry, Param, ParamError, ParseLimits, Request, Route, Router, RpcError, Str,
    UInt, compute_depth, encode_json, parse_message,
)


def subtract(ctx: CallContext, minuend: int, subtrahend: int) -> int:
    return minuend - subtrahend


async def echo_async(ctx: CallContext, value: Any = None) -> Any:
    return value


def fail(ctx: CallContext) -> None:
    raise KeyError("secret internal detail")


def refuse(ctx: CallContext) -> None:
    raise RpcError(-32001, "block not found", {"height": "7"})


def return_float(ctx: CallContext) -> float:
    return 1.5


NOTIFIED: list[Any] = []

ROUTER = Router({
    "subtract": Route(subtract, Param("minuend", Int()), Param("subtrahend", Int())),
    "echo": Route(echo_async, Param("value", AnyValue(), required=False)),
    "notify_hello": Route(lambda ctx, n: NOTIFIED.append(n), Param("n", Int())),
    "get_data": Route(lambda ctx: ["hello", 5]),
    "block": Route(lambda ctx, height, full: {"height": str(height), "full": full},
                   Param("height", UInt()), Param("full", Bool(), required=False, default=False)),
    "account": Route(lambda ctx, address: address, Param("address", Hex(20))),
    "side": Route(lambda ctx, side: side, Param("side", OneOf("buy", "sell"))),
    "views": Route(lambda ctx: ctx.views),
    "fail": Route(fail),
    "refuse": Route(refuse),
    "float": Route(return_float),
    "bad_param_in_handler": Route(lambda ctx: (_ for _ in ()).throw(ParamError("market: not listed"))),
})
CTX = CallContext(views={"chain": "kabuto-test"}, peer="127.0.0.1")


def call(body: bytes | str, limits: ParseLimits = ParseLimits(), router: Router = ROUTER) -> Any:
    """The decoded response, or None when the server owes no response."""
    text = asyncio.run(router.handle(body, CTX, limits))
    return None if text is None else json.loads(text)


def result(value: Any, id_: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": value}


def error_code(response: dict[str, Any]) -> int:
    assert set(response) == {"jsonrpc", "id", "error"}
    return response["error"]["code"]


# --- the specification's examples -----------------------------------------------------------------------------


def test_positional_params() -> None:
    body = '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}'
    assert call(body) == result(19)


def test_named_params_in_any_order() -> None:
    body = '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}'
    assert call(body) == result(19, 3)


def test_notification_gets_no_response_but_runs() -> None:
    NOTIFIED.clear()
    assert call('{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}') is None
    assert NOTIFIED == [7]


def test_notification_of_unknown_method_gets_no_response() -> None:
    assert call('{"jsonrpc": "2.0", "method": "foobar"}') is None


def test_notification_with_bad_params_gets_no_response() -> None:
    assert call('{"jsonrpc": "2.0", "method": "subtract", "params": [1.5, 2]}') is None


def test_unknown_method() -> None:
    response = call('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert response["id"] == "1" and error_code(response) == METHOD_NOT_FOUND


def test_invalid_json_is_parse_error() -> None:
    response = call('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert response["id"] is None and error_code(response) == PARSE_ERROR


def test_invalid_request_object() -> None:
    response = call('{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert response["id"] is None and error_code(response) == INVALID_REQUEST


def test_batch_with_invalid_json_is_one_parse_error() -> None:
    response = call('[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method"]')
    assert isinstance(response, dict) and error_code(response) == PARSE_ERROR


def test_invalid_empty_batch() -> None:
    response = call("[]")
    assert isinstance(response, dict) and response["id"] is None and error_code(response) == INVALID_REQUEST


def test_invalid_batch_of_non_objects() -> None:
    response = call("[1]")
    assert len(response) == 1 and error_code(response[0]) == INVALID_REQUEST
    response = call("[1, 2, 3]")
    assert [error_code(r) for r in response] == [INVALID_REQUEST] * 3
    assert all(r["id"] is None for r in response)


def test_mixed_batch_keeps_order_and_drops_notifications() -> None:
    body = """[
        {"jsonrpc": "2.0", "method": "subtract", "params": [1, 2], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"""
    response = call(body)
    assert [r["id"] for r in response] == ["1", "2", None, "5", "9"]
    assert response[0] == result(-1, "1") and response[1] == result(19, "2")
    assert error_code(response[2]) == INVALID_REQUEST
    assert error_code(response[3]) == METHOD_NOT_FOUND
    assert response[4] == result(["hello", 5], "9")


def test_batch_of_only_notifications_gets_nothing() -> None:
    body = '[{"jsonrpc": "2.0", "method": "notify_hello", "params": [1]}, {"jsonrpc": "2.0", "method": "x"}]'
    assert call(body) is None


def test_single_request_in_a_batch_gets_an_array() -> None:
    assert call('[{"jsonrpc": "2.0", "method": "get_data", "id": 1}]') == [result(["hello", 5])]


# --- ids ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("id_", ["abc", "", 0, -5, 2**70, None])
def test_valid_ids_are_echoed(id_: Any) -> None:
    body = json.dumps({"jsonrpc": "2.0", "method": "get_data", "id": id_})
    assert call(body) == result(["hello", 5], id_)


@pytest.mark.parametrize("id_", ["1.5", "1e3", "1.0", "true", "false", "[1]", '{"a": 1}'])
def test_invalid_ids(id_: str) -> None:
    response = call('{"jsonrpc": "2.0", "method": "get_data", "id": ' + id_ + "}")
    assert response["id"] is None and error_code(response) == INVALID_REQUEST


def test_invalid_request_echoes_a_valid_id() -> None:
    response = call('{"jsonrpc": "1.0", "method": "get_data", "id": 9}')
    assert response["id"] == 9 and error_code(response) == INVALID_REQUEST


# --- invalid requests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    '{"method": "get_data", "id": 1}',
    '{"jsonrpc": "1.0", "method": "get_data", "id": 1}',
    '{"jsonrpc": 2.0, "method": "get_data", "id": 1}',
    '{"jsonrpc": 2, "method": "get_data", "id": 1}',
    '{"jsonrpc": "2.0", "id": 1}',
    '{"jsonrpc": "2.0", "method": null, "id": 1}',
    '{"jsonrpc": "2.0", "method": ["get_data"], "id": 1}',
    '{"jsonrpc": "2.0", "method": "get_data", "params": "x", "id": 1}',
    '{"jsonrpc": "2.0", "method": "get_data", "params": 3, "id": 1}',
    '{"jsonrpc": "2.0", "method": "get_data", "params": null, "id": 1}',
    '{"jsonrpc": "2.0", "method": "get_data", "id": 1, "extra": true}',
    '"a string"', "17", "null", "true",
])
def test_invalid_request(body: str) -> None:
    assert error_code(call(body)) == INVALID_REQUEST


def test_invalid_request_without_id_is_still_answered() -> None:
    assert error_code(call('{"jsonrpc": "2.0", "method": 5}')) == INVALID_REQUEST


@pytest.mark.parametrize("body", [
    b"", b" ", b"{", b"nul", b"\xff\xfe", b'{"a": NaN}', b"[Infinity]", b"-Infinity",
    b'{"jsonrpc": "2.0", "jsonrpc": "2.0", "method": "get_data", "id": 1}', b"1" * 5000,
])
def test_parse_error(body: bytes) -> None:
    response = call(body)
    assert response["id"] is None and error_code(response) == PARSE_ERROR


def test_reserved_rpc_names_cannot_be_routed() -> None:
    with pytest.raises(ValueError):
        Router({"rpc.discover": Route(lambda ctx: None)})
    with pytest.raises(ValueError):
        ROUTER.with_routes({"echo": Route(lambda ctx: None)})


# --- params ---------------------------------------------------------------------------------------------------


def test_float_param_refused_naming_it() -> None:
    response = call('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 1.0, "subtrahend": 2}, "id": 1}')
    assert error_code(response) == INVALID_PARAMS
    assert "minuend" in response["error"]["message"] and "float" in response["error"]["message"]
    assert response["error"]["data"] == {"param": "minuend"}


@pytest.mark.parametrize("number", ["0.1", "1e3", "1E-3", "-0.0", "1.0"])
def test_nested_float_refused_with_its_path(number: str) -> None:
    body = '{"jsonrpc": "2.0", "method": "echo", "params": [{"orders": [{"price": ' + number + '}]}], "id": 1}'
    response = call(body)
    assert error_code(response) == INVALID_PARAMS
    assert response["error"]["data"] == {"param": "value.orders[0].price"}


def test_float_text_inside_strings_is_fine() -> None:
    body = '{"jsonrpc": "2.0", "method": "echo", "params": ["1.5e3"], "id": 1}'
    assert call(body) == result("1.5e3")


@pytest.mark.parametrize(("params", "named"), [
    ("[1]", "subtrahend"),
    ('{"minuend": 1}', "subtrahend"),
    ('{"minuend": 1, "subtrahend": 2, "extra": 3}', "extra"),
    ('{"minuend": "1", "subtrahend": 2}', "minuend"),
    ('{"minuend": true, "subtrahend": 2}', "minuend"),
    ('{"minuend": 1, "subtrahend": 99999999999999999999}', "subtrahend"),
])
def test_invalid_params_name_the_parameter(params: str, named: str) -> None:
    response = call('{"jsonrpc": "2.0", "method": "subtract", "params": ' + params + ', "id": 1}')
    assert error_code(response) == INVALID_PARAMS
    assert named in response["error"]["message"]


def test_too_many_positional_params() -> None:
    response = call('{"jsonrpc": "2.0", "method": "subtract", "params": [1, 2, 3], "id": 1}')
    assert error_code(response) == INVALID_PARAMS and "too many params" in response["error"]["message"]


def test_optional_param_gets_its_default() -> None:
    assert call('{"jsonrpc": "2.0", "method": "block", "params": {"height": "12"}, "id": 1}') == \
        result({"height": "12", "full": False})


@pytest.mark.parametrize("height", [
    '"007"', '"-1"', '"+1"', '" 1"', '"1 "', '"0x1"', "-1", '""', "18446744073709551616", '"18446744073709551616"',
])
def test_uint_refuses_non_canonical_decimals(height: str) -> None:
    response = call('{"jsonrpc": "2.0", "method": "block", "params": [' + height + '], "id": 1}')
    assert error_code(response) == INVALID_PARAMS and "height" in response["error"]["message"]


@pytest.mark.parametrize("height", ['"0"', "0", '"18446744073709551615"', "18446744073709551615"])
def test_uint_accepts_integers_and_decimal_strings(height: str) -> None:
    response = call('{"jsonrpc": "2.0", "method": "block", "params": [' + height + '], "id": 1}')
    assert response["result"]["height"] == str(json.loads(height))


def test_hex_param_is_bytes_and_results_encode_bytes_as_hex() -> None:
    address = "AB" * 20
    assert call('{"jsonrpc": "2.0", "method": "account", "params": ["0x' + address + '"], "id": 1}') == \
        result("ab" * 20)
    for bad in ['"ab"', '"' + "zz" * 20 + '"', '"' + "a" * 39 + '"', "12"]:
        response = call('{"jsonrpc": "2.0", "method": "account", "params": [' + bad + '], "id": 1}')
        assert error_code(response) == INVALID_PARAMS


def test_enum_param() -> None:
    assert call('{"jsonrpc": "2.0", "method": "side", "params": ["buy"], "id": 1}') == result("buy")
    assert error_code(call('{"jsonrpc": "2.0", "method": "side", "params": ["hold"], "id": 1}')) == INVALID_PARAMS


def test_str_param_length() -> None:
    router = Router({"m": Route(lambda ctx, s: s, Param("s", Str(3)))})
    assert call('{"jsonrpc": "2.0", "method": "m", "params": ["abc"], "id": 1}', router=router) == result("abc")
    assert error_code(call('{"jsonrpc": "2.0", "method": "m", "params": ["abcd"], "id": 1}', router=router)) == \
        INVALID_PARAMS


def test_handler_param_error_is_invalid_params() -> None:
    response = call('{"jsonrpc": "2.0", "method": "bad_param_in_handler", "id": 1}')
    assert error_code(response) == INVALID_PARAMS and "market" in response["error"]["message"]


# --- handlers -------------------------------------------------------------------------------------------------


def test_handler_sees_the_injected_views() -> None:
    assert call('{"jsonrpc": "2.0", "method": "views", "id": 1}') == result({"chain": "kabuto-test"})


def test_async_handler() -> None:
    assert call('{"jsonrpc": "2.0", "method": "echo", "params": {"value": [1, "2"]}, "id": 1}') == result([1, "2"])


def test_handler_bug_is_internal_error_without_details(caplog: pytest.LogCaptureFixture) -> None:
    response = call('{"jsonrpc": "2.0", "method": "fail", "id": 1}')
    assert response == {"jsonrpc": "2.0", "id": 1, "error": {"code": INTERNAL_ERROR, "message": "Internal error"}}
    assert "secret" not in json.dumps(response)
    assert "secret internal detail" in caplog.text


def test_handler_rpc_error_is_sent_as_is() -> None:
    response = call('{"jsonrpc": "2.0", "method": "refuse", "id": 1}')
    assert response["error"] == {"code": -32001, "message": "block not found", "data": {"height": "7"}}


def test_error_data_with_a_float_is_left_out() -> None:
    router = Router({"m": Route(lambda ctx: (_ for _ in ()).throw(RpcError(-32001, "no", {"ratio": 0.5})))})
    response = call('{"jsonrpc": "2.0", "method": "m", "id": 1}', router=router)
    assert response["error"] == {"code": -32001, "message": "no"}


def test_parse_error_message_names_no_interpreter_internals() -> None:
    message = call(b"1" * 5000)["error"]["message"]
    assert message.startswith("Parse error: ") and "sys." not in message


def test_float_result_is_internal_error() -> None:
    assert error_code(call('{"jsonrpc": "2.0", "method": "float", "id": 1}')) == INTERNAL_ERROR


def test_encode_json_refuses_floats_only_outside_strings() -> None:
    assert encode_json({"p": "1.5", "q": 2, "e": "1e5", "b": b"\x01"}) == '{"p":"1.5","q":2,"e":"1e5","b":"01"}'
    for value in [1.5, [0.0], {"a": {"b": 1e30}}, float("nan")]:
        with pytest.raises(ValueError):
            encode_json(value)


def test_admit_refusal_answers_each_call_and_drops_notifications() -> None:
    refusals = iter([None, RpcError(LIMIT_EXCEEDED, "rate limit exceeded"), RpcError(LIMIT_EXCEEDED, "x"), None])
    body = """[{"jsonrpc": "2.0", "method": "get_data", "id": 1},
               {"jsonrpc": "2.0", "method": "get_data", "id": 2},
               {"jsonrpc": "2.0", "method": "notify_hello", "params": [1]},
               {"jsonrpc": "2.0", "method": "get_data", "id": 4}]"""
    text = asyncio.run(ROUTER.handle(body, CTX, admit=lambda: next(refusals)))
    response = json.loads(text)
    assert [r["id"] for r in response] == [1, 2, 4]
    assert "result" in response[0] and error_code(response[1]) == LIMIT_EXCEEDED and "result" in response[2]


def test_observe_sees_every_entry_with_bounded_labels() -> None:
    seen: list[tuple[str, int]] = []
    body = """[{"jsonrpc": "2.0", "method": "get_data", "id": 1},
               {"jsonrpc": "2.0", "method": "notify_hello", "params": [1]},
               {"jsonrpc": "2.0", "method": "random-name-from-a-client", "id": 2},
               {"jsonrpc": "2.0", "method": "fail", "id": 3},
               "x"]"""
    asyncio.run(ROUTER.handle(body, CTX, observe=lambda method, code: seen.append((method, code))))
    assert seen == [("get_data", 0), ("notify_hello", 0), ("unknown", METHOD_NOT_FOUND), ("fail", INTERNAL_ERROR),
                    ("invalid", INVALID_REQUEST)]


# --- limits ---------------------------------------------------------------------------------------------------


def test_oversize_body() -> None:
    body = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["x" * 100], "id": 1})
    assert "result" in call(body, ParseLimits(max_body_bytes=len(body)))
    response = call(body, ParseLimits(max_body_bytes=len(body) - 1))
    assert error_code(response) == INVALID_REQUEST and "too large" in response["error"]["message"]
    assert response["error"]["data"] == {"limit": "max_body_bytes", "max": len(body) - 1}


def test_oversize_batch() -> None:
    entry = '{"jsonrpc": "2.0", "method": "get_data", "id": 1}'
    assert len(call("[" + ",".join([entry] * 3) + "]", ParseLimits(max_batch_length=3))) == 3
    response = call("[" + ",".join([entry] * 4) + "]", ParseLimits(max_batch_length=3))
    assert isinstance(response, dict) and error_code(response) == INVALID_REQUEST
    assert "batch too large" in response["error"]["message"]
    assert response["error"]["data"] == {"limit": "max_batch_length", "max": 3}


def test_deep_nesting_is_refused_before_parsing() -> None:
    def nested(depth: int) -> str:
        return '{"jsonrpc": "2.0", "method": "echo", "params": ' + "[" * (depth - 1) + "]" * (depth - 1) + ', "id": 1}'

    assert "result" in call(nested(8), ParseLimits(max_json_depth=8))
    refused = call(nested(9), ParseLimits(max_json_depth=8))
    assert error_code(refused) == INVALID_REQUEST and refused["error"]["data"] == {"limit": "max_json_depth", "max": 8}
    hostile = "[" * 200_000 + "]" * 200_000
    assert error_code(call(hostile)) == INVALID_REQUEST


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ("[[],{}]", 2), ('{"a": "[[[["}', 1), ('["\\"[["]', 1), ('[{"a": [1]}]', 3),
])
def test_compute_depth_ignores_strings(text: str, depth: int) -> None:
    assert compute_depth(text) == depth


@pytest.mark.parametrize("text", ['"\\' * 200_000, '\\"' * 200_000, '"\\"' * 150_000, '["' * 200_000])
def test_adversarial_strings_are_scanned_in_linear_time(text: str) -> None:
    # A backtracking string pattern took quadratic time on these (minutes for 400 KB); now milliseconds.
    assert error_code(call(text)) in (PARSE_ERROR, INVALID_REQUEST)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


def test_parse_message_shapes() -> None:
    single = parse_message(b'{"jsonrpc": "2.0", "method": "m", "params": [1], "id": 7}')
    assert not single.is_batch and single.entries == (Request("m", [1], 7, False),)
    batch = parse_message(b'[{"jsonrpc": "2.0", "method": "m"}, 5]')
    assert batch.is_batch and batch.entries[0] == Request("m", None, None, True)
    assert isinstance(batch.entries[1], InvalidEntry)


# --- fuzz -----------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
method_names = st.sampled_from(sorted(ROUTER.routes) + ["nope", "", "rpc.x"])
request_like = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2])},
    optional={"method": method_names | json_values, "params": json_values, "id": json_values},
)
bodies = (
    st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
    | request_like.map(lambda v: json.dumps(v).encode())
    | st.lists(request_like | json_values, max_size=5).map(lambda v: json.dumps(v).encode())
)


def check_response(response: Any, ids_allowed: bool = True) -> None:
    assert isinstance(response, dict) and response["jsonrpc"] == "2.0"
    assert ("result" in response) != ("error" in response)
    assert set(response) <= {"jsonrpc", "id", "result", "error"} and "id" in response
    assert response["id"] is None or isinstance(response["id"], (str, int)) and not isinstance(response["id"], bool)
    if "error" in response:
        assert isinstance(response["error"]["code"], int) and isinstance(response["error"]["message"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_fuzz_dispatcher_never_raises_and_answers_well_formed(body: bytes) -> None:
    text = asyncio.run(ROUTER.handle(body, CTX))
    if text is None:
        return
    response = json.loads(text, parse_float=lambda s: pytest.fail(f"float in response: {s}"))
    if isinstance(response, list):
        assert response
        for item in response:
            check_response(item)
    else:
        check_response(response)


@settings(max_examples=200, deadline=None)
@given(json_values, st.booleans())
def test_compute_depth_matches_a_recursive_reference(value: Any, ascii_only: bool) -> None:
    assert compute_depth(json.dumps(value, ensure_ascii=ascii_only)) == reference_depth(value)
