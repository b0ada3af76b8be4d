"""Block sync: a node that is behind fetches blocks and their commit certificates from peers over P2P.

Wire (direct, point-to-point messages; node/p2p/relay.py), payloads in msgpack:

    32 MSG_STATUS          [height]                    the sender's latest committed height
    33 MSG_BLOCKS_REQUEST  [first, last]               ask for blocks first..last (at most MAX_BATCH)
    34 MSG_BLOCKS          [[height, block, cert], ...] consecutive stored blocks from `first`, each with the
                                                       msgpack certificate that committed it; possibly fewer
                                                       than asked (the sender's height, the frame budget)
    35 MSG_SNAPSHOTS_REQUEST  []                       which snapshots do you hold?
    36 MSG_SNAPSHOTS       [[height, app_hash, entry_count, entries_hash], ...]   the sender's snapshots above 0
    37 MSG_CHUNK_REQUEST   [height, index]             entries index*CHUNK_ENTRIES .. of snapshot `height`
    38 MSG_CHUNK           [height, index, total, [[key, value], ...]]   total = 0: no such snapshot

Block sync is the client of 32-34 (below); state sync (node/statesync.py) of 35-38 and 33-34. Every node
serves all of them from its store.

Contract:

- Every peer learns our height when it connects and after each of our commits (`publish_status`); a peer's
  status is the height we sync towards. A node is *behind* when a peer reports a height at least 2 above ours,
  or 1 above ours for longer than `lag_grace_s` (one height of lag is normal while a commit propagates).
- While behind, `run` asks the highest peer (ties: smallest node id) for the next batch, and for each block, in
  order: the certificate must decode, be for that height, certify the SHA-256 of exactly those block bytes, and
  verify (`consensus.commit.verify_certificate`) against the validator set with more than 2/3 of its power.
  Then the block's header must build on this node's state (previous block hash and app hash): a certified block
  that does not is proof that this node's state diverged, and `AppHashMismatch` stops the node. A verified block
  is handed to consensus as `CommitReceived`, so the engine decides it, the app applies and stores it exactly
  as a block decided live (and the WAL records it); sync waits for that commit before the next block.
- A peer that sends a malformed message, a block that does not verify, or an answer nobody asked for is
  disconnected and banned. A peer that does not answer within `request_timeout_s` is skipped for that attempt.
- Serving: a request is answered from the store (`ChainStore.iterate_blocks` and `get_commit`), at most
  `MAX_BATCH` blocks and about half a frame of bytes; it is answered on the event loop (reads only).

Known limit: no state sync yet (a new node replays every block from genesis).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from itertools import islice

from consensus.commit import verify_certificate
from consensus.errors import ConsensusError
from consensus.events import CommitReceived
from consensus.messages import compute_value_hash
from consensus.validators import ValidatorSet
from node.app import AppHashMismatch, ChainApp, decode_certificate
from node.driver import ConsensusDriver
from node.p2p.connection import Peer
from node.p2p.errors import MessageTooLarge
from node.p2p.frames import Message
from node.storage import ChainStore
from node.telemetry import NodeMetrics
from stf.block import decode_block
from stf.errors import KabutoError

log = logging.getLogger("node.sync")

MSG_STATUS = 32
MSG_BLOCKS_REQUEST = 33
MSG_BLOCKS = 34
MSG_SNAPSHOTS_REQUEST = 35
MSG_SNAPSHOTS = 36
MSG_CHUNK_REQUEST = 37
MSG_CHUNK = 38
MAX_BATCH = 50
CHUNK_ENTRIES = 500


class SyncProtocolError(ValueError):
    """A peer's sync message is malformed or does not verify."""


def _is_uint(x: object) -> bool:
    return type(x) is int and x >= 0


def decode_blocks_payload(payload: object) -> list[tuple[int, bytes, bytes]]:
    if not isinstance(payload, list) or len(payload) > MAX_BATCH:
        raise SyncProtocolError(f"blocks: a list of at most {MAX_BATCH} entries")
    out = []
    for entry in payload:
        if (not isinstance(entry, list) or len(entry) != 3 or not _is_uint(entry[0])
                or type(entry[1]) is not bytes or type(entry[2]) is not bytes):
            raise SyncProtocolError("blocks: each entry is [height, block bytes, certificate bytes]")
        out.append((entry[0], entry[1], entry[2]))
    return out


