"""Transaction admission: `NodeSubmitter` is the `rpc.submit.TxSubmitter` the node hands RPC, and the entry point
for transactions gossiped by peers.

Pipeline (one per node). Every transaction, from RPC (`await submit(wire)`), from a peer (`receive(wire, peer)`)
or from the node itself (the oracle feeder calls `submit`), goes through one queue:

1. on arrival, on the event loop: its SHA-256; one already pending in the mempool is answered "already_in_mempool"
   at once, one already queued shares the queued one's outcome, and over `max_queue` queued transactions an RPC
   submission is refused with "mempool_full" (a peer's is dropped: the peer had it admitted, and it will reach
   this node again in a block or from the submitter's retry);
2. a worker task takes up to `max_batch` queued transactions, decodes them on the loop, and checks their
   signatures in `verify_workers` worker processes (node/verify.py `VerifyPool`: started on first use, a large
   batch split between them), so the loop goes on serving consensus and RPC meanwhile; with `verify_workers = 0`,
   or for the batch during which a worker was lost (its pool is closed and a new one started on next use), on
   the loop itself;
3. back on the loop, `Mempool.admit_verified` (authority, nonces against the committed state and the pending
   ones, caps) in arrival order, each RPC caller gets its `SubmitResult`, and everything admitted is gossiped:
   one `MSG_TX_BATCH` message per peer holding the transactions that peer did not send us (and, between
   validators, only those that did not come from another validator: `make_tx_gossip`).

Ahead of the queue: `await expedite(wires, source)` admits the transactions of a proposal that this node has not
admitted yet (node/driver.py asks before judging the proposal). Those still waiting in the queue leave it and go
into one batch of their own at once, with any the node has not seen at all; for those a batch already took, it
waits for that batch. It returns once each has an outcome, so the proposal is judged with their signatures
already checked, in the workers and once, instead of on the loop and then again when their turn in the queue
comes.

So a signature is verified once per node per transaction, off the event loop, and a busy node spends its loop on
ordering blocks rather than on cryptography. `admit(wire)` is the same admission done inline (signature on the
caller's thread), for tools and tests.

P2P: `MSG_TX_BATCH` (41) is a direct, point-to-point message (node/p2p/relay.py: not de-duplicated or relayed by
the gossip layer; this module relays what it admits). Payload: a msgpack array of 1 to `MAX_TX_BATCH` binary
transaction wires; `make_tx_gossip` splits a batch so that each message fits the peer's frame. Anything else is a
protocol violation (`parse_tx_batch` raises; the caller disconnects and bans the peer). A single transaction
gossiped as `MSG_TX` (16) is still accepted.
"""

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from node.mempool import AlreadyKnown, Mempool, MempoolFull, compute_encoded_tx_bytes
from node.telemetry import NodeMetrics
from node.tracing import Tracing
from node.verify import VerifyPool, VerifyWorkersLost, verify_signatures
from stf.errors import BadSignature, KabutoError, MalformedTransaction
from stf.state import State
from stf.tx import Transaction, compute_sign_bytes, decode_transaction

log = logging.getLogger("node.submit")

MSG_TX_BATCH = 41
MAX_TX_BATCH = 10_000
BATCH_OVERHEAD_BYTES = 4096   # the message's own framing and the frame's MAC, with room to spare
PARALLEL_VERIFY_MIN = 64      # a batch at least this long is split between the verify workers

Gossip = Callable[[list[tuple[bytes, bytes | None]]], None]   # [(wire, source peer id or None)], newly admitted


class SubmitResult(NamedTuple):
    tx_hash: bytes
    code: str      # "ok" when admitted, else the KabutoError code ("bad_signature", "mempool_full", ...)
    message: str


class TxBatchError(ValueError):
    """A peer's MSG_TX_BATCH payload is not an array of 1 to MAX_TX_BATCH binary wires."""


def parse_tx_batch(payload: Any) -> list[bytes]:
    if type(payload) is not list or not 1 <= len(payload) <= MAX_TX_BATCH:
        raise TxBatchError(f"a transaction batch is an array of 1 to {MAX_TX_BATCH} transactions")
    if any(type(wire) is not bytes for wire in payload):
        raise TxBatchError("a transaction batch holds binary transaction wires only")
    return payload


