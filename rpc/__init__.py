"""The JSON-RPC 2.0 and WebSocket server over read-only views that the node injects.

- `rpc.jsonrpc`: sans-IO parsing, the route table (`Router`, `Route`, `Param` and its types), error codes.
- `rpc.subscriptions`: the publish/subscribe hub, per-connection bounded send buffers, WebSocket close codes.
- `rpc.limits`: per-address token buckets and connection caps on an injected clock.
- `rpc.config`: `RpcConfig`, every limit and timeout with its default.
- `rpc.server`: `make_app(router, views, config, *, hub, submitter, ...)`, the aiohttp application.
- `rpc.views`: `ChainView`, the read-only view the node implements, and `InMemoryChainView`.
- `rpc.methods`: `make_router(view)`, the exchange queries (status, book, account, proofs, blocks, fills, ...)
  and the JSON shapes they share with the channels.
- `rpc.channels`: `make_channels()` (book, blocks, block_diffs, trades, account, with `from_height` replay)
  and `publish_block(hub, view, block, result)`, the node's one call after each committed block.
- `rpc.submit`: the `TxSubmitter` protocol the node implements (`SubmitResult`) and `broadcast_tx_async`,
  `broadcast_tx_sync`, `broadcast_tx_commit`.
- `rpc.bookfeed`: the per-market L2 feed (seq, prev_seq, CRC32 checksum of the top levels) and `LocalBook`,
  the client side that applies it and detects gaps and mismatches.
- `rpc.client`: the client SDK (wallet and signing, HTTP client, WebSocket streams); see its docstring.

Importing `rpc` imports none of them, so a client needs neither aiohttp nor prometheus_client (the SDK in
`rpc.client` needs aiohttp).
`rpc` may import `stf` (types, codec) but never `node` or `consensus` (tests/test_layering.py).
"""
