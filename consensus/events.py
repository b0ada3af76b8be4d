"""Inputs (events) and outputs (actions) of the engine, and the WAL record codec.

Events, fed with `Engine.handle(event, now_ms)`; `now_ms` is the driver's clock, the only time the engine sees:
- `ProposalReceived(proposal)`, `VoteReceived(vote)`: a message from a peer (own messages are applied inside).
- `TimeoutFired(height, round, step)`: a timeout the engine asked for with `ScheduleTimeout` has expired.
- `ProposalValueReady(height, round, value)`: the application's answer to `RequestProposal`.
- `ValueValidated(height, value_hash, valid)`: the application's answer to `ValidateValue`.
- `Committed(height, validator_updates)`: the application applied the value of `Commit(height, ...)`; the updates
  take effect at `height + VALSET_UPDATE_DELAY`. The engine starts the next height only after this event.
- `CommitReceived(value, certificate)`: block sync handed over a decided value with its commit certificate.

Actions, returned in the order the driver must perform them:
- `Broadcast(message)`: send to all peers. Already written and flushed to the WAL when returned.
- `ScheduleTimeout(height, round, step, duration_ms)`: call back with `TimeoutFired` after `duration_ms`.
- `RequestProposal(height, round, last_commit)`: ask the application for a value to propose.
- `ValidateValue(height, value_hash, value)`: ask the application whether a proposed value is valid.
- `Commit(height, value, certificate)`: the value is decided; apply it, then send `Committed`.
- `ReportEvidence(evidence)`: verifiable `DuplicateVoteEvidence` for the application to include in a block.

WAL records are msgpack arrays: `[1, now_ms, event]` for an input and `[2, message]` for an own signed proposal
or vote; each event is `[kind, *fields]` with the kinds below. Replaying the inputs through a fresh engine gives
back the same state, because the engine is deterministic and time is part of each record.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from consensus.commit import CommitCertificate
from consensus.errors import MalformedMessage
from consensus.evidence import DuplicateVoteEvidence
from consensus.messages import Message, Proposal, Vote, decode_message, encode_message
from consensus.validators import ValidatorUpdate

STEP_PROPOSE = 0
STEP_PREVOTE = 1
STEP_PRECOMMIT = 2
STEP_NAMES = ("propose", "prevote", "precommit")


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    proposal: Proposal


@dataclass(frozen=True, slots=True)
class VoteReceived:
    vote: Vote


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    height: int
    round: int
    step: int


@dataclass(frozen=True, slots=True)
class ProposalValueReady:
    height: int
    round: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ValueValidated:
    height: int
    value_hash: bytes
    valid: bool


@dataclass(frozen=True, slots=True)
class Committed:
    height: int
    validator_updates: tuple[ValidatorUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class CommitReceived:
    value: bytes
    certificate: CommitCertificate


Event = (
    ProposalReceived | VoteReceived | TimeoutFired | ProposalValueReady | ValueValidated | Committed | CommitReceived
)


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Message


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    height: int
    round: int
    step: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RequestProposal:
    height: int
    round: int
    last_commit: CommitCertificate | None


@dataclass(frozen=True, slots=True)
class ValidateValue:
    height: int
    value_hash: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    height: int
    value: bytes
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    evidence: DuplicateVoteEvidence


Action = Broadcast | ScheduleTimeout | RequestProposal | ValidateValue | Commit | ReportEvidence

RECORD_EVENT = 1
RECORD_SIGNED = 2
_EV_PROPOSAL, _EV_VOTE, _EV_TIMEOUT, _EV_VALUE, _EV_VALID, _EV_COMMITTED, _EV_SYNC = range(1, 8)


def encode_event(e: Event) -> list:
    if isinstance(e, ProposalReceived):
        return [_EV_PROPOSAL, encode_message(e.proposal)]
    if isinstance(e, VoteReceived):
        return [_EV_VOTE, encode_message(e.vote)]
    if isinstance(e, TimeoutFired):
        return [_EV_TIMEOUT, e.height, e.round, e.step]
    if isinstance(e, ProposalValueReady):
        return [_EV_VALUE, e.height, e.round, e.value]
    if isinstance(e, ValueValidated):
        return [_EV_VALID, e.height, e.value_hash, e.valid]
    if isinstance(e, Committed):
        return [_EV_COMMITTED, e.height, [[u.public_key, u.power] for u in e.validator_updates]]
    return [_EV_SYNC, e.value, e.certificate.encode()]


def decode_event(f: list) -> Event:
    kind = f[0]
    if kind == _EV_PROPOSAL:
        return ProposalReceived(decode_message(f[1]))  # type: ignore[arg-type]
    if kind == _EV_VOTE:
        return VoteReceived(decode_message(f[1]))  # type: ignore[arg-type]
    if kind == _EV_TIMEOUT:
        return TimeoutFired(f[1], f[2], f[3])
    if kind == _EV_VALUE:
        return ProposalValueReady(f[1], f[2], f[3])
    if kind == _EV_VALID:
        return ValueValidated(f[1], f[2], f[3])
    if kind == _EV_COMMITTED:
        return Committed(f[1], tuple(ValidatorUpdate(pk, p) for pk, p in f[2]))
    if kind == _EV_SYNC:
        return CommitReceived(f[1], CommitCertificate.decode(f[2]))
    raise MalformedMessage(f"unknown WAL event kind {kind}")


def encode_event_record(event: Event, now_ms: int) -> bytes:
    return msgpack.packb([RECORD_EVENT, now_ms, encode_event(event)], use_bin_type=True)


def encode_signed_record(message: Message) -> bytes:
    return msgpack.packb([RECORD_SIGNED, encode_message(message)], use_bin_type=True)


def decode_wal_record(payload: bytes) -> tuple[int, int, Event | Message]:
    """Return (kind, now_ms or 0, event or signed message)."""
    f = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    if f[0] == RECORD_EVENT:
        return RECORD_EVENT, f[1], decode_event(f[2])
    if f[0] == RECORD_SIGNED:
        return RECORD_SIGNED, 0, decode_message(f[1])
    raise MalformedMessage(f"unknown WAL record kind {f[0]}")
