"""A deterministic multi-validator simulator for the consensus engine.

Contract
- `run_schedule(make_schedule(seed, n, byzantine))` runs `n` validators (the first `byzantine` of them faulty)
  on a virtual clock (integer ms) and a seeded network, and returns a `ScheduleResult` with every property
  violation found. The same arguments always give the same run: randomness comes from `SplitMix64`, events are
  ordered by (time, sequence number), and nothing iterates a set.
- Network model (partial synchrony): before `gst_ms` messages may be delayed up to `max_delay_ms`, dropped,
  duplicated, reordered and cut by partitions; from `gst_ms` on, every message between live validators arrives
  within `max_delay_ms`. Lost messages stand for what a gossip layer would re-send: at each heal, at GST and on
  restart a validator is caught up (block sync of decided heights with their certificates, then every message
  ever sent for its current height is re-delivered). A validator that sees a message from a higher height also
  asks for block sync after `2 * max_delay_ms`, as CometBFT's gossip of committed blocks to lagging peers does.
  Honest validators relay what they receive from a twin (gossip), so the paper's assumption holds that a message
  one correct process received reaches every correct process once the network is synchronous.
- Faults: crash and restart from the WAL (some crashes tear the last record mid-write; unflushed records are
  lost), and byzantine kinds: `silent` (never sends), `twins` (two honest engines with the same key, each talking
  to half of the honest validators: an equivocating proposer and double voter), `random` (votes for random
  values and proposes invalid values) and `double` (every vote is followed by a conflicting vote to everyone).
- Properties checked on every schedule: agreement and validity of honest decisions; every honest decision has a
  certificate that verifies; no honest validator signs two different messages for one (height, round, step),
  across crashes (every broadcast, plus every signed record left in its WAL); evidence only ever names a faulty
  validator; liveness: every honest validator commits `heights` heights before `gst_ms + liveness_budget_ms`.
  These hold when the faulty power is below 1/3.
- `trace=True` records one line per delivery and action; a failing seed can be replayed with the command in
  `ScheduleResult.replay_command`.

The simulator signs every message with real Ed25519 keys (derived from the seed) and verifies through a shared
`CachingVerifier`, so each distinct signature is checked once per run.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field

from consensus.commit import verify_certificate
from consensus.engine import Engine, EngineConfig, TimeoutConfig
from consensus.errors import ConsensusError, FutureHeight, SimulatedCrash
from consensus.events import (
    RECORD_SIGNED,
    Broadcast,
    Commit,
    Committed,
    CommitReceived,
    ProposalReceived,
    ProposalValueReady,
    ReportEvidence,
    RequestProposal,
    ScheduleTimeout,
    TimeoutFired,
    ValidateValue,
    ValueValidated,
    VoteReceived,
    decode_wal_record,
)
from consensus.messages import CachingVerifier, Proposal, Signer, Vote, compute_address, compute_value_hash
from consensus.validators import ValidatorSet, ValidatorUpdate
from consensus.wal import MemoryWAL

MASK64 = (1 << 64) - 1
CHAIN_ID = "kabuto-sim"
BYZANTINE_KINDS = ("silent", "twins", "random", "double")
SIM_TIMEOUTS = TimeoutConfig(200, 100, 100, 50, 100, 50)


class SplitMix64:
    """A small seedable PRNG (Steele, Lea, Flood 2014) over Python ints; the engine package may not use `random`."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        return self.next_u64() % bound if bound > 1 else 0

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def per_mille(self, chance: int) -> bool:
        return self.below(1000) < chance


@dataclass(frozen=True, slots=True)
class Partition:
    start_ms: int
    end_ms: int
    side: tuple[int, ...]  # validator indices on one side; the rest are on the other


@dataclass(frozen=True, slots=True)
class Crash:
    validator: int
    at_ms: int
    down_ms: int
    mid_write: int  # 0: crash between events; k > 0: the k-th WAL write after `at_ms` is torn
    keep_bytes: int


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    n: int
    byzantine: tuple[str, ...]
    powers: tuple[int, ...]
    heights: int
    min_delay_ms: int
    max_delay_ms: int
    drop_per_mille: int
    duplicate_per_mille: int
    gst_ms: int
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    power_changes: bool
    liveness_budget_ms: int = 120_000


