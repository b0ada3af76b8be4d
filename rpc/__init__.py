"""The JSON-RPC 2.0 and WebSocket server over read-only views that the node injects (DESIGN §6).

- `rpc.jsonrpc`: sans-IO parsing, the route table (`Router`, `Route`, `Param` and its types), error codes.
- `rpc.subscriptions`: the publish/subscribe hub, per-connection bounded send buffers, WebSocket close codes.
- `rpc.limits`: per-address token buckets and connection caps on an injected clock.
- `rpc.config`: `RpcConfig`, every limit and timeout with its default.
- `rpc.server`: `make_app(router, views, config, ...)`, the aiohttp application.

Importing `rpc` imports none of them, so a client needs neither aiohttp nor prometheus_client.
`rpc` may import `stf` (types, codec) but never `node` or `consensus` (tests/test_layering.py).
"""
