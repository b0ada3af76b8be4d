"""In-process tests of the consensus driver (`node.driver.ConsensusDriver`) with one validator: it decides heights
through the app, rotates its WAL between heights, a restart restores from the rotated WAL, and peer messages
over capacity are dropped; with two, a proposal carrying transactions the node has not admitted is judged only
once they have been through admission."""

import asyncio
import hashlib
from pathlib import Path

from consensus.engine import Engine, EngineConfig, TimeoutConfig
from consensus.messages import PREVOTE, Proposal, Vote, pack_message
from consensus.validators import ValidatorSet
from consensus.wal import FileWAL
from genesis import localnet_genesis, validate_genesis
from node.app import ChainApp
from node.driver import WAL_FILE, ConsensusDriver
from node.mempool import Mempool
from node.p2p.gossip import MSG_PROPOSAL
from node.storage import ChainStore, MemoryKV
from node.telemetry import ConsensusPosition, NodeMetrics
from rpc.views import InMemoryChainView
from stf.block import make_block
from stf.crypto import PrivateKey
from stf.state import export_entries, initialize_state
from stf.tx import Transfer, sign_transaction

CHAIN = "kabuto-localnet"
KEY = PrivateKey(b"\x07" * 32)
OTHER = PrivateKey(b"\x08" * 32)   # the other validator, in the two-validator tests
TRADER = PrivateKey(b"\x09" * 32)
PEER = b"\x01" * 20
TIMEOUTS = TimeoutConfig(200, 50, 100, 50, 100, 50)


def make_app(*keys: PrivateKey) -> ChainApp:
    genesis = validate_genesis(localnet_genesis(CHAIN, validators=[(k.address.hex(), 10) for k in keys])
                               if keys else localnet_genesis(CHAIN))
    state = initialize_state(genesis)
    store = ChainStore(MemoryKV())
    store.save_genesis(CHAIN, export_entries(state), state.merkle.root())
    state = store.load_state(genesis.params)
    return ChainApp(state, store, Mempool(), InMemoryChainView(state), NodeMetrics(), KEY.address,
                    lambda block, result, messages: None, 1 << 20)


def make_driver(app: ChainApp, wal_dir: Path, sent: list, rotate_bytes: int) -> ConsensusDriver:
    height = app.height + 1
    validators = ValidatorSet.from_genesis([(KEY.public_key, 10)])
    for _ in range(height - 1):
        validators = validators.next_height_set()
    wal = FileWAL(str(wal_dir / WAL_FILE))
    engine, initial = Engine.restore(EngineConfig(CHAIN, TIMEOUTS), KEY, height, validators,
                                     validators.next_height_set(), wal)
    return ConsensusDriver(engine, app, wal_dir, lambda msg_type, payload: sent.append(msg_type) or 1,
                           ConsensusPosition(), app.metrics, empty_block_interval_ms=0, initial_actions=initial,
                           wal_rotate_bytes=rotate_bytes)


async def run_until_height(driver: ConsensusDriver, height: int) -> None:
    task = asyncio.create_task(driver.run())
    try:
        while driver.app.height < height:
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_driver_decides_heights_rotates_its_wal_and_restores(tmp_path: Path) -> None:
    app = make_app()
    sent: list[int] = []
    driver = make_driver(app, tmp_path, sent, rotate_bytes=1)  # rotate before every next height
    asyncio.run(asyncio.wait_for(run_until_height(driver, 5), 20))
    assert app.store.get_latest().height == app.height >= 5
    assert driver.engine.height in (app.height, app.height + 1)  # Committed may still wait in the queue
    assert driver.position.height == driver.engine.height
    assert sent and set(sent) <= {17, 18}  # votes and proposals went to the network
    records = driver.engine.wal.records()
    assert len(records) < 20  # only the current height's records survive a rotation
    driver.engine.wal.close()

    restarted = make_driver(app, tmp_path, [], rotate_bytes=1 << 30)
    asyncio.run(asyncio.wait_for(run_until_height(restarted, app.height + 3), 20))
    assert app.store.get_latest().height == app.height
    restarted.engine.wal.close()