@dataclass(slots=True)
class ScheduleResult:
    schedule: Schedule
    heights_committed: int = 0
    safety_violations: list[str] = field(default_factory=list)
    liveness_failure: str = ""
    deliveries: int = 0
    end_ms: int = 0
    max_round: int = 0
    evidence: int = 0
    restarts: int = 0
    torn_restarts: int = 0
    violation_at: int = -1  # trace length when the first safety violation was seen
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.safety_violations and not self.liveness_failure

    @property
    def replay_command(self) -> str:
        s = self.schedule
        return (f"scripts/sim --seed {s.seed} --schedules 1 --validators {s.n} "
                f"--byzantine {len(s.byzantine)} --heights {s.heights} --trace")


def make_schedule(seed: int, n: int, byzantine: int, heights: int = 3, kinds: tuple[str, ...] = ()) -> Schedule:
    """Draw one schedule from `seed`; `kinds` forces the byzantine behaviours (default: drawn per validator)."""
    rng = SplitMix64(seed * 0x100000001B3 + n * 131 + byzantine)
    kinds = kinds or tuple(BYZANTINE_KINDS[rng.below(len(BYZANTINE_KINDS))] for _ in range(byzantine))
    powers = _draw_powers(rng, n, byzantine)
    max_delay = rng.between(2, 60)
    gst = 0 if rng.per_mille(200) else rng.between(100, 3000)
    partitions = tuple(_draw_partition(rng, n, gst) for _ in range(rng.below(3))) if gst and n > 1 else ()
    crashes = _draw_crashes(rng, n, byzantine, gst) if gst else ()
    gst = max([gst] + [c.at_ms + c.down_ms + 1 for c in crashes])
    return Schedule(
        seed, n, kinds, powers, heights, rng.between(0, 2), max_delay,
        rng.below(300) if gst else 0, rng.below(100), gst, partitions, crashes, rng.per_mille(250),
    )


def _draw_powers(rng: SplitMix64, n: int, byzantine: int) -> tuple[int, ...]:
    if rng.per_mille(600):
        return (1,) * n
    powers = [rng.between(1, 5) for _ in range(n)]
    if byzantine and sum(powers[:byzantine]) * 3 >= sum(powers) and byzantine * 3 < n:
        return (1,) * n
    return tuple(powers)


def _draw_partition(rng: SplitMix64, n: int, gst: int) -> Partition:
    start = rng.below(gst)
    end = min(gst, start + rng.between(50, 1500))
    side = tuple(i for i in range(n) if rng.per_mille(500))
    return Partition(start, end, side)


def _draw_crashes(rng: SplitMix64, n: int, byzantine: int, gst: int) -> tuple[Crash, ...]:
    crashes = []
    for _ in range(rng.below(3)):
        if n == byzantine:
            break
        who = rng.between(byzantine, n - 1)
        mid_write = rng.between(1, 6) if rng.per_mille(500) else 0
        crashes.append(Crash(who, rng.below(gst), rng.between(10, 1500), mid_write, rng.below(200)))
    return tuple(crashes)


def _signer_for(seed: int, index: int) -> Signer:
    return Signer(hashlib.sha256(b"kabuto-sim-key/%d/%d" % (seed, index)).digest())


class SimApp:
    """The simulated application: durable across crashes, deterministic values, optional power changes."""

    def __init__(self, index: int, tag: bytes, genesis: ValidatorSet, honest_keys: list[bytes], changes: bool) -> None:
        self.index = index
        self.tag = tag
        self.decided: dict[int, bytes] = {}
        self.valsets = {1: genesis, 2: genesis.next_height_set()}
        self.last_commit = None
        self.honest_keys = honest_keys
        self.changes = changes

    @property
    def height(self) -> int:
        return len(self.decided)

    def propose_value(self, height: int, round_: int) -> bytes:
        return b"v|%d|%d|%d|%s" % (height, round_, self.index, self.tag)

    def compute_updates(self, height: int) -> tuple[ValidatorUpdate, ...]:
        if not self.changes or height % 2 == 0 or not self.honest_keys:
            return ()
        key = self.honest_keys[height % len(self.honest_keys)]
        current = self.valsets[height + 1].power_of(compute_address(key))
        return (ValidatorUpdate(key, current + 1 + height % 3),)  # honest power only grows: faults stay below 1/3

    def commit(self, height: int, value: bytes, cert) -> tuple[ValidatorUpdate, ...]:
        updates = self.compute_updates(height)
        self.decided[height] = value
        self.last_commit = cert
        self.valsets[height + 2] = self.valsets[height + 1].next_height_set(updates)
        return updates


def is_valid_value(height: int, value: bytes) -> bool:
    parts = value.split(b"|")
    return len(parts) == 5 and parts[0] == b"v" and parts[1] == b"%d" % height


