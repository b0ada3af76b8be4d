"""In-process tests of the fault-campaign features of the node: the evidence reporter (node/evidence.py), the
driver's byzantine mode and its evidence hand-over, the block-time bound (`ChainApp.validate_value` and the
driver's deferred verdict), the shared clock, and the new config keys (`[consensus] max_future_block_time_ms`,
`[debug] double_sign` and `clock_skew_ms`), each bad value with a `test_invalid_*`."""

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from consensus.engine import Engine, EngineConfig, TimeoutConfig
from consensus.events import RECORD_SIGNED, decode_wal_record
from consensus.evidence import make_duplicate_vote_evidence, verify_evidence
from consensus.messages import PREVOTE, Proposal, Vote, pack_message, unpack_message
from consensus.validators import ValidatorSet
from consensus.wal import FileWAL
from genesis import localnet_genesis, validate_genesis
from node.app import ChainApp
from node.config import ConfigError, ConsensusSection, DebugSection, NodeConfig, parse_config, render_config
import node.driver as driver_module
from node.driver import WAL_FILE, ConsensusDriver, make_clock, now_ms
from node.evidence import EvidenceReporter, build_report
from node.home import LOCALNET_CONSENSUS
from node.mempool import Mempool
from node.p2p.gossip import MSG_PROPOSAL, MSG_VOTE
from node.storage import ChainStore, MemoryKV
from node.submit import NodeSubmitter, SubmitResult
from node.telemetry import ConsensusPosition, NodeMetrics
from rpc.client.wallet import NonceSource, Wallet
from rpc.views import InMemoryChainView
from stf.block import apply_block, decode_block, make_block
from stf.crypto import PrivateKey
from stf.errors import ResultCode
from stf.state import State, export_entries, initialize_state
from stf.tx import decode_transaction

CHAIN = "kabuto-localnet"
KEY = PrivateKey(b"\x07" * 32)          # this node's validator key
OTHER = PrivateKey(b"\x08" * 32)        # another validator
TIMEOUTS = TimeoutConfig(200, 50, 100, 50, 100, 50)
HASH_A = b"\xaa" * 32


def make_state(*keys: PrivateKey) -> State:
    genesis = validate_genesis(localnet_genesis(CHAIN, validators=[(k.address.hex(), 10) for k in keys]))
    return initialize_state(genesis)


def make_app(*keys: PrivateKey) -> ChainApp:
    genesis = validate_genesis(localnet_genesis(CHAIN, validators=[(k.address.hex(), 10) for k in keys]))
    state = initialize_state(genesis)
    store = ChainStore(MemoryKV())
    store.save_genesis(CHAIN, export_entries(state), state.merkle.root())
    state = store.load_state(genesis.params)
    return ChainApp(state, store, Mempool(), InMemoryChainView(state), NodeMetrics(), KEY.address,
                    lambda block, result, messages: None, 1 << 20)


def double_vote(key: PrivateKey, height: int = 1, round_: int = 0):
    first = Vote(PREVOTE, height, round_, HASH_A, key.address, 1).signed(key, CHAIN)
    second = Vote(PREVOTE, height, round_, None, key.address, 2).signed(key, CHAIN)
    return first, second


def reported(metrics: NodeMetrics, result: str) -> float:
    return metrics.registry.get_sample_value("kabuto_evidence_reported_total", {"result": result}) or 0.0


# --- the evidence reporter -------------------------------------------------------------------------------------

def make_reporter(state: State, public_keys: dict | None = None):
    mempool, metrics = Mempool(), NodeMetrics()
    submitter = NodeSubmitter(mempool, lambda: state, lambda *gossip: None, metrics, verify_workers=0)
    wallet = Wallet(KEY, CHAIN, nonces=NonceSource(lambda: state.time_ms + 1))
    keys = public_keys if public_keys is not None else {k.address: k.public_key for k in (KEY, OTHER)}
    reporter = EvidenceReporter(wallet, keys, submitter.submit, lambda: state, metrics)
    return reporter, (lambda: mempool.reap(state, state.time_ms + 1000, max_bytes=1 << 20)), metrics


