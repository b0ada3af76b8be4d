"""Authenticated, encrypted P2P transport among validators and full nodes.

Modules, inside out (each docstring states its wire format or contract exactly):

- `frames`     sans-IO: sealed, length-prefixed msgpack messages with per-direction counter nonces
- `handshake`  sans-IO: mutual Ed25519 authentication by node key, X25519 + HKDF-SHA256 session keys
- `gossip`     sans-IO: message types, dedup by hash, validator-only consensus messages, proposal parts
- `bans`       node ids refused until a time on an injected clock
- `errors`     one typed error per rejection rule, each with a stable `code`
- `connection` thin asyncio loops: `open_connection`, `serve`, `Peer` (one TaskGroup per connection,
               bounded send and receive queues)
- `relay`      the async loop joining peers to the gossip rules
- `dialer`     `keep_connected`: reconnect to a known peer with capped exponential backoff
- `switch`     one node's network: listener, persistent peers, one connection per node id, gossip
"""
