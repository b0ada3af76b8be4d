"""JSON-RPC 2.0, sans-IO: parse a request body, dispatch it through a route table, encode the response.

Nothing here touches a socket or a clock. `parse_message` turns bytes into `Request`s (or the error each entry
earned), `Router.dispatch` calls the handlers and returns the response text (or None when nothing is owed),
`Router.handle` does both. The HTTP and WebSocket loops in `rpc/server.py` are thin wrappers around it.

Conformance (https://www.jsonrpc.org/specification):

- A body is one Request object or a non-empty array of them (a batch). A Request has exactly the members
  `jsonrpc` (the string "2.0"), `method` (a string), optional `params` (an array or an object) and optional `id`
  (a string, an integer or null). Any other member makes the request invalid.
- A Request without `id` is a notification: it is executed but never answered, not even with an error, in a
  batch or alone. A batch of only notifications gets no response at all (HTTP 204 over `/`).
  An entry that is not a valid Request is answered with -32600 even when it has no `id`, as the spec's examples do.
- The `id` of an invalid request is echoed when it was itself valid, else the error carries `"id": null`.
- Batch entries run one after another in order; the response array lists the answers in the same order.
- Names starting with `rpc.` are reserved by the spec and cannot be registered.

Numbers: a JSON number with a fraction or an exponent (`1.5`, `1e3`, `1.0`) is never turned into a float. Such a
number in `params` is refused with -32602 naming the parameter ("send a decimal string or an integer"); as an
`id` it makes the request invalid (-32600). `NaN` and `Infinity` are not JSON and are parse errors. Integers
with more than 4300 digits are parse errors (CPython's int-string limit). Results are checked the same way: a
handler that returns a float gets -32603, so no float ever reaches a client.

Error codes (`error.code`):

| code   | name             | when                                                                             |
|--------|------------------|----------------------------------------------------------------------------------|
| -32700 | Parse error      | the body is not UTF-8 JSON, repeats a member name in an object, or uses NaN      |
| -32600 | Invalid Request  | not a Request object or batch; empty batch; batch longer than `max_batch_length`; |
|        |                  | nesting deeper than `max_json_depth`; body larger than `max_body_bytes`         |
| -32601 | Method not found | no route has that name (also `subscribe` over HTTP: it needs a WebSocket)       |
| -32602 | Invalid params   | a missing, unknown, ill-typed or float parameter; the message names it          |
| -32603 | Internal error   | the handler raised something other than `RpcError`/`ParamError`, or returned a  |
|        |                  | value that is not JSON without floats; no detail of the failure is sent         |
| -32005 | Limit exceeded   | rate limit, subscription cap or connection cap (see `rpc/limits.py`)            |

Limit errors (-32005, and -32600 for the size, batch and depth limits) carry
`data = {"limit": <RpcConfig field name>, "max": <configured value>}` so a client can tell which limit it hit.
-32602 errors carry `data = {"param": <name or path, e.g. "orders[0].price">}` when one parameter is at fault.
Handlers may raise `RpcError` with any other code in -32000..-32099 for application errors.

The route table: `Router({"block": Route(get_block, Param("height", UInt(), required=False))})`. A handler is
called as `handler(ctx, **params)` with `ctx` a `CallContext` holding the read-only `views` the node injected, the
caller's address key and, over WebSocket, the session; it may be a plain function or a coroutine function. Params
may be sent by position (in declaration order) or by name. Param types: `Str(max_length)`, `Int(minimum,
maximum)` (a JSON integer, never a boolean), `UInt(maximum)` (a JSON integer or a canonical decimal string, for
heights and amounts), `Hex(length | max_length)` (optional 0x, either case; the handler gets bytes), `Bool()`,
`OneOf(*choices)`, `Object()`, `Array()`, `AnyValue()`; any callable that returns the converted value or raises
`ParamError` works too. Results are encoded compactly; bytes become lowercase hex without 0x, tuples arrays.
"""

import inspect
import json
import logging
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from types import MappingProxyType
from typing import Any

__all__ = [
    "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR", "LIMIT_EXCEEDED",
    "RpcError", "ParamError", "ParseLimits", "FloatLiteral", "Request", "InvalidEntry", "Message", "parse_message",
    "CallContext", "Param", "Route", "Router", "encode_json", "Str", "Int", "UInt", "Hex", "Bool", "OneOf",
    "Object", "Array", "AnyValue",
]

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
LIMIT_EXCEEDED = -32005

Id = str | int | None


class RpcError(Exception):
    """An error that is sent to the client as it is: `{"code": code, "message": message, "data": data}`."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r}, {self.data!r})"


class ParamError(ValueError):
    """A parameter type refused a value; the router reports it as -32602 naming the parameter."""


def limit_exceeded(message: str, limit: str, maximum: int | float) -> RpcError:
    """The -32005 error for a configured limit, with the limit's config name and value in `data`."""
    return RpcError(LIMIT_EXCEEDED, message, {"limit": limit, "max": maximum})