@dataclass(slots=True)
class Instance:
    """One running engine: an honest validator, or one half of a byzantine pair of twins."""

    ident: int
    validator: int
    kind: str
    signer: Signer
    app: SimApp
    wal: MemoryWAL
    targets: tuple[int, ...] = ()
    engine: Engine | None = None
    incarnation: int = 0
    sync_pending: bool = False
    sync_height: int = 0

    @property
    def honest(self) -> bool:
        return self.kind == "honest"


_DELIVER, _TIMEOUT, _CRASH, _RESTART, _HEAL, _SYNC = range(6)


class Simulation:
    def __init__(self, schedule: Schedule, trace: bool = False) -> None:
        self.s = schedule
        self.rng = SplitMix64(schedule.seed ^ 0x5DEECE66D)
        self.result = ScheduleResult(schedule)
        self.tracing = trace
        self.now = 0
        self.queue: list[tuple] = []
        self.seq = 0
        self.verifier = CachingVerifier()
        self.config = EngineConfig(CHAIN_ID, SIM_TIMEOUTS)
        self.signers = [_signer_for(schedule.seed, i) for i in range(schedule.n)]
        self.byzantine_addresses = {self.signers[i].address: True for i in range(len(schedule.byzantine))}
        self.genesis = ValidatorSet.from_genesis([(sg.public_key, p) for sg, p in zip(self.signers, schedule.powers)])
        self.instances: list[Instance] = []
        self.by_validator: dict[int, list[Instance]] = {}
        self.sent_log: dict[int, list[tuple[int, object]]] = {}
        self.decisions: dict[int, tuple[bytes, object]] = {}
        self.own_signed: dict[tuple[bytes, int, int, int], object] = {}
        self.relayed: dict[object, bool] = {}
        self._build_instances()

    # ----- setup --------------------------------------------------------------------------------------------

    def _build_instances(self) -> None:
        s = self.s
        k = len(s.byzantine)
        honest_keys = [self.signers[i].public_key for i in range(k, s.n)]
        honest = list(range(k, s.n))
        halves = (honest[: (len(honest) + 1) // 2], honest[(len(honest) + 1) // 2:])
        for i in range(s.n):
            kind = s.byzantine[i] if i < k else "honest"
            if kind == "silent":
                continue
            tags = (b"a", b"b") if kind == "twins" else (b"h",)
            for side, tag in enumerate(tags):
                app = SimApp(i, tag, self.genesis, honest_keys, s.power_changes)
                inst = Instance(len(self.instances), i, kind, self.signers[i], app, MemoryWAL())
                inst.targets = (side,) if kind == "twins" else ()
                self.instances.append(inst)
                self.by_validator.setdefault(i, []).append(inst)
        for inst in self.instances:
            inst.targets = self._targets_of(inst, halves)

    def _targets_of(self, inst: Instance, halves: tuple[list[int], list[int]]) -> tuple[int, ...]:
        if inst.kind != "twins":
            return tuple(o.ident for o in self.instances if o.validator != inst.validator)
        side = inst.targets[0]
        group = halves[side]
        out = []
        for o in self.instances:
            if o.validator == inst.validator:
                continue
            if (o.honest and o.validator in group) or (o.kind == "twins" and o.targets[0] == side):
                out.append(o.ident)
            elif not o.honest and o.kind != "twins":
                out.append(o.ident)
        return tuple(out)

    def _push(self, at_ms: int, kind: int, *payload) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at_ms, self.seq, kind, payload))

    def _trace(self, line: str) -> None:
        if self.tracing:
            self.result.trace.append(f"{self.now:>7} {line}")

    # ----- running ------------------------------------------------------------------------------------------

    def run(self) -> ScheduleResult:
        s = self.s
        for c in s.crashes:
            self._push(c.at_ms, _CRASH, c)
        for p in s.partitions:
            self._push(p.end_ms, _HEAL)
        self._push(s.gst_ms, _HEAL)
        for inst in self.instances:
            inst.engine = Engine(self.config, inst.signer, 1, self.genesis, inst.app.valsets[2], inst.wal,
                                 self.verifier)
            self._run_engine(inst, lambda e: e.start(self.now))
        deadline = s.gst_ms + s.liveness_budget_ms
        while self.queue and not self._all_done():
            at, _, kind, payload = heapq.heappop(self.queue)
            if at > deadline:
                break
            self.now = at
            self._dispatch(kind, payload)
        self._finish()
        return self.result

    def _dispatch(self, kind: int, payload: tuple) -> None:
        if kind == _DELIVER or kind == _TIMEOUT:
            ident, incarnation, event = payload[:3]
            inst = self.instances[ident]
            if inst.engine is not None and inst.incarnation == incarnation:
                self._deliver(inst, event, payload[3] if len(payload) > 3 else -1)
        elif kind == _CRASH:
            self._on_crash(payload[0])
        elif kind == _RESTART:
            self._restart(self.instances[payload[0]], payload[1])
        elif kind == _HEAL:
            for inst in self.instances:
                if inst.engine is not None:
                    self._catch_up(inst)
        elif kind == _SYNC:
            inst = self.instances[payload[0]]
            ident, incarnation, resend, moved = payload
            if not moved:
                inst.sync_pending = False
            if inst.engine is not None and inst.incarnation == incarnation:
                # a validator that moved on since it asked may have dropped messages of the height it is at now
                resend = resend or inst.engine.height != inst.sync_height
                self._catch_up(inst, resend, moved)

    def _all_done(self) -> bool:
        target = self.s.heights
        return all(inst.app.height >= target for inst in self.instances if inst.honest)

    def _deliver(self, inst: Instance, event, src: int = -1) -> None:
        self.result.deliveries += 1
        self._trace(f"deliver #{inst.ident} {_describe(event)}")
        if isinstance(event, (ProposalReceived, VoteReceived)):
            msg = event.proposal if isinstance(event, ProposalReceived) else event.vote
            if msg.height > inst.engine.height:  # type: ignore[union-attr]
                self._request_sync(inst)
            if inst.honest and src >= 0 and self.instances[src].kind == "twins":
                self._relay(inst, msg)
        try:
            self._run_engine(inst, lambda e: e.handle(event, self.now))
        except FutureHeight:
            self._request_sync(inst)
        except ConsensusError:
            pass

    def _run_engine(self, inst: Instance, step) -> None:
        """Run one engine step and perform its actions; application answers are fed back at once."""
        work = [step]
        while work and inst.engine is not None:
            current = work.pop(0)
            try:
                actions = current(inst.engine)
            except SimulatedCrash:
                self._crash(inst, keep_all=True)
                return
            for action in actions:
                follow = self._perform(inst, action)
                if follow is not None:
                    work.append(lambda e, ev=follow: e.handle(ev, self.now))

    def _perform(self, inst: Instance, action):
        if isinstance(action, Broadcast):
            self._broadcast(inst, action.message)
        elif isinstance(action, ScheduleTimeout):
            event = TimeoutFired(action.height, action.round, action.step)
            self._push(self.now + action.duration_ms, _TIMEOUT, inst.ident, inst.incarnation, event)
        elif isinstance(action, RequestProposal):
            return ProposalValueReady(action.height, action.round, inst.app.propose_value(action.height, action.round))
        elif isinstance(action, ValidateValue):
            return ValueValidated(action.height, action.value_hash, is_valid_value(action.height, action.value))
        elif isinstance(action, Commit):
            committed = self._commit(inst, action)  # applied now, acknowledged through the queue
            self._push(self.now, _DELIVER, inst.ident, inst.incarnation, committed)
        elif isinstance(action, ReportEvidence):
            self._check_evidence(inst, action)
        return None

    # ----- network ------------------------------------------------------------------------------------------

    def _broadcast(self, inst: Instance, message) -> None:
        if inst.honest:
            self._check_own_signature(inst, message)
        messages = [message]
        if inst.kind == "random":
            messages = [self._randomise(inst, message)]
        elif inst.kind == "double" and isinstance(message, Vote):
            messages.append(self._conflicting_vote(inst, message))
        for m in messages:
            self.sent_log.setdefault(m.height, []).append((inst.ident, m))
            for dest in inst.targets:
                self._send(inst, dest, m)

    def _send(self, src: Instance, dest: int, message) -> None:
        s, rng = self.s, self.rng
        before_gst = self.now < s.gst_ms
        if before_gst and (rng.per_mille(s.drop_per_mille) or self._partitioned(src.validator, dest)):
            return
        target = self.instances[dest]
        if target.engine is None:
            return
        event = ProposalReceived(message) if isinstance(message, Proposal) else VoteReceived(message)
        copies = 2 if rng.per_mille(s.duplicate_per_mille) else 1
        for _ in range(copies):
            delay = rng.between(s.min_delay_ms, s.max_delay_ms)
            self._push(self.now + delay, _DELIVER, dest, target.incarnation, event, src.ident)

    def _partitioned(self, src_validator: int, dest: int) -> bool:
        dest_validator = self.instances[dest].validator
        for p in self.s.partitions:
            if p.start_ms <= self.now < p.end_ms and (src_validator in p.side) != (dest_validator in p.side):
                return True
        return False

    def _relay(self, inst: Instance, message) -> None:
        """Gossip: an honest validator forwards what it received from a twin (whose sends reach only its half)."""
        if message in self.relayed:
            return
        self.relayed[message] = True
        self.sent_log.setdefault(message.height, []).append((inst.ident, message))
        for dest in inst.targets:
            self._send(inst, dest, message)

    def _request_sync(self, inst: Instance) -> None:
        if not inst.sync_pending:
            inst.sync_pending = True
            inst.sync_height = inst.engine.height  # type: ignore[union-attr]
            self._push(self.now + 2 * self.s.max_delay_ms + 1, _SYNC, inst.ident, inst.incarnation, False, False)

    def _catch_up(self, inst: Instance, resend: bool = True, moved: bool = False) -> None:
        """Block sync one height at a time to the highest honest decision, then re-deliver the messages of the
        height reached. `resend=False` (a sync asked for by a lagging validator) re-delivers only if sync moved it.
        """
        engine = inst.engine
        if engine is None:
            return
        if engine.height in self.decisions and not engine.decided:
            value, cert = self.decisions[engine.height]
            self._trace(f"sync #{inst.ident} height {engine.height}")
            self._deliver(inst, CommitReceived(value, cert))
            if inst.engine is not None and inst.engine.decided:  # continue once `Committed` (queued) is applied
                self._push(self.now, _SYNC, inst.ident, inst.incarnation, resend, True)
            return
        if not (resend or moved):
            return
        for height in (engine.height, engine.height + 1):
            for src, message in self.sent_log.get(height, ()):
                if inst.ident in self.instances[src].targets:
                    delay = self.rng.between(self.s.min_delay_ms, self.s.max_delay_ms)
                    event = ProposalReceived(message) if isinstance(message, Proposal) else VoteReceived(message)
                    self._push(self.now + delay, _DELIVER, inst.ident, inst.incarnation, event, src)

    # ----- byzantine behaviour ------------------------------------------------------------------------------

    def _random_hash(self) -> bytes | None:
        pick = self.rng.below(3)
        if pick == 0:
            return None
        return compute_value_hash(b"random|%d" % self.rng.below(4))

    def _randomise(self, inst: Instance, message):
        if isinstance(message, Proposal):
            junk = b"junk|%d" % self.rng.below(1000)
            forged = Proposal(message.height, message.round, message.pol_round, compute_value_hash(junk), junk,
                              message.proposer)
            return forged.signed(inst.signer, CHAIN_ID) if self.rng.per_mille(500) else message
        if self.rng.per_mille(500):
            return message
        forged = Vote(message.vote_type, message.height, message.round, self._random_hash(), message.validator,
                      message.timestamp_ms)
        return forged.signed(inst.signer, CHAIN_ID)

    def _conflicting_vote(self, inst: Instance, vote: Vote) -> Vote:
        other = compute_value_hash(b"double|%d|%d" % (vote.height, vote.round))
        value_hash = other if vote.value_hash is not None else compute_value_hash(b"double-nil")
        forged = Vote(vote.vote_type, vote.height, vote.round, value_hash, vote.validator, vote.timestamp_ms)
        return forged.signed(inst.signer, CHAIN_ID)

    # ----- crashes ------------------------------------------------------------------------------------------

    def _on_crash(self, crash: Crash) -> None:
        inst = self.by_validator[crash.validator][0]
        if inst.engine is None:
            return
        if crash.mid_write:
            inst.wal.arm_crash(crash.mid_write, crash.keep_bytes)
            self._push(self.now + crash.down_ms, _RESTART, inst.ident, True)
        else:
            self._crash(inst, keep_all=False, keep=crash.keep_bytes)
            self._push(self.now + crash.down_ms, _RESTART, inst.ident, False)

    def _crash(self, inst: Instance, keep_all: bool, keep: int = 0) -> None:
        self._trace(f"crash #{inst.ident} at height {inst.engine.height if inst.engine else '-'}")
        inst.wal.crash(len(inst.wal.data) - inst.wal.durable if keep_all else keep)
        inst.engine = None
        inst.incarnation += 1

    def _restart(self, inst: Instance, armed: bool) -> None:
        if inst.engine is not None:
            if not armed:
                return
            self._crash(inst, keep_all=True)  # the armed write never came: crash cleanly now
        app = inst.app
        height = app.height + 1
        reopened = MemoryWAL(bytes(inst.wal.data))  # reopen: the torn tail is cut off
        self.result.restarts += 1
        self.result.torn_restarts += len(reopened.data) < len(inst.wal.data)
        inst.wal = reopened
        self._trace(f"restart #{inst.ident} at height {height}")
        engine, actions = Engine.restore(self.config, inst.signer, height, app.valsets[height],
                                         app.valsets[height + 1], inst.wal, self.verifier, app.last_commit, self.now)
        inst.engine = engine
        self._run_engine(inst, lambda e: actions)
        self._catch_up(inst)

    # ----- properties ---------------------------------------------------------------------------------------

    def _commit(self, inst: Instance, action: Commit) -> Committed:
        app = inst.app
        self._trace(f"commit #{inst.ident} height {action.height} value {action.value!r}")
        if inst.honest:
            self._check_decision(inst, action)
        updates = app.commit(action.height, action.value, action.certificate) if action.height > app.height else ()
        return Committed(action.height, updates)

    def _check_decision(self, inst: Instance, action: Commit) -> None:
        h, value = action.height, action.value
        if not is_valid_value(h, value):
            self._violation(f"validity: validator {inst.validator} decided invalid {value!r} at height {h}")
        try:
            verify_certificate(action.certificate, inst.app.valsets[h], CHAIN_ID, self.verifier)
        except ConsensusError as exc:
            self._violation(f"certificate: validator {inst.validator} height {h}: {exc}")
        first = self.decisions.get(h)
        if first is None:
            self.decisions[h] = (value, action.certificate)
        elif first[0] != value:
            self._violation(f"agreement: height {h}: {first[0]!r} vs {value!r} (validator {inst.validator})")
        self.result.max_round = max(self.result.max_round, action.certificate.round)

    def _violation(self, text: str) -> None:
        if not self.result.safety_violations:
            self.result.violation_at = len(self.result.trace)
        self.result.safety_violations.append(f"{text} (at {self.now} ms)")

    def _check_own_signature(self, inst: Instance, message) -> None:
        step = 0 if isinstance(message, Proposal) else message.vote_type
        key = (inst.signer.address, message.height, message.round, step)
        earlier = self.own_signed.get(key)
        if earlier is None:
            self.own_signed[key] = message
        elif earlier.value_hash != message.value_hash:
            self._violation(
                f"double sign: honest validator {inst.validator} at height {message.height} "
                f"round {message.round} step {step}")

    def _check_evidence(self, inst: Instance, action: ReportEvidence) -> None:
        self.result.evidence += 1
        if inst.honest and action.evidence.validator not in self.byzantine_addresses:
            self._violation(f"evidence against an honest validator at {action.evidence.height}")

    def _check_wal_signatures(self, inst: Instance) -> None:
        """Signed-but-unsent messages count too: scan the validator's WAL for own signatures."""
        for payload in inst.wal.records():
            kind, _, item = decode_wal_record(payload)
            if kind == RECORD_SIGNED:
                self._check_own_signature(inst, item)

    def _finish(self) -> None:
        honest = [inst for inst in self.instances if inst.honest]
        for inst in honest:
            self._check_wal_signatures(inst)
        self.result.end_ms = self.now
        self.result.heights_committed = min((inst.app.height for inst in honest), default=0)
        if honest and self.result.heights_committed < self.s.heights:
            self.result.liveness_failure = (
                f"only {self.result.heights_committed} of {self.s.heights} heights committed by every honest "
                f"validator by {self.now} ms (GST {self.s.gst_ms} ms)")


def _describe(event) -> str:
    if isinstance(event, VoteReceived):
        v = event.vote
        kind = "prevote" if v.vote_type == 2 else "precommit"
        value = v.value_hash.hex()[:8] if v.value_hash else "nil"
        return f"{kind} h{v.height} r{v.round} {value} from {v.validator.hex()[:6]}"
    if isinstance(event, ProposalReceived):
        p = event.proposal
        return f"proposal h{p.height} r{p.round} pol{p.pol_round} {p.value_hash.hex()[:8]} {p.value!r}"
    return repr(event)[:120]


def run_schedule(schedule: Schedule, trace: bool = False) -> ScheduleResult:
    return Simulation(schedule, trace).run()
