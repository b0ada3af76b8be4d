"""Spec vectors and properties for stf.perp_math, the pure risk math of perpetuals.

Test market: 1 lot = 1 unit of base, prices in micro-dollars per lot (USD = 10**6 atoms), tick 0.01 USD
(tick_size = 10_000). Exact checks use fractions.Fraction; floats appear only in the EMA error-bound tests,
which compare the integer EMA against the real exponential.
"""

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from stf.perp_math import (
    RATE_SCALE, AdlRankKey, compute_adl_rank_key, compute_average_premium, compute_bankruptcy_price,
    compute_book_premium_sample, compute_ema_step, compute_funding_index_delta, compute_funding_payment,
    compute_funding_rate_8h, compute_hourly_funding_rate, compute_impact_mid, compute_impact_price,
    compute_initial_margin, compute_liquidation_price, compute_maintenance_deductions_scaled,
    compute_maintenance_margin, compute_maintenance_rates_scaled, compute_margin_scale, compute_mark_price,
    compute_max_leverage, compute_median_of_three, compute_premium_sample, compute_tier, is_below_backstop,
    is_below_maintenance, validate_book_levels, validate_funding_parameters, validate_leverage,
    validate_margin_tiers, validate_premium_samples,
)

USD = 10**6
TICK = 10_000  # 0.01 USD
MARK = 100_000 * USD
SINGLE_TIER = ((0, 40),)  # maintenance 1.25 %
TIERS = ((0, 50), (500_000 * USD, 20), (2_000_000 * USD, 10))  # maintenance 1 %, 2.5 %, 5 %

INTEREST = 100_000  # 0.01 % per 8 h
CLAMP = 500_000  # 0.05 %
CAP = 40_000_000  # 4 % per hour

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


# --- reference model, exact rationals -------------------------------------------------------------------------


def reference_maintenance(tiers, notional: int) -> Fraction:
    """Maintenance as the sum over tiers of rate_i times the part of the notional inside tier i (no deduction)."""
    total = Fraction(0)
    for index, (bound, leverage) in enumerate(tiers):
        upper = tiers[index + 1][0] if index + 1 < len(tiers) else notional
        total += Fraction(max(0, min(notional, upper) - bound), 2 * leverage)
    return total


def equity_at(size: int, entry: int, margin: int, price: int) -> int:
    return margin + size * (price - entry)


def is_liquidated_at(tiers, size: int, entry: int, margin: int, price: int) -> bool:
    equity = equity_at(size, entry, margin, price)
    exact = equity < reference_maintenance(tiers, abs(size) * price)
    assert exact == is_below_maintenance(equity, compute_maintenance_margin(tiers, abs(size) * price))
    return exact


tier_sets = st.lists(
    st.tuples(st.integers(1, 10**13), st.integers(1, 125)), min_size=0, max_size=4,
).map(lambda extra: _build_tiers(extra))


