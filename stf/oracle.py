"""The oracle: validators submit prices in transactions; each market's oracle price is the stake-weighted median
of the fresh submissions, and spot markets may guard their orders with a price band around it.

Rules (docs/PROTOCOL.md §Oracle):
- `process_oracle_price`: only a current validator, signing for itself, may submit (else NOT_A_VALIDATOR); every
  market must exist (else UNKNOWN_MARKET, and nothing is recorded). A submission replaces the validator's
  previous one for that market and is stamped with the block time.
- `process_oracles`, once per block after the transactions, for every market in id order: submissions older than
  the market's `oracle_max_age_ms`, or from an account no longer a validator, are dropped; if the fresh ones
  carry more than 2/3 of the total validator power, the oracle price becomes their weighted median — sort by
  (price, validator address), take the first price at which the cumulative power times 2 reaches the fresh
  power (the lower weighted median) — stamped with the block time. Otherwise the oracle keeps its last price
  and time, and goes stale once that time is older than `oracle_max_age_ms`.
- The 2/3 quorum means that with less than 1/3 of the power faulty, the median lies between two honest
  validators' prices.
- `validate_price_band`: for a market with `price_band_bps` > 0, a new order's price must satisfy
  oracle * (10_000 - band) <= price * 10_000 <= oracle * (10_000 + band), exact in integers (no rounding);
  with a stale or missing oracle, new orders fail with ORACLE_STALE (cancels always work).
"""

from stf.errors import ResultCode
from stf.receipts import ActionResult
from stf.state import Account, Market, State
from stf.tx import OraclePrice
from stf.units import BPS_DENOMINATOR

R = ResultCode


def process_oracle_price(state: State, events: list, account: Account, action: OraclePrice) -> ActionResult:
    if account.address not in state.validators:
        return ActionResult(R.NOT_A_VALIDATOR)
    for market_id, _price in action.prices:
        if market_id not in state.markets:
            return ActionResult(R.UNKNOWN_MARKET)
    for market_id, price in action.prices:
        state.markets[market_id].oracle_submissions[account.address] = (price, state.time_ms)
        state.dirty_markets[market_id] = None
    return ActionResult(R.OK)


def compute_weighted_median(submissions: list[tuple[int, bytes, int]]) -> int:
    """The lower weighted median of (price, validator, power) triples, which must be sorted by (price, validator)."""
    total = sum(power for _, _, power in submissions)
    cumulative = 0
    for price, _validator, power in submissions:
        cumulative += power
        if cumulative * 2 >= total:
            return price
    raise AssertionError("empty submissions have no median")


def process_market_oracle(state: State, market: Market) -> None:
    now = state.time_ms
    oldest = now - market.params.oracle_max_age_ms
    fresh = []
    for validator in sorted(market.oracle_submissions):
        price, submitted_ms = market.oracle_submissions[validator]
        power = state.validators.get(validator)
        if power is None or submitted_ms < oldest:
            del market.oracle_submissions[validator]
            state.dirty_markets[market.params.market_id] = None
        else:
            fresh.append((price, validator, power))
    fresh_power = sum(power for _, _, power in fresh)
    if fresh and fresh_power * 3 > sum(state.validators.values()) * 2:
        fresh.sort()
        market.oracle_price = compute_weighted_median(fresh)
        market.oracle_time_ms = now
        state.dirty_markets[market.params.market_id] = None


def process_oracles(state: State) -> None:
    for market_id in sorted(state.markets):
        market = state.markets[market_id]
        if market.oracle_submissions:
            process_market_oracle(state, market)


def is_oracle_fresh(market: Market, now_ms: int) -> bool:
    return market.oracle_price > 0 and now_ms - market.oracle_time_ms <= market.params.oracle_max_age_ms


def validate_price_band(market: Market, price: int, now_ms: int) -> ResultCode:
    band = market.params.price_band_bps
    if not band:
        return R.OK
    if not is_oracle_fresh(market, now_ms):
        return R.ORACLE_STALE
    oracle = market.oracle_price
    scaled = price * BPS_DENOMINATOR
    if scaled < oracle * (BPS_DENOMINATOR - band) or scaled > oracle * (BPS_DENOMINATOR + band):
        return R.PRICE_OUT_OF_BAND
    return R.OK
