"""The validator process: `run_node(home)` joins storage, P2P, mempool, consensus, block sync and RPC.

Start-up, in order (resources open in this order and close in reverse):

1. logging (JSON or text, with height and round) and the metrics registry;
2. the chain store (`<home>/data/chain`, LevelDB; or memory): an empty store first tries state sync from a
   peer's snapshot (node/statesync.py, with `[storage] state_sync`), else gets the genesis state
   (`stf.state.initialize_state`); an existing one is resumed with `ChainStore.load_state`, which checks the
   stored entries against the stored app hash (a failure stops the node and names `kabuto replay`);
3. the mempool, the RPC view over the live state, and the `ChainApp`;
4. the validator set from validators.json (public keys and powers, CometBFT proposer priorities stepped to the
   current height), the consensus WAL (`<home>/wal/consensus.wal`) and `Engine.restore` at stored height + 1,
   so a restarted validator re-derives its round state and never signs twice;
5. one `asyncio.TaskGroup`: the P2P switch (listener and one dialer per configured peer), the consensus driver,
   block sync, the oracle feeder when `[oracle] source` is not "none" (node/oracle.py: this validator's signed
   prices through `NodeSubmitter.submit`, like an RPC submission), the evidence reporter (node/evidence.py: the
   double signing the engine detects, put on the chain the same way, signed with the same key and nonce
   source), the RPC server (aiohttp, `rpc.server.make_app`) and the stop watcher.

Clock: one function, `node.driver.make_clock([debug] clock_skew_ms)`, is built here and handed to everything that
reads the wall clock: the app (block times and the `max_future_block_time_ms` bound), the driver and the engine's
restore (vote timestamps, WAL records) and the oracle feeder (nonces); the evidence reporter shares the feeder's
nonce source. `[debug] double_sign` turns on the driver's byzantine mode; both debug keys are logged at start.

Stacks: SIGUSR1 writes the Python stack of every thread to stderr (`faulthandler`, also while the event loop is
blocked) and changes nothing else.

Stop: SIGINT or SIGTERM sets the stop event; the watcher closes every peer gracefully (the switch returns),
cancels the driver, block sync, the oracle feeder and the evidence reporter, then the RPC server closes its
WebSockets, and the WAL and the store are closed.
A fatal error (`AppHashMismatch`, a storage error) propagates out of the TaskGroup after the same cleanup.

P2P policy: consensus messages are accepted from the node ids of the configured peers (`[p2p] peers`); the
engine checks every signature against the validator set anyway. Transactions come from anyone.

Submission: `NodeSubmitter.submit(wire)` is the `TxSubmitter` that RPC's `broadcast_tx_*` calls: mempool
admission against the committed state, then gossip on success; it answers `SubmitResult(tx_hash, code, message)`
with code "ok" or the refusal's `KabutoError.code`.
"""

import asyncio
import faulthandler
import gc
import inspect
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from consensus.engine import Engine, EngineConfig, TimeoutConfig
from consensus.validators import ValidatorSet
from consensus.wal import FileWAL
from node.app import FRAME_OVERHEAD_BYTES, ChainApp, decode_certificate
from node.config import NodeConfig, consensus_timeouts, parse_address, parse_peer
from node.driver import MSG_CONSENSUS_RESEND, WAL_FILE, ConsensusDriver, make_clock
from node.evidence import EvidenceReporter
from node.home import DATA_DIR, WAL_DIR, Home, require_public_keys
from node.mempool import Mempool
from node.oracle import OracleFeeder, make_oracle_feeder
from node.p2p.bans import BanList
from node.p2p.connection import ConnectionConfig, Peer
from node.p2p.dialer import Backoff
from node.p2p.frames import Message
from node.p2p.gossip import MSG_PROPOSAL, MSG_TX, MSG_VOTE
from node.p2p.switch import PeerAddress, Switch
from node.storage import ChainStore, MemoryKV, StateMismatch, open_chain_store
from node.submit import MSG_TX_BATCH, NodeSubmitter, TxBatchError, make_tx_gossip, parse_tx_batch
from node.statesync import run_state_sync
from node.sync import BlockSync
from node.telemetry import ConsensusPosition, NodeMetrics, PeerBytesCollector, configure_logging
from node.tracing import Tracing, make_tracing
from rpc.client.wallet import NonceSource, Wallet
from rpc.config import RpcConfig
from rpc.methods import make_router
from rpc.server import make_app
from rpc.subscriptions import Hub
from rpc.views import InMemoryChainView
from stf.constants import MAX_BLOCK_BYTES
from stf.state import State, export_entries, initialize_state