def _build_tiers(extra: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    bounds = sorted({bound for bound, _ in extra})
    leverages = sorted((leverage for _, leverage in extra), reverse=True)[: len(bounds)]
    first = max([1, *leverages]) + 5
    return ((0, first), *zip(bounds, leverages))


# --- margin tiers -----------------------------------------------------------------------------------------------


def test_tier_lookup_and_max_leverage() -> None:
    assert [compute_tier(TIERS, n) for n in (0, 500_000 * USD - 1, 500_000 * USD, 2_000_000 * USD, 10**20)] == [
        0, 0, 1, 2, 2]
    assert compute_max_leverage(TIERS, 499_999 * USD) == 50
    assert compute_max_leverage(TIERS, 500_000 * USD) == 20
    validate_leverage(TIERS, 1_000_000 * USD, 20)


def test_initial_margin_rounds_up() -> None:
    assert compute_initial_margin(MARK, 10) == 10_000 * USD
    assert compute_initial_margin(101, 10) == 11
    assert compute_initial_margin(0, 7) == 0


def test_maintenance_is_half_of_initial_at_max_leverage() -> None:
    assert compute_maintenance_margin(SINGLE_TIER, MARK) == 1_250 * USD  # 1.25 % of 100,000 USD
    assert compute_maintenance_margin(SINGLE_TIER, 81) == 2  # 81 over 80 rounds up


def test_maintenance_deduction_is_exact() -> None:
    # scale = 2 * lcm(50, 20, 10) = 200; rates 2, 5, 10 over 200; deductions 7,500 USD and 57,500 USD
    assert compute_margin_scale(TIERS) == 200
    assert compute_maintenance_rates_scaled(TIERS) == (2, 5, 10)
    assert compute_maintenance_deductions_scaled(TIERS) == (0, 7_500 * USD * 200, 57_500 * USD * 200)
    assert compute_maintenance_margin(TIERS, 1_000_000 * USD) == 25_000 * USD - 7_500 * USD
    assert compute_maintenance_margin(TIERS, 3_000_000 * USD) == 150_000 * USD - 57_500 * USD


def test_maintenance_is_continuous_at_every_boundary() -> None:
    for bound, _ in TIERS[1:]:
        below, at = compute_maintenance_margin(TIERS, bound - 1), compute_maintenance_margin(TIERS, bound)
        assert 0 <= at - below <= 1
        assert at == reference_maintenance(TIERS, bound)


@SETTINGS
@given(tier_sets, st.data())
def test_maintenance_matches_reference_and_is_continuous(tiers, data) -> None:
    validate_margin_tiers(tiers)
    rates, deductions = compute_maintenance_rates_scaled(tiers), compute_maintenance_deductions_scaled(tiers)
    for index in range(1, len(tiers)):
        bound = tiers[index][0]
        assert bound * rates[index - 1] - deductions[index - 1] == bound * rates[index] - deductions[index]
        assert 0 <= compute_maintenance_margin(tiers, bound) - compute_maintenance_margin(tiers, bound - 1) <= 1
    notional = data.draw(st.integers(0, 10**14))
    exact = reference_maintenance(tiers, notional)
    assert compute_maintenance_margin(tiers, notional) == math.ceil(exact)
    assert exact <= compute_initial_margin(notional, compute_max_leverage(tiers, notional))


# --- liquidation ------------------------------------------------------------------------------------------------


def test_liquidation_price_worked_example() -> None:
    # 1 unit at 100,000 USD, isolated margin 10,000 USD, max leverage 40 (maintenance 1.25 %)
    assert compute_liquidation_price(SINGLE_TIER, 1, MARK, 10_000 * USD, TICK) == 91_139_240_000
    assert compute_liquidation_price(SINGLE_TIER, -1, MARK, 10_000 * USD, TICK) == 108_641_980_000


def test_liquidation_price_tiered_with_tier_change() -> None:
    # long 6 at 100,000 (600,000 USD, tier 1 at entry) liquidates in tier 0: p = 480,000 over 5.94
    assert compute_liquidation_price(TIERS, 6, MARK, 120_000 * USD, TICK) == 80_808_080_000
    # short 4 at 100,000 (400,000 USD, tier 0 at entry) liquidates in tier 1: p = 607,500 over 4.1
    assert compute_liquidation_price(TIERS, -4, MARK, 200_000 * USD, TICK) == 148_170_740_000
    assert compute_tier(TIERS, 6 * 80_808_080_000) == 0
    assert compute_tier(TIERS, 4 * 148_170_740_000) == 1


def test_liquidation_price_on_an_exact_tick_is_one_tick_beyond() -> None:
    # maintenance 1 % at 50x. Long 1 at 100 USD, margin 1.99 USD: the root 98.01 over 0.99 is 99 USD exactly,
    # where equity == maintenance (not below), so the first liquidating tick is 98.99 USD; mirrored for a short.
    tiers = ((0, 50),)
    assert compute_liquidation_price(tiers, 1, 100 * USD, 1_990_000, TICK) == 98_990_000
    assert not is_liquidated_at(tiers, 1, 100 * USD, 1_990_000, 99_000_000)
    assert compute_liquidation_price(tiers, -1, 100 * USD, 2_010_000, TICK) == 101_010_000
    assert not is_liquidated_at(tiers, -1, 100 * USD, 2_010_000, 101_000_000)


def test_fully_collateralised_long_has_no_liquidation_price() -> None:
    assert compute_liquidation_price(SINGLE_TIER, 1, MARK, MARK, TICK) is None
    assert compute_bankruptcy_price(1, MARK, MARK) is None


def test_bankruptcy_price_worked_example() -> None:
    assert compute_bankruptcy_price(1, MARK, 10_000 * USD) == 90_000 * USD
    assert compute_bankruptcy_price(-1, MARK, 10_000 * USD) == 110_000 * USD
    assert compute_bankruptcy_price(3, 100, 10) == 97  # 100 - 10 over 3 = 96.67, toward the mark
    assert compute_bankruptcy_price(-3, 100, 10) == 103  # 100 + 10 over 3 = 103.33, toward the mark


def test_maintenance_and_backstop_thresholds() -> None:
    assert is_below_maintenance(99, 100) and not is_below_maintenance(100, 100)
    assert is_below_backstop(66, 100) and not is_below_backstop(67, 100)
    assert not is_below_backstop(2, 3) and is_below_backstop(1, 3)  # 2 == two thirds of 3 exactly


@SETTINGS
@given(tier_sets, st.integers(-10**4, 10**4).filter(bool), st.integers(1, 10**7), st.integers(-10**6, 10**7),
       st.sampled_from([1, 7, 100, TICK]))
def test_liquidation_price_is_where_equity_crosses_maintenance(tiers, size, entry_ticks, margin_per_lot, tick):
    entry = entry_ticks * tick
    margin = margin_per_lot * abs(size) * tick
    price = compute_liquidation_price(tiers, size, entry, margin, tick)
    if price is None:
        assert size > 0 and not is_liquidated_at(tiers, size, entry, margin, tick)
        return
    assert price % tick == 0 and price >= tick
    assert is_liquidated_at(tiers, size, entry, margin, price)
    if size > 0:
        assert not is_liquidated_at(tiers, size, entry, margin, price + tick)
        assert is_liquidated_at(tiers, size, entry, margin, max(tick, price - tick))
    else:
        assert price == tick or not is_liquidated_at(tiers, size, entry, margin, price - tick)
        assert is_liquidated_at(tiers, size, entry, margin, price + tick)


@SETTINGS
@given(st.integers(-10**4, 10**4).filter(bool), st.integers(1, 10**12), st.integers(0, 10**15))
def test_bankruptcy_price_leaves_equity_non_negative(size, entry, margin):
    price = compute_bankruptcy_price(size, entry, margin)
    if price is None:
        assert size > 0 and margin >= size * entry
        return
    assert 0 <= equity_at(size, entry, margin, price) < abs(size)


# --- funding ----------------------------------------------------------------------------------------------------


def test_funding_rate_worked_examples() -> None:
    assert compute_funding_rate_8h(10_000_000, INTEREST, CLAMP) == 9_500_000  # premium 0.01 -> F = 0.0095
    assert compute_hourly_funding_rate(10_000_000, INTEREST, CLAMP, CAP) == 1_187_500  # 0.0011875
    assert compute_hourly_funding_rate(300_000, INTEREST, CLAMP, CAP) == 12_500  # 0.0003 -> 0.0000125
    assert compute_hourly_funding_rate(500_000_000, INTEREST, CLAMP, CAP) == 40_000_000  # capped at 4 %


def test_funding_rate_negative_mirrors() -> None:
    assert compute_funding_rate_8h(-10_000_000, INTEREST, CLAMP) == -9_500_000
    assert compute_hourly_funding_rate(-10_000_000, INTEREST, CLAMP, CAP) == -1_187_500
    assert compute_hourly_funding_rate(-500_000_000, INTEREST, CLAMP, CAP) == -40_000_000
    assert compute_hourly_funding_rate(0, INTEREST, CLAMP, CAP) == 12_500  # no premium: interest only
    assert compute_hourly_funding_rate(-7, 0, 0, CAP) == 0  # -7 over 8 toward zero


def test_funding_index_and_payment_worked_example() -> None:
    delta = compute_funding_index_delta(MARK, 1_187_500)
    assert delta == 118_750_000 * RATE_SCALE  # 118.75 USD per lot, scaled
    assert compute_funding_payment(1, delta, 0) == 118_750_000  # the long pays 118.75 USD
    assert compute_funding_payment(-1, delta, 0) == -118_750_000  # the short receives it
    assert compute_funding_payment(3, 1, 0) == 1  # a payment of 3e-9 atoms rounds up
    assert compute_funding_payment(-3, 1, 0) == 0  # a receipt of 3e-9 atoms rounds down


def test_premium_sample_worked_examples() -> None:
    assert compute_premium_sample(101_000 * USD, 101_500 * USD, MARK) == 10_000_000  # bid 1 % above oracle
    assert compute_premium_sample(98_500 * USD, 99_000 * USD, MARK) == -10_000_000  # ask 1 % below
    assert compute_premium_sample(99_990 * USD, 100_010 * USD, MARK) == 0  # oracle inside the impact spread
    assert compute_premium_sample(None, None, MARK) == 0
    assert compute_premium_sample(11, None, 7) == 571_428_571  # 4 over 7, toward zero
    assert compute_premium_sample(None, 3, 7) == -571_428_571  # mirrored exactly


def test_impact_price_walks_the_book() -> None:
    asks = [(100, 5), (110, 10)]
    # 500 at 100 fills 5 lots, 500 more at 110 is 4.545 lots: 1000 over 9.545 = 104.76, buy rounds up
    assert compute_impact_price(asks, 1_000, True) == 105
    bids = [(110, 5), (100, 10)]
    # 550 at 110 fills 5 lots, 450 more at 100 is 4.5 lots: 1000 over 9.5 = 105.26, sell rounds down
    assert compute_impact_price(bids, 1_000, False) == 105
    assert compute_impact_price(asks, 500, True) == 100
    assert compute_impact_price(asks, 1_600, True) == 107  # the whole book: 1600 over 15 lots = 106.67, up
    assert compute_impact_price(asks, 1_601, True) is None
    assert compute_impact_price([], 1, True) is None


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 1_000)), min_size=1, max_size=6,
                unique_by=lambda level: level[0]),
       st.integers(1, 10**9), st.booleans())
