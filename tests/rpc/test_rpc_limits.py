"""rpc/limits.py and rpc/config.py on a virtual clock: token buckets, connection caps, client keys, config checks."""

import pytest

from rpc.config import RpcConfig
from rpc.jsonrpc import LIMIT_EXCEEDED
from rpc.limits import ConnectionLimiter, RateLimiter, get_client_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.try_acquire("a") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert [limiter.try_acquire("a") for _ in range(2)] == [True, False]
    clock.now += 100.0  # refills to the burst, not beyond
    assert [limiter.try_acquire("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.refused == 3


def test_refused_calls_take_no_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.try_acquire("a")
    for _ in range(10):
        assert not limiter.try_acquire("a")
    clock.now += 1.0
    assert limiter.try_acquire("a")


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock())
    assert limiter.try_acquire("a") and not limiter.try_acquire("a")
    assert limiter.try_acquire("b")


def test_has_token_does_not_spend() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock())
    assert limiter.has_token("a") and limiter.has_token("a")
    assert limiter.try_acquire("a") and not limiter.has_token("a")


def test_admit_error_names_the_limit() -> None:
    limiter = RateLimiter(rate=5.0, burst=1, clock=FakeClock())
    assert limiter.admit("a") is None
    error = limiter.admit("a")
    assert error.code == LIMIT_EXCEEDED and error.data == {"limit": "requests_per_second_per_ip", "max": 5}
    assert RateLimiter(rate=0.5, burst=1, clock=FakeClock()).rate == 0.5


def test_fractional_rate_is_sent_as_a_decimal_string() -> None:
    limiter = RateLimiter(rate=0.5, burst=1, clock=FakeClock())
    limiter.try_acquire("a")
    assert limiter.admit("a").data["max"] == "0.5"


def test_tracked_keys_are_bounded_least_recently_used_first() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock(), max_tracked=2)
    limiter.try_acquire("a")
    limiter.try_acquire("b")
    limiter.try_acquire("a")  # refused, but touches "a"
    limiter.try_acquire("c")  # evicts "b"
    assert not limiter.has_token("a") and limiter.has_token("b") and not limiter.has_token("c")


def test_connection_caps_total_and_per_key() -> None:
    caps = ConnectionLimiter(max_total=3, max_per_key=2)
    assert caps.try_open("a") is None and caps.try_open("a") is None
    refused = caps.try_open("a")
    assert refused.code == LIMIT_EXCEEDED and refused.data == {"limit": "max_connections_per_ip", "max": 2}
    assert caps.try_open("b") is None
    refused = caps.try_open("c")
    assert refused.data == {"limit": "max_connections", "max": 3}
    caps.close("a")
    assert caps.try_open("c") is None
    assert caps.total == 3 and caps.get_open("a") == 1 and caps.refused == 2


@pytest.mark.parametrize(("host", "key"), [
    ("127.0.0.1", "127.0.0.1"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:10.0.0.1", "10.0.0.1"),
    ("fe80::1%eth0", "fe80::/64"),
    (None, "unknown"),
    ("not-an-ip", "not-an-ip"),
])
def test_client_key(host: str | None, key: str) -> None:
    assert get_client_key(host) == key


@pytest.mark.parametrize("field", ["max_body_bytes", "send_queue_messages", "requests_per_second_per_ip"])
@pytest.mark.parametrize("value", [0, -1, True, "10"])
def test_config_refuses_non_positive_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RpcConfig(**{field: value})


def test_config_refuses_fractional_counts() -> None:
    with pytest.raises(ValueError, match="max_batch_length"):
        RpcConfig(max_batch_length=2.5)
    assert RpcConfig(requests_per_second_per_ip=0.5).parse_limits.max_batch_length == 100