async def drain(reporter: EvidenceReporter) -> None:
    task = asyncio.create_task(reporter.run())
    try:
        while not reporter._queue.empty():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_reporter_submits_one_signed_report_per_offence_and_the_chain_records_it() -> None:
    state = make_state(KEY, OTHER)
    reporter, pending, metrics = make_reporter(state)
    first, second = double_vote(OTHER)
    evidence = make_duplicate_vote_evidence(first, second)
    reporter.report(evidence)
    reporter.report(make_duplicate_vote_evidence(second, first))  # the same offence: not again
    third = Vote(PREVOTE, 1, 0, b"\xcc" * 32, OTHER.address, 3).signed(OTHER, CHAIN)
    reporter.report(make_duplicate_vote_evidence(first, third))  # another pair, same offence: not again
    asyncio.run(drain(reporter))
    admitted = pending()
    assert len(admitted) == 1 and reported(metrics, "ok") == 1
    tx = decode_transaction(admitted[0])
    assert tx.account == tx.signer == KEY.address
    assert tx.actions == (build_report(evidence, OTHER.public_key),)
    result = apply_block(state, make_block(state, state.time_ms + 1000, admitted))
    assert result.receipts[0].results[0].code == ResultCode.OK
    assert state.evidence == {(OTHER.address, 1): {(0, PREVOTE): 1}}

    # another node's reporter (fresh memory) finds the offence recorded and sends nothing
    late, late_pending, late_metrics = make_reporter(state)
    late.report(evidence)
    asyncio.run(drain(late))
    assert late_pending() == [] and reported(late_metrics, "already_recorded") == 1


def test_reporter_counts_a_validator_without_a_known_key_and_a_full_queue() -> None:
    state = make_state(KEY, OTHER)
    reporter, pending, metrics = make_reporter(state, public_keys={})
    reporter.report(make_duplicate_vote_evidence(*double_vote(OTHER)))
    asyncio.run(drain(reporter))
    assert pending() == [] and reported(metrics, "unknown_validator") == 1

    full, _, full_metrics = make_reporter(state)
    for height in range(1, full._queue.maxsize + 3):
        full.report(make_duplicate_vote_evidence(*double_vote(OTHER, height)))
    assert full._queue.full() and reported(full_metrics, "dropped") == 2


def test_reporter_counts_an_admission_refusal() -> None:
    state = make_state(KEY, OTHER)
    reporter, _, metrics = make_reporter(state)

    async def full_pool(wire: bytes) -> SubmitResult:
        return SubmitResult(hashlib.sha256(wire).digest(), "mempool_full", "the pool is full")

    reporter.submit = full_pool
    reporter.report(make_duplicate_vote_evidence(*double_vote(OTHER)))
    asyncio.run(drain(reporter))
    assert reported(metrics, "mempool_full") == 1


def test_reporter_waits_for_a_block_within_the_nonce_window_of_its_clock() -> None:
    state = make_state(KEY, OTHER)  # a chain whose genesis time is long before this clock
    reporter, pending, metrics = make_reporter(state)
    clock_ms = state.time_ms + 2 * 86_400_000  # beyond the window's future edge (1 day) of the genesis time
    reporter.wallet = Wallet(KEY, CHAIN, nonces=NonceSource(lambda: clock_ms))
    reporter.report(make_duplicate_vote_evidence(*double_vote(OTHER)))

    async def scenario() -> list:
        task = asyncio.create_task(reporter.run())
        try:
            await asyncio.sleep(0.3)
            waiting = pending()
            apply_block(state, make_block(state, clock_ms - 1000, []))  # the first block, at about this clock
            await asyncio.sleep(0.3)
            return waiting
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(scenario()) == [] and len(pending()) == 1 and reported(metrics, "ok") == 1
    assert reported(metrics, "nonce_too_new") == 0


# --- the block-time bound --------------------------------------------------------------------------------------

def test_validate_value_refuses_a_block_too_far_in_the_future() -> None:
    app = make_app(KEY)
    app.max_future_block_time_ms = 1000
    base = app.state.time_ms + 60_000
    app.clock_ms = lambda: base
    at_bound = make_block(app.state, base + 1000, [], OTHER.address).to_wire()
    beyond = make_block(app.state, base + 1001, [], OTHER.address).to_wire()
    assert app.validate_value(1, at_bound) and app.compute_validity_wait_ms(at_bound) == 0
    assert not app.validate_value(1, beyond) and app.compute_validity_wait_ms(beyond) == 1
    app.clock_ms = lambda: base + 1  # time passes: the same block becomes valid (never "more future")
    assert app.validate_value(1, beyond) and app.compute_validity_wait_ms(beyond) == 0
    assert app.compute_validity_wait_ms(b"not a block") == 0 and not app.validate_value(1, b"not a block")