def test_impact_price_brackets_the_exact_average(levels, notional, is_buy):
    levels = sorted(levels, reverse=not is_buy)
    validate_book_levels(levels, is_buy)
    price = compute_impact_price(levels, notional, is_buy)
    if price is None:
        assert notional > sum(p * s for p, s in levels)
        return
    lots, remaining = Fraction(0), notional
    for level_price, size in levels:
        take = min(remaining, level_price * size)
        lots += Fraction(take, level_price)
        remaining -= take
    exact = notional / lots
    assert (price - 1 < exact <= price) if is_buy else (price <= exact < price + 1)


def test_average_premium_is_time_weighted() -> None:
    assert compute_average_premium([(10_000_000, 1_000), (-2_000_000, 3_000)]) == 1_000_000
    assert compute_average_premium([(5, 1), (0, 1)]) == 2  # 2.5 toward zero
    assert compute_average_premium([(-5, 1), (0, 1)]) == -2  # mirrored exactly
    assert compute_average_premium([]) == 0
    assert compute_average_premium([(7, 0)]) == 0


@SETTINGS
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=8), st.data(),
       st.integers(-10**15, 10**15), st.integers(-10**15, 10**15))
def test_funding_payments_never_create_value(longs, data, index_entry, index_now):
    total = sum(longs)
    cuts = sorted(data.draw(st.lists(st.integers(1, total), max_size=6)))
    shorts = [b - a for a, b in zip([0, *cuts], [*cuts, total]) if b > a]
    payments = [compute_funding_payment(s, index_now, index_entry) for s in longs]
    payments += [compute_funding_payment(-s, index_now, index_entry) for s in shorts]
    assert 0 <= sum(payments) < len(payments)