log = logging.getLogger("node")

CHAIN_DIR = "chain"
STDERR_FD = 2   # SIGUSR1's stack dump goes here (where the logs go), even when sys.stderr has no descriptor
# The cyclic collector's thresholds (CPython's default is 700, 10, 10). A loaded validator allocates a few dozen
# containers per transaction, nearly all freed by reference counting within a block or two: with the default, it
# ran the youngest collection about 40 times a second and spent 2.0 s of each 45 s at 2,000 orders/s in the
# collector (pauses up to 0.25 s); with these, 0.7 s, no pause over 40 ms, and p50 latency 133 ms instead of 210.
GC_THRESHOLDS = (10_000, 10, 10)
CERTIFICATE_BYTES_PER_VALIDATOR = 256  # one precommit in a commit certificate, with msgpack framing
LOCAL_BACKOFF = Backoff(base_s=0.25, cap_s=5.0, stable_s=10.0)


def open_store(home: Home) -> ChainStore:
    storage = home.config.storage
    if storage.backend == "memory":
        return ChainStore(MemoryKV(), storage.snapshot_interval, storage.snapshots_kept, storage.sync)
    return open_chain_store(home.path / DATA_DIR / CHAIN_DIR, True, storage.snapshot_interval,
                            storage.snapshots_kept, storage.sync)


def load_or_init_state(store: ChainStore, home: Home) -> State:
    """The committed state: the genesis state for an empty store, else the stored state (checked)."""
    if store.latest() is None:
        genesis_state = initialize_state(home.genesis)
        store.save_genesis(home.genesis.params.chain_id, export_entries(genesis_state), genesis_state.merkle.root())
        log.info("initialised the chain store from genesis")
    try:
        return store.load_state(home.genesis.params)
    except StateMismatch as exc:
        raise StateMismatch(f"{exc}; verify and rebuild with: kabuto replay --home {home.path}") from None


def compute_validator_sets(home: Home, height: int) -> tuple[ValidatorSet, ValidatorSet]:
    """The validator sets of `height` and `height + 1` (priorities stepped once per height from genesis)."""
    current = ValidatorSet.from_genesis([(v.public_key, v.power) for v in home.validators])
    for _ in range(height - 1):
        current = current.next_height_set()
    return current, current.next_height_set()


def make_rpc_config(config: NodeConfig) -> RpcConfig:
    rpc = config.rpc
    return RpcConfig(
        max_body_bytes=rpc.max_body_bytes, max_batch_length=rpc.max_batch, max_connections=rpc.ws_max_connections,
        max_connections_per_ip=rpc.ws_max_per_ip, requests_per_second_per_ip=float(rpc.rate_per_s),
        burst_per_ip=rpc.rate_burst)


def make_channels_and_publish(view: InMemoryChainView) -> tuple[list, Callable[[Hub, Any, Any, dict], None]]:
    """The RPC channels and `publish(hub, block, result, book messages)` for one committed block.

    Uses `rpc.channels` (make_channels, publish_block_messages) when RPC provides it, else the older
    `rpc.methods` pair (make_channels, publish_block(publish, book messages)), else publishes the book diffs on
    "book" itself. The view has already recorded the block (`ChainApp.commit` calls `add_block`).
    """
    try:
        from rpc import channels as module
        publish_messages = module.publish_block_messages
        return module.make_channels(), lambda hub, block, result, messages: publish_messages(
            hub, view, block, result, messages)
    except (ImportError, AttributeError):
        pass
    from rpc import methods
    make, publish_block = getattr(methods, "make_channels", None), getattr(methods, "publish_block", None)
    if make is not None and publish_block is not None:
        return make(), lambda hub, block, result, messages: publish_block(hub.publish, messages)
    return [], _publish_book_messages