def test_validate_value_refusal_is_logged_with_its_reason(caplog) -> None:
    app = make_app(KEY)
    app.clock_ms = lambda: app.state.time_ms
    with caplog.at_level("WARNING", logger="node.app"):
        assert not app.validate_value(1, make_block(app.state, app.state.time_ms + 5000, []).to_wire())
    assert "ahead of this node's clock" in caplog.text and "max_future_block_time_ms (2000)" in caplog.text


def test_own_proposal_time_is_the_node_clock_shifted_by_its_skew() -> None:
    app = make_app(KEY)
    skewed = make_clock(10_000)
    app.clock_ms = skewed
    before = now_ms()
    block = decode_block(app.propose_value(1, 0, None))
    assert before + 10_000 <= block.header.time_ms <= now_ms() + 10_000
    assert make_clock(0) is now_ms and abs(make_clock(-5_000)() + 5_000 - now_ms()) < 1000


# --- the driver: deferred verdicts, byzantine mode, evidence hand-over -----------------------------------------

def make_driver(app: ChainApp, wal_dir: Path, sent: list, powers: dict, **kwargs) -> ConsensusDriver:
    validators = ValidatorSet.from_genesis([(k.public_key, p) for k, p in powers.items()])
    engine, initial = Engine.restore(EngineConfig(CHAIN, TIMEOUTS), KEY, 1, validators,
                                     validators.next_height_set(), FileWAL(str(wal_dir / WAL_FILE)))
    return ConsensusDriver(engine, app, wal_dir, lambda msg_type, payload: sent.append((msg_type, payload)) or 1,
                           ConsensusPosition(), app.metrics, empty_block_interval_ms=0, initial_actions=initial,
                           **kwargs)


async def run_for(driver: ConsensusDriver, seconds: float, until=lambda: False) -> None:
    task = asyncio.create_task(driver.run())
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_driver_defers_the_verdict_on_a_future_proposal_until_its_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(driver_module, "MAX_RECHECK_MS", 150)  # judged again every 150 ms, deferred again
    app = make_app(KEY, OTHER)
    app.max_future_block_time_ms = 100
    sent: list = []
    powers = {KEY: 1, OTHER: 10}  # OTHER proposes round 0; KEY alone has no quorum, so nothing commits
    driver = make_driver(app, tmp_path, sent, powers)
    assert driver.engine.validators.proposer_at(0) == OTHER.address
    value = make_block(app.state, now_ms() + 100 + 600, [], OTHER.address).to_wire()
    value_hash = hashlib.sha256(value).digest()
    proposal = Proposal(1, 0, -1, value_hash, value, OTHER.address).signed(OTHER, CHAIN)

    async def scenario() -> tuple:
        task = asyncio.create_task(driver.run())
        try:
            driver.submit_message(b"\x01" * 20, pack_message(proposal), MSG_PROPOSAL)
            await asyncio.sleep(0.35)  # past the propose timeout (200 ms), before the block's time (600 ms)
            early = (dict(driver.engine.validity), [unpack_message(p) for t, p in sent if t == MSG_VOTE])
            await asyncio.sleep(0.6)
            return early, dict(driver.engine.validity)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    (early_validity, early_votes), late_validity = asyncio.run(scenario())
    driver.engine.wal.close()
    assert value_hash not in early_validity  # no verdict yet: a "no" would have stuck for the whole height
    assert [(v.vote_type, v.value_hash) for v in early_votes][:1] == [(PREVOTE, None)]  # nil on the timeout
    assert late_validity[value_hash] is True  # judged again once this clock caught up: valid