@SETTINGS
@given(st.lists(st.one_of(
    st.tuples(st.just("move"), st.integers(1, 10**12), st.integers(-CAP, CAP)),
    st.tuples(st.just("trade"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 1_000)),
), max_size=40))
def test_funding_settled_on_every_trade_never_creates_value(steps):
    sizes, entries, index, paid, settlements = [0] * 4, [0] * 4, 0, 0, 0

    def settle(account: int) -> None:
        nonlocal paid, settlements
        paid += compute_funding_payment(sizes[account], index, entries[account])
        entries[account] = index
        settlements += 1

    for step in steps:
        if step[0] == "move":
            index += compute_funding_index_delta(step[1], step[2])
        elif step[1] != step[2]:
            _, buyer, seller, lots = step
            settle(buyer), settle(seller)
            sizes[buyer] += lots
            sizes[seller] -= lots
        assert sum(sizes) == 0
    for account in range(4):
        settle(account)
    assert 0 <= paid <= settlements


# --- mark price and EMA -----------------------------------------------------------------------------------------


def test_mark_price_is_the_median_of_three() -> None:
    ema = 50 * USD * RATE_SCALE  # +50 USD premium
    assert compute_mark_price(MARK, ema, 100_020 * USD, 100_100 * USD) == 100_050 * USD
    assert compute_mark_price(MARK, ema, 100_200 * USD, 99_000 * USD) == 100_050 * USD
    assert compute_mark_price(MARK, -ema, 99_000 * USD, 99_990 * USD) == 99_950 * USD
    assert compute_median_of_three(3, 1, 2) == 2 and compute_median_of_three(5, 5, 1) == 5


