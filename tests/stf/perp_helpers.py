"""Test harness for perpetual markets: a chain on the perp preset whose first key is the only validator (so
its oracle submissions alone set the oracle), with every account's USD moved into its cross margin on demand."""

import hashlib

from genesis import perp_genesis, validate_genesis
from genesis.presets import INSURANCE_ACCOUNT
from stf.block import BlockResult, apply_block, make_block
from stf.perp_math import RATE_SCALE
from stf.positions import compute_cross_summary
from stf.state import State, initialize_state
from stf.tx import CollateralTransfer, MarketOrder, OraclePrice, PlaceOrder, SetLeverage

from stf_helpers import FUNDED_USD, USD, Chain, make_key

BTC_PERP, ETH_PERP = 10, 11
INSURANCE = bytes.fromhex(INSURANCE_ACCOUNT)
BTC_PRICE = 10_000_000  # $100,000 per BTC = $10 per lot of 0.0001 BTC, in micro-dollars
ETH_PRICE = 4_000_000   # $4,000 per ETH = $4 per lot of 0.001 ETH


class PerpChain(Chain):
    """Key 0 is the validator (it feeds the oracle); keys 1.. trade. `perp_overrides` replaces fields of a perp
    market by id; `insurance` funds the insurance fund's cross margin at genesis (through a balance)."""

    def __init__(self, accounts: int = 4, perp_overrides: dict[int, dict] | None = None, insurance: int = 0,
                 governance: tuple[list[int], int] | None = None, **params) -> None:
        self.keys = [make_key(i + 1) for i in range(accounts)]
        balances = [(k.address.hex(), USD, FUNDED_USD) for k in self.keys]
        if insurance:
            balances.append((INSURANCE_ACCOUNT, USD, insurance))
        gov = None if governance is None else ([self.keys[i].address.hex() for i in governance[0]], governance[1])
        doc = perp_genesis(balances=balances, validators=[(self.keys[0].address.hex(), 1)], governance=gov, **params)
        for market in doc["perp_markets"]:
            market.update((perp_overrides or {}).get(market["id"], {}))
        self.genesis = validate_genesis(doc)
        self.state: State = initialize_state(self.genesis)
        self.time_ms = self.genesis.genesis_time_ms
        self.next_nonce = self.time_ms
        self.oracle = {BTC_PERP: BTC_PRICE, ETH_PERP: ETH_PRICE}
        self.oracle_hashes: set[bytes] = set()
        if insurance:
            fund = self.state.accounts[INSURANCE]
            fund.balances.pop(USD)
            fund.collateral = insurance
            self.state.dirty_accounts[INSURANCE] = None
            from stf.state import commit_entries
            commit_entries(self.state)

    def oracle_tx(self, **prices: int) -> bytes:
        self.oracle.update({BTC_PERP if k == "btc" else ETH_PERP: v for k, v in prices.items()})
        wire = self.tx(self.keys[0], OraclePrice(tuple(sorted(self.oracle.items()))))
        self.oracle_hashes.add(hashlib.sha256(wire).digest())
        return wire

    def codes(self, result: BlockResult) -> list[int]:
        """The result codes of a block's actions, leaving out the validator's oracle transactions."""
        return [r.code for receipt in result.receipts if receipt.tx_hash not in self.oracle_hashes
                for r in receipt.results]

    def block(self, *txs: bytes, advance_ms: int = 1000, oracle: bool = True) -> BlockResult:
        """A block that also carries the validator's current oracle prices (so the oracle stays fresh)."""
        if oracle:
            txs = (*txs, self.oracle_tx())
        return super().block(*txs, advance_ms=advance_ms)

    def deposit(self, *keys, amount: int = FUNDED_USD) -> BlockResult:
        return self.block(*(self.tx(k, CollateralTransfer(amount, True)) for k in keys))

    def position(self, key_or_address, market: int = BTC_PERP):
        address = getattr(key_or_address, "address", key_or_address)
        account = self.state.accounts.get(address)
        return None if account is None else account.positions.get(market)

    def size(self, key_or_address, market: int = BTC_PERP) -> int:
        position = self.position(key_or_address, market)
        return 0 if position is None else position.size_lots

    def collateral(self, key_or_address) -> int:
        address = getattr(key_or_address, "address", key_or_address)
        account = self.state.accounts.get(address)
        return 0 if account is None else account.collateral

    def summary(self, key) -> tuple[int, int, int, int]:
        return compute_cross_summary(self.state, self.state.accounts[key.address])

    def open_position(self, long_key, short_key, lots: int, price: int, market: int = BTC_PERP) -> None:
        """The short rests a limit sell, the long takes it: both end with `lots` at `price`."""
        result = self.block(
            self.tx(short_key, PlaceOrder(market, False, price, lots, 0, None, 0, False)),
            self.tx(long_key, MarketOrder(market, True, lots, price, None, False)),
        )
        assert self.codes(result) == [0, 0], result.receipts


__all__ = ["BTC_PERP", "ETH_PERP", "INSURANCE", "BTC_PRICE", "ETH_PRICE", "PerpChain", "RATE_SCALE",
           "SetLeverage", "apply_block", "make_block"]
