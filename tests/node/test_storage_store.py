"""ChainStore over both backends with real blocks from the STF, and a kill -9 crash simulation on LevelDB.

Blocks are a deterministic function of (state, height) (`make_txs`), so a writer that crashes and resumes from
`load_state` must produce exactly the chain of an uninterrupted run: the crash test checks every stored app hash
against such a reference run. This file is also the crash writer's script (`python test_storage_store.py
crash-writer PATH`), since helper modules outside tests/node/test_storage*.py are not ours to add.
"""

import hashlib
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genesis import minimal_genesis, validate_genesis
from node.storage import schema
from node.storage.kv import KeyValueStore, LevelDBKV, MemoryKV
from node.storage.schema import SchemaError, TxLocation
from node.storage.store import (
    BlockOutOfOrder, ChainMismatch, ChainStore, InvalidBlockRecord, ReplayMismatch, SchemaMismatch, SnapshotMissing,
    StateMismatch, StoreEmpty, open_chain_store,
)
from stf import codec
from stf.block import Block, BlockResult, apply_block, make_block
from stf.crypto import PrivateKey
from stf.params import ChainParams
from stf.state import State, export_entries, initialize_state
from stf.tx import TIF_GTC, Cancel, PlaceOrder, Transfer, sign_transaction

KEYS = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(4)]
USD, BTC = 0, 1
BTC_USD = 0
GENESIS = validate_genesis(minimal_genesis(
    balances=[(k.address.hex(), asset, 10**12) for k in KEYS for asset in (USD, BTC)],
))
PARAMS: ChainParams = GENESIS.params


# --- a deterministic chain ------------------------------------------------------------------------------------

def block_time(height: int) -> int:
    return GENESIS.genesis_time_ms + height * 1000


def make_action(state: State, height: int, k: int):
    """Orders around one price (so some cross), some with an expiry, a cancel now and then, a transfer."""
    key = KEYS[(height + k) % len(KEYS)]
    account = state.accounts.get(key.address)
    if k == 2 and height % 3 == 0 and account is not None and account.orders:
        return Cancel(BTC_USD, min(account.orders))
    if k == 2 and height % 5 == 0:
        return Transfer(KEYS[(height + 1) % len(KEYS)].address, USD, 1000 + height)
    seed = height * 7 + k * 13
    expires_at_ms = block_time(height) + 2500 if seed % 4 == 0 else 0
    return PlaceOrder(BTC_USD, (height + k) % 2 == 0, 1_000_000 + seed % 21 - 10, 1 + seed % 5, TIF_GTC, None,
                      expires_at_ms, False)


def make_txs(state: State, height: int) -> list[bytes]:
    return [
        sign_transaction(KEYS[(height + k) % len(KEYS)], PARAMS.chain_id, block_time(height) + k,
                         [make_action(state, height, k)])
        for k in range(3)
    ]


def next_block(state: State) -> tuple[Block, BlockResult]:
    height = state.height + 1
    block = make_block(state, block_time(height), make_txs(state, height))
    return block, apply_block(state, block)


def commit_wire(height: int) -> bytes:
    return codec.encode([height, b"commit certificate"])


def save(store: ChainStore, block: Block, result: BlockResult, check: bool = True) -> None:
    height = block.header.height
    store.save_block(
        height, block.to_wire(), commit_wire(height), codec.encode([r.to_wire() for r in result.receipts]),
        [hashlib.sha256(tx).digest() for tx in block.txs], result.entries, result.state_root,
        block_hash=None if check else result.block_hash,
    )


def start_chain(store: ChainStore) -> State:
    state = initialize_state(GENESIS)
    store.save_genesis(PARAMS.chain_id, export_entries(state), state.merkle.root())
    return state


def run_blocks(store: ChainStore, state: State, count: int) -> list[tuple[Block, BlockResult]]:
    out = []
    for _ in range(count):
        block, result = next_block(state)
        save(store, block, result)
        out.append((block, result))
    return out


class Reference:
    """An uninterrupted run: `roots[h]` is the app hash after height h, extended on demand."""

    def __init__(self) -> None:
        self.state = initialize_state(GENESIS)
        self.roots = [self.state.merkle.root()]

    def root(self, height: int) -> bytes:
        while len(self.roots) <= height:
            self.roots.append(next_block(self.state)[1].state_root)
        return self.roots[height]


