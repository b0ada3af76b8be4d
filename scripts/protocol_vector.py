"""Print the transaction test vector of docs/PROTOCOL.md §9, computed by the real code.

Usage: .venv/bin/python scripts/protocol_vector.py
The output is the body of the fenced `hex` block in docs/PROTOCOL.md; tests/stf/test_protocol_vector.py checks
that the document and the code agree.
"""

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genesis import minimal_genesis, validate_genesis  # noqa: E402
from stf import codec  # noqa: E402
from stf.block import BlockResult, apply_block, make_block  # noqa: E402
from stf.crypto import PrivateKey, compute_sign_bytes  # noqa: E402
from stf.events import Trade, encode_event  # noqa: E402
from stf.state import initialize_state  # noqa: E402
from stf.tx import TIF_GTC, PlaceOrder, sign_transaction  # noqa: E402

SEED = bytes([0x01] * 32)
SELLER_SEED = bytes([0x02] * 32)
CHAIN_ID = "kabuto-test"
NONCE = 1_767_225_601_000
ORDER = PlaceOrder(
    market=0, is_buy=True, price=1_000_000, size_lots=100, time_in_force=TIF_GTC, client_id=42,
    expires_at_ms=0, reduce_only=False,
)
ASK = PlaceOrder(
    market=0, is_buy=False, price=1_000_000, size_lots=100, time_in_force=TIF_GTC, client_id=None,
    expires_at_ms=0, reduce_only=False,
)


def execute_vector(wire: bytes) -> tuple[dict, BlockResult]:
    """The §9 scenario: block 1 rests the seller's ask, block 2 carries the vector transaction."""
    buyer, seller = PrivateKey(SEED), PrivateKey(SELLER_SEED)
    balances = [(buyer.address.hex(), 0, 200_000_000), (seller.address.hex(), 1, 100_000)]
    state = initialize_state(validate_genesis(minimal_genesis(chain_id=CHAIN_ID, balances=balances)))
    apply_block(state, make_block(state, NONCE, [sign_transaction(seller, CHAIN_ID, NONCE - 1, [ASK])]))
    return state, apply_block(state, make_block(state, NONCE + 1000, [wire]))


def compute_vector() -> dict[str, bytes]:
    key = PrivateKey(SEED)
    wire = sign_transaction(key, CHAIN_ID, NONCE, [ORDER])
    body, signature = codec.decode_canonical(wire, len(wire))
    _, result = execute_vector(wire)
    (trade,) = [e for e in result.events if isinstance(e, Trade)]
    return {
        "seed": SEED,
        "public_key": key.public_key,
        "address": key.address,
        "chain_id": CHAIN_ID.encode("ascii"),
        "body": body,
        "sign_bytes": compute_sign_bytes(CHAIN_ID, body),
        "signature": signature,
        "wire": wire,
        "tx_hash": hashlib.sha256(wire).digest(),
        "receipt": codec.encode(result.receipts[0].to_wire()),
        "trade_event": codec.encode(encode_event(trade)),
    }


if __name__ == "__main__":
    for name, value in compute_vector().items():
        print(f"{name}: {value.hex()}")
