"""Governance: operations approved by a threshold of the genesis-defined governor keys (docs/PROTOCOL.md
§Governance).

A governor signs a `Govern` action carrying an operation `[op, proposal_id, ...arguments]`. Its digest is
SHA-256 of the operation's canonical encoding; the state keeps, per pending digest, the governors that approved
it (in approval order). The operation is checked in full at every approval (a bad one fails with
INVALID_PROPOSAL and leaves no trace); once `threshold` distinct governors approved the identical operation it
runs and its digest is forgotten. `proposal_id` is free for the governors to choose: it makes two otherwise
identical operations distinct.

| op | arguments                         | effect                                                                  |
|----|-----------------------------------|-------------------------------------------------------------------------|
| 1  | market                            | halt the market: it accepts cancels only; no trigger or liquidation     |
| 2  | market                            | resume the market                                                       |
| 3  |                                   | halt every market                                                       |
| 4  |                                   | resume (lift the global halt; per-market halts stay)                    |
| 5  | market, [[name, value], ...]      | change the market's parameters (names in `SETTABLE_*`, strictly sorted) |
| 6  | spot market fields                | add a spot market (the fields of its state entry's parameters)          |
| 7  | perp market fields                | add a perp market (`PerpMarketParams.to_fields()`)                      |
"""

import hashlib
from dataclasses import replace

from stf import codec
from stf.constants import ADDRESS_LEN
from stf.errors import ResultCode
from stf.events import REASON_CANCELLED, GovernanceEvent, OrderDone
from stf.params import PerpMarketParams, SpotMarketParams
from stf.perp_math import HOUR_MS, RATE_LIMIT
from stf.receipts import ActionResult
from stf.spot import compute_order_hold
from stf.state import (
    Market, State, compute_next_funding_ms, hold, recompute_order_margin, release, remove_order,
)
from stf.tx import Govern
from stf.units import BPS_DENOMINATOR, U64_MAX

R = ResultCode

OP_HALT_MARKET = 1
OP_RESUME_MARKET = 2
OP_HALT_ALL = 3
OP_RESUME_ALL = 4
OP_SET_PARAMS = 5
OP_ADD_SPOT_MARKET = 6
OP_ADD_PERP_MARKET = 7

SETTABLE_COMMON = ("maker_fee_bps", "min_size_lots", "oracle_max_age_ms", "price_band_bps", "taker_fee_bps")
SETTABLE_PERP = SETTABLE_COMMON + (
    "default_leverage", "funding_cap_hourly", "funding_clamp_rate", "funding_interest_rate", "impact_notional",
    "liquidation_chunk_notional", "liquidation_fee_bps", "liquidation_slippage_bps", "margin_tiers",
    "mark_ema_ms", "max_open_interest_lots",
)
SPOT_MARKET_FIELD_COUNT = 12


class ProposalError(ValueError):
    """An operation that cannot run; the action fails with INVALID_PROPOSAL."""


def compute_operation_digest(operation: tuple) -> bytes:
    return hashlib.sha256(codec.encode(operation)).digest()


def _is_u64(value, minimum: int = 0, maximum: int = U64_MAX) -> bool:
    return type(value) is int and minimum <= value <= maximum


def validate_tiers(tiers) -> None:
    if type(tiers) is not tuple or not tiers or not all(type(t) is tuple and len(t) == 2 for t in tiers):
        raise ProposalError("margin_tiers must be a non-empty list of [lower_notional_bound, max_leverage]")
    if tiers[0][0] != 0:
        raise ProposalError("the first margin tier must start at notional 0")
    for index, (bound, leverage) in enumerate(tiers):
        if not _is_u64(bound) or not _is_u64(leverage, 1, 1_000):
            raise ProposalError(f"margin tier {index}: bound and leverage 1..1000 must be integers")
        if index and (bound <= tiers[index - 1][0] or leverage > tiers[index - 1][1]):
            raise ProposalError(f"margin tier {index}: bounds must ascend and leverage must not increase")