@pytest.fixture(params=["memory", "leveldb"])
def make_kv(request, tmp_path):
    opened: list[KeyValueStore] = []

    def make() -> KeyValueStore:
        kv = MemoryKV() if request.param == "memory" else LevelDBKV(tmp_path / "db")
        opened.append(kv)
        return kv

    yield make
    for kv in opened:
        kv.close()


@pytest.fixture
def store(make_kv) -> ChainStore:
    return ChainStore(make_kv())


# --- round trips ----------------------------------------------------------------------------------------------

def test_blocks_round_trip(store):
    state = start_chain(store)
    blocks = run_blocks(store, state, 8)
    assert store.latest() == schema.Meta(8, blocks[-1][1].block_hash, state.merkle.root())
    assert store.get_chain_id() == PARAMS.chain_id
    for block, result in blocks:
        height = block.header.height
        assert store.get_block(height) == block.to_wire()
        assert store.get_block_by_hash(result.block_hash) == block.to_wire()
        assert store.get_block_height(result.block_hash) == height
        assert store.get_commit(height) == commit_wire(height)
        assert store.get_receipts(height) == codec.encode([r.to_wire() for r in result.receipts])
        assert store.get_app_hash(height) == result.state_root
        for index, tx in enumerate(block.txs):
            assert store.get_tx_location(hashlib.sha256(tx).digest()) == TxLocation(height, index)
    assert store.get_block(9) is None and store.get_tx_location(bytes(32)) is None
    wires = [block.to_wire() for block, _ in blocks]
    assert list(store.iterate_blocks(3, 5)) == [(h, wires[h - 1]) for h in (3, 4, 5)]
    assert list(store.iterate_blocks(0, 2**64 - 1)) == list(enumerate(wires, start=1))
    assert list(store.iterate_blocks(9, 20)) == [] and list(store.iterate_blocks(5, 4)) == []
    assert list(store.iterate_state_entries()) == export_entries(state)


def test_load_state_rebuilds_the_same_state(store):
    state = start_chain(store)
    run_blocks(store, state, 12)
    loaded = store.load_state(PARAMS)
    assert loaded.merkle.root() == state.merkle.root() == store.get_latest().app_hash
    assert export_entries(loaded) == export_entries(state)
    assert (loaded.height, loaded.time_ms, loaded.last_block_hash) == (state.height, state.time_ms,
                                                                         state.last_block_hash)
    # the rebuilt state executes the next blocks exactly as the original does (derived indexes included)
    for _ in range(6):
        block, result = next_block(state)
        assert apply_block(loaded, block).state_root == result.state_root


def test_load_state_at_genesis(store):
    state = start_chain(store)
    assert store.latest() == schema.Meta(0, bytes(32), state.merkle.root())
    assert store.load_state(PARAMS).merkle.root() == state.merkle.root()


def test_save_block_with_given_hash_or_sequences(store):
    state = start_chain(store)
    block, result = next_block(state)
    save(store, block, result, check=False)
    assert store.get_latest().block_hash == result.block_hash
    block, result = next_block(state)  # tuples are as good as lists
    store.save_block(2, block.to_wire(), b"", b"", tuple(hashlib.sha256(tx).digest() for tx in block.txs),
                     tuple(result.entries), result.state_root)
    assert store.load_state(PARAMS).merkle.root() == result.state_root


def test_leveldb_reopen_then_resume(tmp_path):
    reference = Reference()
    roots = [reference.root(h) for h in range(11)]
    with ChainStore(LevelDBKV(tmp_path / "db")) as store:
        run_blocks(store, start_chain(store), 5)
    with ChainStore(LevelDBKV(tmp_path / "db", create=False)) as store:
        state = store.load_state(PARAMS)
        assert state.merkle.root() == roots[5]
        run_blocks(store, state, 5)
    with ChainStore(LevelDBKV(tmp_path / "db", create=False)) as store:
        assert store.load_state(PARAMS).merkle.root() == roots[10]
        assert [store.get_app_hash(h) for h in range(11)] == roots


# --- snapshots and replay -------------------------------------------------------------------------------------