def test_mark_price_replaces_missing_components_with_the_oracle() -> None:
    ema = 50 * USD * RATE_SCALE
    assert compute_mark_price(MARK, ema, None, None) == MARK  # median(oracle + 50, oracle, oracle)
    assert compute_mark_price(MARK, ema, 100_020 * USD, None) == 100_020 * USD
    assert compute_mark_price(MARK, 0, None, 100_100 * USD) == MARK
    assert compute_mark_price(MARK, RATE_SCALE - 1, None, None) == MARK  # sub-atom EMA rounds toward zero


def test_impact_mid_and_book_premium() -> None:
    assert compute_impact_mid(100, 103) == 101
    assert compute_impact_mid(None, 103) is None and compute_impact_mid(100, None) is None
    assert compute_book_premium_sample(101 * USD, MARK) == (101 * USD - MARK) * RATE_SCALE
    assert compute_book_premium_sample(None, MARK) == 0


def test_ema_step_examples() -> None:
    assert compute_ema_step(0, 1_000, 1_000, 9_000) == 100  # weight 1 over 10
    assert compute_ema_step(0, -1_000, 1_000, 9_000) == -100  # mirrored exactly
    assert compute_ema_step(500, 1_000, 0, 9_000) == 500  # no time, no change
    assert compute_ema_step(0, 10, 1, 9_000) == 0  # 10 over 9001 toward zero


EMA_WEIGHT_ERROR_MAX = 0.2036322


def test_ema_weight_error_bound_over_a_range() -> None:
    x = 1e-7
    while x < 1e4:
        exact, approximate = -math.expm1(-x), x / (1 + x)
        error = exact - approximate
        assert -1e-15 <= error <= min(x * x / 2, EMA_WEIGHT_ERROR_MAX) + 1e-15
        x *= 1.01


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 600_000), st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(1, 5_000)),
                                         min_size=1, max_size=200))
def test_ema_tracks_the_exact_exponential_within_the_bound(tau, stream):
    samples = [sample * RATE_SCALE for sample, _ in stream]
    lo, hi = min(0, *samples), max(0, *samples)
    x_max = max(dt for _, dt in stream) / tau
    x_min = min(dt for _, dt in stream) / tau
    bound = (hi - lo) * x_max * (1 + x_max) / 2 + 1 + 1 / x_min
    ema, exact = 0, 0.0
    for sample, (_, dt) in zip(samples, stream):
        ema = compute_ema_step(ema, sample, dt, tau)
        exact += -math.expm1(-dt / tau) * (sample - exact)
        assert abs(ema - exact) <= bound * (1 + 1e-9) + 1e-6 * (hi - lo)