def _publish_book_messages(hub: Hub, block: Any, result: Any, messages: dict[int, dict]) -> None:
    for market_id, message in messages.items():
        hub.publish("book", market_id, message)


def make_view(state: State, home: Home) -> InMemoryChainView:
    if "genesis" in inspect.signature(InMemoryChainView).parameters:
        return InMemoryChainView(state, genesis=home.genesis)
    return InMemoryChainView(state)


@dataclass
class Node:
    """The parts of a running node, for the TaskGroup and for tests."""
    home: Home
    store: ChainStore
    app: ChainApp
    driver: ConsensusDriver
    sync: BlockSync
    switch: Switch
    submitter: NodeSubmitter
    metrics: NodeMetrics
    hub: Hub
    rpc_app: web.Application
    wal: FileWAL
    stop_event: asyncio.Event
    oracle: OracleFeeder | None = None
    reporter: EvidenceReporter | None = None


def build_node(
    home: Home, store: ChainStore, position: ConsensusPosition, tracing: Tracing = Tracing(),
    stop_event: asyncio.Event | None = None,
) -> Node:
    """Everything but the tasks: state, mempool, view, app, engine (restored from the WAL), P2P, sync, RPC."""
    require_public_keys(home)
    config = home.config
    chain_id = home.genesis.params.chain_id
    clock = make_clock(config.debug.clock_skew_ms)
    log_debug_modes(config)
    metrics = NodeMetrics()
    state = load_or_init_state(store, home)
    mempool = Mempool(config.mempool.to_limits())
    view = make_view(state, home)
    channels, publish_block = make_channels_and_publish(view)
    hub = Hub(channels)
    # a block travels whole in one frame: in a proposal, and with its certificate in a block sync answer
    max_block_bytes = min(MAX_BLOCK_BYTES, config.p2p.max_frame_bytes - FRAME_OVERHEAD_BYTES
                          - CERTIFICATE_BYTES_PER_VALIDATOR * len(home.validators))
    app = ChainApp(state, store, mempool, view, metrics, home.validator_key.address,
                   lambda block, result, messages: publish_block(hub, block, result, messages),
                   max_block_bytes, clock_ms=clock, tracing=tracing,
                   max_future_block_time_ms=config.consensus.max_future_block_time_ms)

    height = state.height + 1
    validators, next_validators = compute_validator_sets(home, height)
    is_validator = validators.get(home.validator_key.address) is not None
    wal = FileWAL(str(home.path / WAL_DIR / WAL_FILE))
    stored_commit = store.get_commit(state.height) if state.height else None
    engine_config = EngineConfig(chain_id, TimeoutConfig(**consensus_timeouts(config)))
    engine, initial = Engine.restore(
        engine_config, home.validator_key if is_validator else None, height, validators, next_validators, wal,
        last_commit=decode_certificate(stored_commit) if stored_commit else None, now_ms=clock())

    peer_addresses = [PeerAddress(bytes.fromhex(node_id), host, port)
                      for node_id, host, port in (parse_peer(p, "p2p.peers") for p in config.p2p.peers)]
    connection = ConnectionConfig(max_frame_size=config.p2p.max_frame_bytes, ban_seconds=config.p2p.ban_seconds)
    holder: dict[str, Any] = {}

    def deliver(sender: bytes, message: Message) -> None:
        if message.type == MSG_TX:
            holder["submitter"].receive(message.payload, sender)
        elif message.type in (MSG_VOTE, MSG_PROPOSAL):
            holder["driver"].submit_message(sender, message.payload, message.type)

    switch = Switch(
        home.node_key, chain_id, deliver, validator_ids=[p.node_id for p in peer_addresses], config=connection,
        backoff=LOCAL_BACKOFF, bans=BanList(time.monotonic),
        on_direct=lambda peer, message: route_direct(holder["switch"], holder["driver"], holder["sync"], peer, message,
                                                     holder["submitter"]),
        on_connect=lambda peer: (holder["sync"].on_connect(peer), holder["driver"].resend_own([peer])))
    metrics.register_peers(PeerBytesCollector(lambda: switch.peers))
    driver = ConsensusDriver(
        engine, app, home.path / WAL_DIR, switch.broadcast, position, metrics,
        empty_block_interval_ms=config.consensus.create_empty_blocks_interval_ms,
        min_block_interval_ms=config.consensus.min_block_interval_ms, initial_actions=initial,
        is_behind=lambda: holder["sync"].is_behind(),
        on_future_height=lambda sender, h: holder["sync"].hint(), clock_ms=clock,
        double_sign=config.debug.double_sign, on_evidence=lambda evidence: holder["reporter"].report(evidence))
    sync = BlockSync(app, store, driver, validators, chain_id, metrics, lambda: switch.peers,
                     max_frame_bytes=config.p2p.max_frame_bytes)
    app.on_commit.append(sync.publish_status)
    submitter = NodeSubmitter(mempool, lambda: app.state, make_tx_gossip(
        lambda: switch.peers, config.p2p.max_frame_bytes, switch.gossip.is_validator), metrics, tracing,
        verify_workers=config.mempool.verify_workers)
    driver.expedite = submitter.expedite
    holder.update(submitter=submitter, driver=driver, sync=sync, switch=switch)
    metrics.chain_height.set(state.height)
    oracle = make_oracle_feeder(config, home.genesis, home.validator_key, submitter.submit, lambda: app.state,
                                lambda tx_hash: tx_hash in mempool, metrics, clock)
    wallet = oracle.wallet if oracle is not None else Wallet(
        home.validator_key, chain_id,
        nonces=NonceSource(clock, max(state.nonces.get(home.validator_key.address, []), default=0)))
    reporter = EvidenceReporter(wallet, {v.address: v.public_key for v in home.validators}, submitter.submit,
                                lambda: app.state, metrics)
    holder["reporter"] = reporter

    rpc_app = make_rpc_app(view, config, hub, metrics, submitter, ready=lambda: not sync.is_behind())
    return Node(home, store, app, driver, sync, switch, submitter, metrics, hub, rpc_app, wal,
                stop_event if stop_event is not None else asyncio.Event(), oracle, reporter)


