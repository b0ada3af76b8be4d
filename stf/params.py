"""Chain parameters and the genesis configuration the STF starts from.

These are the tunables of one chain: they come from the genesis document, which
`genesis/` parses and validates, and they never change inside a block. Node runtime settings (ports, timeouts)
live in the node's config and are never read here.
"""

from dataclasses import dataclass, field

from stf.units import Atoms, Bps, PriceQuote, SizeLots, TimeMs


@dataclass(frozen=True, slots=True)
class AssetParams:
    asset_id: int
    symbol: str
    decimals: int


@dataclass(frozen=True, slots=True)
class SpotMarketParams:
    """A spot market. `tick_size` is in quote atoms per lot; `lot_size` in base atoms per lot.

    `price_band_bps` > 0 is a circuit breaker: new orders must be priced within that many basis points of the
    oracle price, and while the oracle is stale (no aggregate newer than `oracle_max_age_ms`) new orders are
    refused; cancels always work. 0 turns the band off.
    """

    market_id: int
    symbol: str
    base_asset: int
    quote_asset: int
    tick_size: PriceQuote
    lot_size: Atoms
    min_size_lots: SizeLots
    maker_fee_bps: Bps
    taker_fee_bps: Bps
    fee_account: bytes
    price_band_bps: Bps = Bps(0)
    oracle_max_age_ms: TimeMs = TimeMs(60_000)


@dataclass(frozen=True, slots=True)
class ChainParams:
    chain_id: str
    nonce_set_size: int = 100
    nonce_window_past_ms: TimeMs = TimeMs(2 * 24 * 3_600_000)
    nonce_window_future_ms: TimeMs = TimeMs(24 * 3_600_000)
    max_open_orders_per_account: int = 1_000
    max_agents_per_account: int = 8
    faucet_enabled: bool = False
    faucet_max_atoms: Atoms = Atoms(0)


@dataclass(frozen=True, slots=True)
class GenesisConfig:
    params: ChainParams
    genesis_time_ms: TimeMs
    assets: tuple[AssetParams, ...]
    spot_markets: tuple[SpotMarketParams, ...]
    balances: tuple[tuple[bytes, int, Atoms], ...] = field(default=())
    validators: tuple[tuple[bytes, int], ...] = field(default=())