def test_periodic_snapshots_are_kept_and_pruned(make_kv):
    store = ChainStore(make_kv(), snapshot_interval=3, snapshots_kept=2)
    state = start_chain(store)
    exports = {0: export_entries(state)}
    for _ in range(10):
        save(store, *next_block(state))
        exports[state.height] = export_entries(state)
    assert [m.height for m in store.list_snapshots()] == [6, 9]
    for height in (6, 9):
        manifest = store.get_snapshot(height)
        assert manifest.app_hash == store.get_app_hash(height)
        assert (manifest.entry_count, manifest.entries_hash) == schema.compute_entries_hash(exports[height])
        assert list(store.iterate_snapshot_entries(height)) == exports[height]
        assert store.load_snapshot(PARAMS, height).merkle.root() == manifest.app_hash
    assert list(store.iterate_snapshot_entries(3)) == [] and store.get_snapshot(0) is None
    assert not list(store.kv.iterate(schema.snapshot_entries_prefix(0)))


def test_snapshot_on_demand_and_replay(store):
    state = start_chain(store)
    run_blocks(store, state, 4)
    manifest = store.save_snapshot(4)
    assert manifest.height == 4 and manifest.app_hash == state.merkle.root()
    run_blocks(store, state, 5)
    assert store.load_snapshot(PARAMS).height == 4  # the newest
    replayed = store.replay(PARAMS)
    assert replayed.merkle.root() == state.merkle.root()
    assert export_entries(replayed) == export_entries(state)
    assert store.replay(PARAMS, snapshot_height=0, to_height=6).merkle.root() == store.get_app_hash(6)
    assert store.replay(PARAMS, check_signatures=False).merkle.root() == state.merkle.root()


def test_replay_then_restore_damaged_live_entries(store):
    state = start_chain(store)
    run_blocks(store, state, 5)
    accounts = [(k, v) for k, v in store.iterate_state_entries() if k[:1] == b"a"]
    store.kv.put(schema.state_key(accounts[0][0]), accounts[1][1])
    store.kv.put(schema.state_key(b"a" + bytes(20)), accounts[1][1])  # an entry that should not exist
    with pytest.raises(StateMismatch):
        store.load_state(PARAMS)
    store.restore_state_entries(store.replay(PARAMS))
    assert list(store.iterate_state_entries()) == export_entries(state)
    assert store.load_state(PARAMS).merkle.root() == state.merkle.root()


def test_open_chain_store(tmp_path):
    with open_chain_store(tmp_path / "home" / "data", snapshot_interval=2) as store:
        state = start_chain(store)
        run_blocks(store, state, 2)
    with open_chain_store(tmp_path / "home" / "data", create=False) as store:
        assert store.load_state(PARAMS).merkle.root() == state.merkle.root()
        assert [m.height for m in store.list_snapshots()] == [0, 2]


# --- refusals -------------------------------------------------------------------------------------------------

def test_invalid_save_block_before_genesis(store):
    block, result = next_block(initialize_state(GENESIS))
    with pytest.raises(StoreEmpty):
        save(store, block, result)


def test_invalid_second_genesis(store):
    state = start_chain(store)
    with pytest.raises(BlockOutOfOrder, match="already holds"):
        store.save_genesis(PARAMS.chain_id, export_entries(state), state.merkle.root())


def test_invalid_save_block_out_of_order(store):
    state = start_chain(store)
    first = next_block(state)
    second = next_block(state)
    with pytest.raises(BlockOutOfOrder, match="block 2 does not follow the latest stored height 0"):
        save(store, *second)
    save(store, *first)
    with pytest.raises(BlockOutOfOrder):
        save(store, *first)
    assert store.get_latest().height == 1 and store.get_block(2) is None


def test_invalid_block_height_differs_from_argument(store):
    state = start_chain(store)
    next_block(state)
    second, result = next_block(state)
    with pytest.raises(InvalidBlockRecord, match="header says height 2, saved as 1"):
        store.save_block(1, second.to_wire(), b"", b"", [], [], result.state_root)


