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
MAX_ORACLE_PRICES_PER_ACTION = 64
# Consensus vote sign bytes, rebuilt by stf/evidence.py to check double-signing evidence (docs/CONSENSUS.md §3).
CONSENSUS_DOMAIN_TAG = b"kabuto/consensus/v1\x00"
VOTE_PREVOTE = 2
VOTE_PRECOMMIT = 3
