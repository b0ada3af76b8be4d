"""The oracle feeder (node/oracle.py): the transaction it builds (ids ascending, tick grid, nonces strictly
increasing and inside the chain's window), when it holds back, and a real 4-validator localnet whose perp
markets are priced by its validators' static sources and take a perp order."""

import asyncio
import time
from pathlib import Path

from genesis import perp_genesis, validate_genesis
from node.mempool import Mempool
from node.oracle import (
    OracleFeeder, build_oracle_actions, build_oracle_prices, compute_grid_price, static_source,
)
from node.telemetry import NodeMetrics
from node.submit import NodeSubmitter
from rpc.client.wallet import Wallet, collateral_transfer, faucet, place
from stf.block import apply_block, make_block
from stf.crypto import PrivateKey
from stf.state import State, initialize_state
from stf.tx import OraclePrice, decode_transaction
from test_node_network import Net, call_rpc, wait_for

CHAIN = "kabuto-localnet"
VALIDATOR = PrivateKey(bytes([7]) * 32)
BTC_PERP, ETH_PERP, BTC_USD = 10, 11, 0
DAY_MS = 24 * 3_600_000


def make_state(validators: list[PrivateKey] = (VALIDATOR,)) -> State:
    doc = perp_genesis(CHAIN, validators=[(key.address.hex(), 10) for key in validators])
    return initialize_state(validate_genesis(doc))


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def make_feeder(state: State, prices: dict, clock: Clock, key: PrivateKey = VALIDATOR):
    """A feeder wired to a real mempool through the node's submitter (admission as RPC's), gossip recorded."""
    mempool, metrics, gossiped = Mempool(), NodeMetrics(), []
    submitter = NodeSubmitter(mempool, lambda: state, lambda batch: gossiped.extend(w for w, _ in batch), metrics,
                              verify_workers=0)
    source = prices if callable(prices) else static_source(prices)
    feeder = OracleFeeder(key, CHAIN, source, submitter.submit, lambda: state, lambda h: h in mempool, metrics,
                          1000, clock)
    return feeder, mempool, metrics, gossiped


def count(metrics: NodeMetrics, result: str) -> float:
    return metrics.registry.get_sample_value("kabuto_oracle_submissions_total", {"result": result}) or 0.0


def test_grid_price_rounds_to_the_nearest_tick_and_at_least_one() -> None:
    assert [compute_grid_price(p, 100) for p in (10_000_000, 10_000_049, 10_000_050, 1, 49, 150)] == [
        10_000_000, 10_000_000, 10_000_100, 100, 100, 200]


def test_oracle_prices_ascending_on_the_grid_for_known_markets_only() -> None:
    state = make_state()
    prices = {ETH_PERP: 4_000_004, 99: 5, BTC_PERP: 10_000_060, BTC_USD: 1_000_000, 1: 0}
    assert build_oracle_prices(prices, state) == ((BTC_USD, 1_000_000), (BTC_PERP, 10_000_100), (ETH_PERP, 4_000_000))
    many = tuple((i, i + 1) for i in range(130))
    assert [len(a.prices) for a in build_oracle_actions(many)] == [64, 64, 2]
    assert build_oracle_actions(many)[1].prices[0] == (64, 65)


def test_feeder_submits_one_admitted_and_gossiped_transaction_with_increasing_nonces() -> None:
    state = make_state()
    clock = Clock(state.time_ms + 1000)
    feeder, mempool, metrics, gossiped = make_feeder(state, {ETH_PERP: 4_000_000, BTC_PERP: 10_000_000}, clock)
    assert asyncio.run(feeder.step()) == 1.0
    tx = decode_transaction(gossiped[0])
    assert tx.account == tx.signer == VALIDATOR.address and tx.hash in mempool
    assert tx.actions == (OraclePrice(((BTC_PERP, 10_000_000), (ETH_PERP, 4_000_000))),)
    assert tx.nonce == clock.now_ms

    # the block takes it: with the only validator's price fresh, it is the oracle and the mark
    apply_block(state, make_block(state, clock.now_ms + 5, [tx.wire]), mempool.verified())
    mempool.update(state, [tx.hash])
    assert (state.markets[BTC_PERP].oracle_price, state.markets[BTC_PERP].mark_price) == (10_000_000, 10_000_000)
    assert state.markets[ETH_PERP].oracle_price == 4_000_000

    nonces = [tx.nonce]
    for _ in range(3):  # the clock stands still: the nonce still goes up, and every one is admitted
        assert asyncio.run(feeder.step()) == 1.0
        nonces.append(decode_transaction(gossiped[-1]).nonce)
        mempool.update(state, [decode_transaction(gossiped[-1]).hash])
    assert nonces == [clock.now_ms, clock.now_ms + 1, clock.now_ms + 2, clock.now_ms + 3]
    assert count(metrics, "ok") == 4


