"""The pure risk math of perpetual futures: margin tiers, liquidation and bankruptcy prices, funding, mark price
and the auto-deleveraging (ADL) order. No state, no input or output: every function maps integers to integers.

Units (see stf.units and RISK.md in the docs folder):

| quantity                                   | unit                                                         |
|--------------------------------------------|--------------------------------------------------------------|
| size of a position                         | `SizeLots`, signed: long positive, short negative            |
| price (entry, oracle, mark, impact, trade) | `PriceQuote`, quote atoms per lot                            |
| notional, margin, equity, PnL, payments    | `Atoms` of the quote asset; notional = abs(size_lots) * price |
| rates (premium, funding, interest, clamp)  | billionths: an integer r means r times 10**-9 (`RATE_SCALE`) |
| funding index, EMA of the book premium     | quote atoms per lot times `RATE_SCALE` (nothing is lost)     |
| leverage                                   | a positive integer                                           |
| durations                                  | milliseconds                                                 |

Margin tiers are a tuple of (lower_notional_bound, max_leverage): first bound 0, bounds strictly ascending, max
leverage non-increasing. Maintenance rate of tier i is one over (2 * L_i). It is kept exact by scaling with
`compute_margin_scale` = 2 * lcm(L_0 .. L_n): the rate is the integer k_i = lcm // L_i over that scale, and the
per-tier deduction (which makes maintenance margin continuous across tier boundaries) is the integer
D_i = D_(i-1) + b_i * (k_i - k_(i-1)) over the same scale. Maintenance margin = div_ceil(N * k_i - D_i, scale).

Rounding. Python's `//` rounds toward minus infinity, so every signed division below says which way it goes.
- Margin requirements (initial, maintenance) round up.
- A funding payment is the ceiling of the signed amount: a trader's payment rounds up and a trader's receipt
  rounds toward zero, so the protocol never creates value (with balanced open interest, payments sum to >= 0).
- Premium samples, their time average, the 8-hour rate divided into hours, the EMA step and the EMA's price
  term round toward zero: symmetric, so a mirrored book gives the exactly negated value and neither side is
  favoured (the payment rounding already protects the protocol).
- Impact prices round away from the middle of the book (ask up, bid down), shrinking premiums symmetrically;
  the impact mid rounds down (prices are positive, so down is toward zero).
- A liquidation price is reported on the tick grid AWAY from the mark (long down, short up): the tick closest to
  the mark at which equity is strictly below maintenance. A bankruptcy price rounds to the atom TOWARD the mark
  (long up, short down), so closing at it never leaves the position's equity negative.

Approximation (the only one). The EMA step is implicit Euler for dE = (S - E) dt over tau:
E += (S - E) * dt // (tau + dt), i.e. the weight x over (1 + x) with x = dt over tau instead of 1 - exp(-x).
The weight error is 0 <= (1 - exp(-x)) - x over (1 + x) <= x**2 over 2 (and never above 0.2036), so for samples
within a band of width A the EMA stays within A * x_max * (1 + x_max) over 2 of the exact continuous EMA of the
same piecewise-constant samples, plus at most (1 + 1 over x_min) units of rounding (units of the EMA, which the
protocol keeps scaled by RATE_SCALE, so that term is below one atom). RISK.md in the docs folder has the derivation.
"""

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import total_ordering
from math import gcd, lcm

from stf.units import Atoms, PriceQuote, SizeLots, div_ceil

RATE_SCALE = 10**9
RATE_LIMIT = RATE_SCALE  # 100 %: the bound of every configured funding rate (interest, clamp, hourly cap)
FUNDING_HOURS_PER_PERIOD = 8
HOUR_MS = 3_600_000  # funding intervals are whole numbers of hours

MarginTiers = tuple[tuple[int, int], ...]
BookLevels = Sequence[tuple[int, int]]


