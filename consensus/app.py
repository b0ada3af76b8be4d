"""The application interface and a synchronous helper that answers the engine's application actions.

Contract
- `Application` is what consensus needs from the state machine it orders, without importing it:
  `propose_value(height, round, last_commit)` returns the bytes to propose (a block carrying `last_commit`);
  `validate_value(height, value)` is a deterministic verdict (every honest node must answer the same for the
  same value); `commit(height, value, certificate)` applies a decided value and returns the validator-set
  changes, which take effect at `height + VALSET_UPDATE_DELAY`.
- `drive(engine, app, step, now_ms)` runs one engine step (`lambda e: e.handle(event, now_ms)` or
  `lambda e: e.start(now_ms)`) and answers `RequestProposal` and `ValidateValue` at once by feeding the answers
  back, until the engine asks nothing more of the application. A `Commit` is applied with `app.commit`, and the
  resulting `Committed` event is handed back in `Driven.committed` rather than fed: the driver feeds it when the
  next height should start (after its block interval), which also keeps a lone validator from deciding heights
  in an endless loop. `Driven.actions` are the remaining actions, in order, for the driver's I/O: `Broadcast`,
  `ScheduleTimeout` and `ReportEvidence`.

A node whose application is slow can instead answer these actions asynchronously with the same events; the
engine does not care when the answers come, only that they come in order with the other inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from consensus.commit import CommitCertificate
from consensus.engine import Engine
from consensus.events import (
    Action,
    Commit,
    Committed,
    Event,
    ProposalValueReady,
    RequestProposal,
    ValidateValue,
    ValueValidated,
)
from consensus.validators import ValidatorUpdate


class Application(Protocol):
    def propose_value(self, height: int, round_: int, last_commit: CommitCertificate | None) -> bytes: ...

    def validate_value(self, height: int, value: bytes) -> bool: ...

    def commit(self, height: int, value: bytes, certificate: CommitCertificate) -> tuple[ValidatorUpdate, ...]: ...


@dataclass(slots=True)
class Driven:
    actions: list[Action] = field(default_factory=list)
    committed: list[Committed] = field(default_factory=list)


def drive(engine: Engine, app: Application, step: Callable[[Engine], list[Action]], now_ms: int) -> Driven:
    """Run `step`, answer proposal and validity requests synchronously, apply commits; return the rest."""
    pending = [step]
    driven = Driven()
    while pending:
        for action in pending.pop(0)(engine):
            answer = answer_application(app, action)
            if isinstance(answer, Committed):
                driven.committed.append(answer)
            elif answer is not None:
                pending.append(lambda e, event=answer: e.handle(event, now_ms))
            else:
                driven.actions.append(action)
    return driven


def answer_application(app: Application, action: Action) -> Event | None:
    """The event that answers an application action, or None for actions that are the driver's."""
    if isinstance(action, RequestProposal):
        value = app.propose_value(action.height, action.round, action.last_commit)
        return ProposalValueReady(action.height, action.round, value)
    if isinstance(action, ValidateValue):
        return ValueValidated(action.height, action.value_hash, app.validate_value(action.height, action.value))
    if isinstance(action, Commit):
        return Committed(action.height, tuple(app.commit(action.height, action.value, action.certificate)))
    return None
