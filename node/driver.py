"""The consensus driver: the one task that feeds the sans-IO engine and carries out its actions.

Contract:

- `ConsensusDriver.run()` owns the engine: nothing else calls it. Inputs arrive on one queue, in order:
  peer proposals and votes (`submit_message`, from the P2P deliver callback; bounded: over `max_pending`
  queued peer messages a new one is dropped, and consensus recovers by later rounds or block sync), block sync's
  `CommitReceived` (`submit`), timeouts (`loop.call_later` when the engine asks with `ScheduleTimeout`) and
  `Committed` (below). Own inputs are never dropped.
- Each input is handled as `consensus.app.drive` does: `RequestProposal`, `ValidateValue` and `Commit` are
  answered synchronously through the `ChainApp`; the remaining actions are performed in order: `Broadcast` sends
  the already WAL-flushed message to every peer, `ScheduleTimeout` arms a timer, `ReportEvidence` is logged and
  handed to `on_evidence` (the node's evidence reporter, node/evidence.py, which puts it on the chain).
- One exception to answering at once: a proposal whose block time is more than `max_future_block_time_ms` ahead
  of this node's clock (`ChainApp.compute_validity_wait_ms` above 0) gets no verdict yet. The engine keeps the
  first verdict for a value for the whole height, so a "no" given now would stick, although the same block
  becomes acceptable once this clock has caught up (a locked block re-proposed in a later round must be, for
  liveness). The request is queued again as an own input when its time has come, or after at most
  `MAX_RECHECK_MS` (then judged again, and deferred again if still early), unless the height moved on; the timer
  holds the value's hash only (the engine keeps the value). Meanwhile the engine, waiting for the verdict,
  prevotes nil when its propose timeout fires.
- Another: a proposal carrying transactions this node has not admitted yet (`ChainApp.list_unadmitted`: not in
  its mempool; typically still in its admission queue, gossiped moments before the proposal) gets no verdict until
  `expedite` (the submitter's `NodeSubmitter.expedite`) has put them through admission ahead of the queue. The
  request is then queued again as an own input and answered at once, whatever admission made of them: what was
  admitted is judged from the mempool, anything else is decoded and checked on the loop as before. So the
  signatures of a proposal are checked in the verify workers and once per node, not on the loop and then again
  when the same transactions reach the front of the queue. A proposal goes through this once per height.
- After a commit, `Committed` is fed when the next height should start: at once while block sync says the node
  is behind; with pending transactions, `min_block_interval_ms` (`[consensus] min_block_interval_ms`) after the
  previous height started (at once if that has passed), so a busy chain makes fewer, fuller blocks instead of
  paying a height's fixed cost (votes, WAL syncs, a store batch) for a handful of transactions; else after
  `empty_block_interval_ms` (`[consensus] create_empty_blocks_interval_ms`), which sets the block interval at idle.
- The WAL (`wal/consensus.wal`) is rotated before `Committed(h)` is fed once it exceeds `wal_rotate_bytes`: the
  new file is empty. That is safe because every record the engine needs after a restart (own signatures of
  heights above h, inputs after the `Committed(h)` marker) is written after the rotation; a crash right after it
  restarts at height h + 1 from an empty log, with nothing signed at that height yet.
- Re-sending: gossip delivers each message once, so a peer that was down or disconnected when we voted would
  never see that vote, and validators stuck in a round without a quorum would never hear from each other again.
  The driver keeps its own messages of the current height and re-sends those of the current and previous round
  straight to a peer when it connects, and to every peer each `resend_interval_s` while the height has not
  changed (`run_resend`). A re-send travels as a direct message `MSG_CONSENSUS_RESEND` (40, payload
  `[17 or 18, message bytes]`), not as gossip: gossip would drop it as already seen, even when the receiver's
  engine had refused the first copy (a vote for a height it had not reached yet). The receiver accepts it only
  from a validator peer and hands it to its engine, which ignores exact duplicates without logging them.
- A `ConsensusError` raised by the engine for a peer's message (stale, future, badly signed) drops that message.
  An `AppHashMismatch` from the app propagates: it stops the node.

Time: `clock_ms` is this node's wall clock in ms (vote timestamps and the WAL records carry it), built once by
`make_clock` from `[debug] clock_skew_ms` and shared with the app (block times) and the oracle feeder (nonces).
Timeouts run on the event loop's monotonic clock (relative durations), which no skew touches.

Byzantine mode, for fault tests only (`[debug] double_sign = true`): after each of its own prevotes is broadcast,
the driver signs a second, conflicting prevote for the same height and round (nil when the first names a block,
else a random 32-byte hash) with the validator key and broadcasts it too. It goes around the engine: the engine's
double-sign guard, its WAL and its own vote counts never see it, so the honest vote stays what a restart
re-derives; re-sends (`resend_own`) carry the honest vote only. The other validators' engines see the conflict and
report it as evidence.
"""

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from consensus.app import Driven, answer_application
from consensus.engine import Engine
from consensus.errors import ConsensusError, FutureHeight
from consensus.events import (
    Action, Broadcast, Committed, Event, ProposalReceived, ReportEvidence, ScheduleTimeout, TimeoutFired,
    ValidateValue, VoteReceived,
)
from consensus.evidence import DuplicateVoteEvidence
from consensus.messages import PREVOTE, Proposal, Vote, pack_message, unpack_message
from consensus.wal import FileWAL
from node.app import ChainApp
from node.p2p.gossip import MSG_PROPOSAL, MSG_VOTE
from node.telemetry import ConsensusPosition, NodeMetrics

