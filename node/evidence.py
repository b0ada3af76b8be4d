"""The evidence reporter: this node's reports of double signing to the chain (`ReportEvidence`, action 41,
docs/PROTOCOL.md §5.21).

Contract:

- The consensus driver hands it every `ReportEvidence` action of the engine (`report(evidence)`, synchronous and
  never blocking): the engine emits one when a validator's second vote for a (height, round, type) names another
  value. Each **offence** (validator, height, round, vote type) is reported once per node: later evidence of the
  same offence (another pair of votes, the engine's replay of its WAL after a restart) is ignored. The memory of
  reported offences is bounded (`MAX_REMEMBERED`, oldest forgotten first), and so is the queue (`MAX_PENDING`;
  beyond it a report is dropped and counted).
- `run()` is a task of the node's TaskGroup. It takes the queued evidence in order and, unless the committed
  state already records the offence, builds ONE transaction `[41, public_key, vote_a, vote_b]` signed by this
  node's validator key for its own account (the oracle feeder's pattern, node/oracle.py; the two share one nonce
  source, so their nonces never collide) and hands it to `NodeSubmitter.submit`: mempool admission against the
  committed state, then gossip. Like the feeder, it waits (re-checking every `WAIT_S`) while the nonce lies
  outside the window around the last block's time (a new chain whose genesis time is long past, a node far
  behind) rather than send what admission would refuse.
- The engine's evidence names the offender by address; its public key, which the transaction carries, comes
  from the consensus validator set (validators.json) through `public_keys`.
- Several honest nodes report the same offence: the first report executed records it, the others are included
  with EVIDENCE_ALREADY_RECORDED (44) and change nothing. That is expected.
- Metric `kabuto_evidence_reported_total{result}`: "ok" (admitted), the admission refusal code otherwise,
  "already_recorded" (the state already holds the offence: nothing sent), "unknown_validator" (no public key
  for the address), "dropped" (the queue was full). Each report is logged once, as a warning.

Known limits: no retry. A report refused at admission (a full mempool) or later dropped from the mempool is not
sent again by this node; the other validators report the same offence.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from consensus.evidence import DuplicateVoteEvidence
from node.oracle import WAIT_S, is_nonce_in_window
from node.telemetry import NodeMetrics
from rpc.client.wallet import Wallet
from stf.state import State, is_evidence_recorded
from stf.tx import EvidenceVote, ReportEvidence

log = logging.getLogger("node.evidence")

MAX_PENDING = 1024
MAX_REMEMBERED = 100_000

Offence = tuple[bytes, int, int, int]  # (validator, height, round, vote type)


def get_offence(evidence: DuplicateVoteEvidence) -> Offence:
    vote = evidence.vote_a
    return vote.validator, vote.height, vote.round, vote.vote_type


def build_report(evidence: DuplicateVoteEvidence, public_key: bytes) -> ReportEvidence:
    """The action proving `evidence`: the offender's key and the two votes exactly as consensus encodes them."""
    vote_a, vote_b = (EvidenceVote(*fields) for fields in evidence.encode())
    return ReportEvidence(public_key, vote_a, vote_b)


class EvidenceReporter:
    """Reports each offence the engine detects once (see the module contract)."""

    def __init__(
        self, wallet: Wallet, public_keys: Mapping[bytes, bytes], submit: Callable[[bytes], Awaitable[Any]],
        get_state: Callable[[], State], metrics: NodeMetrics,
    ) -> None:
        self.wallet = wallet
        self.public_keys = public_keys
        self.submit = submit
        self.get_state = get_state
        self.metrics = metrics
        self._queue: asyncio.Queue[DuplicateVoteEvidence] = asyncio.Queue(MAX_PENDING)
        self._seen: dict[Offence, None] = {}

    def report(self, evidence: DuplicateVoteEvidence) -> None:
        """Queue `evidence` unless its offence was already reported by this node. Never blocks."""
        offence = get_offence(evidence)
        if offence in self._seen:
            return
        self._seen[offence] = None
        if len(self._seen) > MAX_REMEMBERED:
            del self._seen[next(iter(self._seen))]
        try:
            self._queue.put_nowait(evidence)
        except asyncio.QueueFull:
            self.count("dropped", offence)

    async def run(self) -> None:
        while True:
            await self.submit_one(await self._queue.get())

    async def submit_one(self, evidence: DuplicateVoteEvidence) -> None:
        offence = get_offence(evidence)
        public_key = self.public_keys.get(offence[0])
        if public_key is None:
            self.count("unknown_validator", offence)
            return
        action = build_report(evidence, public_key)
        while True:
            state = self.get_state()
            if is_evidence_recorded(state, *offence):
                self.count("already_recorded", offence)
                return
            signed = self.wallet.sign(action)
            if is_nonce_in_window(state.params, state.time_ms, signed.nonce):
                break
            await asyncio.sleep(WAIT_S)  # this clock is outside the nonce window of the last block's time
        result = await self.submit(signed.wire)
        self.count(result.code, offence, result.message)

    def count(self, result: str, offence: Offence, message: str = "") -> None:
        self.metrics.evidence_reported.labels(result).inc()
        validator, height, round_, vote_type = offence
        fields = {"validator": validator.hex(), "evidence_height": height, "evidence_round": round_,
                  "vote_type": vote_type, "result": result}
        if result == "ok":
            log.warning("reporting double signing", extra={"fields": fields})
        elif result != "already_recorded":
            log.warning("double signing not reported: %s", message or result, extra={"fields": fields})
