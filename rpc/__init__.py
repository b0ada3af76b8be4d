"""The JSON-RPC 2.0 and WebSocket server over read-only views that the node injects.

- `rpc.jsonrpc`: sans-IO parsing, the route table (`Router`, `Route`, `Param` and its types), error codes.
- `rpc.subscriptions`: the publish/subscribe hub, per-connection bounded send buffers, WebSocket close codes.
- `rpc.limits`: per-address token buckets and connection caps on an injected clock.
- `rpc.config`: `RpcConfig`, every limit and timeout with its default.
- `rpc.server`: `make_app(router, views, config, ...)`, the aiohttp application.
- `rpc.views`: `ChainView`, the read-only view the node implements, and `InMemoryChainView`.
- `rpc.methods`: `make_router(view)`, the exchange methods (status, book, account, proofs, blocks, ...), and
  `make_channels()` for the book channel.
- `rpc.bookfeed`: the per-market L2 feed (seq, prev_seq, CRC32 checksum of the top levels) and `LocalBook`,
  the client side that applies it and detects gaps and mismatches.

Importing `rpc` imports none of them, so a client needs neither aiohttp nor prometheus_client.
`rpc` may import `stf` (types, codec) but never `node` or `consensus` (tests/test_layering.py).
"""