def _div_toward_zero(numerator: int, denominator: int) -> int:
    """numerator over denominator rounded toward zero, for any numerator and denominator > 0."""
    assert denominator > 0
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def _div_ceil_signed(numerator: int, denominator: int) -> int:
    """numerator over denominator rounded up (toward plus infinity), for any numerator and denominator > 0."""
    assert denominator > 0
    return -((-numerator) // denominator)


# ---------------------------------------------------------------------------------------------------------------
# Margin tiers


def validate_margin_tiers(tiers: MarginTiers) -> None:
    """Raise ValueError unless tiers is a non-empty sequence of (lower_notional_bound, max_leverage) integer pairs
    with first bound 0, bounds strictly ascending, every max leverage >= 1 and max leverage non-increasing."""
    if len(tiers) == 0:
        raise ValueError("margin tiers: at least one tier is required")
    for index, tier in enumerate(tiers):
        if len(tier) != 2 or not all(type(value) is int for value in tier):
            raise ValueError(f"margin tiers: tier {index} must be a pair of integers (lower_bound, max_leverage)")
        if tier[1] < 1:
            raise ValueError(f"margin tiers: tier {index} max leverage {tier[1]} must be at least 1")
    if tiers[0][0] != 0:
        raise ValueError(f"margin tiers: the first lower bound must be 0, not {tiers[0][0]}")
    for index in range(1, len(tiers)):
        (previous_bound, previous_leverage), (bound, leverage) = tiers[index - 1], tiers[index]
        if bound <= previous_bound:
            raise ValueError(f"margin tiers: bound {bound} of tier {index} is not above the previous {previous_bound}")
        if leverage > previous_leverage:
            raise ValueError(f"margin tiers: max leverage {leverage} of tier {index} exceeds the previous "
                             f"{previous_leverage}; it must be non-increasing")


def compute_tier(tiers: MarginTiers, notional: Atoms) -> int:
    """Index of the tier containing notional >= 0: the last tier whose lower bound is <= notional."""
    assert notional >= 0
    return bisect_right([bound for bound, _ in tiers], notional) - 1


def compute_max_leverage(tiers: MarginTiers, notional: Atoms) -> int:
    """The highest leverage allowed at notional: the max leverage of its tier."""
    return tiers[compute_tier(tiers, notional)][1]


def validate_leverage(tiers: MarginTiers, notional: Atoms, leverage: int) -> None:
    """Raise ValueError unless 1 <= leverage <= the max leverage of notional's tier."""
    maximum = compute_max_leverage(tiers, notional)
    if not 1 <= leverage <= maximum:
        raise ValueError(f"leverage {leverage} is outside 1..{maximum} allowed at notional {notional}")


def compute_initial_margin(notional: Atoms, leverage: int) -> Atoms:
    """Initial margin of notional >= 0 at leverage >= 1: notional over leverage, rounded up."""
    return Atoms(div_ceil(notional, leverage))


def compute_margin_scale(tiers: MarginTiers) -> int:
    """The exact denominator of every maintenance rate and deduction: 2 * lcm of the tiers' max leverages."""
    return 2 * lcm(*(leverage for _, leverage in tiers))


def compute_maintenance_rates_scaled(tiers: MarginTiers) -> tuple[int, ...]:
    """Maintenance rate of each tier, one over (2 * L_i), as the exact integer lcm // L_i over the margin scale."""
    half_scale = compute_margin_scale(tiers) // 2
    return tuple(half_scale // leverage for _, leverage in tiers)


def compute_maintenance_deductions_scaled(tiers: MarginTiers) -> tuple[int, ...]:
    """Per-tier deduction D_i over the margin scale: D_0 = 0, D_i = D_(i-1) + b_i * (k_i - k_(i-1)).

    It makes N * k_i - D_i equal N * k_(i-1) - D_(i-1) at N = b_i, so maintenance is continuous in notional."""
    rates = compute_maintenance_rates_scaled(tiers)
    deductions = [0]
    for index in range(1, len(tiers)):
        deductions.append(deductions[-1] + tiers[index][0] * (rates[index] - rates[index - 1]))
    return tuple(deductions)


def compute_maintenance_margin(tiers: MarginTiers, notional: Atoms) -> Atoms:
    """Maintenance margin of notional >= 0: notional * rate - deduction of its tier, exact, rounded up."""
    tier = compute_tier(tiers, notional)
    rate, deduction = compute_maintenance_rates_scaled(tiers)[tier], compute_maintenance_deductions_scaled(tiers)[tier]
    return Atoms(div_ceil(notional * rate - deduction, compute_margin_scale(tiers)))


# ---------------------------------------------------------------------------------------------------------------
# Liquidation


def is_below_maintenance(equity: Atoms, maintenance: Atoms) -> bool:
    """Liquidatable: equity strictly below maintenance margin."""
    return equity < maintenance


def is_below_backstop(equity: Atoms, maintenance: Atoms) -> bool:
    """Backstop threshold: equity strictly below two thirds of maintenance margin, compared exactly."""
    return equity * 3 < maintenance * 2


def _solve_liquidation_in_tier(size_lots: int, cost: int, margin: int, scale: int, rate: int,
                               deduction: int) -> tuple[int, int]:
    """The exact p, as (numerator, denominator > 0), where margin + size * p - cost = abs(size) * p * rate
    over scale - deduction over scale (cost = size * entry, signed)."""
    if size_lots > 0:
        return ((cost - margin) * scale - deduction, size_lots * (scale - rate))
    quantity = -size_lots
    return ((margin - cost) * scale + deduction, quantity * (scale + rate))


def compute_liquidation_price(tiers: MarginTiers, size_lots: SizeLots, entry_price: PriceQuote, margin: Atoms,
                              tick_size: int) -> PriceQuote | None:
    """The tick closest to the mark at which the position is strictly below maintenance, or None for a long that
    no positive tick liquidates.

    Solves margin + size * (p - entry) = maintenance(abs(size) * p) exactly. Maintenance is convex and equal to
    the largest of the per-tier lines N * k_i - D_i, so a long is liquidated below the largest per-tier root and
    a short above the smallest: that root is the one of the tier at the liquidation notional, whatever the tier
    at entry. For an isolated position `margin` is its isolated margin; for cross it is the account equity
    without this position's unrealized PnL minus the maintenance of its other positions (valid while their
    prices hold), and may be negative. A long rounds down and a short up to the tick grid; a short's price is
    at least one tick."""
    assert size_lots != 0 and entry_price > 0
    return compute_liquidation_price_from_cost(tiers, size_lots, size_lots * entry_price, margin, tick_size)


def compute_liquidation_price_from_cost(tiers: MarginTiers, size_lots: SizeLots, cost: Atoms, margin: Atoms,
                                        tick_size: int) -> PriceQuote | None:
    """`compute_liquidation_price` for a position known by its signed cost basis (size times the average entry,
    which need not be a whole number of atoms per lot): the same roots with size * entry replaced by cost."""
    assert size_lots != 0 and tick_size > 0
    scale = compute_margin_scale(tiers)
    roots = [_solve_liquidation_in_tier(size_lots, cost, margin, scale, rate, deduction)
             for rate, deduction in zip(compute_maintenance_rates_scaled(tiers),
                                        compute_maintenance_deductions_scaled(tiers))]
    numerator, denominator = roots[0]
    for other_numerator, other_denominator in roots[1:]:
        other_is_higher = other_numerator * denominator > numerator * other_denominator
        if other_is_higher == (size_lots > 0):
            numerator, denominator = other_numerator, other_denominator
    if size_lots > 0:
        ticks = _div_ceil_signed(numerator, tick_size * denominator) - 1  # largest tick strictly below the root
        return PriceQuote(ticks * tick_size) if ticks >= 1 else None
    ticks = numerator // (tick_size * denominator) + 1  # floor, toward minus infinity: smallest tick above it
    return PriceQuote(max(ticks, 1) * tick_size)


def compute_bankruptcy_price(size_lots: SizeLots, entry_price: PriceQuote, margin: Atoms) -> PriceQuote | None:
    """The price where margin + size * (p - entry) = 0, rounded toward the mark to the atom (long up, short
    down, never below 0), so the position's equity at it is >= 0 and below abs(size) atoms. None for a long
    whose margin covers its whole entry notional (it cannot go bankrupt at a positive price)."""
    assert size_lots != 0 and entry_price > 0
    if size_lots > 0:
        numerator = size_lots * entry_price - margin
        return PriceQuote(div_ceil(numerator, size_lots)) if numerator > 0 else None
    quantity = -size_lots
    return PriceQuote(max(0, (quantity * entry_price + margin) // quantity))  # floor, toward minus infinity


# ---------------------------------------------------------------------------------------------------------------
# Funding


def validate_book_levels(levels: BookLevels, is_buy: bool) -> None:
    """Raise ValueError unless every level has price >= 1 and size >= 1, best first: asks (is_buy) strictly
    ascending, bids strictly descending."""
    for index, (price, size_lots) in enumerate(levels):
        if price < 1 or size_lots < 1:
            raise ValueError(f"book level {index}: price {price} and size {size_lots} must be positive")
        if index > 0 and (price <= levels[index - 1][0] if is_buy else price >= levels[index - 1][0]):
            raise ValueError(f"book level {index}: price {price} is not strictly worse than the level before")


def compute_impact_price(levels: BookLevels, impact_notional: Atoms, is_buy: bool) -> PriceQuote | None:
    """Average execution price of a market order of impact_notional > 0 quote atoms walking `levels` best first
    (asks to buy, bids to sell), filling fractions of a lot at the last level; None if the book cannot absorb it.

    Exactly impact_notional over lots filled = impact_notional * p over (full_lots * p + remainder), where p is
    the last level's price; rounded away from the book's middle: a buy (impact ask) up, a sell (impact bid) down."""
    assert impact_notional > 0
    full_lots = 0
    remaining = impact_notional
    for price, size_lots in levels:
        if remaining <= price * size_lots:
            numerator, denominator = impact_notional * price, full_lots * price + remaining
            return PriceQuote(div_ceil(numerator, denominator) if is_buy else numerator // denominator)
        full_lots += size_lots
        remaining -= price * size_lots
    return None


def compute_premium_sample(impact_bid: PriceQuote | None, impact_ask: PriceQuote | None,
                           oracle_price: PriceQuote) -> int:
    """Impact premium in RATE_SCALE: (max(0, bid - oracle) - max(0, oracle - ask)) over oracle, toward zero.
    A missing impact price (the book cannot absorb the impact notional) contributes 0."""
    assert oracle_price > 0
    above = max(0, impact_bid - oracle_price) if impact_bid is not None else 0
    below = max(0, oracle_price - impact_ask) if impact_ask is not None else 0
    return _div_toward_zero((above - below) * RATE_SCALE, oracle_price)


def validate_premium_samples(samples: Sequence[tuple[int, int]]) -> None:
    """Raise ValueError if any (premium, duration_ms) sample has a negative duration."""
    for index, (_, duration_ms) in enumerate(samples):
        if duration_ms < 0:
            raise ValueError(f"premium sample {index}: duration {duration_ms} ms is negative")


def compute_average_premium(samples: Sequence[tuple[int, int]]) -> int:
    """Time-weighted average of (premium, duration_ms) samples: sum(P_i * dt_i) over sum(dt_i), toward zero;
    0 when no time has elapsed (no premium observed)."""
    return compute_average_from_sums(sum(premium * duration_ms for premium, duration_ms in samples),
                                     sum(duration_ms for _, duration_ms in samples))


def compute_average_from_sums(weighted_sum: int, total_ms: int) -> int:
    """The time-weighted average kept as running sums (sum of P_i * dt_i, sum of dt_i): toward zero, 0 when no
    time has elapsed."""
    return 0 if total_ms == 0 else _div_toward_zero(weighted_sum, total_ms)


def validate_funding_parameters(interest_rate: int, clamp_rate: int, cap_hourly: int) -> None:
    """Raise ValueError unless the clamp and the hourly cap are non-negative (all in RATE_SCALE)."""
    if clamp_rate < 0 or cap_hourly < 0:
        raise ValueError(f"funding: clamp {clamp_rate} and hourly cap {cap_hourly} must be non-negative")


def compute_funding_rate_8h(premium: int, interest_rate: int, clamp_rate: int) -> int:
    """8-hour funding rate F = P + clamp(interest - P, -clamp, +clamp), exact, in RATE_SCALE."""
    return premium + min(max(interest_rate - premium, -clamp_rate), clamp_rate)


def compute_hourly_funding_rate(premium: int, interest_rate: int, clamp_rate: int, cap_hourly: int) -> int:
    """Hourly funding rate: F over 8 toward zero, then capped to [-cap_hourly, +cap_hourly], in RATE_SCALE."""
    hourly = _div_toward_zero(compute_funding_rate_8h(premium, interest_rate, clamp_rate), FUNDING_HOURS_PER_PERIOD)
    return min(max(hourly, -cap_hourly), cap_hourly)


def compute_funding_index_delta(oracle_price: PriceQuote, hourly_rate: int) -> int:
    """Increase of the cumulative funding index for one hourly payment: oracle * rate, exact, in quote atoms per
    lot times RATE_SCALE. Positive when longs pay."""
    return oracle_price * hourly_rate


def compute_funding_payment(size_lots: SizeLots, index_now: int, index_at_entry: int) -> Atoms:
    """Signed funding owed by a position since index_at_entry: positive means the position pays.

    size * (index_now - index_at_entry) over RATE_SCALE rounded up: a payment up, a receipt toward zero."""
    return Atoms(_div_ceil_signed(size_lots * (index_now - index_at_entry), RATE_SCALE))


# ---------------------------------------------------------------------------------------------------------------
# Mark price


def compute_impact_mid(impact_bid: PriceQuote | None, impact_ask: PriceQuote | None) -> PriceQuote | None:
    """Middle of the impact bid and ask, rounded down; None if either side is missing."""
    if impact_bid is None or impact_ask is None:
        return None
    return PriceQuote((impact_bid + impact_ask) // 2)  # both positive: floor is toward zero


def compute_book_premium_sample(impact_mid: PriceQuote | None, oracle_price: PriceQuote) -> int:
    """Book premium in quote atoms per lot times RATE_SCALE: (impact mid - oracle) * RATE_SCALE, exact;
    0 when the book has no impact mid (no evidence of a premium pulls the EMA back to the oracle)."""
    return (impact_mid - oracle_price) * RATE_SCALE if impact_mid is not None else 0


def compute_ema_step(ema: int, sample: int, elapsed_ms: int, time_constant_ms: int) -> int:
    """One EMA update over elapsed_ms >= 0 with time constant tau > 0 (implicit Euler, see the module docstring):
    ema + (sample - ema) * dt over (tau + dt), toward zero. ema and sample share one unit."""
    assert elapsed_ms >= 0 and time_constant_ms > 0
    return ema + _div_toward_zero((sample - ema) * elapsed_ms, time_constant_ms + elapsed_ms)


def compute_median_of_three(first: int, second: int, third: int) -> int:
    """The middle value of three integers."""
    return sorted((first, second, third))[1]


def compute_mark_price(oracle_price: PriceQuote, ema_premium_scaled: int, impact_mid: PriceQuote | None,
                       last_trade_price: PriceQuote | None) -> PriceQuote:
    """Median of (oracle + EMA premium, the book's impact mid, the last trade). The EMA premium is in quote atoms
    per lot times RATE_SCALE and enters toward zero; a missing impact mid or last trade is replaced by the oracle."""
    anchored = oracle_price + _div_toward_zero(ema_premium_scaled, RATE_SCALE)
    book = impact_mid if impact_mid is not None else oracle_price
    trade = last_trade_price if last_trade_price is not None else oracle_price
    return PriceQuote(compute_median_of_three(anchored, book, trade))


# ---------------------------------------------------------------------------------------------------------------
# Auto-deleveraging order


@total_ordering
@dataclass(frozen=True, slots=True, eq=True)
class AdlRankKey:
    """Sort key of a position for ADL: ascending order puts the first position to deleverage first.

    score = score_numerator over score_denominator (reduced, denominator > 0), higher first; then the account
    address, ascending bytes. Reduced fractions make equal scores structurally equal, so the order is total."""

    score_numerator: int
    score_denominator: int
    address: bytes

    def __lt__(self, other: "AdlRankKey") -> bool:
        mine = self.score_numerator * other.score_denominator
        theirs = other.score_numerator * self.score_denominator
        return mine > theirs or (mine == theirs and self.address < other.address)


def compute_adl_rank_key(unrealized_pnl: Atoms, notional: Atoms, margin: Atoms, account_address: bytes) -> AdlRankKey:
    """ADL key for a position with notional > 0 and margin > 0 (its isolated margin, or for cross the margin
    attributed to it). With pnl_ratio = pnl over margin and leverage = notional over margin the score is
    pnl_ratio * leverage = pnl * notional over margin**2 when pnl >= 0, and pnl_ratio over leverage = pnl over
    notional when pnl < 0: most profitable and most leveraged first, exact."""
    assert notional > 0 and margin > 0
    if unrealized_pnl >= 0:
        numerator, denominator = unrealized_pnl * notional, margin * margin
    else:
        numerator, denominator = unrealized_pnl, notional
    divisor = gcd(numerator, denominator)
    return AdlRankKey(numerator // divisor, denominator // divisor, bytes(account_address))
