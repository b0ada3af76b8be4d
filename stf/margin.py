"""Pure margin formulas of perpetual positions and orders, on precomputed market data (docs/RISK.md §2).

No state is changed here. `compute_maintenance` is `stf.perp_math.compute_maintenance_margin` on the market's
precomputed scale, rates and deductions (the tiers are fixed between parameter changes), so the per-account
margin summaries that run on every perp order stay cheap.
"""

from bisect import bisect_right

from stf.params import PerpMarketParams
from stf.units import compute_fee_bound_per_lot

TRANSFER_MARGIN_BPS = 1_000  # a transfer out must leave equity >= 10 % of the position notional


def compute_order_margin(params: PerpMarketParams, leverage: int, price: int, size_lots: int) -> int:
    """Margin a resting perp order reserves: its notional over the leverage, rounded up, plus the most its fills
    can be charged in fees (the higher fee rate, rounded up per lot)."""
    notional = price * size_lots
    fee_bound = compute_fee_bound_per_lot(price, max(params.maker_fee_bps, params.taker_fee_bps))
    return -((-notional) // leverage) + size_lots * fee_bound


def compute_initial(notional: int, leverage: int) -> int:
    """Initial margin of a notional >= 0 at leverage: rounded up."""
    return -((-notional) // leverage)


def compute_maintenance(market, notional: int) -> int:
    """Maintenance margin of notional >= 0 in `market` (a perp Market with precomputed tiers), rounded up."""
    tier = bisect_right(market.mm_bounds, notional) - 1
    return -((market.mm_deductions[tier] - notional * market.mm_rates[tier]) // market.margin_scale)


def compute_max_leverage(params: PerpMarketParams, notional: int) -> int:
    """The max leverage of the tier that `notional` falls in."""
    tiers = params.margin_tiers
    return tiers[bisect_right([bound for bound, _ in tiers], notional) - 1][1]