# --- parsing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_body_bytes: int = 1 << 20
    max_batch_length: int = 100
    max_json_depth: int = 32


class FloatLiteral:
    """The source text of a JSON number with a fraction or exponent; never converted to a float."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"FloatLiteral({self.text!r})"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    params: list[Any] | dict[str, Any] | None
    id: Id
    is_notification: bool


@dataclass(frozen=True, slots=True)
class InvalidEntry:
    """A body or batch entry that is not a valid Request: always answered with `error`."""

    error: RpcError
    id: Id = None


@dataclass(frozen=True, slots=True)
class Message:
    entries: tuple[Request | InvalidEntry, ...]
    is_batch: bool


_REQUEST_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
# A JSON string, or an unterminated one to the end of the text. Possessive, so it never backtracks: linear time.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEPS = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})
_FLOAT_IN_JSON = re.compile(r"\d[.eE]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("an object repeats a member name")
    return obj


_decoder = json.JSONDecoder(
    parse_float=FloatLiteral, parse_constant=_reject_constant, object_pairs_hook=_unique_object,
)


def compute_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON `text` (string contents do not count); linear, no recursion."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    steps = brackets.translate(_BRACKET_STEPS).encode("ascii")  # 2 opens, 0 closes; minus 1 below
    return max(accumulate(map(operator.sub, steps, repeat(1)), initial=0))


def _whole_body_error(code: int, message: str, data: Any = None) -> Message:
    return Message((InvalidEntry(RpcError(code, message, data)),), is_batch=False)


def parse_message(body: bytes | str, limits: ParseLimits = ParseLimits()) -> Message:
    """Parse a JSON-RPC body; never raises. Errors of the whole body are one `InvalidEntry` with id null."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > limits.max_body_bytes:
        return _whole_body_error(INVALID_REQUEST, f"request too large: {size} bytes, limit {limits.max_body_bytes}",
                                 {"limit": "max_body_bytes", "max": limits.max_body_bytes})
    try:
        text = body if isinstance(body, str) else body.decode("utf-8")
    except UnicodeDecodeError:
        return _whole_body_error(PARSE_ERROR, "Parse error: body is not UTF-8")
    if compute_depth(text) > limits.max_json_depth:
        return _whole_body_error(INVALID_REQUEST, f"request nested deeper than {limits.max_json_depth} levels",
                                 {"limit": "max_json_depth", "max": limits.max_json_depth})
    try:
        value = _decoder.decode(text)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).split(";")[0]  # CPython's int-digits message goes on about sys.set_int_max_str_digits
        return _whole_body_error(PARSE_ERROR, f"Parse error: {reason}")
    if not isinstance(value, list):
        return Message((validate_request(value),), is_batch=False)
    if not value:
        return _whole_body_error(INVALID_REQUEST, "Invalid Request: empty batch")
    if len(value) > limits.max_batch_length:
        return _whole_body_error(
            INVALID_REQUEST, f"batch too large: {len(value)} requests, limit {limits.max_batch_length}",
            {"limit": "max_batch_length", "max": limits.max_batch_length})
    return Message(tuple(validate_request(entry) for entry in value), is_batch=True)


def is_valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return value is None or isinstance(value, (str, int))


def validate_request(value: Any) -> Request | InvalidEntry:
    """One Request object, validated exactly; anything else becomes an InvalidEntry (-32600)."""
    if not isinstance(value, dict):
        return InvalidEntry(RpcError(INVALID_REQUEST, "Invalid Request: a request must be an object"))
    if "id" in value and not is_valid_id(value["id"]):
        return InvalidEntry(RpcError(INVALID_REQUEST, "Invalid Request: id must be a string, an integer or null"))
    request_id = value.get("id")

    def invalid(reason: str) -> InvalidEntry:
        return InvalidEntry(RpcError(INVALID_REQUEST, f"Invalid Request: {reason}"), request_id)

    if value.get("jsonrpc") != "2.0":
        return invalid('jsonrpc must be the string "2.0"')
    extra = sorted(set(value) - _REQUEST_MEMBERS)
    if extra:
        return invalid(f"unexpected member {extra[0]!r}")
    method = value.get("method")
    if not isinstance(method, str):
        return invalid("method must be a string")
    params = value.get("params")
    if "params" in value and not isinstance(params, (list, dict)):
        return invalid("params must be an array or an object")
    return Request(method, params, request_id, is_notification="id" not in value)


# --- encoding -------------------------------------------------------------------------------------------------