def test_driver_drops_peer_messages_over_capacity(tmp_path: Path) -> None:
    async def scenario() -> int:
        driver = make_driver(make_app(), tmp_path, [], rotate_bytes=1 << 30)
        driver.max_pending = 1
        driver.submit_message(b"\x01" * 20, b"\x92\x01\x02", 17)  # undecodable: dropped before queueing
        vote = pack_message(Vote(PREVOTE, 1, 0, None, KEY.address, 1).signed(KEY, CHAIN))
        driver.submit_message(b"\x01" * 20, vote, 17)
        driver.submit_message(b"\x01" * 20, vote, 17)  # over capacity
        driver.engine.wal.close()
        return driver._queue.qsize()
    assert asyncio.run(scenario()) == 1


def test_with_pending_transactions_heights_start_no_closer_than_the_minimum_interval(tmp_path: Path) -> None:
    """A busy chain starts a height `min_block_interval_ms` after the previous one started, not at once."""

    class BusyMempool(Mempool):
        def __len__(self) -> int:   # always something pending: the driver takes the busy path
            return 1

    async def scenario() -> list[float]:
        app = make_app()
        app.mempool = BusyMempool()
        driver = make_driver(app, tmp_path, [], rotate_bytes=1 << 30)
        driver.min_block_interval_ms = 150
        started: list[float] = []
        app.on_commit.append(lambda height, block: started.append(asyncio.get_running_loop().time()))
        await run_until_height(driver, 6)
        driver.engine.wal.close()
        return started
    commits = asyncio.run(asyncio.wait_for(scenario(), 30))
    gaps = [b - a for a, b in zip(commits[1:], commits[2:])]   # the first height after start has no predecessor
    assert len(gaps) >= 3 and min(gaps) >= 0.14   # a lower bound: a loaded machine makes gaps longer, not shorter


# --- a proposal's transactions go through admission before the verdict ----------------------------------------

class GatedExpedite:
    """A stand-in for `NodeSubmitter.expedite`: records each call and, once `gate` is set, admits the wires into
    the app's mempool (when `admits`) or raises (when `fails`)."""

    def __init__(self, app: ChainApp, admits: bool = True, fails: bool = False) -> None:
        self.app, self.admits, self.fails = app, admits, fails
        self.gate = asyncio.Event()
        self.calls: list[tuple[list[bytes], bytes | None]] = []

    async def __call__(self, wires: list[bytes], source: bytes | None) -> None:
        self.calls.append((list(wires), source))
        await self.gate.wait()
        if self.fails:
            raise RuntimeError("admission broke")
        for wire in wires if self.admits else ():
            self.app.mempool.admit(wire, self.app.state)


def propose_transactions(app: ChainApp, wires: list[bytes]) -> tuple[bytes, bytes]:
    """(OTHER's round-0 proposal of a block carrying `wires`, packed; the block's value hash)."""
    value = make_block(app.state, app.state.time_ms + 1000, wires, OTHER.address).to_wire()
    value_hash = hashlib.sha256(value).digest()
    return pack_message(Proposal(1, 0, -1, value_hash, value, OTHER.address).signed(OTHER, CHAIN)), value_hash


def make_pair_driver(app: ChainApp, wal_dir: Path, expedite) -> ConsensusDriver:
    """KEY's driver in a two-validator set where OTHER proposes round 0 and KEY alone has no quorum."""
    validators = ValidatorSet.from_genesis([(KEY.public_key, 1), (OTHER.public_key, 10)])
    engine, initial = Engine.restore(EngineConfig(CHAIN, TimeoutConfig(2000, 50, 100, 50, 100, 50)), KEY, 1,
                                     validators, validators.next_height_set(), FileWAL(str(wal_dir / WAL_FILE)))
    assert validators.proposer_at(0) == OTHER.address
    return ConsensusDriver(engine, app, wal_dir, lambda msg_type, payload: 1, ConsensusPosition(), app.metrics,
                           empty_block_interval_ms=0, initial_actions=initial, expedite=expedite)


