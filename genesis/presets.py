"""Genesis presets: `minimal_genesis` for tests, `localnet_genesis` for scripts/localnet.

Units of the shipped markets (docs/PROTOCOL.md §Units): USD has 6 decimals (1 atom = 1 micro-dollar), BTC and ETH
8. BTC-USD: one lot = 0.00001 BTC (1,000 satoshi); price in micro-dollars per lot, so a BTC price of $100,000.0
is 1,000,000 per lot and one tick (1 micro-dollar per lot) is $0.10 per BTC. ETH-USD: one lot = 0.0001 ETH;
one tick (1 micro-dollar per lot) is $0.01 per ETH.
"""

from typing import Any

FEE_ACCOUNT = "fee0" * 10
GENESIS_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def minimal_genesis(
    chain_id: str = "kabuto-test", balances: list[tuple[str, int, int]] = (), faucet: bool = False,
    **params: Any,
) -> dict:
    """A small chain for tests: USD, BTC, ETH and two spot markets (BTC-USD with a maker rebate)."""
    return {
        "chain_id": chain_id,
        "genesis_time_ms": GENESIS_TIME_MS,
        "params": {"faucet_enabled": faucet, "faucet_max_atoms": 10**15, **params},
        "assets": [
            {"id": 0, "symbol": "USD", "decimals": 6},
            {"id": 1, "symbol": "BTC", "decimals": 8},
            {"id": 2, "symbol": "ETH", "decimals": 8},
        ],
        "spot_markets": [
            {"id": 0, "symbol": "BTC-USD", "base_asset": 1, "quote_asset": 0, "tick_size": 1, "lot_size": 1000,
             "min_size_lots": 1, "maker_fee_bps": -1, "taker_fee_bps": 5, "fee_account": FEE_ACCOUNT},
            {"id": 1, "symbol": "ETH-USD", "base_asset": 2, "quote_asset": 0, "tick_size": 1, "lot_size": 10_000,
             "min_size_lots": 1, "maker_fee_bps": 2, "taker_fee_bps": 5, "fee_account": FEE_ACCOUNT},
        ],
        "balances": [{"address": a, "asset": asset, "amount": amount} for a, asset, amount in balances],
    }


def localnet_genesis(chain_id: str = "kabuto-localnet", balances: list[tuple[str, int, int]] = ()) -> dict:
    """The localnet chain: the minimal markets with the faucet on, so wallets can fund themselves."""
    return minimal_genesis(chain_id, balances, faucet=True)
