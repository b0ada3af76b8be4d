"""Authenticated, encrypted P2P transport: sans-IO handshake and framing, thin asyncio connections, bans.

Layers, inside out: `frames` (sealed length-prefixed msgpack messages), `handshake` (node-key authentication and
session keys), `bans` (who is refused, until when), `connection` (asyncio streams, one TaskGroup per peer).
"""