def validate_market_params(params: SpotMarketParams | PerpMarketParams) -> None:
    """Raise ProposalError unless the parameters are within the ranges genesis also enforces."""
    if not (_is_u64(params.market_id, 0, 65_535) and _is_u64(params.tick_size, 1) and _is_u64(params.lot_size, 1)
            and _is_u64(params.min_size_lots, 1) and _is_u64(params.oracle_max_age_ms, 1)):
        raise ProposalError("market id, tick, lot, min size and oracle age must be positive integers")
    if not (type(params.symbol) is str and 1 <= len(params.symbol) <= 32 and params.symbol.isascii()):
        raise ProposalError("symbol must be 1 to 32 ASCII characters")
    if not _is_u64(params.taker_fee_bps, 0, BPS_DENOMINATOR) or type(params.maker_fee_bps) is not int \
            or not -params.taker_fee_bps <= params.maker_fee_bps <= BPS_DENOMINATOR:
        raise ProposalError("fees: taker 0..10000 bps, a maker rebate no larger than the taker fee")
    if not _is_u64(params.price_band_bps, 0, BPS_DENOMINATOR - 1):
        raise ProposalError("price_band_bps must be 0..9999")
    if type(params.fee_account) is not bytes or len(params.fee_account) != ADDRESS_LEN:
        raise ProposalError("fee_account must be a 20-byte address")
    if isinstance(params, PerpMarketParams):
        validate_tiers(params.margin_tiers)
        if not _is_u64(params.default_leverage, 1, params.margin_tiers[0][1]):
            raise ProposalError("default_leverage must be 1..the first tier's max leverage")
        if type(params.funding_interest_rate) is not int or not -RATE_LIMIT <= params.funding_interest_rate <= RATE_LIMIT \
                or not _is_u64(params.funding_clamp_rate, 0, RATE_LIMIT) \
                or not _is_u64(params.funding_cap_hourly, 0, RATE_LIMIT):
            raise ProposalError("funding rates: interest within +-10^9, clamp and cap within 0..10^9 (billionths)")
        if not _is_u64(params.funding_interval_ms, HOUR_MS) or params.funding_interval_ms % HOUR_MS:
            raise ProposalError("funding_interval_ms must be a whole number of hours")
        if not (_is_u64(params.impact_notional, 1) and _is_u64(params.mark_ema_ms, 1)
                and _is_u64(params.max_open_interest_lots) and _is_u64(params.liquidation_chunk_notional, 1)
                and _is_u64(params.liquidation_fee_bps, 0, BPS_DENOMINATOR)
                and _is_u64(params.liquidation_slippage_bps, 0, BPS_DENOMINATOR - 1)):
            raise ProposalError("impact notional, EMA time, OI cap, liquidation chunk, fee and slippage ranges")


def _market(state: State, market_id) -> Market:
    market = state.markets.get(market_id) if type(market_id) is int else None
    if market is None:
        raise ProposalError(f"unknown market {market_id!r}")
    return market


def _new_market_params(state: State, op: int, fields: tuple) -> SpotMarketParams | PerpMarketParams:
    try:
        if op == OP_ADD_PERP_MARKET:
            params = PerpMarketParams.from_fields(list(fields))
            if params.quote_asset != state.params.collateral_asset:
                raise ProposalError("a perp market settles in the collateral asset")
        else:
            if len(fields) != SPOT_MARKET_FIELD_COUNT:
                raise ProposalError(f"a spot market has {SPOT_MARKET_FIELD_COUNT} fields")
            params = SpotMarketParams(fields[0], fields[1].decode(), *fields[2:])
            if params.base_asset not in state.assets or params.quote_asset not in state.assets \
                    or params.base_asset == params.quote_asset:
                raise ProposalError("a spot market needs two distinct known assets")
    except (TypeError, IndexError, AttributeError, UnicodeDecodeError) as exc:
        raise ProposalError(f"market fields malformed: {exc}") from None
    if params.market_id in state.markets:
        raise ProposalError(f"market {params.market_id} exists already")
    validate_market_params(params)
    validate_oracle_needs(state, params)
    return params


def validate_oracle_needs(state: State, params: SpotMarketParams | PerpMarketParams) -> None:
    """As at genesis: a perp market, or any market with a price band, needs validators to feed its oracle."""
    if (isinstance(params, PerpMarketParams) or params.price_band_bps) and not state.validators:
        raise ProposalError("perp markets and price bands need validators to feed the oracle; there are none")


def _changed_params(state: State, market: Market, changes) -> SpotMarketParams | PerpMarketParams:
    allowed = SETTABLE_PERP if market.is_perp else SETTABLE_COMMON
    if type(changes) is not tuple or not changes:
        raise ProposalError("changes must be a non-empty list of [name, value]")
    names = []
    values = {}
    for change in changes:
        if type(change) is not tuple or len(change) != 2 or type(change[0]) is not bytes:
            raise ProposalError("each change is [name, value] with the name as bytes")
        name = change[0].decode("ascii", "replace")
        if name not in allowed:
            raise ProposalError(f"{name!r} cannot be changed (settable: {', '.join(allowed)})")
        names.append(name)
        values[name] = change[1]
    if names != sorted(set(names)):
        raise ProposalError("change names must be strictly sorted")
    params = replace(market.params, **values)
    validate_market_params(params)
    validate_oracle_needs(state, params)
    return params


