"""The Python client SDK for wallets and bots: sign, submit, query and stream (docs/API.md §9).

- `rpc.client.wallet`: `Wallet` (an Ed25519 key from a 32-byte seed, for its own account or as an agent),
  `NonceSource` (strictly increasing millisecond nonces) and a builder for every action of docs/PROTOCOL.md §5.
- `rpc.client.client`: `KabutoClient`, JSON-RPC over HTTP with typed helpers; `submit_and_wait`; account
  proofs verified with `stf/proof.py`.
- `rpc.client.stream`: `StreamClient` over WebSocket with reconnect and resubscribe, `BookStream` (a local
  L2 book that checks `seq` and checksums and resyncs by itself) and `AccountStream`.

The SDK imports `stf` for encoding, signing and proofs, and aiohttp for the transport; never the node.
"""

from rpc.client.client import (
    AccountProof, Committed, KabutoClient, ProofError, RpcCallError, Status, TxRejected, parse_account_proof,
)
from rpc.client.stream import AccountStream, BookStream, StreamClient
from rpc.client.wallet import (
    NonceSource, SignedTx, Wallet, approve_agent, cancel, cancel_all, cancel_by_client_id, cancel_trigger,
    collateral_transfer, faucet, govern, isolated_margin, market_order, modify, oracle_price, place, place_trigger,
    revoke_agent, schedule_cancel, set_leverage, transfer, withdraw,
)

__all__ = [
    "AccountProof", "Committed", "KabutoClient", "ProofError", "RpcCallError", "Status", "TxRejected",
    "parse_account_proof", "AccountStream", "BookStream", "StreamClient", "NonceSource", "SignedTx", "Wallet",
    "approve_agent", "cancel", "cancel_all", "cancel_by_client_id", "faucet", "market_order", "modify",
    "oracle_price", "place", "revoke_agent", "schedule_cancel", "transfer", "withdraw", "collateral_transfer",
    "set_leverage", "isolated_margin", "place_trigger", "cancel_trigger", "govern",
]
