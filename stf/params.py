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
class PerpMarketParams:
    """A perpetual market, settled in the chain's collateral asset (`quote_asset`, docs/RISK.md).

    Prices are collateral atoms per lot (`tick_size` grid); `lot_size` is base atoms per lot of the underlying,
    for display only (no base asset moves). `margin_tiers` is ((lower notional bound, max leverage), ...);
    maintenance is half the initial margin at a tier's max leverage, with per-tier deductions. Funding rates are
    in billionths (`stf.perp_math.RATE_SCALE`): `funding_interest_rate` per 8 hours, `funding_clamp_rate`
    the clamp of (interest - premium), `funding_cap_hourly` the cap of the hourly rate; funding is paid every
    `funding_interval_ms`. `impact_notional` (collateral atoms) sizes the impact bid and ask; `mark_ema_ms` is
    the time constant of the book premium's EMA. `max_open_interest_lots` caps the long open interest (0: none).
    Liquidation closes at most `liquidation_chunk_notional` per position per block through the book, with
    reduce-only IOC orders limited to `liquidation_slippage_bps` from the mark, and charges
    `liquidation_fee_bps` of the closed notional to the insurance fund.
    """

    market_id: int
    symbol: str
    quote_asset: int
    tick_size: PriceQuote
    lot_size: Atoms
    min_size_lots: SizeLots
    maker_fee_bps: Bps
    taker_fee_bps: Bps
    fee_account: bytes
    price_band_bps: Bps
    oracle_max_age_ms: TimeMs
    margin_tiers: tuple[tuple[int, int], ...]
    default_leverage: int
    funding_interest_rate: int
    funding_clamp_rate: int
    funding_cap_hourly: int
    funding_interval_ms: TimeMs
    impact_notional: Atoms
    mark_ema_ms: TimeMs
    max_open_interest_lots: SizeLots
    liquidation_fee_bps: Bps
    liquidation_slippage_bps: Bps
    liquidation_chunk_notional: Atoms

    def to_fields(self) -> list:
        return [
            self.market_id, self.symbol.encode(), self.quote_asset, self.tick_size, self.lot_size,
            self.min_size_lots, self.maker_fee_bps, self.taker_fee_bps, self.fee_account, self.price_band_bps,
            self.oracle_max_age_ms, [list(t) for t in self.margin_tiers], self.default_leverage,
            self.funding_interest_rate, self.funding_clamp_rate, self.funding_cap_hourly, self.funding_interval_ms,
            self.impact_notional, self.mark_ema_ms, self.max_open_interest_lots, self.liquidation_fee_bps,
            self.liquidation_slippage_bps, self.liquidation_chunk_notional,
        ]

    @classmethod
    def from_fields(cls, f: list) -> "PerpMarketParams":
        return cls(f[0], f[1].decode(), *f[2:11], tuple(tuple(t) for t in f[11]), *f[12:])


@dataclass(frozen=True, slots=True)
class GovernanceParams:
    """Governance: an operation runs once `threshold` distinct `keys` (account addresses) approved it."""

    keys: tuple[bytes, ...] = ()
    threshold: int = 1


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
    collateral_asset: int = 0
    insurance_account: bytes = bytes(20)
    governance: GovernanceParams = GovernanceParams()


@dataclass(frozen=True, slots=True)
class GenesisConfig:
    params: ChainParams
    genesis_time_ms: TimeMs
    assets: tuple[AssetParams, ...]
    spot_markets: tuple[SpotMarketParams, ...]
    balances: tuple[tuple[bytes, int, Atoms], ...] = field(default=())
    validators: tuple[tuple[bytes, int], ...] = field(default=())
    perp_markets: tuple[PerpMarketParams, ...] = field(default=())
