"""In-process tests of the consensus driver (`node.driver.ConsensusDriver`) with one validator: it decides heights
through the app, rotates its WAL between heights, a restart restores from the rotated WAL, and peer messages
over capacity are dropped."""

import asyncio
from pathlib import Path

from consensus.engine import Engine, EngineConfig, TimeoutConfig
from consensus.messages import PREVOTE, Vote, pack_message
from consensus.validators import ValidatorSet
from consensus.wal import FileWAL
from genesis import localnet_genesis, validate_genesis
from node.app import ChainApp
from node.driver import WAL_FILE, ConsensusDriver
from node.mempool import Mempool
from node.storage import ChainStore, MemoryKV
from node.telemetry import ConsensusPosition, NodeMetrics
from rpc.views import InMemoryChainView
from stf.crypto import PrivateKey
from stf.state import export_entries, initialize_state

CHAIN = "kabuto-localnet"
KEY = PrivateKey(b"\x07" * 32)
TIMEOUTS = TimeoutConfig(200, 50, 100, 50, 100, 50)


def make_app() -> ChainApp:
    genesis = validate_genesis(localnet_genesis(CHAIN))
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