def test_invalid_block_not_building_on_the_stored_chain(store):
    start_chain(store)
    other = initialize_state(validate_genesis(minimal_genesis()))  # same chain id, another genesis state
    block = make_block(other, block_time(1), [])
    with pytest.raises(InvalidBlockRecord, match="does not build on"):
        store.save_block(1, block.to_wire(), b"", b"", [], [], bytes(32))


def test_invalid_block_transaction_hashes(store):
    state = start_chain(store)
    block, result = next_block(state)
    hashes = [hashlib.sha256(tx).digest() for tx in block.txs]
    for wrong in ([bytes(32)], hashes[:2], hashes[::-1], hashes[:2] + [bytes(32)]):
        with pytest.raises(InvalidBlockRecord, match="transaction hashes given are not those of block 1"):
            store.save_block(1, block.to_wire(), b"", b"", wrong, result.entries, result.state_root)
    assert store.get_latest().height == 0


def test_invalid_block_wire(store):
    start_chain(store)
    with pytest.raises(InvalidBlockRecord, match="block 1"):
        store.save_block(1, b"\x93garbage", b"", b"", [], [], bytes(32))


def test_invalid_app_hash_writes_nothing(store):
    state = start_chain(store)
    block, result = next_block(state)
    with pytest.raises(SchemaError, match="32 bytes"):
        store.save_block(1, block.to_wire(), b"", b"", [hashlib.sha256(t).digest() for t in block.txs],
                         result.entries, b"short")
    assert store.get_latest().height == 0 and store.get_block(1) is None
    assert store.load_state(PARAMS).height == 0


def test_invalid_reads_of_an_empty_store(store):
    assert store.latest() is None and store.get_chain_id() is None
    for call in (lambda: store.load_state(PARAMS), store.get_latest, lambda: store.save_snapshot(0),
                 lambda: store.load_snapshot(PARAMS)):
        with pytest.raises(StoreEmpty):
            call()


def test_invalid_load_state_other_chain(store):
    start_chain(store)
    with pytest.raises(ChainMismatch, match="kabuto-test"):
        store.load_state(ChainParams("another-chain"))


def test_invalid_load_state_tampered_entry(store):
    state = start_chain(store)
    run_blocks(store, state, 3)
    accounts = [(k, v) for k, v in store.iterate_state_entries() if k[:1] == b"a"]
    store.kv.put(schema.state_key(accounts[0][0]), accounts[1][1])  # a well-formed but wrong value
    with pytest.raises(StateMismatch, match="app hash at height 3"):
        store.load_state(PARAMS)


def test_invalid_load_state_undecodable_entry(store):
    start_chain(store)
    store.kv.put(schema.state_key(b"zzz"), b"\x01")
    with pytest.raises(StateMismatch, match="do not decode"):
        store.load_state(PARAMS)


def test_invalid_schema_version(make_kv):
    kv = make_kv()
    kv.put(schema.VERSION_KEY, schema.encode_version(schema.SCHEMA_VERSION + 1))
    with pytest.raises(SchemaMismatch, match="schema version 2"):
        ChainStore(kv)
    assert kv.closed


def test_invalid_store_with_foreign_data(make_kv):
    kv = make_kv()
    kv.put(b"foreign", b"data")
    with pytest.raises(SchemaMismatch, match="not a chain store"):
        ChainStore(kv)


def test_invalid_snapshot_of_an_old_height(store):
    state = start_chain(store)
    run_blocks(store, state, 2)
    with pytest.raises(SnapshotMissing, match="latest state"):
        store.save_snapshot(1)


def test_invalid_load_snapshot_missing(store):
    start_chain(store)
    with pytest.raises(SnapshotMissing, match="height 5"):
        store.load_snapshot(PARAMS, 5)


def test_invalid_snapshot_tampered(store):
    start_chain(store)
    key = next(k for k, _ in store.kv.iterate(schema.snapshot_entries_prefix(0)))
    store.kv.delete(key)
    with pytest.raises(StateMismatch, match="snapshot 0 entries"):
        store.load_snapshot(PARAMS, 0)


def test_invalid_replay_app_hash_differs(store):
    state = start_chain(store)
    run_blocks(store, state, 3)
    store.kv.put(schema.app_hash_key(2), bytes(32))
    with pytest.raises(ReplayMismatch, match="block 2 gives another app hash"):
        store.replay(PARAMS)


