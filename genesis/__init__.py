"""The genesis document: schema, validation, loading and presets.

A genesis document is JSON (docs/PROTOCOL.md §Genesis). `load_genesis` turns it into the STF's
`GenesisConfig`, or raises `InvalidGenesis` naming the field and the reason. Amounts are integers or decimal
strings of integers (never floats); addresses are hex.
"""

from genesis.document import load_genesis, load_genesis_file, validate_genesis
from genesis.presets import localnet_genesis, minimal_genesis, perp_genesis

__all__ = [
    "load_genesis", "load_genesis_file", "validate_genesis", "minimal_genesis", "localnet_genesis", "perp_genesis",
]
