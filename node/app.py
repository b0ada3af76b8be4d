"""The application that consensus orders: blocks of the STF over the node's state, store, mempool and view.

`ChainApp` implements `consensus.app.Application`:

- `propose_value(height, round, last_commit)`: the proposer reaps the mempool (`Mempool.reap`, so the body is
  valid on top of the committed state at the block's time, within the frame budget) and returns the canonical
  bytes of `stf.block.make_block`. Block time is the proposer's clock, never earlier than the previous block's
  time + 1 ms (`compute_proposal_time_ms`).
- `validate_value(height, value)`: the bytes decode to a block of `height` whose time is at most
  `max_future_block_time_ms` ahead of this node's clock, on top of the committed state, and
  `stf.block.validate_block` accepts it (chain id, height, previous hash, app hash, txs root, signatures,
  authority, nonces). Transactions already verified by the mempool are not verified again; the driver first puts
  those the mempool lacks (`list_unadmitted`) through admission, so their signatures too are checked in the
  verify workers (node/driver.py). A refusal is logged with its reason.
- `commit(height, value, certificate)`: `apply_block` (reusing what `validate_value` found for the same bytes on
  the same state: the block is not decoded or checked twice), then `ChainStore.save_block` (one atomic batch: block,
  certificate, receipts, tx index, changed entries, app hash), then `Mempool.update`, the RPC view and
  `publish(block, result, book messages)` to the RPC channels. Returns no validator updates (the validator set is fixed by the home).

Block-time bound: a proposer picks the block time from its own clock, and the STF only requires it not to go
back, so a validator whose clock runs ahead could drag the chain's time into the future. Every validator
therefore refuses, in its validity verdict (which gates its prevote), not in the deterministic commit path
(`commit` and the STF never look at a clock), a proposal whose time is more than `max_future_block_time_ms`
ahead of its own clock. It is only an upper bound: a proposal never becomes "more future" as time passes, so a
block refused now (by a node whose clock is a little behind the proposer's) becomes acceptable once the local
clock has advanced, and a re-proposed locked block is eventually accepted by every honest validator: liveness
holds. The engine asks for a value's validity once per height and keeps the answer (its decide rule needs it
too), so the driver does not ask `validate_value` while `compute_validity_wait_ms(value)` is above 0: it asks
again once that time has passed (node/driver.py), and meanwhile the engine, without a verdict, prevotes nil when
its propose timeout fires. A proposal from a validator skewed far forward is thus passed over, and the chain
commits another proposer's block in a later round.

App hash (which header commits to it): as in CometBFT, the header of block h carries the state root *after*
block h - 1, the state it builds on; the root after block h is committed by the header of block h + 1 and
stored under height h. A decided block whose header disagrees with this node's state (the app hash, or any
other check) means this node's state diverged from the quorum's: `commit` raises `AppHashMismatch` and the node
stops with that message. It never continues on a state that differs from the certified chain.

Everything here is synchronous and runs on the event loop's thread, one block at a time: a block is applied,
stored and shown to RPC in one step, so RPC handlers never see a half-applied state.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

import msgpack

from consensus.commit import CommitCertificate
from consensus.validators import ValidatorUpdate
from node.mempool import Mempool
from node.storage import ChainStore
from node.telemetry import NodeMetrics
from node.tracing import Tracing
from rpc.views import InMemoryChainView
from stf import codec
from stf.block import Block, CheckedBlock, apply_block, decode_block, make_block, validate_block
from stf.errors import KabutoError
from stf.state import State

log = logging.getLogger("node.app")

FRAME_OVERHEAD_BYTES = 4096  # the proposal's own fields, msgpack framing and the frame's MAC


class AppHashMismatch(RuntimeError):
    """A decided block does not apply on this node's state: the state diverged from the chain. Fatal."""


def encode_certificate(cert: CommitCertificate) -> bytes:
    return msgpack.packb(cert.encode(), use_bin_type=True)


def decode_certificate(wire: bytes) -> CommitCertificate:
    return CommitCertificate.decode(msgpack.unpackb(wire, raw=False, use_list=True))


def encode_receipts(receipts: tuple) -> bytes:
    """`[r.to_wire() for r in receipts]`, encoded: receipts and results are named tuples, which the codec packs
    as the same arrays, so they are packed as they are (a tested equality)."""
    return codec.encode(receipts)


DEFAULT_MAX_FUTURE_BLOCK_TIME_MS = 2000  # `[consensus] max_future_block_time_ms` (node/config.py)


def compute_proposal_time_ms(now_ms: int, previous_time_ms: int) -> int:
    return max(now_ms, previous_time_ms + 1)