def test_driver_in_double_sign_mode_follows_each_prevote_with_a_conflicting_one(tmp_path: Path) -> None:
    app = make_app(KEY)
    sent: list = []
    driver = make_driver(app, tmp_path, sent, {KEY: 10}, double_sign=True)
    asyncio.run(run_for(driver, 10, until=lambda: app.height >= 3))
    assert app.height >= 3  # a lone byzantine validator still decides: its engine never saw the second vote
    prevotes = [m for t, m in ((t, unpack_message(p)) for t, p in sent if t == MSG_VOTE) if m.vote_type == PREVOTE]
    by_slot: dict = {}
    for vote in prevotes:
        by_slot.setdefault((vote.height, vote.round), []).append(vote)
    validators = ValidatorSet.from_genesis([(KEY.public_key, 10)])
    for (height, round_), votes in by_slot.items():
        if height > app.height:
            continue
        honest, conflicting = votes[0], votes[1]
        assert honest.value_hash is not None and conflicting.value_hash is None  # the block's prevote, then nil
        assert verify_evidence(make_duplicate_vote_evidence(honest, conflicting), validators, CHAIN) == KEY.address
    assert driver.engine.double_sign_refusals == 0
    # the WAL and the re-send list hold the honest prevotes only: a restart re-derives exactly those
    signed = [unpack_message(p) for h, r, t, p in driver._own if t == MSG_VOTE]
    assert all(v.value_hash is not None for v in signed if v.vote_type == PREVOTE)
    records = [decode_wal_record(r) for r in driver.engine.wal.records()]
    driver.engine.wal.close()
    wal_prevotes = [item for kind, _, item in records
                    if kind == RECORD_SIGNED and isinstance(item, Vote) and item.vote_type == PREVOTE]
    assert wal_prevotes and all(v.value_hash is not None for v in wal_prevotes)


def test_driver_hands_evidence_of_a_peer_double_vote_to_its_reporter(tmp_path: Path) -> None:
    app = make_app(KEY, OTHER)
    handed: list = []
    driver = make_driver(app, tmp_path, [], {KEY: 10, OTHER: 10}, on_evidence=handed.append)
    first, second = double_vote(OTHER)

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        try:
            for vote in (first, second, second):
                driver.submit_message(b"\x01" * 20, pack_message(vote), MSG_VOTE)
            await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    driver.engine.wal.close()
    assert handed == [make_duplicate_vote_evidence(first, second)]


# --- config ----------------------------------------------------------------------------------------------------

def test_new_keys_default_and_round_trip() -> None:
    config = NodeConfig()
    assert config.consensus.max_future_block_time_ms == 2000
    assert config.debug == DebugSection(double_sign=False, clock_skew_ms=0)
    assert LOCALNET_CONSENSUS.max_future_block_time_ms == 1000
    custom = NodeConfig(consensus=ConsensusSection(max_future_block_time_ms=0),
                        debug=DebugSection(double_sign=True, clock_skew_ms=-86_400_000))
    assert parse_config(render_config(custom)) == custom
    assert "Test-only" in render_config(NodeConfig())
    parsed = parse_config("[debug]\ndouble_sign = true\nclock_skew_ms = 10000\n"
                          "[consensus]\nmax_future_block_time_ms = 1000\n")
    assert parsed.debug == DebugSection(True, 10_000) and parsed.consensus.max_future_block_time_ms == 1000


@pytest.mark.parametrize("text, field", [
    ('[debug]\ndouble_sign = 1\n', "debug.double_sign"),
    ('[debug]\ndouble_sign = "yes"\n', "debug.double_sign"),
    ('[debug]\nclock_skew_ms = 86400001\n', "debug.clock_skew_ms"),
    ('[debug]\nclock_skew_ms = -86400001\n', "debug.clock_skew_ms"),
    ('[debug]\nclock_skew_ms = 1.5\n', "debug.clock_skew_ms"),
    ('[debug]\nclock_skew_ms = true\n', "debug.clock_skew_ms"),
    ('[debug]\nskew = 5\n', "debug.skew"),
    ('debug = 5\n', "debug"),
    ('[consensus]\nmax_future_block_time_ms = -1\n', "consensus.max_future_block_time_ms"),
    ('[consensus]\nmax_future_block_time_ms = 86400001\n', "consensus.max_future_block_time_ms"),
    ('[consensus]\nmax_future_block_time_ms = "2000"\n', "consensus.max_future_block_time_ms"),
], ids=lambda x: x.replace("\n", " ").strip())
def test_invalid_debug_and_block_time_keys(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.field == field