log = logging.getLogger("node.consensus")

WAL_FILE = "consensus.wal"
MSG_CONSENSUS_RESEND = 40
DEFAULT_WAL_ROTATE_BYTES = 8 << 20
MAX_RECHECK_MS = 5000  # the longest a too-early proposal waits before it is judged again


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_clock(skew_ms: int = 0) -> Callable[[], int]:
    """This node's wall clock in ms: `now_ms` shifted by `skew_ms` (`[debug] clock_skew_ms`, for fault tests)."""
    if not skew_ms:
        return now_ms
    return lambda: time.time_ns() // 1_000_000 + skew_ms


Expedite = Callable[[list[bytes], bytes | None], Awaitable[None]]   # (wires, source peer): admitted ahead of the queue


@dataclass(frozen=True, slots=True)
class RecheckValidity:
    """An own input: ask again for the verdict on a proposal that was too far in the future when it came, or
    whose transactions have been through admission since."""
    height: int
    value_hash: bytes


class ConsensusDriver:
    def __init__(
        self, engine: Engine, app: ChainApp, wal_dir: Path, send: Callable[[int, bytes], int],
        position: ConsensusPosition, metrics: NodeMetrics, *, empty_block_interval_ms: int,
        min_block_interval_ms: int = 0,
        initial_actions: list[Action] = (), max_pending: int = 10_000,
        wal_rotate_bytes: int = DEFAULT_WAL_ROTATE_BYTES, is_behind: Callable[[], bool] = lambda: False,
        on_future_height: Callable[[bytes, int], None] = lambda peer, height: None,
        clock_ms: Callable[[], int] = now_ms, double_sign: bool = False,
        on_evidence: Callable[[DuplicateVoteEvidence], None] = lambda evidence: None,
        expedite: Expedite | None = None,
    ) -> None:
        self.engine = engine
        self.app = app
        self.wal_dir = wal_dir
        self.send = send
        self.position = position
        self.metrics = metrics
        self.empty_block_interval_ms = empty_block_interval_ms
        self.min_block_interval_ms = min_block_interval_ms
        self._height_started_s: float | None = None   # loop time when the current height was started
        self.max_pending = max_pending
        self.wal_rotate_bytes = wal_rotate_bytes
        self.is_behind = is_behind
        self.on_future_height = on_future_height
        self.clock_ms = clock_ms
        self.double_sign = double_sign
        self.on_evidence = on_evidence
        self.expedite = expedite
        self._expedited: set[tuple[int, bytes]] = set()   # (height, value hash) of proposals sent to `expedite`
        self._expediting: set[asyncio.Task[None]] = set()
        self._initial = list(initial_actions)
        self._queue: asyncio.Queue[tuple[bytes | None, Event | RecheckValidity]] = asyncio.Queue()
        self._peer_pending = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own: list[tuple[int, int, int, bytes]] = []  # (height, round, type, payload) of our broadcasts
        self.committed = asyncio.Event()  # set at each commit, then replaced by a fresh one: take it, then wait

    # --- inputs ---------------------------------------------------------------------------------------------

    def submit_message(self, sender: bytes, payload: bytes, msg_type: int) -> None:
        """A consensus message from a peer (P2P deliver callback). Never blocks; drops when over capacity."""
        if self._peer_pending >= self.max_pending:
            log.warning("consensus inbox full: dropping a peer message")
            return
        try:
            message = unpack_message(payload)
        except ConsensusError as exc:
            log.debug("undecodable consensus message from %s: %s", sender.hex()[:12], exc)
            return
        if msg_type == MSG_PROPOSAL and not isinstance(message, Proposal):
            return
        event = ProposalReceived(message) if isinstance(message, Proposal) else VoteReceived(message)
        self._peer_pending += 1
        self._queue.put_nowait((sender, event))

    def on_resend(self, sender: bytes, payload: object) -> bool:
        """A peer's MSG_CONSENSUS_RESEND payload; False if it is malformed (the caller bans the peer)."""
        if (not isinstance(payload, list) or len(payload) != 2 or payload[0] not in (MSG_VOTE, MSG_PROPOSAL)
                or type(payload[1]) is not bytes):
            return False
        self.submit_message(sender, payload[1], payload[0])
        return True

    def submit(self, event: Event) -> None:
        """An own input (block sync's CommitReceived, a timeout, Committed): never dropped."""
        self._queue.put_nowait((None, event))

    # --- the loop -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            initial = self._initial
            self._step(lambda e: initial, None)
            while True:
                sender, event = await self._queue.get()
                if sender is not None:
                    self._peer_pending -= 1
                if isinstance(event, RecheckValidity):
                    self._step(lambda e, ev=event: self._pending_validation(ev), None)
                else:
                    self._step(lambda e, ev=event: e.handle(ev, self.clock_ms()), sender)
                await asyncio.sleep(0)  # Queue.get does not yield while items wait: let P2P and RPC run
        finally:
            for timer in self._timers:
                timer.cancel()
            for task in list(self._expediting):
                task.cancel()

    def _step(self, step: Callable[[Engine], list[Action]], sender: bytes | None) -> None:
        try:
            driven = self._drive(step, sender)
        except FutureHeight:
            if sender is not None:
                self.on_future_height(sender, self.engine.height)
            return
        except ConsensusError as exc:
            log.debug("consensus input refused: %s: %s", type(exc).__name__, exc)
            return
        for action in driven.actions:
            self._perform(action)
        for committed in driven.committed:
            self._after_commit(committed)
        self._update_position()

    def _drive(self, step: Callable[[Engine], list[Action]], sender: bytes | None = None) -> Driven:
        """`consensus.app.drive`, except that a proposal too far in the future, or carrying transactions not
        admitted yet, gets no verdict yet (see the module contract): run `step`, answer the application's actions,
        apply commits; return the rest."""
        now = self.clock_ms()
        pending = [step]
        driven = Driven()
        while pending:
            for action in pending.pop(0)(self.engine):
                if isinstance(action, ValidateValue) and (
                        self._defer_validation(action) or self._admit_first(action, sender)):
                    continue
                answer = answer_application(self.app, action)
                if isinstance(answer, Committed):
                    driven.committed.append(answer)
                elif answer is not None:
                    pending.append(lambda e, event=answer: e.handle(event, now))
                else:
                    driven.actions.append(action)
        return driven

    def _defer_validation(self, action: ValidateValue) -> bool:
        """True (and a re-check scheduled) when the proposal's time is still too far ahead of this clock."""
        wait_ms = self.app.compute_validity_wait_ms(action.value)
        if wait_ms <= 0:
            return False
        log.warning("proposal not valid yet: its block time is more than max_future_block_time_ms ahead of this "
                    "node's clock; prevoting nil, judging it again in %d ms", wait_ms,
                    extra={"fields": {"proposal_height": action.height, "wait_ms": wait_ms}})
        recheck = RecheckValidity(action.height, action.value_hash)
        self._timers.append(self._loop.call_later(
            min(wait_ms, MAX_RECHECK_MS) / 1000, self._queue.put_nowait, (None, recheck)))
        return True

    def _admit_first(self, action: ValidateValue, sender: bytes | None) -> bool:
        """True (and admission started, the verdict asked again once it is done) when the proposal carries
        transactions this node has not admitted yet; once per proposal and height."""
        key = (action.height, action.value_hash)
        if self.expedite is None or key in self._expedited:
            return False
        wires = self.app.list_unadmitted(action.height, action.value)
        if not wires:
            return False
        if self._expedited and min(self._expedited)[0] < action.height:
            self._expedited = {k for k in self._expedited if k[0] >= action.height}
        self._expedited.add(key)
        task = self._loop.create_task(self._expedite_then_recheck(key, wires, sender), name="expedite")
        self._expediting.add(task)
        task.add_done_callback(self._expediting.discard)
        return True

    async def _expedite_then_recheck(self, key: tuple[int, bytes], wires: list[bytes], sender: bytes | None) -> None:
        try:
            await self.expedite(wires, sender)
        except Exception:   # the verdict must still come: the transactions are then checked on the loop
            log.exception("admitting a proposal's transactions failed")
        self._queue.put_nowait((None, RecheckValidity(*key)))

    def _pending_validation(self, recheck: RecheckValidity) -> list[Action]:
        """The validity request again, if the engine still waits for that verdict (same height, none yet)."""
        engine = self.engine
        value = engine.values.get(recheck.value_hash)
        if engine.height != recheck.height or recheck.value_hash in engine.validity or value is None:
            return []
        return [ValidateValue(recheck.height, recheck.value_hash, value)]

    def _perform(self, action: Action) -> None:
        if isinstance(action, Broadcast):
            message = action.message
            msg_type, payload = MSG_PROPOSAL if isinstance(message, Proposal) else MSG_VOTE, pack_message(message)
            if self._own and self._own[0][0] < self.engine.height:
                self._own = [entry for entry in self._own if entry[0] >= self.engine.height]
            self._own.append((message.height, message.round, msg_type, payload))
            self.send(msg_type, payload)
            if self.double_sign and msg_type == MSG_VOTE and message.vote_type == PREVOTE:
                self._equivocate(message)
            if msg_type == MSG_VOTE:
                self.app.tracing.mark("prevote" if message.vote_type == PREVOTE else "precommit",
                                      height=message.height, round=message.round, nil=message.value_hash is None)
        elif isinstance(action, ScheduleTimeout):
            event = TimeoutFired(action.height, action.round, action.step)
            self._timers = [t for t in self._timers if not t.cancelled() and t.when() > self._loop.time()]
            self._timers.append(self._loop.call_later(action.duration_ms / 1000, self.submit, event))
        elif isinstance(action, ReportEvidence):
            vote = action.evidence.vote_a
            log.warning("duplicate vote evidence", extra={"fields": {
                "validator": vote.validator.hex(), "evidence_height": vote.height, "evidence_round": vote.round,
                "vote_type": vote.vote_type}})
            self.on_evidence(action.evidence)

    def _equivocate(self, vote: Vote) -> None:
        """Byzantine mode: broadcast a second prevote for `vote`'s height and round naming another value, signed
        outside the engine (no guard, no WAL record, not counted by our own engine)."""
        other = None if vote.value_hash is not None else os.urandom(32)
        conflicting = Vote(PREVOTE, vote.height, vote.round, other, vote.validator, vote.timestamp_ms)
        signed = conflicting.signed(self.engine.signer, self.engine.chain_id)
        self.send(MSG_VOTE, pack_message(signed))
        log.debug("double_sign: sent a conflicting prevote", extra={"fields": {"vote_height": vote.height}})

    def resend_own(self, peers: list) -> int:
        """Send our messages of the current height's current and previous round to `peers`; returns the count."""
        sent = 0
        for height, round_, msg_type, payload in self._own:
            if height == self.engine.height and round_ >= self.engine.round - 1:
                for peer in peers:
                    sent += peer.send(MSG_CONSENSUS_RESEND, [msg_type, payload])
        return sent

    async def run_resend(self, get_peers: Callable[[], dict], resend_interval_s: float = 1.0) -> None:
        """Every `resend_interval_s`, re-send our current messages to every peer if the height is unchanged."""
        last = (self.engine.height, self.engine.round)
        while True:
            await asyncio.sleep(resend_interval_s)
            now = (self.engine.height, self.engine.round)
            if now[0] == last[0]:
                self.resend_own(list(get_peers().values()))
            last = now

    def _after_commit(self, committed: Committed) -> None:
        self.committed.set()
        self.committed = asyncio.Event()
        self._rotate_wal_if_large()
        behind = self.is_behind()
        idle = len(self.app.mempool) == 0 and not behind
        now = self._loop.time()
        if idle:
            delay = self.empty_block_interval_ms / 1000
        elif behind or self._height_started_s is None:
            delay = 0.0
        else:
            delay = self._height_started_s + self.min_block_interval_ms / 1000 - now
        self._height_started_s = now + max(0.0, delay)
        if delay <= 0:
            self.submit(committed)
        else:
            self._timers.append(self._loop.call_later(delay, self.submit, committed))

    def _update_position(self) -> None:
        engine = self.engine
        if engine.round != self.position.round and engine.round > 0:
            self.metrics.rounds.inc()
        self.position.height, self.position.round = engine.height, max(engine.round, 0)
        self.metrics.consensus_height.set(engine.height)
        self.metrics.consensus_round.set(max(engine.round, 0))

    def _rotate_wal_if_large(self) -> None:
        wal = self.engine.wal
        if not isinstance(wal, FileWAL) or os.fstat(wal._fd).st_size < self.wal_rotate_bytes:
            return
        path = self.wal_dir / WAL_FILE
        fresh_path = self.wal_dir / (WAL_FILE + ".new")
        fresh_path.unlink(missing_ok=True)
        fresh = FileWAL(str(fresh_path))
        os.replace(fresh_path, path)
        fd = os.open(self.wal_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fresh.path = str(path)
        wal.close()
        self.engine.wal = fresh
        log.info("rotated the consensus WAL")
