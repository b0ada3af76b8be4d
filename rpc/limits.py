"""Admission limits per client address, sans-IO: time is an injected clock, nothing here sleeps or blocks.

Client address: the TCP peer's IPv4 address, or the /64 prefix of its IPv6 address (one host usually owns a
whole /64, so limiting single IPv6 addresses would limit nothing). `X-Forwarded-For` is not trusted: behind a
reverse proxy every client shares the proxy's address (a trusted-proxy setting is not implemented yet).

- `RateLimiter`: a token bucket per address holding at most `burst` tokens, refilled at `rate` tokens per
  second. Every JSON-RPC call costs one token (each entry of a batch, each WebSocket message's entries, and a
  body that does not parse). A call without a token is answered with -32005
  `{"limit": "requests_per_second_per_ip", "max": rate}` and not executed; notifications are dropped silently.
  At most `max_tracked` buckets are kept; beyond that the least recently used is forgotten (that address
  starts again with a full bucket, which is the state it would reach by waiting anyway).
- `ConnectionLimiter`: open WebSocket connections, in total and per address. Over either cap the upgrade is
  refused with HTTP 503 and a -32005 body naming `max_connections` or `max_connections_per_ip`. Plain HTTP
  requests are not counted (they are short; the rate limit bounds them).
- The subscription cap (`max_subscriptions_per_connection`) lives with the session in `rpc/subscriptions.py`;
  message size, batch length and depth are checked by the parser in `rpc/jsonrpc.py`.
"""

import ipaddress
from collections import OrderedDict
from collections.abc import Callable

from rpc.jsonrpc import RpcError, limit_exceeded

Clock = Callable[[], float]


def get_client_key(host: str | None) -> str:
    """The address a limit is counted against: IPv4 as is, IPv6 as its /64, anything unparsable verbatim."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """Token buckets keyed by client address; `clock()` returns seconds (monotonic)."""

    def __init__(self, rate: float, burst: int, clock: Clock, max_tracked: int = 65536) -> None:
        if rate <= 0 or burst < 1 or max_tracked < 1:
            raise ValueError("rate, burst and max_tracked must be positive")
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self.refused = 0

    def get_tokens(self, key: str) -> float:
        """Tokens available to `key` now (read-only)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        tokens, at = bucket
        return min(float(self.burst), tokens + max(0.0, self._clock() - at) * self.rate)

    def has_token(self, key: str) -> bool:
        return self.get_tokens(key) >= 1.0

    def try_acquire(self, key: str) -> bool:
        """Take one token for `key`; False (and nothing taken) when the bucket is empty."""
        tokens = self.get_tokens(key)
        now = self._clock()
        if tokens < 1.0:
            self._store(key, tokens, now)
            self.refused += 1
            return False
        self._store(key, tokens - 1.0, now)
        return True

    def admit(self, key: str) -> RpcError | None:
        """`try_acquire` as the router's admission check: None, or the -32005 error to answer with."""
        if self.try_acquire(key):
            return None
        return limit_exceeded(
            f"rate limit exceeded: at most {self.rate:g} calls per second per address", "requests_per_second_per_ip",
            int(self.rate) if float(self.rate).is_integer() else str(self.rate))

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_tracked:
            self._buckets.popitem(last=False)


class ConnectionLimiter:
    """Counts open connections in total and per address; `try_open` then `close` once for each success."""

    def __init__(self, max_total: int, max_per_key: int) -> None:
        self.max_total = max_total
        self.max_per_key = max_per_key
        self.total = 0
        self._per_key: dict[str, int] = {}
        self.refused = 0

    def try_open(self, key: str) -> RpcError | None:
        """Count one more connection for `key`, or return the -32005 error that refuses it."""
        if self.total >= self.max_total:
            self.refused += 1
            return limit_exceeded(
                f"too many connections: the server allows {self.max_total}", "max_connections", self.max_total)
        if self._per_key.get(key, 0) >= self.max_per_key:
            self.refused += 1
            return limit_exceeded(
                f"too many connections from {key}: at most {self.max_per_key}", "max_connections_per_ip",
                self.max_per_key)
        self.total += 1
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return None

    def close(self, key: str) -> None:
        count = self._per_key.get(key, 0)
        assert count > 0 and self.total > 0, "close without a matching try_open"
        self.total -= 1
        if count == 1:
            del self._per_key[key]
        else:
            self._per_key[key] = count - 1

    def get_open(self, key: str) -> int:
        return self._per_key.get(key, 0)