def log_debug_modes(config: NodeConfig) -> None:
    """Say loudly when a test-only `[debug]` mode is on."""
    debug = config.debug
    if debug.double_sign:
        log.warning("[debug] double_sign is on: this validator signs a conflicting prevote after each of its own "
                    "(test-only byzantine mode)")
    if debug.clock_skew_ms:
        log.warning("[debug] clock_skew_ms is %d: this node's clock is shifted (test-only)", debug.clock_skew_ms)


def route_direct(switch: Switch, driver: ConsensusDriver, sync: BlockSync, peer: Peer, message: Message,
                 submitter: NodeSubmitter | None = None) -> None:
    """Direct messages: transaction batches to the submitter, consensus re-sends to the driver (from validator
    peers only), the rest to sync."""
    if message.type == MSG_TX_BATCH and submitter is not None:
        try:
            wires = parse_tx_batch(message.payload)
        except TxBatchError as exc:
            peer.disconnect(f"malformed transaction batch: {exc}", ban=True)
            return
        for wire in wires:
            submitter.receive(wire, peer.node_id)
        return
    if message.type == MSG_CONSENSUS_RESEND:
        if not switch.gossip.is_validator(peer.node_id):
            return
        if not driver.on_resend(peer.node_id, message.payload):
            peer.disconnect("malformed consensus re-send", ban=True)
        return
    sync.on_direct(peer, message)


