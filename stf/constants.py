"""Protocol constants: fixed by the protocol version, the same on every chain. Tunables live in genesis."""

PROTOCOL_VERSION = 1
TX_DOMAIN_TAG = b"kabuto/tx/v1"
ADDRESS_LEN = 20
PUBKEY_LEN = 32
SIGNATURE_LEN = 64
HASH_LEN = 32
MAX_CHAIN_ID_LEN = 50
MAX_TX_BYTES = 16_384
MAX_ACTIONS_PER_TX = 64
MAX_WITHDRAW_DESTINATION_LEN = 64
MAX_BLOCK_TXS = 20_000
MAX_BLOCK_BYTES = 32 << 20
