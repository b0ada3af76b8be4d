"""Double-signing evidence: `ReportEvidence` (action 41) records that a validator signed two different votes
for one (height, round, vote type) (docs/PROTOCOL.md §5.21).

The STF checks the evidence with its own code: it may not import `consensus`, so `compute_vote_sign_bytes`
rebuilds consensus's vote sign bytes (docs/CONSENSUS.md §3) from the protocol constants; a test outside `stf`
keeps the two byte-for-byte equal (tests/stf/test_evidence.py).

Checks, in order, each a result code (the first that fails is the result; nothing is recorded):

| code                          | when                                                                        |
|-------------------------------|-----------------------------------------------------------------------------|
| 39 EVIDENCE_MISMATCH          | the votes differ in type, height, round or validator                        |
| 40 EVIDENCE_SAME_VALUE        | the votes name the same value (nil is a value: nil against a hash differs)  |
| 41 EVIDENCE_WRONG_KEY         | the address of `public_key` is not the votes' validator                     |
| 42 EVIDENCE_NOT_A_VALIDATOR   | that validator is not in the current validator set                          |
| 43 EVIDENCE_FUTURE_HEIGHT     | the votes' height is above the current block's height                       |
| 44 EVIDENCE_ALREADY_RECORDED  | the offence (validator, height, round, vote type) is already recorded       |
| 45 EVIDENCE_BAD_SIGNATURE     | either vote's signature does not verify under `public_key` for the chain id |

The two signature checks come last: they are the only costly step, and a report that fails a cheaper rule (a
repeated report of a recorded offence above all) never pays for them.

On success the offence is recorded in the evidence entry of (validator, height) with the current block's height
(`state.record_evidence`) and an `EvidenceEvent` is emitted. Nothing else changes: there is no stake, so there
is nothing to slash; what to do about a recorded offence is left to governance and operators.

Known limit: recorded offences are never pruned (one entry per offending validator and height).
"""

from stf import codec
from stf.constants import CONSENSUS_DOMAIN_TAG
from stf.crypto import compute_address, is_valid_signature
from stf.errors import ResultCode
from stf.events import EvidenceEvent
from stf.receipts import ActionResult
from stf.state import Account, State, is_evidence_recorded, record_evidence
from stf.tx import EvidenceVote, ReportEvidence

R = ResultCode


def compute_vote_sign_bytes(chain_id: str, vote: EvidenceVote) -> bytes:
    """The bytes a validator signs for `vote`: the domain tag, then the msgpack array `[vote_type, chain_id (as
    text), height, round, value_hash or nil, validator, timestamp_ms]` (consensus's `Vote.sign_bytes`)."""
    fields = [vote.vote_type, chain_id, vote.height, vote.round, vote.value_hash, vote.validator, vote.timestamp_ms]
    return CONSENSUS_DOMAIN_TAG + codec.encode(fields)


def is_same_offence(a: EvidenceVote, b: EvidenceVote) -> bool:
    return (a.vote_type, a.height, a.round, a.validator) == (b.vote_type, b.height, b.round, b.validator)


def is_valid_vote_signature(chain_id: str, public_key: bytes, vote: EvidenceVote) -> bool:
    return is_valid_signature(public_key, compute_vote_sign_bytes(chain_id, vote), vote.signature)


def validate_evidence(state: State, action: ReportEvidence) -> ResultCode:
    """The first rule of the module table that `action` breaks, else OK; reads the state only."""
    a, b = action.vote_a, action.vote_b
    if not is_same_offence(a, b):
        return R.EVIDENCE_MISMATCH
    if a.value_hash == b.value_hash:
        return R.EVIDENCE_SAME_VALUE
    if compute_address(action.public_key) != a.validator:
        return R.EVIDENCE_WRONG_KEY
    if a.validator not in state.validators:
        return R.EVIDENCE_NOT_A_VALIDATOR
    if a.height > state.height:
        return R.EVIDENCE_FUTURE_HEIGHT
    if is_evidence_recorded(state, a.validator, a.height, a.round, a.vote_type):
        return R.EVIDENCE_ALREADY_RECORDED
    chain_id = state.params.chain_id
    if not (is_valid_vote_signature(chain_id, action.public_key, a)
            and is_valid_vote_signature(chain_id, action.public_key, b)):
        return R.EVIDENCE_BAD_SIGNATURE
    return R.OK


def process_report_evidence(state: State, events: list, account: Account, action: ReportEvidence) -> ActionResult:
    code = validate_evidence(state, action)
    if code != R.OK:
        return ActionResult(code)
    vote = action.vote_a
    record_evidence(state, vote.validator, vote.height, vote.round, vote.vote_type)
    events.append(EvidenceEvent(vote.validator, vote.height, vote.round, vote.vote_type, account.address))
    return ActionResult(R.OK)