def _encode_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (tuple, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: Any) -> str:
    """Compact JSON of a result. Bytes become lowercase hex without 0x; floats raise ValueError."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=_encode_default)
    if _FLOAT_IN_JSON.search(_STRING.sub("", text)):
        raise ValueError("floats are never sent; return integers or decimal strings")
    return text


def encode_result(request_id: Id, result_json: str) -> str:
    return f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},"result":{result_json}}}'


def encode_error(request_id: Id, error: RpcError) -> str:
    """The error response; `data` that is not JSON without floats is left out rather than sent."""
    try:
        body = encode_json(error.to_json())
    except (TypeError, ValueError):
        body = encode_json({"code": int(error.code), "message": str(error.message)})
    return f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},"error":{body}}}'


# --- params ---------------------------------------------------------------------------------------------------


def find_float(value: Any, path: str) -> str | None:
    """Path of the first float literal inside `value` (depth-first, in order), or None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, FloatLiteral):
            return where
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


class ParamType:
    """Converts a JSON value into what the handler receives, or raises ParamError with `expected`."""

    expected = "a value"

    def __call__(self, value: Any) -> Any:
        if not self.accepts(value):
            raise ParamError(f"must be {self.expected}")
        return self.convert(value)

    def accepts(self, value: Any) -> bool:
        return True

    def convert(self, value: Any) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class Str(ParamType):
    max_length: int = 256

    @property
    def expected(self) -> str:
        return f"a string of at most {self.max_length} characters"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and len(value) <= self.max_length


@dataclass(frozen=True, slots=True)
class Int(ParamType):
    """A JSON integer (never a boolean) in [minimum, maximum]."""

    minimum: int = -(1 << 63)
    maximum: int = (1 << 63) - 1

    @property
    def expected(self) -> str:
        return f"an integer from {self.minimum} to {self.maximum}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.minimum <= value <= self.maximum


_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class UInt(ParamType):
    """A non-negative integer sent as a JSON integer or a canonical decimal string ("0", "42"); heights, amounts."""

    maximum: int = (1 << 64) - 1

    @property
    def expected(self) -> str:
        return f"a non-negative integer or decimal string, at most {self.maximum}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, str):
            if len(value) > len(str(self.maximum)) or not _DECIMAL.fullmatch(value):
                return False
            value = int(value)
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= self.maximum

    def convert(self, value: Any) -> int:
        return int(value)


_HEX = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2})*)")


@dataclass(frozen=True, slots=True)
class Hex(ParamType):
    """Bytes sent as hex (either case, optional 0x); `length` in bytes, or at most `max_length` bytes."""

    length: int | None = None
    max_length: int = 1 << 20

    @property
    def expected(self) -> str:
        size = f"{self.length} bytes" if self.length is not None else f"at most {self.max_length} bytes"
        return f"a hex string of {size}"

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str) or len(value) > 2 * self.max_length + 2:
            return False
        match = _HEX.fullmatch(value)
        if match is None:
            return False
        size = len(match.group(1)) // 2
        return size == self.length if self.length is not None else size <= self.max_length

    def convert(self, value: str) -> bytes:
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)


@dataclass(frozen=True, slots=True)
class Bool(ParamType):
    expected = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class OneOf(ParamType):
    choices: tuple[str, ...] = ()

    def __init__(self, *choices: str) -> None:
        object.__setattr__(self, "choices", tuple(choices))

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices


@dataclass(frozen=True, slots=True)
class Object(ParamType):
    expected = "an object"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)


@dataclass(frozen=True, slots=True)
class Array(ParamType):
    expected = "an array"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list)


@dataclass(frozen=True, slots=True)
class AnyValue(ParamType):
    """Any JSON value except a float (checked for every parameter before its type runs)."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Callable[[Any], Any]
    required: bool = True
    default: Any = None


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler may see: the injected read-only views, the caller's rate-limit key, its WebSocket session."""

    views: Any
    peer: str = ""
    session: Any = None


Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A handler and its declared params. With `extra_params`, unknown named params are passed as `extra: dict`."""

    handler: Handler
    params: tuple[Param, ...] = ()
    extra_params: bool = False

    def __init__(self, handler: Handler, *params: Param, extra_params: bool = False) -> None:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate param names in {names}")
        object.__setattr__(self, "handler", handler)
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "extra_params", extra_params)


def _invalid_params(message: str, param: str | None = None) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {message}", {"param": param} if param else None)


def bind_params(route: Route, params: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for the handler, or RpcError(-32602) naming the offending parameter."""
    declared = route.params
    if params is None:
        given: dict[str, Any] = {}
    elif isinstance(params, list):
        if len(params) > len(declared):
            raise _invalid_params(f"too many params: {len(params)} given, at most {len(declared)} accepted")
        given = {p.name: v for p, v in zip(declared, params)}
    else:
        given = dict(params)
    kwargs: dict[str, Any] = {}
    for param in declared:
        if param.name not in given:
            if param.required:
                raise _invalid_params(f"missing required param {param.name!r}", param.name)
            kwargs[param.name] = param.default
            continue
        kwargs[param.name] = convert_param(param.name, param.type, given.pop(param.name))
    if given and not route.extra_params:
        name = sorted(given)[0]
        raise _invalid_params(f"unknown param {name!r}", name)
    if route.extra_params:
        where = find_float(given, "")
        if where is not None:
            raise _float_param(where.lstrip("."))
        kwargs["extra"] = given
    return kwargs