def validate_operation(state: State, operation: tuple) -> None:
    """Raise ProposalError unless the operation can run on the current state."""
    op, args = operation[0], operation[2:]
    if op in (OP_HALT_MARKET, OP_RESUME_MARKET):
        if len(args) != 1:
            raise ProposalError("halt and resume take one market")
        _market(state, args[0])
    elif op in (OP_HALT_ALL, OP_RESUME_ALL):
        if args:
            raise ProposalError("halt-all and resume-all take no arguments")
    elif op == OP_SET_PARAMS:
        if len(args) != 2:
            raise ProposalError("set-params takes a market and its changes")
        _changed_params(state, _market(state, args[0]), args[1])
    elif op in (OP_ADD_SPOT_MARKET, OP_ADD_PERP_MARKET):
        if len(args) != 1 or type(args[0]) is not tuple:
            raise ProposalError("add-market takes the market's parameter fields")
        _new_market_params(state, op, args[0])
    else:
        raise ProposalError(f"unknown operation {op}")


def rehold_spot_orders(state: State, events: list, market: Market, resting: list, params: SpotMarketParams) -> None:
    """Set new spot parameters and move every resting order's hold to what the new fees need, in order-id
    order; an order whose owner cannot cover a larger hold is cancelled (its old hold released)."""
    old_holds = [compute_order_hold(market, o.is_buy, o.price, o.size_lots) for o in resting]
    market.set_params(params)
    for order, (asset, old) in zip(resting, old_holds):
        account = state.accounts[order.owner]
        new = compute_order_hold(market, order.is_buy, order.price, order.size_lots)[1]
        if new - old <= account.get_available(asset):
            hold(state, account, asset, new - old)
        else:
            remove_order(state, order)
            release(state, account, asset, old)
            events.append(OrderDone(order.order_id, order.market_id, order.owner, REASON_CANCELLED, order.size_lots))


def execute_operation(state: State, events: list, operation: tuple) -> None:
    op, args = operation[0], operation[2:]
    if op in (OP_HALT_MARKET, OP_RESUME_MARKET):
        market = state.markets[args[0]]
        market.halted = op == OP_HALT_MARKET
        state.dirty_markets[args[0]] = None
    elif op in (OP_HALT_ALL, OP_RESUME_ALL):
        state.halted = op == OP_HALT_ALL
        state.dirty_global = True
    elif op == OP_SET_PARAMS:
        market = state.markets[args[0]]
        state.dirty_markets[args[0]] = None
        resting = sorted((order for side in (market.book.bids, market.book.asks)
                          for _, level in side.iter_levels() for order in level), key=lambda o: o.order_id)
        if market.is_perp:  # fees enter what resting orders reserve: recompute their owners' order margin
            market.set_params(_changed_params(state, market, args[1]))
            for owner in sorted({order.owner: None for order in resting}):
                recompute_order_margin(state, state.accounts[owner])
        else:
            rehold_spot_orders(state, events, market, resting, _changed_params(state, market, args[1]))
    else:
        params = _new_market_params(state, op, args[0])
        market = state.markets[params.market_id] = Market(params)
        if market.is_perp:
            market.mark_time_ms = state.time_ms
            market.next_funding_ms = compute_next_funding_ms(state.time_ms, params.funding_interval_ms)
        state.dirty_markets[params.market_id] = None


def process_govern(state: State, events: list, account, action: Govern) -> ActionResult:
    governance = state.params.governance
    address = account.address
    if address not in governance.keys:
        return ActionResult(R.NOT_A_GOVERNOR)
    operation = action.operation
    digest = compute_operation_digest(operation)
    approvers = state.proposals.get(digest, [])
    if address in approvers:
        return ActionResult(R.INVALID_PROPOSAL)
    try:
        validate_operation(state, operation)
    except ProposalError:
        return ActionResult(R.INVALID_PROPOSAL)
    approvers = approvers + [address]
    executed = len(approvers) >= governance.threshold
    if executed:
        state.proposals.pop(digest, None)
        execute_operation(state, events, operation)
    else:
        state.proposals[digest] = approvers
    state.dirty_proposals = True
    events.append(GovernanceEvent(digest, address, len(approvers), executed, R.OK))
    return ActionResult(R.OK)