class ChainApp:
    """The node's `Application` (see the module docstring). `state` is the committed state, mutated by commits."""

    def __init__(
        self, state: State, store: ChainStore, mempool: Mempool, view: InMemoryChainView, metrics: NodeMetrics,
        proposer_address: bytes, publish: Callable[[Block, Any, dict], None], max_block_bytes: int,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000, tracing: Tracing = Tracing(),
        max_future_block_time_ms: int = DEFAULT_MAX_FUTURE_BLOCK_TIME_MS,
    ) -> None:
        self.state = state
        self.store = store
        self.mempool = mempool
        self.view = view
        self.metrics = metrics
        self.proposer_address = proposer_address
        self.publish = publish
        self.max_block_bytes = max_block_bytes
        self.clock_ms = clock_ms
        self.tracing = tracing
        self.max_future_block_time_ms = max_future_block_time_ms
        self.on_commit: list[Callable[[int, Block], None]] = []
        self._decoded: tuple[bytes, Block] | None = None          # the last proposal decoded
        self._checked: tuple[bytes, CheckedBlock] | None = None   # the last value judged valid, and what was found

    @property
    def height(self) -> int:
        return self.state.height

    def propose_value(self, height: int, round_: int, last_commit: CommitCertificate | None) -> bytes:
        with self.tracing.span("propose", height=height, round=round_) as span:
            time_ms = compute_proposal_time_ms(self.clock_ms(), self.state.time_ms)
            txs = self.mempool.reap(self.state, time_ms, max_bytes=self.max_block_bytes)
            block = make_block(self.state, time_ms, txs, self.proposer_address)
            if span is not None:
                span.set_attribute("txs", len(txs))
        log.debug("proposing block", extra={"fields": {"txs": len(txs), "proposal_round": round_}})
        return block.to_wire()

    def validate_value(self, height: int, value: bytes) -> bool:
        with self.tracing.span("validate", height=height) as span:
            valid = self._validate_value(height, value)
            if span is not None:
                span.set_attribute("valid", valid)
        return valid

    def compute_validity_wait_ms(self, value: bytes) -> int:
        """How long until a proposed block's time is no more than `max_future_block_time_ms` ahead of this node's
        clock: 0 when it already is (or when the bytes are not a block: `validate_value` refuses those)."""
        try:
            time_ms = self._decode_proposal(value).header.time_ms
        except KabutoError:
            return 0
        return max(0, time_ms - self.max_future_block_time_ms - self.clock_ms())

    def list_unadmitted(self, height: int, value: bytes) -> list[bytes]:
        """The transactions of a block proposed at `height` that are not in the mempool, in block order; [] when
        the bytes are not a block of that height on this node's last block (`validate_value` refuses those)."""
        try:
            block = self._decode_proposal(value)
        except KabutoError:
            return []
        if block.header.height != height or block.header.prev_hash != self.state.last_block_hash:
            return []
        verified = self.mempool.verified()
        return [wire for wire in block.txs if wire not in verified]

    def _decode_proposal(self, value: bytes) -> Block:
        """`decode_block`, kept for the last proposal: the driver asks for its time, then for its verdict."""
        if self._decoded is None or self._decoded[0] != value:
            self._decoded = (value, decode_block(value))
        return self._decoded[1]

    def _validate_value(self, height: int, value: bytes) -> bool:
        try:
            block = self._decode_proposal(value)
            if block.header.height != height:
                return False
            ahead_ms = block.header.time_ms - self.clock_ms()
            if ahead_ms > self.max_future_block_time_ms:
                log.warning("rejecting proposed block: its time is %d ms ahead of this node's clock, more than "
                            "max_future_block_time_ms (%d)", ahead_ms, self.max_future_block_time_ms,
                            extra={"fields": {"code": "block_time_in_future", "ahead_ms": ahead_ms}})
                return False
            self._checked = (value, validate_block(self.state, block, self.mempool.verified()))
        except KabutoError as exc:
            log.warning("rejecting proposed block: %s", exc, extra={"fields": {"code": exc.code}})
            return False
        return True

    def commit(self, height: int, value: bytes, certificate: CommitCertificate) -> tuple[ValidatorUpdate, ...]:
        started = time.perf_counter()
        checked = self._checked[1] if self._checked is not None and self._checked[0] == value else None
        self._checked = self._decoded = None
        try:
            block = checked.block if checked is not None else decode_block(value)
            with self.tracing.span("apply", height=height, txs=len(block.txs)):
                result = apply_block(self.state, block, self.mempool.verified(), checked)
        except KabutoError as exc:
            raise AppHashMismatch(
                f"block {height} was decided by a quorum but does not apply on this node's state at height "
                f"{self.state.height} (app hash {self.state.merkle.root().hex()}): {exc}; stopping rather than "
                f"fork: restore the data directory from a snapshot or a healthy node and restart") from None
        applied = time.perf_counter()
        committed = [r.tx_hash for r in result.receipts]   # block order: the hashes of block.txs
        with self.tracing.span("commit", height=height):
            self.store.save_block(
                height, value, encode_certificate(certificate), encode_receipts(result.receipts), committed,
                result.entries, result.state_root, block_hash=result.block_hash)
            signers = dict.fromkeys(tx.signer for tx in checked.txs) if checked is not None else ()
            dropped = self.mempool.update(self.state, committed, signers)
            self.publish(block, result, self.view.add_block(block, result))
        if self.tracing.enabled:   # a loop per transaction for nothing otherwise
            for tx_hash in committed:
                self.tracing.end_tx(tx_hash, "committed", height)
            for tx_hash in dropped:
                self.tracing.end_tx(tx_hash, "dropped", height)
        done = time.perf_counter()
        self.metrics.observe_commit(height, len(block.txs), applied - started, done - started)
        self.metrics.observe_mempool(len(self.mempool), self.mempool.size_bytes)
        log.info("committed block", extra={"fields": {
            "block_height": height, "txs": len(block.txs), "hash": result.block_hash.hex()[:16],
            "app_hash": result.state_root.hex()[:16], "commit_round": certificate.round,
            "commit_ms": round((done - started) * 1000, 2)}})
        for callback in self.on_commit:
            callback(height, block)
        return ()