def _float_param(where: str) -> RpcError:
    return _invalid_params(f"{where}: floats are not accepted; send a decimal string or an integer", where)


def convert_param(name: str, kind: Callable[[Any], Any], value: Any) -> Any:
    """Run one parameter type; floats anywhere inside the value and ParamError become -32602 naming `name`."""
    where = find_float(value, name)
    if where is not None:
        raise _float_param(where)
    try:
        return kind(value)
    except ParamError as exc:
        raise _invalid_params(f"{name}: {exc}", name) from None


# --- dispatch -------------------------------------------------------------------------------------------------


Admit = Callable[[], RpcError | None]


Observe = Callable[[str, int], None]


def _admit_all() -> RpcError | None:
    return None


@dataclass(frozen=True, eq=False)
class Router:
    """An immutable route table: method name -> Route. The node builds one over its read-only views."""

    routes: Mapping[str, Route] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, route in self.routes.items():
            if not isinstance(name, str) or not name or name.startswith("rpc."):
                raise ValueError(f"invalid method name {name!r} (names starting with 'rpc.' are reserved)")
            if not isinstance(route, Route):
                raise TypeError(f"route {name!r} must be a Route")
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))

    def with_routes(self, more: Mapping[str, Route]) -> "Router":
        """A new Router with `more` added; a name defined twice is a ValueError."""
        clash = sorted(set(self.routes) & set(more))
        if clash:
            raise ValueError(f"method {clash[0]!r} is already routed")
        return Router({**self.routes, **more})

    async def handle(
        self, body: bytes | str, ctx: CallContext, limits: ParseLimits = ParseLimits(),
        admit: Admit = _admit_all, observe: Observe | None = None,
    ) -> str | None:
        """Parse and dispatch one body; the response text, or None when only notifications were sent."""
        return await self.dispatch(parse_message(body, limits), ctx, admit, observe)

    async def dispatch(
        self, message: Message, ctx: CallContext, admit: Admit = _admit_all, observe: Observe | None = None,
    ) -> str | None:
        """Run every entry in order. `admit()` is asked once per entry; an RpcError it returns is the answer.

        `observe(method, code)` is told the outcome of every entry: `code` is 0 for a result, else the error
        code; `method` is a routed name, "unknown" for any other name, "invalid" for an invalid entry.
        """
        answers = []
        for entry in message.entries:
            code, answer = await self.answer(entry, ctx, admit)
            if observe is not None:
                observe(self.get_method_label(entry), code)
            if not (isinstance(entry, Request) and entry.is_notification):
                answers.append(answer)
        if not answers:
            return None
        return "[" + ",".join(answers) + "]" if message.is_batch else answers[0]

    def get_method_label(self, entry: Request | InvalidEntry) -> str:
        """A bounded label for metrics: never a client-chosen string that is not routed."""
        if isinstance(entry, InvalidEntry):
            return "invalid"
        return entry.method if entry.method in self.routes else "unknown"

    async def answer(
        self, entry: Request | InvalidEntry, ctx: CallContext, admit: Admit = _admit_all,
    ) -> tuple[int, str]:
        """(0 or the error code, the encoded response); the caller drops the response of a notification."""
        refusal = admit()
        if refusal is not None:
            return refusal.code, encode_error(entry.id, refusal)
        if isinstance(entry, InvalidEntry):
            return entry.error.code, encode_error(entry.id, entry.error)
        try:
            result_json = encode_json(await self.call(entry, ctx))
        except RpcError as error:
            return error.code, encode_error(entry.id, error)
        except Exception:
            log.exception("rpc method %r failed", entry.method)
            return INTERNAL_ERROR, encode_error(entry.id, RpcError(INTERNAL_ERROR, "Internal error"))
        return 0, encode_result(entry.id, result_json)

    async def call(self, request: Request, ctx: CallContext) -> Any:
        """Bind params and run the handler; raises RpcError for the client, anything else is a handler bug."""
        route = self.routes.get(request.method)
        if route is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {request.method[:100]!r}")
        kwargs = bind_params(route, request.params)
        try:
            result = route.handler(ctx, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except ParamError as exc:
            raise _invalid_params(str(exc)) from None
        return result
