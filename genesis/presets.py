"""Genesis presets: `minimal_genesis` for tests, `localnet_genesis` for scripts/localnet.

Units of the shipped markets (docs/PROTOCOL.md §Units): USD has 6 decimals (1 atom = 1 micro-dollar), BTC and ETH
8. BTC-USD: one lot = 0.00001 BTC (1,000 satoshi); price in micro-dollars per lot, so a BTC price of $100,000.0
is 1,000,000 per lot and one tick (1 micro-dollar per lot) is $0.10 per BTC. ETH-USD: one lot = 0.0001 ETH;
one tick (1 micro-dollar per lot) is $0.01 per ETH.
"""

from typing import Any

FEE_ACCOUNT = "fee0" * 10
INSURANCE_ACCOUNT = "1f00" * 10
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


def localnet_genesis(
    chain_id: str = "kabuto-localnet", balances: list[tuple[str, int, int]] = (),
    validators: list[tuple[str, int]] = (),
) -> dict:
    """The localnet chain: the minimal markets with the faucet on, so wallets can fund themselves. Given its
    validators (address hex, power), also the perp markets of `perp_markets()`, settled in USD (asset 0), with an
    insurance fund account left empty; perp markets need validators to feed their oracle, so a chain without
    validators has the spot markets only (node/home.py writes the validator set in)."""
    if not validators:
        return minimal_genesis(chain_id, balances, faucet=True)
    doc = minimal_genesis(chain_id, balances, faucet=True, collateral_asset=0, insurance_account=INSURANCE_ACCOUNT)
    doc["perp_markets"] = perp_markets()
    doc["validators"] = [{"address": address, "power": power} for address, power in validators]
    return doc


def perp_markets() -> list[dict]:
    """BTC-PERP (id 10) and ETH-PERP (id 11), settled in USD (asset 0).

    BTC-PERP: one lot = 0.0001 BTC; prices in micro-dollars per lot, so BTC at $100,000 is 10,000,000 per lot and
    one tick (100) is $1 per BTC. Tiers: 50x up to $500,000 of notional, 20x up to $2,000,000, then 10x.
    ETH-PERP: one lot = 0.001 ETH; ETH at $4,000 is 4,000,000 per lot; one tick (10) is $0.01 per ETH; 25x,
    then 10x from $1,000,000. Both: impact notional $10,000, funding hourly with 0.01 % interest per 8 hours,
    liquidation in chunks of at most $100,000 per block with a 0.5 % fee and 5 % slippage bound."""
    common = {
        "min_size_lots": 1, "maker_fee_bps": 1, "taker_fee_bps": 4, "fee_account": FEE_ACCOUNT,
        "oracle_max_age_ms": 60_000, "impact_notional": 10_000 * 10**6, "liquidation_chunk_notional": 100_000 * 10**6,
    }
    return [
        {"id": 10, "symbol": "BTC-PERP", "tick_size": 100, "lot_size": 10_000,
         "margin_tiers": [[0, 50], [500_000 * 10**6, 20], [2_000_000 * 10**6, 10]], **common},
        {"id": 11, "symbol": "ETH-PERP", "tick_size": 10, "lot_size": 100_000,
         "margin_tiers": [[0, 25], [1_000_000 * 10**6, 10]], **common},
    ]


def perp_genesis(
    chain_id: str = "kabuto-test", balances: list[tuple[str, int, int]] = (), validators: list[tuple[str, int]] = (),
    governance: tuple[list[str], int] | None = None, **params: Any,
) -> dict:
    """The minimal chain plus the two perp markets, USD as collateral, an insurance fund account, the given
    validators (perp markets need an oracle) and optionally governance keys with a threshold."""
    doc = minimal_genesis(chain_id, balances, collateral_asset=0, insurance_account=INSURANCE_ACCOUNT, **params)
    doc["perp_markets"] = perp_markets()
    doc["validators"] = [{"address": address, "power": power} for address, power in validators]
    if governance is not None:
        doc["governance"] = {"keys": governance[0], "threshold": governance[1]}
    return doc