def test_invalid_replay_block_missing(store):
    state = start_chain(store)
    run_blocks(store, state, 3)
    store.kv.delete(schema.block_key(2))
    with pytest.raises(ReplayMismatch, match="block 2 is missing"):
        store.replay(PARAMS)


def test_invalid_replay_target_below_snapshot(store):
    state = start_chain(store)
    run_blocks(store, state, 2)
    store.save_snapshot(2)
    with pytest.raises(SnapshotMissing, match="above the replay target 1"):
        store.replay(PARAMS, to_height=1)


@pytest.mark.parametrize("arguments", [{"snapshot_interval": -1}, {"snapshots_kept": 0}])
def test_invalid_store_arguments(make_kv, arguments):
    kv = make_kv()
    with pytest.raises(ValueError):
        ChainStore(kv, **arguments)
    assert kv.closed  # a refused store is not left open


def test_invalid_restore_of_another_state(store):
    state = start_chain(store)
    run_blocks(store, state, 2)
    with pytest.raises(StateMismatch, match="not the stored state at height 2"):
        store.restore_state_entries(store.load_snapshot(PARAMS, 0))
    assert store.load_state(PARAMS).merkle.root() == state.merkle.root()


# --- kill -9 ----------------------------------------------------------------------------------------------------

CRASH_SNAPSHOT_INTERVAL = 4


def crash_writer(path: str) -> None:
    """Open (or create) the store, resume from it, and write blocks until killed, printing each saved height."""
    store = ChainStore(LevelDBKV(path), snapshot_interval=CRASH_SNAPSHOT_INTERVAL, snapshots_kept=2)
    state = start_chain(store) if store.latest() is None else store.load_state(PARAMS)
    print(state.height, flush=True)
    while True:
        save(store, *next_block(state))
        print(state.height, flush=True)


def check_consistent(path: Path, reference: Reference) -> int:
    """Reopen after a crash: the state rebuilds to the latest app hash, which is the reference run's."""
    with ChainStore(LevelDBKV(path, create=False)) as store:
        meta = store.latest()
        if meta is None:  # killed before the genesis batch landed
            assert store.get_block(1) is None and not list(store.iterate_state_entries())
            return -1
        state = store.load_state(PARAMS)
        assert state.merkle.root() == meta.app_hash == reference.root(meta.height)
        assert store.get_block(meta.height + 1) is None and store.get_app_hash(meta.height + 1) is None
        assert all(store.get_app_hash(h) == reference.root(h) for h in range(meta.height + 1))
        snapshots = store.list_snapshots()
        assert 1 <= len(snapshots) <= 2
        assert store.load_snapshot(PARAMS).merkle.root() == reference.root(snapshots[-1].height)
        return meta.height


def run_crash_rounds(path: Path, seed: int, rounds: int) -> int:
    """Start the writer, SIGKILL it at a seeded random moment, check the store; `rounds` times. The final height."""
    rng = random.Random(seed)
    reference = Reference()
    height, saved = -1, -1
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, __file__, "crash-writer", str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        printed = []
        if rng.random() < 0.2:
            delay = rng.uniform(0.0, 0.6)  # sometimes during start-up: genesis or load_state
        else:
            first = proc.stdout.readline()
            assert first, proc.stderr.read()
            printed.append(int(first))
            assert printed[0] == max(height, 0)  # resumed where the store was
            delay = rng.uniform(0.0, 0.25)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        printed += [int(line) for line in out.split()]
        saved = max([saved, *printed])
        height = check_consistent(path, reference)
        assert saved <= height <= saved + 1  # nothing reported as saved is lost; at most one unreported block
        saved = height
    with ChainStore(LevelDBKV(path, create=False)) as store:
        assert store.replay(PARAMS, check_signatures=False).merkle.root() == reference.root(height)
    return height


def test_kill_9_at_random_moments_always_reopens_consistent(tmp_path):
    assert run_crash_rounds(tmp_path / "db", seed=20261122, rounds=14) > 10


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_kill_9_soak(tmp_path, seed):
    assert run_crash_rounds(tmp_path / "db", seed=seed, rounds=60) > 50


if __name__ == "__main__" and sys.argv[1:2] == ["crash-writer"]:
    crash_writer(sys.argv[2])