def serve_blocks(store: ChainStore, peer: Peer, payload: object, max_bytes: int) -> None:
    """Answer MSG_BLOCKS_REQUEST from the store; raises SyncProtocolError for a malformed request."""
    if (not isinstance(payload, list) or len(payload) != 2 or not all(_is_uint(x) for x in payload)
            or not 1 <= payload[0] <= payload[1] or payload[1] - payload[0] >= MAX_BATCH):
        raise SyncProtocolError(f"request: [first, last], 1 <= first <= last < first + {MAX_BATCH}")
    first, last = payload
    entries, size = [], 0
    for height, wire in store.iterate_blocks(first, min(last, store.get_latest().height)):
        cert = store.get_commit(height)
        if cert is None or (entries and size + len(wire) + len(cert) > max_bytes):
            break
        entries.append([height, wire, cert])
        size += len(wire) + len(cert)
    send_fitting(peer, MSG_BLOCKS, entries)


def send_fitting(peer: Peer, msg_type: int, entries: list) -> None:
    """Send `entries`, dropping from the end until the message fits in one frame (an empty list at worst)."""
    while True:
        try:
            peer.send(msg_type, entries)
            return
        except MessageTooLarge:
            if not entries:
                raise
            entries = entries[:len(entries) // 2]


def serve_snapshots(store: ChainStore, peer: Peer, payload: object) -> None:
    if payload != []:
        raise SyncProtocolError("snapshots request: []")
    peer.send(MSG_SNAPSHOTS, [[m.height, m.app_hash, m.entry_count, m.entries_hash]
                              for m in store.list_snapshots() if m.height > 0])


def serve_chunk(store: ChainStore, peer: Peer, payload: object) -> None:
    if not isinstance(payload, list) or len(payload) != 2 or not all(_is_uint(x) for x in payload):
        raise SyncProtocolError("chunk request: [height, index]")
    height, index = payload
    manifest = store.get_snapshot(height)
    if manifest is None or height == 0:
        peer.send(MSG_CHUNK, [height, index, 0, []])
        return
    total = max(1, -(-manifest.entry_count // CHUNK_ENTRIES))  # ceiling division of non-negative ints
    start = index * CHUNK_ENTRIES
    chunk = [[k, v] for k, v in islice(store.iterate_snapshot_entries(height), start, start + CHUNK_ENTRIES)]
    try:
        peer.send(MSG_CHUNK, [height, index, total, chunk])
    except MessageTooLarge:
        peer.send(MSG_CHUNK, [height, index, 0, []])  # this snapshot cannot be served in these frames


class BlockSync:
    def __init__(
        self, app: ChainApp, store: ChainStore, driver: ConsensusDriver, validators: ValidatorSet, chain_id: str,
        metrics: NodeMetrics, peers: Callable[[], dict[bytes, Peer]], *, max_frame_bytes: int,
        request_timeout_s: float = 3.0, lag_grace_s: float = 1.0, poll_s: float = 0.25,
    ) -> None:
        self.app = app
        self.store = store
        self.driver = driver
        self.validators = validators
        self.chain_id = chain_id
        self.metrics = metrics
        self.peers = peers
        self.max_response_bytes = max_frame_bytes // 2
        self.request_timeout_s = request_timeout_s
        self.lag_grace_s = lag_grace_s
        self.poll_s = poll_s
        self.peer_heights: dict[bytes, int] = {}
        self._lag_since: float | None = None
        self._wake = asyncio.Event()
        self._pending: tuple[bytes, asyncio.Future] | None = None

    # --- peers' status --------------------------------------------------------------------------------------

    def get_target_height(self) -> int:
        connected = self.peers()
        return max((h for node, h in self.peer_heights.items() if node in connected), default=0)

    def is_behind(self) -> bool:
        lag = self.get_target_height() - self.app.height
        if lag <= 0:
            self._lag_since = None
            return False
        if lag >= 2:
            return True
        now = time.monotonic()
        if self._lag_since is None:
            self._lag_since = now
        return now - self._lag_since >= self.lag_grace_s

    def on_connect(self, peer: Peer) -> None:
        peer.send(MSG_STATUS, [self.app.height])

    def publish_status(self, *_: object) -> None:
        for peer in list(self.peers().values()):
            peer.send(MSG_STATUS, [self.app.height])

    def hint(self, *_: object) -> None:
        self._wake.set()

    # --- messages -------------------------------------------------------------------------------------------

    def on_direct(self, peer: Peer, message: Message) -> None:
        try:
            if message.type == MSG_STATUS:
                self._on_status(peer, message.payload)
            elif message.type == MSG_BLOCKS_REQUEST:
                self._on_request(peer, message.payload)
            elif message.type == MSG_BLOCKS:
                self._on_blocks(peer, message.payload)
            elif message.type == MSG_SNAPSHOTS_REQUEST:
                serve_snapshots(self.store, peer, message.payload)
            elif message.type == MSG_CHUNK_REQUEST:
                serve_chunk(self.store, peer, message.payload)
            else:
                raise SyncProtocolError(f"unknown direct message type {message.type}")
        except SyncProtocolError as exc:
            peer.disconnect(f"block sync: {exc}", ban=True)

    def _on_status(self, peer: Peer, payload: object) -> None:
        if not isinstance(payload, list) or len(payload) != 1 or not _is_uint(payload[0]):
            raise SyncProtocolError("status: [height]")
        self.peer_heights[peer.node_id] = payload[0]
        if payload[0] > self.app.height:
            self._wake.set()

    def _on_request(self, peer: Peer, payload: object) -> None:
        serve_blocks(self.store, peer, payload, self.max_response_bytes)

    def _on_blocks(self, peer: Peer, payload: object) -> None:
        entries = decode_blocks_payload(payload)
        pending = self._pending
        if pending is None or pending[0] != peer.node_id or pending[1].done():
            return  # a late answer to a request that timed out: ignore, it is not misbehaviour
        pending[1].set_result(entries)

    # --- the sync loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()
            self.app.view.catching_up = self.is_behind()
            if self.app.view.catching_up:
                await self.sync_once()

    def _pick_peer(self) -> Peer | None:
        connected = self.peers()
        ranked = sorted((-h, node) for node, h in self.peer_heights.items() if node in connected and h > self.app.height)
        return connected[ranked[0][1]] if ranked else None

    async def sync_once(self) -> int:
        """Fetch and commit one batch from the best peer; returns how many blocks were committed."""
        peer = self._pick_peer()
        if peer is None:
            return 0
        first = self.app.height + 1
        last = min(self.peer_heights[peer.node_id], first + MAX_BATCH - 1)
        future = asyncio.get_running_loop().create_future()
        self._pending = (peer.node_id, future)
        try:
            if not peer.send(MSG_BLOCKS_REQUEST, [first, last]):
                return 0
            entries = await asyncio.wait_for(future, self.request_timeout_s)
        except TimeoutError:
            log.info("block sync: peer %s did not answer", peer.node_id.hex()[:12])
            return 0
        finally:
            self._pending = None
        done = 0
        log.debug("block sync: %d blocks %d..%d from %s", len(entries), first, last, peer.node_id.hex()[:12])
        for height, block_wire, cert_wire in entries:
            if height != self.app.height + 1:
                break
            try:
                cert = self.verify_entry(height, block_wire, cert_wire)
            except SyncProtocolError as exc:
                peer.disconnect(f"block sync: {exc}", ban=True)
                return done
            if not await self.commit_entry(height, block_wire, cert):
                return done
            done += 1
            self.metrics.blocksync_blocks.inc()
        if done:
            log.info("block sync: committed %d blocks from %s", done, peer.node_id.hex()[:12])
        return done

    def verify_entry(self, height: int, block_wire: bytes, cert_wire: bytes):
        """The certificate of a fetched block, verified (see the module contract); raises SyncProtocolError."""
        try:
            cert = decode_certificate(cert_wire)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise SyncProtocolError(f"block {height}: undecodable certificate: {exc}") from None
        try:
            if cert.height != height:
                raise SyncProtocolError(f"certificate for height {cert.height}, block {height}")
            if compute_value_hash(block_wire) != cert.value_hash:
                raise SyncProtocolError(f"block {height} is not the value its certificate commits")
            verify_certificate(cert, self.validators, self.chain_id)
            header = decode_block(block_wire).header
        except (ConsensusError, KabutoError, ValueError, TypeError) as exc:
            raise SyncProtocolError(f"block {height}: {type(exc).__name__}: {exc}") from None
        state = self.app.state
        if header.height != height:
            raise SyncProtocolError(f"block {height} header says height {header.height}")
        if header.prev_hash != state.last_block_hash or header.app_hash != state.merkle.root():
            raise AppHashMismatch(
                f"block {height} is certified by more than 2/3 of the validators but builds on app hash "
                f"{header.app_hash.hex()}, while this node's state at height {state.height} has "
                f"{state.merkle.root().hex()}: this node's state diverged from the chain; stopping rather than "
                f"fork: restore the data directory from a healthy node and restart")
        return cert

    async def commit_entry(self, height: int, block_wire: bytes, cert) -> bool:
        """Hand a verified block to consensus and wait until the app committed it (False on a time-out)."""
        deadline = time.monotonic() + self.request_timeout_s
        while self.driver.engine.height < height:  # the engine enters `height` once Committed(height - 1) is fed
            if time.monotonic() > deadline:
                log.debug("block sync: consensus did not reach height %d", height)
                return False
            await asyncio.sleep(0.005)
        if self.app.height >= height:
            return True  # consensus decided it meanwhile
        committed = self.driver.committed  # taken before submitting: the driver replaces it when it commits
        self.driver.submit(CommitReceived(block_wire, cert))
        while self.app.height < height:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.debug("block sync: block %d was not committed in time", height)
                return False
            try:
                await asyncio.wait_for(committed.wait(), remaining)
            except TimeoutError:
                pass
            committed = self.driver.committed
        return True