def make_tx_gossip(peers: Callable[[], Mapping[bytes, Any]], max_frame_bytes: int,
                   is_validator: Callable[[bytes], bool] = lambda node_id: False) -> Gossip:
    """Send newly admitted transactions to every connected peer but their source, as MSG_TX_BATCH messages that
    each fit one frame of `max_frame_bytes`. A transaction that came from a validator peer is not relayed to other
    validator peers: validators peer with each other directly, so the source has sent it to them itself (relaying
    it would make every validator receive every transaction once per validator); it still goes to other peers."""
    budget = max_frame_bytes - BATCH_OVERHEAD_BYTES

    def gossip(items: list[tuple[bytes, bytes | None]]) -> None:
        for node_id, peer in list(peers().items()):
            chunk: list[bytes] = []
            size = 0
            to_validator = is_validator(node_id)
            for wire, source in items:
                if source == node_id or (to_validator and source is not None and is_validator(source)):
                    continue
                encoded = compute_encoded_tx_bytes(len(wire))
                if chunk and (size + encoded > budget or len(chunk) == MAX_TX_BATCH):
                    peer.send(MSG_TX_BATCH, chunk)
                    chunk, size = [], 0
                chunk.append(wire)
                size += encoded
            if chunk:
                peer.send(MSG_TX_BATCH, chunk)
    return gossip


class _Queued:
    __slots__ = ("wire", "tx_hash", "source", "waiters", "taken")

    def __init__(self, wire: bytes, tx_hash: bytes, source: bytes | None) -> None:
        self.wire = wire
        self.tx_hash = tx_hash
        self.source = source
        self.waiters: list[asyncio.Future[SubmitResult]] = []
        self.taken = False   # a batch has it (the queue's worker, or `expedite` ahead of the queue)


