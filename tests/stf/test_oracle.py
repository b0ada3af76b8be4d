"""Spec vectors for the validator oracle (stake-weighted median of fresh submissions) and the price band."""

import pytest

from stf import codec
from stf.errors import MalformedAction, ResultCode as R, Unauthorized, InvalidBlock
from stf.oracle import compute_weighted_median
from stf.state import State, apply_entries, export_entries
from stf.tx import TIF_GTC, Cancel, MarketOrder, Modify, OraclePrice, PlaceOrder, decode_action
from stf_helpers import BTC_USD, ETH_USD, Chain

P = 1_000_000


def oracle_chain(**kwargs) -> Chain:
    """Validators: key 0 power 1, key 1 power 1, key 2 power 3 (total 5); key 3 is not a validator."""
    return Chain(validators={0: 1, 1: 1, 2: 3}, **kwargs)


def submit(chain: Chain, key_index: int, *prices: tuple[int, int]):
    return chain.run(chain.keys[key_index], OraclePrice(tuple(prices)))


def code_of(result) -> int:
    return result.receipts[0].results[0].code


def test_weighted_median_is_the_lower_weighted_median() -> None:
    assert compute_weighted_median([(10, b"a", 1), (20, b"b", 1), (30, b"c", 3)]) == 30
    assert compute_weighted_median([(10, b"a", 1), (20, b"b", 1)]) == 10
    assert compute_weighted_median([(10, b"a", 2), (20, b"b", 1), (30, b"c", 1)]) == 10


def test_oracle_takes_the_stake_weighted_median_once_more_than_two_thirds_submitted() -> None:
    chain = oracle_chain()
    market = chain.state.markets[BTC_USD]
    chain.block(chain.tx(chain.keys[0], OraclePrice(((BTC_USD, 100),))),
                chain.tx(chain.keys[1], OraclePrice(((BTC_USD, 200),))))
    assert market.oracle_price == 0                      # power 2 of 5: no quorum
    submit(chain, 2, (BTC_USD, 300))
    assert (market.oracle_price, market.oracle_time_ms) == (300, chain.time_ms)   # 1 + 1 + 3: median at 300


def test_stale_submissions_drop_out_and_the_oracle_keeps_its_last_price() -> None:
    chain = oracle_chain(market_overrides={BTC_USD: {"oracle_max_age_ms": 2500}})
    market = chain.state.markets[BTC_USD]
    chain.block(*[chain.tx(chain.keys[i], OraclePrice(((BTC_USD, 100 + i),))) for i in range(3)])
    priced_at = chain.time_ms
    assert market.oracle_price == 102
    chain.block()
    chain.block()                                        # 2000 ms later: still fresh, re-aggregated
    chain.block()                                        # 3000 ms: every submission is too old
    assert market.oracle_submissions == {} and market.oracle_price == 102
    assert market.oracle_time_ms == priced_at + 2000


def test_invalid_oracle_price_from_a_non_validator_leaves_no_trace() -> None:
    chain = oracle_chain()
    before = export_entries(chain.state)
    result = submit(chain, 3, (BTC_USD, 100))
    assert code_of(result) == R.NOT_A_VALIDATOR
    assert chain.state.markets[BTC_USD].oracle_submissions == {}
    assert [e for e in export_entries(chain.state) if e[0][:1] == b"m"] == [e for e in before if e[0][:1] == b"m"]


def test_invalid_oracle_price_for_an_unknown_market_records_nothing() -> None:
    chain = oracle_chain()
    assert code_of(submit(chain, 2, (BTC_USD, 100), (9, 100))) == R.UNKNOWN_MARKET
    assert chain.state.markets[BTC_USD].oracle_submissions == {}


def test_invalid_oracle_price_signed_by_an_agent_is_an_invalid_transaction() -> None:
    chain = oracle_chain()
    from stf.tx import ApproveAgent
    chain.run(chain.keys[2], ApproveAgent(chain.keys[3].address))
    with pytest.raises(InvalidBlock) as info:
        chain.run(chain.keys[3], OraclePrice(((BTC_USD, 100),)), account=chain.keys[2].address)
    assert type(info.value.__cause__) is Unauthorized


@pytest.mark.parametrize("raw", [
    [20, []],
    [20, [[1, 100], [0, 100]]],
    [20, [[0, 100], [0, 101]]],
    [20, [[0, 0]]],
    [20, [[0]]],
    [20, [[0, 100, 1]]],
    [20, [[0, True]]],
    [20, [[i, 1] for i in range(65)]],
])
def test_invalid_oracle_price_encoding(raw) -> None:
    with pytest.raises(MalformedAction):
        decode_action(raw)


def test_price_band_accepts_inside_and_refuses_outside_exactly() -> None:
    chain = oracle_chain(market_overrides={BTC_USD: {"price_band_bps": 500}})   # 5%
    chain.block(*[chain.tx(chain.keys[i], OraclePrice(((BTC_USD, P),))) for i in range(3)])
    key = chain.keys[3]
    low, high = P * 95 // 100, P * 105 // 100
    place = lambda price: PlaceOrder(BTC_USD, True, price, 1, TIF_GTC, None, 0, False)  # noqa: E731
    assert [r.code for r in chain.run(key, place(low), place(high)).receipts[0].results] == [R.OK, R.OK]
    out = chain.run(key, place(low - 1), place(high + 1), MarketOrder(BTC_USD, True, 1, high + 1, None, False))
    assert [r.code for r in out.receipts[0].results] == [R.PRICE_OUT_OF_BAND] * 3


def test_price_band_with_a_stale_oracle_refuses_new_orders_but_not_cancels_or_size_decreases() -> None:
    chain = oracle_chain(market_overrides={BTC_USD: {"price_band_bps": 500, "oracle_max_age_ms": 1500}})
    chain.block(*[chain.tx(chain.keys[i], OraclePrice(((BTC_USD, P),))) for i in range(3)])
    key = chain.keys[3]
    chain.run(key, PlaceOrder(BTC_USD, True, P, 5, TIF_GTC, None, 0, False))
    chain.block()
    result = chain.run(key, PlaceOrder(BTC_USD, True, P, 1, TIF_GTC, None, 0, False), Modify(BTC_USD, 1, P, 3),
                       Modify(BTC_USD, 1, P - 1, 3), Cancel(BTC_USD, 1))
    assert [r.code for r in result.receipts[0].results] == [R.ORACLE_STALE, R.OK, R.ORACLE_STALE, R.OK]


def test_markets_without_a_band_ignore_the_oracle() -> None:
    chain = oracle_chain()
    assert code_of(chain.run(chain.keys[3], PlaceOrder(ETH_USD, True, 1, 1, TIF_GTC, None, 0, False))) == R.OK


def test_oracle_state_travels_in_diffs_and_snapshots() -> None:
    chain = oracle_chain(market_overrides={BTC_USD: {"price_band_bps": 100}})
    follower = State(chain.genesis.params)
    apply_entries(follower, export_entries(chain.state))
    for i in range(3):
        result = submit(chain, i, (BTC_USD, 100 + i), (ETH_USD, 50))
        diff = codec.decode(result.diff_wire(chain.state.height), 1 << 20)
        assert apply_entries(follower, [(k, v) for k, v in diff[4]]) == result.state_root
    assert export_entries(follower) == export_entries(chain.state)
    assert follower.markets[BTC_USD].oracle_price == 102 and follower.validators == chain.state.validators