def make_rpc_app(view: InMemoryChainView, config: NodeConfig, hub: Hub, metrics: NodeMetrics,
                 submitter: NodeSubmitter, ready: Callable[[], bool]) -> web.Application:
    """`rpc.server.make_app` over the node's view and registry; the submitter is passed when RPC accepts one."""
    kwargs: dict[str, Any] = {"hub": hub, "ready": ready, "registry": metrics.registry}
    if "submitter" in inspect.signature(make_app).parameters:
        kwargs["submitter"] = submitter
    return make_app(make_router(view), view, make_rpc_config(config), **kwargs)


async def serve_node(node: Node) -> None:
    """Run every task of `node` in one TaskGroup until `node.stop_event` is set (or a task fails)."""
    config = node.home.config
    p2p_host, p2p_port = parse_address(config.p2p.listen, "p2p.listen")
    rpc_host, rpc_port = parse_address(config.rpc.listen, "rpc.listen")
    peers = [PeerAddress(bytes.fromhex(n), h, p) for n, h, p in (parse_peer(x, "p2p.peers") for x in config.p2p.peers)]
    runner = web.AppRunner(node.rpc_app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, rpc_host, rpc_port).start()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(node.switch.run(p2p_host, p2p_port, peers), name="p2p")
            await node.switch.listening.wait()
            workers = [tg.create_task(node.driver.run(), name="consensus"),
                       tg.create_task(node.driver.run_resend(lambda: node.switch.peers), name="resend"),
                       tg.create_task(node.sync.run(), name="blocksync")]
            if node.oracle is not None:
                workers.append(tg.create_task(node.oracle.run(), name="oracle"))
            if node.reporter is not None:
                workers.append(tg.create_task(node.reporter.run(), name="evidence"))
            log.info("node started", extra={"fields": {
                "chain_id": node.home.genesis.params.chain_id, "p2p": f"{p2p_host}:{node.switch.port}",
                "rpc": f"{rpc_host}:{rpc_port}", "chain_height": node.app.height, "peers": len(peers)}})
            await node.stop_event.wait()
            log.info("stopping")
            node.switch.stop()
            for task in workers:
                task.cancel()
    finally:
        await runner.cleanup()


def run_node(home: Home) -> None:
    """`kabuto start`: run until SIGINT/SIGTERM; raises on a fatal error (after closing everything). SIGUSR1
    writes every thread's Python stack to stderr (the log) and the node goes on: for a node that seems stuck."""
    faulthandler.register(signal.SIGUSR1, file=STDERR_FD, all_threads=True)
    position = ConsensusPosition()
    configure_logging(home.config.telemetry.log_format, home.config.telemetry.log_level, position)
    tracing = make_tracing(home.config.telemetry.tracing, home.config.node.moniker)
    try:
        store = open_store(home)
        try:
            asyncio.run(_main(home, store, position, tracing))
        finally:
            store.close()
    finally:
        tracing.shutdown()


async def _main(home: Home, store: ChainStore, position: ConsensusPosition, tracing: Tracing) -> None:
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    if home.config.storage.state_sync and store.latest() is None:
        require_public_keys(home)
        if not await run_until_stopped(run_state_sync(home, store, compute_validator_sets(home, 1)[0]), stop_event):
            log.info("stopped during state sync")
            return
    node = build_node(home, store, position, tracing, stop_event)
    # The loaded state is most of the process's objects and lives as long as it does: out of the collector's
    # view, full collections (which pause the event loop) only walk what was made since. Then GC_THRESHOLDS.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        await serve_node(node)
        log.info("stopped cleanly")
    finally:
        await node.submitter.aclose()
        node.driver.engine.wal.close()   # the live WAL: the driver replaces `node.wal` when it rotates the log


async def run_until_stopped(work, stop_event: asyncio.Event) -> bool:
    """Run `work` unless `stop_event` is set first (then cancel it); True if it finished."""
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(work)
        stopper = tg.create_task(stop_event.wait())
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        finished = task.done() and not task.cancelled()
        task.cancel()
        stopper.cancel()
    return finished