def judge_with_gate(app: ChainApp, driver: ConsensusDriver, expedite: GatedExpedite, proposal: bytes,
                    value_hash: bytes) -> tuple[dict, dict]:
    """The engine's verdicts before the gate opens and after; the proposal arrives from PEER."""
    async def scenario() -> tuple[dict, dict]:
        task = asyncio.create_task(driver.run())
        try:
            driver.submit_message(PEER, proposal, MSG_PROPOSAL)
            for _ in range(100):
                await asyncio.sleep(0.005)
            before = dict(driver.engine.validity)
            expedite.gate.set()
            for _ in range(200):
                if value_hash in driver.engine.validity:
                    break
                await asyncio.sleep(0.005)
            return before, dict(driver.engine.validity)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            driver.engine.wal.close()
    return asyncio.run(asyncio.wait_for(scenario(), 20))


def trader_wire(app: ChainApp, nonce_offset: int, key: PrivateKey = TRADER) -> bytes:
    return sign_transaction(key, CHAIN, app.state.time_ms + nonce_offset, [Transfer(OTHER.address, 0, 1)])


def test_a_proposal_with_unadmitted_transactions_is_judged_once_they_are_admitted(tmp_path: Path) -> None:
    app = make_app(KEY, OTHER)
    pending, fresh = trader_wire(app, 1), trader_wire(app, 2)
    app.mempool.admit(pending, app.state)
    expedite = GatedExpedite(app)
    proposal, value_hash = propose_transactions(app, [pending, fresh])
    before, after = judge_with_gate(app, make_pair_driver(app, tmp_path, expedite), expedite, proposal, value_hash)
    assert value_hash not in before            # no verdict while the transaction waits for admission
    assert expedite.calls == [([fresh], PEER)]  # only what the mempool lacks, with the proposal's source
    assert after[value_hash] is True and fresh in app.mempool.verified()


def test_a_proposal_is_judged_on_the_loop_when_admission_takes_nothing_or_fails(tmp_path: Path) -> None:
    for admits, fails in ((False, False), (True, True)):
        app = make_app(KEY, OTHER)
        expedite = GatedExpedite(app, admits=admits, fails=fails)
        wire = trader_wire(app, 1)
        proposal, value_hash = propose_transactions(app, [wire])
        path = tmp_path / f"{admits}-{fails}"
        path.mkdir()
        before, after = judge_with_gate(app, make_pair_driver(app, path, expedite), expedite, proposal, value_hash)
        assert value_hash not in before and len(expedite.calls) == 1   # asked once, never again for this value
        assert after[value_hash] is True and wire not in app.mempool.verified()   # checked on the loop: valid


def test_invalid_signature_in_a_proposal_admission_refused_is_judged_invalid(tmp_path: Path) -> None:
    app = make_app(KEY, OTHER)
    good = trader_wire(app, 1)
    forged = bytearray(good)
    forged[-1] ^= 1                             # the last byte of the signature
    expedite = GatedExpedite(app, admits=False)
    proposal, value_hash = propose_transactions(app, [bytes(forged)])
    _, after = judge_with_gate(app, make_pair_driver(app, tmp_path, expedite), expedite, proposal, value_hash)
    assert len(expedite.calls) == 1 and after[value_hash] is False


def test_a_proposal_whose_transactions_are_all_pending_is_judged_at_once(tmp_path: Path) -> None:
    app = make_app(KEY, OTHER)
    wire = trader_wire(app, 1)
    app.mempool.admit(wire, app.state)
    expedite = GatedExpedite(app)
    proposal, value_hash = propose_transactions(app, [wire])
    before, _ = judge_with_gate(app, make_pair_driver(app, tmp_path, expedite), expedite, proposal, value_hash)
    assert before[value_hash] is True and expedite.calls == []