def test_feeder_starts_above_the_nonces_the_chain_kept_for_its_key() -> None:
    state = make_state()
    state.nonces[VALIDATOR.address] = [state.time_ms + 5000]
    feeder, _, _, gossiped = make_feeder(state, {BTC_PERP: 10_000_000}, Clock(state.time_ms + 1000))
    asyncio.run(feeder.step())
    assert decode_transaction(gossiped[0]).nonce == state.time_ms + 5001


def test_feeder_waits_while_its_clock_is_outside_the_nonce_window() -> None:
    state = make_state()  # genesis time far in the past, as on a new localnet before its first block
    clock = Clock(state.time_ms + 2 * DAY_MS)
    feeder, mempool, metrics, gossiped = make_feeder(state, {BTC_PERP: 10_000_000}, clock)
    assert asyncio.run(feeder.step()) < 1.0 and gossiped == [] and len(mempool) == 0
    apply_block(state, make_block(state, clock.now_ms - 10, []))  # the first block brings the chain's time near
    asyncio.run(feeder.step())
    assert len(gossiped) == 1 and count(metrics, "ok") == 1


def test_feeder_holds_back_while_its_previous_submission_is_pending() -> None:
    state = make_state()
    clock = Clock(state.time_ms + 1000)
    feeder, mempool, _, gossiped = make_feeder(state, {BTC_PERP: 10_000_000}, clock)
    asyncio.run(feeder.step())
    clock.now_ms += 1000
    assert asyncio.run(feeder.step()) < 1.0 and len(gossiped) == 1 and len(mempool) == 1


def test_feeder_is_idle_outside_the_validator_set() -> None:
    state = make_state([PrivateKey(bytes([8]) * 32)])
    feeder, _, metrics, gossiped = make_feeder(state, {BTC_PERP: 10_000_000}, Clock(state.time_ms + 1000))
    assert asyncio.run(feeder.step()) == 1.0 and gossiped == [] and count(metrics, "ok") == 0


def test_feeder_counts_a_failing_source_and_one_without_prices() -> None:
    state = make_state()
    clock = Clock(state.time_ms + 1000)

    def broken() -> dict:
        raise RuntimeError("feed down")

    for source, result in ((broken, "source_error"), (static_source({99: 5}), "no_prices")):
        feeder, _, metrics, gossiped = make_feeder(state, source, clock)
        assert asyncio.run(feeder.step()) == 1.0 and gossiped == [] and count(metrics, result) == 1


def test_feeder_awaits_an_async_source() -> None:
    state = make_state()

    async def source() -> dict:
        return {ETH_PERP: 3_999_996}

    feeder, _, _, gossiped = make_feeder(state, source, Clock(state.time_ms + 1000))
    asyncio.run(feeder.step())
    assert decode_transaction(gossiped[0]).actions == (OraclePrice(((ETH_PERP, 4_000_000),)),)


# --- a real localnet -----------------------------------------------------------------------------------------

def perp_prices(port: int) -> dict[str, tuple[str, str]] | None:
    answer = call_rpc(port, "markets")
    if answer is None:
        return None
    return {m["symbol"]: (m["perp"]["oracle_price"], m["perp"]["mark_price"])
            for m in answer["markets"] if m["kind"] == "perp"}


def test_node_localnet_validators_price_the_perps_and_a_perp_order_rests(tmp_path: Path) -> None:
    net = Net(tmp_path / "net", 4)
    try:
        started = time.monotonic()
        for i in range(4):
            net.start(i)
        expected = {"BTC-PERP": ("10000000", "10000000"), "ETH-PERP": ("4000000", "4000000")}
        assert wait_for(lambda: perp_prices(net.rpc_port(0)) == expected, 20), (perp_prices(net.rpc_port(0)),
                                                                               net.log(0))
        print(f"perps priced {time.monotonic() - started:.2f} s after start")
        assert perp_prices(net.rpc_port(3)) == expected or wait_for(
            lambda: perp_prices(net.rpc_port(3)) == expected, 5)

        trader = Wallet(PrivateKey(bytes([9]) * 32), CHAIN)
        signed = trader.sign(faucet(0, 10_000 * 10**6), collateral_transfer(10_000 * 10**6),
                             place(BTC_PERP, True, 9_900_000, 2, client_id=7))
        answer = call_rpc(net.rpc_port(1), "broadcast_tx_sync", {"tx": signed.wire.hex()}, timeout=5)
        assert answer is not None and answer["code"] == "ok", answer
        assert wait_for(lambda: call_rpc(net.rpc_port(2), "tx", {"hash": signed.hash.hex()}) is not None, 10)
        receipt = call_rpc(net.rpc_port(2), "tx", {"hash": signed.hash.hex()})["tx_result"]
        assert [r["code"] for r in receipt["results"]] == [0, 0, 0], receipt
        orders = call_rpc(net.rpc_port(2), "open_orders", {"address": trader.address.hex()})["orders"]
        assert len(orders) == 1 and orders[0]["market"] == BTC_PERP, orders
        assert 'kabuto_oracle_submissions_total{result="ok"}' in net.metrics(3)
    finally:
        net.kill_all()