class NodeSubmitter:
    """RPC's `TxSubmitter` and the peers' transaction sink: batched admission, then gossip (module docstring)."""

    def __init__(self, mempool: Mempool, get_state: Callable[[], State], gossip: Gossip, metrics: NodeMetrics,
                 tracing: Tracing = Tracing(), *, verify_workers: int = 1, max_batch: int = 1024,
                 max_queue: int = 20_000, pool: VerifyPool | None = None) -> None:
        self.tracing = tracing
        self.mempool = mempool
        self.get_state = get_state
        self.gossip = gossip
        self.metrics = metrics
        self.verify_workers = max(0, verify_workers) if pool is None else max(1, verify_workers)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._pool = pool
        self._queue: deque[_Queued] = deque()
        self._queued: dict[bytes, _Queued] = {}
        self._worker: asyncio.Task[None] | None = None
        self._closed = False          # close() or aclose() called: no verify workers are started again
        self.batches = 0              # verified batches, for tests and metrics
        self.dropped_from_peers = 0   # peers' transactions not queued because the queue was full

    def __len__(self) -> int:
        """Transactions waiting for admission."""
        return len(self._queued)

    # --- entry points -------------------------------------------------------------------------------------------

    async def submit(self, wire: bytes) -> SubmitResult:
        """Admit `wire` (RPC, the oracle feeder): the outcome once it has been through the pipeline."""
        tx_hash, refused = self._check_early(wire)
        if refused is not None:
            return refused
        queued = self._queued.get(tx_hash)
        if queued is None:
            if len(self._queued) >= self.max_queue:
                return self._result(tx_hash, MempoolFull(f"{len(self._queued)} transactions are waiting for admission"))
            queued = self._enqueue(wire, tx_hash, None)
        future: asyncio.Future[SubmitResult] = asyncio.get_running_loop().create_future()
        queued.waiters.append(future)
        return await future

    def receive(self, wire: bytes, source: bytes) -> None:
        """A transaction from peer `source`: queued for admission, never answered."""
        if type(wire) is not bytes:
            return
        tx_hash = hashlib.sha256(wire).digest()
        if tx_hash in self._queued or tx_hash in self.mempool:
            return
        if len(self._queued) >= self.max_queue:
            self.dropped_from_peers += 1
            return
        self._enqueue(wire, tx_hash, source)

    async def expedite(self, wires: list[bytes], source: bytes | None = None) -> None:
        """Admit `wires` ahead of the queue (a proposal carries them); returns once each has an outcome. `source`
        is the peer the proposal came from, for gossip (module docstring)."""
        batch: list[_Queued] = []
        waits: list[asyncio.Future[SubmitResult]] = []
        for wire in wires:
            if type(wire) is not bytes:
                continue
            tx_hash = hashlib.sha256(wire).digest()
            if tx_hash in self.mempool:
                continue
            queued = self._queued.get(tx_hash)
            if queued is None:
                queued = self._queued[tx_hash] = _Queued(wire, tx_hash, source)
            elif queued.taken:
                waits.append(asyncio.get_running_loop().create_future())
                queued.waiters.append(waits[-1])
                continue
            queued.taken = True   # the queue's worker skips it
            batch.append(queued)
        if batch:
            await self._admit_guarded(batch)
        if waits:
            await asyncio.wait(waits)

    def admit(self, wire: bytes) -> SubmitResult:
        """Inline admission (signature checked on this thread), without gossip."""
        tx_hash, refused = self._check_early(wire)
        if refused is not None:
            return refused
        try:
            tx = self.mempool.admit(wire, self.get_state())
        except KabutoError as exc:
            return self._result(tx_hash, exc)
        return self._admitted(tx)

    # --- the pipeline ---------------------------------------------------------------------------------------------

    def _check_early(self, wire: Any) -> tuple[bytes, SubmitResult | None]:
        """(the wire's hash, a refusal when it is not bytes or already pending, else None)."""
        if type(wire) is not bytes:
            return b"", self._result(b"", MalformedTransaction("a transaction is a byte string"))
        tx_hash = hashlib.sha256(wire).digest()
        if tx_hash in self.mempool:
            return tx_hash, self._result(tx_hash, AlreadyKnown("this transaction is already pending"))
        return tx_hash, None

    def _enqueue(self, wire: bytes, tx_hash: bytes, source: bytes | None) -> _Queued:
        queued = _Queued(wire, tx_hash, source)
        self._queue.append(queued)
        self._queued[tx_hash] = queued
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="admission")
        return queued

    async def _run(self) -> None:
        try:
            while self._queue:
                batch = []
                while self._queue and len(batch) < self.max_batch:
                    queued = self._queue.popleft()
                    if not queued.taken:
                        queued.taken = True
                        batch.append(queued)
                if batch:
                    await self._admit_guarded(batch)
        finally:
            self._worker = None

    async def _admit_guarded(self, batch: list[_Queued]) -> None:
        try:
            await self._admit_batch(batch)
        except Exception as exc:   # never leave a caller waiting: fail the batch, keep the node
            log.exception("admission batch failed")
            for queued in batch:
                self._finish(queued, SubmitResult(queued.tx_hash, "internal", f"admission failed: {exc}"))
        except asyncio.CancelledError:   # the node is stopping (the driver cancels its expedite tasks)
            for queued in batch:
                self._finish(queued, SubmitResult(queued.tx_hash, "internal", "admission cancelled: node stopping"))
            raise

    async def _admit_batch(self, batch: list[_Queued]) -> None:
        decoded: list[tuple[_Queued, Transaction]] = []
        for queued in batch:
            try:
                decoded.append((queued, decode_transaction(queued.wire)))
            except KabutoError as exc:
                self._finish(queued, self._result(queued.tx_hash, exc))
        chain_id = self.get_state().params.chain_id
        checks = [(tx.signer_public_key, compute_sign_bytes(chain_id, tx.body), tx.signature) for _, tx in decoded]
        valid = await self._verify(checks)
        self.batches += 1
        state = self.get_state()
        relay: list[tuple[bytes, bytes | None]] = []
        for (queued, tx), ok in zip(decoded, valid):
            if not ok:
                error: KabutoError = BadSignature("the signature does not verify for this signer, chain id and body")
                self._finish(queued, self._result(queued.tx_hash, error))
                continue
            try:
                self.mempool.admit_verified(tx, state)
            except KabutoError as exc:
                self._finish(queued, self._result(queued.tx_hash, exc))
                continue
            self._finish(queued, self._admitted(tx, counted=False))
            relay.append((tx.wire, queued.source))
        if relay:
            self._count_admitted(len(relay))   # the metrics once a batch: a labelled counter costs microseconds
            self.gossip(relay)

    async def _verify(self, checks: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
        if not checks:
            return []
        if self.verify_workers == 0 or self._closed:   # closed: the node is stopping, start no workers
            return verify_signatures(checks)
        if self._pool is None:
            self._pool = VerifyPool(self.verify_workers, PARALLEL_VERIFY_MIN)
        pool = self._pool
        try:
            return await pool.verify(checks)
        except VerifyWorkersLost as exc:
            if not self._closed:
                log.warning("%s; starting new signature workers, this batch checked here", exc)
            pool.close()
            if self._pool is pool:
                self._pool = None
            return verify_signatures(checks)

    def _finish(self, queued: _Queued, result: SubmitResult) -> None:
        self._queued.pop(queued.tx_hash, None)
        for future in queued.waiters:
            if not future.done():
                future.set_result(result)

    def _result(self, tx_hash: bytes, exc: KabutoError) -> SubmitResult:
        self.metrics.admissions.labels(exc.code).inc()
        return SubmitResult(tx_hash, exc.code, str(exc))

    def _admitted(self, tx: Transaction, counted: bool = True) -> SubmitResult:
        """The caller's answer for an admitted `tx`; a batch passes counted=False and calls `_count_admitted`."""
        self.tracing.start_tx(tx.hash)
        if counted:
            self._count_admitted(1)
        return SubmitResult(tx.hash, "ok", "admitted to the mempool")

    def _count_admitted(self, count: int) -> None:
        self.metrics.admissions.labels("ok").inc(count)
        self.metrics.observe_mempool(len(self.mempool), self.mempool.size_bytes)

    def close(self) -> None:
        """Kill the verify workers at once (the loop reaps them if it runs on; the node calls `aclose`). No new
        ones start after: a batch still under way is checked on the loop."""
        self._closed = True
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        """`close`, waiting until the workers are reaped: call it before the event loop ends."""
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()
