"""The Tendermint consensus engine as a sans-IO state machine.

Implements Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic 2018) for one validator.
The driver feeds events with `handle(event, now_ms)` and performs the returned actions in order (see
`consensus.events` for both lists). There is no clock, socket, thread or randomness in here; the only I/O is the
injected `WAL`, which the engine writes before it returns a `Broadcast` of its own message.

Paper mapping (line numbers of Algorithm 1):
- `start_round` (11-21): the proposer re-proposes `valid_value` with `pol_round = valid_round`, else asks the
  application (`RequestProposal`); everyone schedules the propose timeout (the paper's proposer does not; CometBFT
  does, and it bounds a slow application).
- `_rule_prevote_on_proposal` (22-33), `_rule_schedule_prevote_timeout` (34-35), `_rule_lock` (36-43),
  `_rule_precommit_nil` (44-46), `_rule_schedule_precommit_timeout` (47-48), `_rule_decide` (49-54),
  `_rule_skip_round` (55-56), `on_timeout_propose` / `on_timeout_prevote` / `on_timeout_precommit` (57-65).
- `valid(v)` is asked of the application once per value hash (`ValidateValue` / `ValueValidated`); a rule that
  needs an unknown validity waits. The proposer's own value is valid by construction.
- Deviation: the decide rule accepts the value for a precommit quorum from a proposal of any round or from block
  sync (`CommitReceived`), not only from the proposal of the same round; the hash binds the value, so this is the
  same decision (CometBFT does the same). "f + 1 messages" counts the voting power of distinct validators that
  prevoted or precommitted in the higher round.
- After a decision the engine emits `Commit` and waits for `Committed(height, updates)` before entering the next
  height at round 0. Updates take effect at `height + VALSET_UPDATE_DELAY`.

Thresholds are integer: a quorum is more than 2/3 of the height's total power, a skip more than 1/3.

Messages: the first proposal from the round's proposer is kept (a second, different one is ignored); a conflicting
second vote of a validator for a (round, type) becomes `DuplicateVoteEvidence` (reported once) and, as in the
paper, still counts toward its own value (see `consensus.votes`). Messages for height + 1 are verified and
buffered (at most `max_future_messages`) and applied when that height starts; older heights raise
`StaleHeight`, further ones `FutureHeight`; proposals more than `max_rounds_ahead` rounds ahead raise
`FutureRound` (proposer selection for round r costs O(n * r), so a peer must not choose r freely). Invalid input raises the typed errors in `consensus.errors` before
any state changes.

WAL and the double-sign guard: each accepted input is appended (no flush) before it is applied; each own
proposal and vote is appended and flushed before its `Broadcast` is returned; `Committed` is flushed and is the
height marker. `Engine.restore` rebuilds the guard from every signed record of the current height or later, then
replays the inputs after the marker of the previous height; since the engine is deterministic and time is
recorded, it re-derives the same state and the same votes. The guard refuses to sign a second, different message
for one (height, round, step) and counts it in `double_sign_refusals` (the engine then stays silent for that step).

Known limits: no timeout_commit wait after a decision (the next height starts at once, so a certificate holds the
precommits seen until then); no proposal block parts (a proposal carries the whole value); votes for the previous
height that arrive late are dropped rather than added to its certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.commit import CommitCertificate, verify_certificate
from consensus.errors import (
    ConsensusError,
    FutureHeight,
    FutureRound,
    InvalidSignature,
    MalformedMessage,
    StaleHeight,
    UnknownValidator,
    WrongProposer,
)
from consensus.events import (
    RECORD_EVENT,
    RECORD_SIGNED,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Action,
    Broadcast,
    Commit,
    Committed,
    CommitReceived,
    Event,
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
    encode_event_record,
    encode_signed_record,
)
from consensus.evidence import DuplicateVoteEvidence, make_duplicate_vote_evidence
from consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    Message,
    Proposal,
    Signer,
    Verifier,
    Vote,
    compute_value_hash,
    ed25519_verify,
    validate_proposal_fields,
    validate_vote_fields,
)
from consensus.validators import ValidatorSet
from consensus.votes import DUPLICATE, VoteSet
from consensus.wal import WAL


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Timeouts in ms: `base + delta * round` for each step, so they grow with the round (paper, section 4)."""

    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    def duration_ms(self, step: int, round_: int) -> int:
        if step == STEP_PROPOSE:
            return self.propose_ms + self.propose_delta_ms * round_
        if step == STEP_PREVOTE:
            return self.prevote_ms + self.prevote_delta_ms * round_
        return self.precommit_ms + self.precommit_delta_ms * round_