# --- ADL --------------------------------------------------------------------------------------------------------


def test_adl_ranks_profit_and_leverage_first() -> None:
    address = [bytes([n]) * 20 for n in range(5)]
    keys = [
        compute_adl_rank_key(-100, 1_000, 100, address[0]),  # losing
        compute_adl_rank_key(100, 1_000, 100, address[1]),  # +100 % at 10x: score 10
        compute_adl_rank_key(100, 2_000, 100, address[2]),  # +100 % at 20x: score 20
        compute_adl_rank_key(200, 1_000, 200, address[3]),  # +100 % at 5x: score 5
        compute_adl_rank_key(200, 2_000, 200, address[4]),  # score 10, ties with address[1]
    ]
    assert [key.address[0] for key in sorted(keys)] == [2, 1, 4, 3, 0]
    assert keys[1] != keys[4] and keys[1] < keys[4]
    assert compute_adl_rank_key(50, 1_000, 100, address[0]) == AdlRankKey(5, 1, address[0])


@SETTINGS
@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(1, 10**6), st.integers(1, 10**5),
                          st.binary(min_size=1, max_size=1)), min_size=1, max_size=12))
def test_adl_order_is_total_and_exact(positions):
    keys = [compute_adl_rank_key(*position) for position in positions]
    for a in keys:
        for b in keys:
            assert [a < b, a == b, b < a].count(True) == 1
            for c in keys:
                if a < b and b < c:
                    assert a < c

    def exact(position):
        pnl, notional, margin, address = position
        score = Fraction(pnl * notional, margin * margin) if pnl >= 0 else Fraction(pnl, notional)
        return (-score, address)

    assert [(-Fraction(k.score_numerator, k.score_denominator), k.address) for k in sorted(keys)] == sorted(
        exact(position) for position in positions)


# --- rejections -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tiers, message", [
    ((), "at least one tier"),
    (((5, 10),), "first lower bound must be 0"),
    (((0, 10), (100, 5), (100, 4)), "not above the previous"),
    (((0, 10), (100, 5), (50, 4)), "not above the previous"),
    (((0, 10), (100, 20)), "non-increasing"),
    (((0, 0),), "at least 1"),
    (((0, 10), (100, -1)), "at least 1"),
    (((0, 10, 1),), "pair of integers"),
    (((0, True),), "pair of integers"),
])
def test_invalid_margin_tiers(tiers, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_margin_tiers(tiers)


@pytest.mark.parametrize("notional, leverage", [(0, 0), (0, 51), (500_000 * USD, 21), (10**20, 11), (1, -1)])
def test_invalid_leverage(notional, leverage) -> None:
    with pytest.raises(ValueError, match="outside"):
        validate_leverage(TIERS, notional, leverage)


@pytest.mark.parametrize("levels, is_buy, message", [
    ([(0, 1)], True, "must be positive"),
    ([(100, 0)], False, "must be positive"),
    ([(100, 1), (100, 1)], True, "strictly worse"),
    ([(100, 1), (99, 1)], True, "strictly worse"),
    ([(100, 1), (101, 1)], False, "strictly worse"),
])
def test_invalid_book_levels(levels, is_buy, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_book_levels(levels, is_buy)


def test_invalid_premium_samples() -> None:
    validate_premium_samples([(1, 0), (-5, 10)])
    with pytest.raises(ValueError, match="negative"):
        validate_premium_samples([(1, 10), (2, -1)])


@pytest.mark.parametrize("clamp, cap", [(-1, CAP), (CLAMP, -1)])
def test_invalid_funding_parameters(clamp, cap) -> None:
    validate_funding_parameters(INTEREST, CLAMP, CAP)
    with pytest.raises(ValueError, match="non-negative"):
        validate_funding_parameters(INTEREST, clamp, cap)
