"""Test harness: a chain on the minimal genesis with funded, deterministic keys."""

from genesis import minimal_genesis, validate_genesis
from stf.block import BlockResult, apply_block, make_block
from stf.crypto import PrivateKey
from stf.state import State, initialize_state
from stf.tx import Action, sign_transaction

USD, BTC, ETH = 0, 1, 2
BTC_USD, ETH_USD = 0, 1
FUNDED_USD = 10**12          # one million dollars in micro-dollars
FUNDED_BTC = 10**9           # ten BTC in satoshi
FUNDED_ETH = 10**10          # one hundred ETH


def make_key(index: int) -> PrivateKey:
    return PrivateKey(index.to_bytes(32, "big"))


class Chain:
    """A state plus helpers to sign transactions and apply blocks one second apart."""

    def __init__(
        self, accounts: int = 4, faucet: bool = False, validators: dict[int, int] | None = None,
        market_overrides: dict[int, dict] | None = None, **params,
    ) -> None:
        """`validators` maps a key index to its power; `market_overrides` adds fields to a spot market."""
        self.keys = [make_key(i + 1) for i in range(accounts)]
        balances = [(k.address.hex(), a, n) for k in self.keys for a, n in ((USD, FUNDED_USD), (BTC, FUNDED_BTC), (ETH, FUNDED_ETH))]
        doc = minimal_genesis(balances=balances, faucet=faucet, **params)
        doc["validators"] = [{"address": self.keys[i].address.hex(), "power": p} for i, p in (validators or {}).items()]
        for market_id, fields in (market_overrides or {}).items():
            doc["spot_markets"][market_id].update(fields)
        self.genesis = validate_genesis(doc)
        self.state: State = initialize_state(self.genesis)
        self.time_ms = self.genesis.genesis_time_ms
        self.next_nonce = self.time_ms

    def tx(self, key: PrivateKey, *actions: Action, account: bytes | None = None, nonce: int | None = None) -> bytes:
        if nonce is None:
            self.next_nonce += 1
            nonce = self.next_nonce
        return sign_transaction(key, self.state.params.chain_id, nonce, list(actions), account)

    def block(self, *txs: bytes, advance_ms: int = 1000) -> BlockResult:
        self.time_ms += advance_ms
        if self.next_nonce < self.time_ms:
            self.next_nonce = self.time_ms
        return apply_block(self.state, make_block(self.state, self.time_ms, list(txs)))

    def run(self, key: PrivateKey, *actions: Action, account: bytes | None = None) -> BlockResult:
        """One transaction in its own block."""
        return self.block(self.tx(key, *actions, account=account))

    def balance(self, key_or_address, asset: int) -> int:
        address = getattr(key_or_address, "address", key_or_address)
        account = self.state.accounts.get(address)
        return 0 if account is None else account.balances.get(asset, 0)

    def held(self, key_or_address, asset: int) -> int:
        address = getattr(key_or_address, "address", key_or_address)
        account = self.state.accounts.get(address)
        return 0 if account is None else account.holds.get(asset, 0)