@dataclass(frozen=True, slots=True)
class EngineConfig:
    chain_id: str
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    max_future_messages: int = 10_000
    max_rounds_ahead: int = 1_000  # proposer selection for round r costs O(n * r): bound what a peer can ask


class Engine:
    """One validator's consensus state machine. Not thread-safe: one owner feeds it events in order."""

    def __init__(
        self,
        config: EngineConfig,
        signer: Signer | None,
        height: int,
        validators: ValidatorSet,
        next_validators: ValidatorSet,
        wal: WAL,
        verifier: Verifier = ed25519_verify,
        last_commit: CommitCertificate | None = None,
    ) -> None:
        self.config = config
        self.chain_id = config.chain_id
        self.signer = signer
        self.address = signer.address if signer is not None else b""
        self.validators = validators
        self.next_validators = next_validators
        self.wal = wal
        self.verifier = verifier
        self.last_commit = last_commit
        self.now_ms = 0
        self.evidence: list[DuplicateVoteEvidence] = []
        self.double_sign_refusals = 0
        self._own_signed: dict[tuple[int, int, int], Message] = {}
        self._out: list[Action] = []
        self._replaying = False
        self._started = False
        self._reset_height(height)

    # ----- height state -------------------------------------------------------------------------------------

    def _reset_height(self, height: int) -> None:
        self.height = height
        self.round = -1
        self.step = STEP_PROPOSE
        self.decided = False
        self.locked_value: bytes | None = None
        self.locked_hash: bytes | None = None
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_hash: bytes | None = None
        self.valid_round = -1
        self.proposals: dict[int, Proposal] = {}
        self.prevotes: dict[int, VoteSet] = {}
        self.precommits: dict[int, VoteSet] = {}
        self.values: dict[bytes, bytes] = {}
        self.validity: dict[bytes, bool] = {}
        self._validation_requested: dict[bytes, bool] = {}
        self._round_power: dict[int, int] = {}
        self._round_seen: dict[int, dict[bytes, bool]] = {}
        self._skip_to = -1
        self._precommit_quorums: dict[int, bytes] = {}
        self._prevote_timeout_done: dict[int, bool] = {}
        self._precommit_timeout_done: dict[int, bool] = {}
        self._lock_rule_done: dict[int, bool] = {}
        self._awaiting_value_round = -1
        self._future: list[Event] = []
        self._evidence_seen: dict[DuplicateVoteEvidence, bool] = {}
        for key in sorted(self._own_signed):
            if key[0] < height:
                del self._own_signed[key]

    @property
    def is_validator(self) -> bool:
        return self.signer is not None and self.validators.get(self.address) is not None

    # ----- entry points -------------------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Action]:
        """Enter round 0 of the current height (call once, after construction or inside `restore`)."""
        self.now_ms = now_ms
        if not self._started:
            self._started = True
            self.start_round(0)
            self._apply_rules()
        return self._take_actions()

    def handle(self, event: Event, now_ms: int) -> list[Action]:
        """Apply one input; return the actions to perform, in order. Raises `ConsensusError` on bad input."""
        self.now_ms = now_ms
        try:
            self._dispatch(event)
            if self._started:
                self._apply_rules()
        except ConsensusError:
            self._out.clear()
            raise
        return self._take_actions()

    def _take_actions(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, VoteReceived):
            self.on_vote(event.vote)
        elif isinstance(event, ProposalReceived):
            self.on_proposal(event.proposal)
        elif isinstance(event, TimeoutFired):
            self._log(event)
            self.on_timeout(event)
        elif isinstance(event, ValueValidated):
            self.on_value_validated(event)
        elif isinstance(event, ProposalValueReady):
            self.on_proposal_value(event)
        elif isinstance(event, Committed):
            self.on_committed(event)
        elif isinstance(event, CommitReceived):
            self.on_commit_received(event)
        else:
            raise MalformedMessage(f"unknown event {type(event).__name__}")

    def _log(self, event: Event, flush: bool = False) -> None:
        if not self._replaying:
            self.wal.append(encode_event_record(event, self.now_ms), flush)

    # ----- inputs -------------------------------------------------------------------------------------------

    def _validators_for(self, height: int) -> ValidatorSet:
        if height < self.height:
            raise StaleHeight(f"message for height {height}, engine is at {self.height}")
        if height > self.height + 1:
            raise FutureHeight(f"message for height {height}, engine is at {self.height}")
        return self.validators if height == self.height else self.next_validators

    def _check_signature(self, validators: ValidatorSet, message: Message, address: bytes) -> int:
        member = validators.get(address)
        if member is None:
            raise UnknownValidator("signer is not in the validator set of this height")
        if not self.verifier(member.public_key, message.sign_bytes(self.chain_id), message.signature):
            raise InvalidSignature("signature does not verify for this chain id")
        return member.power

    def _buffer_future(self, event: Event) -> None:
        if len(self._future) < self.config.max_future_messages:
            self._future.append(event)

    def on_vote(self, vote: Vote) -> None:
        validate_vote_fields(vote)
        validators = self._validators_for(vote.height)
        if vote.height == self.height:
            known = (self.prevotes if vote.vote_type == PREVOTE else self.precommits).get(vote.round)
            if known is not None and known.votes.get(vote.validator) == vote:
                return  # an exact duplicate of a first vote: already verified, logged and counted
        power = self._check_signature(validators, vote, vote.validator)
        if vote.height != self.height:
            self._buffer_future(VoteReceived(vote))
            return
        self._log(VoteReceived(vote))
        self._add_vote(vote, power)

    def on_proposal(self, proposal: Proposal) -> None:
        validate_proposal_fields(proposal)
        validators = self._validators_for(proposal.height)
        if proposal.height == self.height and self.proposals.get(proposal.round) == proposal:
            return  # an exact duplicate
        if proposal.round > max(self.round, 0) + self.config.max_rounds_ahead:
            raise FutureRound(f"proposal for round {proposal.round}, engine is at round {self.round}")
        if proposal.proposer != validators.proposer_at(proposal.round):
            raise WrongProposer(f"not the proposer of height {proposal.height} round {proposal.round}")
        self._check_signature(validators, proposal, proposal.proposer)
        if proposal.height != self.height:
            self._buffer_future(ProposalReceived(proposal))
            return
        if proposal.round in self.proposals:
            return  # a duplicate, or an equivocating proposer's second proposal: the first one stands
        self._log(ProposalReceived(proposal))
        self.proposals[proposal.round] = proposal
        self.values[proposal.value_hash] = proposal.value

    def on_proposal_value(self, event: ProposalValueReady) -> None:
        if (event.height, event.round) != (self.height, self.round) or self._awaiting_value_round != self.round:
            return
        if self.step != STEP_PROPOSE or self.decided:
            return
        self._log(event)
        self._awaiting_value_round = -1
        value_hash = compute_value_hash(event.value)
        self.validity[value_hash] = True
        self._propose(event.value, value_hash, -1)

    def on_value_validated(self, event: ValueValidated) -> None:
        if event.height != self.height or event.value_hash in self.validity:
            return
        if event.value_hash not in self._validation_requested:
            return
        self._log(event)
        self.validity[event.value_hash] = bool(event.valid)

    def on_committed(self, event: Committed) -> None:
        if event.height != self.height or not self.decided:
            return
        following = self.next_validators.next_height_set(event.validator_updates)  # may raise: before logging
        self._log(event, flush=True)
        self.validators, self.next_validators = self.next_validators, following
        buffered = self._future
        self._reset_height(self.height + 1)
        self.start_round(0)
        for queued in buffered:
            try:
                self._dispatch(queued)
            except ConsensusError:
                pass

    def on_commit_received(self, event: CommitReceived) -> None:
        cert = event.certificate
        if cert.height != self.height:
            self._validators_for(cert.height)  # raises Stale/FutureHeight
            raise FutureHeight("a certificate for the next height must wait until this one is decided")
        if compute_value_hash(event.value) != cert.value_hash:
            raise MalformedMessage("synced value does not match the certificate's hash")
        verify_certificate(cert, self.validators, self.chain_id, self.verifier)
        if self.decided:
            return
        self._log(event)
        self.values[cert.value_hash] = event.value
        for vote in cert.precommits:
            self._add_vote(vote, self.validators.power_of(vote.validator))

    def on_timeout(self, event: TimeoutFired) -> None:
        if (event.height, event.round) != (self.height, self.round) or self.decided:
            return
        if event.step == STEP_PROPOSE:
            self.on_timeout_propose()
        elif event.step == STEP_PREVOTE:
            self.on_timeout_prevote()
        else:
            self.on_timeout_precommit()

    def on_timeout_propose(self) -> None:  # lines 57-60
        if self.step == STEP_PROPOSE:
            self._vote(PREVOTE, None)

    def on_timeout_prevote(self) -> None:  # lines 61-64
        if self.step == STEP_PREVOTE:
            self._vote(PRECOMMIT, None)

    def on_timeout_precommit(self) -> None:  # line 65
        self.start_round(self.round + 1)

    # ----- votes and evidence -------------------------------------------------------------------------------

    def _add_vote(self, vote: Vote, power: int) -> None:
        sets = self.prevotes if vote.vote_type == PREVOTE else self.precommits
        vote_set = sets.get(vote.round)
        if vote_set is None:
            vote_set = sets[vote.round] = VoteSet(self.validators)
        status, earlier = vote_set.add(vote, power)
        if status == DUPLICATE:
            return
        if earlier is not None:
            self._report_double_vote(earlier, vote)
        seen = self._round_seen.setdefault(vote.round, {})
        if vote.validator not in seen:
            seen[vote.validator] = True
            self._round_power[vote.round] = self._round_power.get(vote.round, 0) + power
            if vote.round > self._skip_to and self.validators.is_one_third(self._round_power[vote.round]):
                self._skip_to = vote.round
        if vote.vote_type == PRECOMMIT and vote.value_hash is not None and vote.round not in self._precommit_quorums:
            if vote_set.has_quorum_for(vote.value_hash):
                self._precommit_quorums[vote.round] = vote.value_hash

    def _report_double_vote(self, first: Vote, second: Vote) -> None:
        evidence = make_duplicate_vote_evidence(first, second)
        if evidence not in self._evidence_seen:
            self._evidence_seen[evidence] = True
            self.evidence.append(evidence)
            self._out.append(ReportEvidence(evidence))

    # ----- own messages -------------------------------------------------------------------------------------

    def _sign(self, message: Message, step: int) -> Message | None:
        """Sign through the double-sign guard; WAL-append and flush before the Broadcast is queued."""
        key = (message.height, message.round, step)
        earlier = self._own_signed.get(key)
        if earlier is not None:
            if _same_content(earlier, message):
                self._out.append(Broadcast(earlier))
                return earlier
            self.double_sign_refusals += 1
            return None
        signed = message.signed(self.signer, self.chain_id)  # type: ignore[arg-type]
        self.wal.append(encode_signed_record(signed), True)
        self._own_signed[key] = signed
        self._out.append(Broadcast(signed))
        return signed

    def _propose(self, value: bytes, value_hash: bytes, pol_round: int) -> None:
        proposal = Proposal(self.height, self.round, pol_round, value_hash, value, self.address)
        signed = self._sign(proposal, STEP_PROPOSE)
        if signed is not None:
            self.proposals.setdefault(self.round, signed)  # type: ignore[arg-type]
            self.values[value_hash] = value

    def _vote(self, vote_type: int, value_hash: bytes | None) -> None:
        """Sign and apply an own vote (if a validator) and move to the vote's step."""
        self.step = STEP_PREVOTE if vote_type == PREVOTE else STEP_PRECOMMIT
        if not self.is_validator:
            return
        vote = Vote(vote_type, self.height, self.round, value_hash, self.address, self.now_ms)
        signed = self._sign(vote, self.step)
        if signed is not None:
            self._add_vote(signed, self.validators.power_of(self.address))  # type: ignore[arg-type]

    def _schedule(self, step: int) -> None:
        duration = self.config.timeouts.duration_ms(step, self.round)
        self._out.append(ScheduleTimeout(self.height, self.round, step, duration))

    # ----- the upon-rules -----------------------------------------------------------------------------------

    def start_round(self, round_: int) -> None:  # lines 11-21
        self.round = round_
        self.step = STEP_PROPOSE
        if self.is_validator and self.validators.proposer_at(round_) == self.address:
            if self.valid_value is not None:
                self._propose(self.valid_value, self.valid_hash, self.valid_round)  # type: ignore[arg-type]
            else:
                self._awaiting_value_round = round_
                self._out.append(RequestProposal(self.height, round_, self.last_commit))
        self._schedule(STEP_PROPOSE)

    def _apply_rules(self) -> None:
        while not self.decided and self._apply_one_rule():
            pass

    def _apply_one_rule(self) -> bool:
        """Fire the first enabled rule; True if the state changed (the caller loops until quiescent)."""
        if self._rule_decide() or self._rule_skip_round():
            return True
        self._rule_schedule_precommit_timeout()
        if self.step == STEP_PROPOSE:
            return self._rule_prevote_on_proposal()
        self._rule_schedule_prevote_timeout()
        return self._rule_lock() or self._rule_precommit_nil()

    def _validity(self, value_hash: bytes) -> bool | None:
        """The application's verdict on a value, asking for it the first time (None while unknown)."""
        verdict = self.validity.get(value_hash)
        if verdict is None and value_hash not in self._validation_requested:
            self._validation_requested[value_hash] = True
            self._out.append(ValidateValue(self.height, value_hash, self.values[value_hash]))
        return verdict

    def _rule_prevote_on_proposal(self) -> bool:  # lines 22-33
        proposal = self.proposals.get(self.round)
        if proposal is None:
            return False
        vr = proposal.pol_round
        if vr >= 0:
            pol = self.prevotes.get(vr)
            if pol is None or not pol.has_quorum_for(proposal.value_hash):
                return False
        valid = self._validity(proposal.value_hash)
        if valid is None:
            return False
        free = self.locked_round == -1 if vr < 0 else self.locked_round <= vr
        accept = valid and (free or self.locked_hash == proposal.value_hash)
        self._vote(PREVOTE, proposal.value_hash if accept else None)
        return True

    def _rule_schedule_prevote_timeout(self) -> None:  # lines 34-35
        if self.step != STEP_PREVOTE or self.round in self._prevote_timeout_done:
            return
        prevotes = self.prevotes.get(self.round)
        if prevotes is not None and prevotes.has_quorum_any():
            self._prevote_timeout_done[self.round] = True
            self._schedule(STEP_PREVOTE)

    def _rule_lock(self) -> bool:  # lines 36-43
        proposal = self.proposals.get(self.round)
        if proposal is None or self.round in self._lock_rule_done:
            return False
        prevotes = self.prevotes.get(self.round)
        if prevotes is None or not prevotes.has_quorum_for(proposal.value_hash):
            return False
        if not self._validity(proposal.value_hash):
            return False
        self._lock_rule_done[self.round] = True
        if self.step == STEP_PREVOTE:
            self.locked_value, self.locked_hash, self.locked_round = proposal.value, proposal.value_hash, self.round
            self._vote(PRECOMMIT, proposal.value_hash)
        self.valid_value, self.valid_hash, self.valid_round = proposal.value, proposal.value_hash, self.round
        return True

    def _rule_precommit_nil(self) -> bool:  # lines 44-46
        if self.step != STEP_PREVOTE:
            return False
        prevotes = self.prevotes.get(self.round)
        if prevotes is None or not prevotes.has_quorum_for(None):
            return False
        self._vote(PRECOMMIT, None)
        return True

    def _rule_schedule_precommit_timeout(self) -> None:  # lines 47-48
        if self.round in self._precommit_timeout_done:
            return
        precommits = self.precommits.get(self.round)
        if precommits is not None and precommits.has_quorum_any():
            self._precommit_timeout_done[self.round] = True
            self._schedule(STEP_PRECOMMIT)

    def _rule_decide(self) -> bool:  # lines 49-54
        for round_, value_hash in self._precommit_quorums.items():
            if value_hash in self.values and self._validity(value_hash):
                self._decide(round_, value_hash)
                return True
        return False

    def _rule_skip_round(self) -> bool:  # lines 55-56
        if self._skip_to > self.round:
            self.start_round(self._skip_to)
            return True
        return False

    def _decide(self, round_: int, value_hash: bytes) -> None:
        votes = self.precommits[round_].votes_for(value_hash)
        cert = CommitCertificate(self.height, round_, value_hash, votes)
        self.decided = True
        self.last_commit = cert
        self._out.append(Commit(self.height, self.values[value_hash], cert))

    # ----- restart ------------------------------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        config: EngineConfig,
        signer: Signer | None,
        height: int,
        validators: ValidatorSet,
        next_validators: ValidatorSet,
        wal: WAL,
        verifier: Verifier = ed25519_verify,
        last_commit: CommitCertificate | None = None,
        now_ms: int = 0,
    ) -> tuple[Engine, list[Action]]:
        """Rebuild an engine at `height` (the application's last committed height + 1) from the WAL."""
        engine = cls(config, signer, height, validators, next_validators, wal, verifier, last_commit)
        records = [decode_wal_record(r) for r in wal.records()]
        start = 0
        for i, (kind, _, item) in enumerate(records):
            if kind == RECORD_SIGNED and item.height >= height:  # type: ignore[union-attr]
                step = STEP_PROPOSE if isinstance(item, Proposal) else _vote_step(item)  # type: ignore[arg-type]
                engine._own_signed[(item.height, item.round, step)] = item  # type: ignore[union-attr]
            elif kind == RECORD_EVENT and isinstance(item, Committed) and item.height == height - 1:
                start = i + 1
        engine._replaying = True
        first_now = next((r[1] for r in records[start:] if r[0] == RECORD_EVENT), now_ms)
        actions = engine.start(first_now)
        for kind, record_now, item in records[start:]:
            if kind == RECORD_EVENT:
                try:
                    actions += engine.handle(item, record_now)  # type: ignore[arg-type]
                except ConsensusError:
                    pass
        engine._replaying = False
        engine.now_ms = max(engine.now_ms, now_ms)
        return engine, actions


def _vote_step(vote: Vote) -> int:
    return STEP_PREVOTE if vote.vote_type == PREVOTE else STEP_PRECOMMIT


def _same_content(a: Message, b: Message) -> bool:
    """Equal for the guard: same kind and value (and pol round); vote timestamps may differ."""
    if isinstance(a, Proposal) and isinstance(b, Proposal):
        return (a.value_hash, a.pol_round) == (b.value_hash, b.pol_round)
    if isinstance(a, Vote) and isinstance(b, Vote):
        return (a.vote_type, a.value_hash) == (b.vote_type, b.value_hash)
    return False
