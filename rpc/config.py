"""The RPC server's runtime configuration: every limit and timeout, with its default and what it bounds.

The node maps its TOML `[rpc]` table onto `RpcConfig` field by field; nothing in `rpc/` reads files or the
environment. Every limit, when hit, gives the client an error that names it (see `rpc/limits.py`).

| field                              | default | bounds                                                              |
|------------------------------------|---------|---------------------------------------------------------------------|
| `max_body_bytes`                   | 1 MiB   | an HTTP body (HTTP 413 + -32600), a WebSocket message (close 1009)  |
| `max_batch_length`                 | 100     | requests in one batch (-32600)                                      |
| `max_json_depth`                   | 32      | nesting of arrays and objects in one body (-32600)                  |
| `max_connections`                  | 1024    | open WebSockets in total (upgrade refused: HTTP 503 + -32005)       |
| `max_connections_per_ip`           | 16      | open WebSockets per client address (HTTP 503 + -32005)              |
| `max_subscriptions_per_connection` | 64      | live subscriptions on one WebSocket (-32005)                        |
| `requests_per_second_per_ip`       | 50      | sustained calls per client address, HTTP and WebSocket together     |
|                                    |         | (-32005)                                                            |
| `burst_per_ip`                     | 100     | calls a client address may make at once before the rate applies     |
| `max_tracked_ips`                  | 65536   | rate-limit buckets kept; the least recently used is forgotten       |
| `send_queue_messages`              | 1024    | frames waiting to be written to one WebSocket (close 4008 when full) |
| `ws_heartbeat_seconds`             | 20      | ping interval; no pong within half of it drops the peer (1006)      |
| `ws_close_timeout_seconds`         | 5       | from a close request to the end of the handshake; then abort        |
| `commit_timeout_seconds`           | 10      | longest wait of `broadcast_tx_commit` for inclusion (-32010)        |
| `max_pending_submissions`          | 1024    | `broadcast_tx_async` admissions running plus `broadcast_tx_commit`  |
|                                    |         | calls waiting, together (-32005)                                    |

A call is one entry of a batch: a batch of 10 costs 10 tokens. A body that fails to parse costs one.
"""

from dataclasses import dataclass, fields

from rpc.jsonrpc import ParseLimits


@dataclass(frozen=True, slots=True)
class RpcConfig:
    max_body_bytes: int = 1 << 20
    max_batch_length: int = 100
    max_json_depth: int = 32
    max_connections: int = 1024
    max_connections_per_ip: int = 16
    max_subscriptions_per_connection: int = 64
    requests_per_second_per_ip: float = 50.0
    burst_per_ip: int = 100
    max_tracked_ips: int = 65536
    send_queue_messages: int = 1024
    ws_heartbeat_seconds: float = 20.0
    ws_close_timeout_seconds: float = 5.0
    commit_timeout_seconds: float = 10.0
    max_pending_submissions: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"rpc config {f.name} must be a positive number, got {value!r}")
            if f.type in (int, "int") and not isinstance(value, int):
                raise ValueError(f"rpc config {f.name} must be an integer, got {value!r}")

    @property
    def parse_limits(self) -> ParseLimits:
        return ParseLimits(self.max_body_bytes, self.max_batch_length, self.max_json_depth)
