"""Validator sets with voting power and weighted round-robin proposer selection.

Contract
- A `ValidatorSet` is immutable: an address-sorted tuple of `Validator(address, public_key, power, priority)`.
  Every node derives the same sets from genesis and the updates the application returns, so every node elects
  the same proposer for each (height, round).
- Proposer selection is CometBFT's priority algorithm (`types/validator_set.go`): for each step every priority
  grows by its power, the highest priority proposes (ties: the smaller address) and pays the total power back.
  Before stepping, priorities are rescaled so their spread stays within `2 * total` and re-centred on their mean.
- `proposer_at(round)` steps a copy of the height's set `round` times: round 0 is the height's own proposer.
- Height to height: `next_height_set(updates)` applies the application's updates and steps once, whatever round
  decided (CometBFT's `IncrementProposerPriority(1)` in `updateState`). The engine applies updates returned when
  committing height h to the set of height h + `VALSET_UPDATE_DELAY` (= 2): the set for h + 1 is already fixed
  when h commits, which is what lets peers verify h + 1 messages before h is applied everywhere.
- Quorum rules use integers only: `is_quorum(p)` is p * 3 > total * 2 (more than 2/3), `is_one_third(p)` is
  p * 3 > total (more than 1/3, the paper's f + 1).

Rounding (stated because `//` floors toward minus infinity in Python): the rescale divides with truncation toward
zero and the mean is the Euclidean quotient, matching Go's integer and big.Int division that CometBFT uses. The
tests replay CometBFT's `TestProposerSelection1` vector (99 steps); other CometBFT vectors (rescaling with very
unequal powers, set changes) have not been cross-checked.

Known limits: no cap on total power (CometBFT caps at 2^60 / 8); sets are small (tens of validators), so the
O(n) copy per step is fine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consensus.errors import InvalidValidatorUpdate
from consensus.messages import compute_address

VALSET_UPDATE_DELAY = 2
PRIORITY_WINDOW_FACTOR = 2


@dataclass(frozen=True, slots=True)
class Validator:
    address: bytes
    public_key: bytes
    power: int
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ValidatorUpdate:
    """A change returned by the application: power 0 removes the validator."""

    public_key: bytes
    power: int


def _trunc_div(a: int, b: int) -> int:
    """Integer division rounding toward zero (Go's `/`)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _euclid_div(a: int, b: int) -> int:
    """Euclidean quotient for b > 0 (Go's big.Int Div): floor division is Euclidean when b > 0."""
    return a // b


class ValidatorSet:
    __slots__ = ("validators", "total_power", "proposer", "_index", "_round_prios", "_round_proposers")

    def __init__(self, validators: tuple[Validator, ...], proposer: bytes | None = None) -> None:
        if not validators:
            raise InvalidValidatorUpdate("a validator set cannot be empty")
        ordered = tuple(sorted(validators, key=lambda v: v.address))
        self.validators = ordered
        self.total_power = sum(v.power for v in ordered)
        self._index = {v.address: v for v in ordered}
        if len(self._index) != len(ordered) or any(v.power <= 0 for v in ordered):
            raise InvalidValidatorUpdate("validators must be distinct with positive power")
        self.proposer = proposer
        self._round_prios: list[int] | None = None
        self._round_proposers: list[bytes] = []

    @classmethod
    def from_genesis(cls, entries: list[tuple[bytes, int]]) -> ValidatorSet:
        """Build the height-1 set from (public_key, power) pairs, stepping once as CometBFT's NewValidatorSet does."""
        vals = tuple(Validator(compute_address(pk), pk, power) for pk, power in entries)
        return cls(vals).stepped(1)

    def __len__(self) -> int:
        return len(self.validators)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValidatorSet):
            return False
        return (self.validators, self.proposer) == (other.validators, other.proposer)

    def __hash__(self) -> int:
        return hash(self.validators)

    def get(self, address: bytes) -> Validator | None:
        return self._index.get(address)

    def power_of(self, address: bytes) -> int:
        v = self._index.get(address)
        return v.power if v is not None else 0

    def is_quorum(self, power: int) -> bool:
        return power * 3 > self.total_power * 2

    def is_one_third(self, power: int) -> bool:
        return power * 3 > self.total_power

    def proposer_at(self, round_: int) -> bytes:
        """Proposer of `round_` at this set's height: the one selected by the `round_`-th extra step (memoised)."""
        if round_ == 0:
            if self.proposer is None:
                raise InvalidValidatorUpdate("a set must be stepped before it has a proposer")
            return self.proposer
        if self._round_prios is None:
            self._round_prios = compute_centred_priorities(self.validators, self.total_power)
        while len(self._round_proposers) < round_:
            top = _step_priorities(self._round_prios, self.validators, self.total_power)
            self._round_proposers.append(self.validators[top].address)
        return self._round_proposers[round_ - 1]

    def stepped(self, times: int) -> ValidatorSet:
        """A copy with priorities rescaled, re-centred, then stepped `times` times (CometBFT's increment)."""
        prios = compute_centred_priorities(self.validators, self.total_power)
        top = 0
        for _ in range(times):
            top = _step_priorities(prios, self.validators, self.total_power)
        vals = tuple(replace(v, priority=p) for v, p in zip(self.validators, prios))
        return ValidatorSet(vals, self.validators[top].address if times else self.proposer)

    def next_height_set(self, updates: tuple[ValidatorUpdate, ...] = ()) -> ValidatorSet:
        return (self.with_updates(updates) if updates else self).stepped(1)

    def with_updates(self, updates: tuple[ValidatorUpdate, ...]) -> ValidatorSet:
        """Apply updates (CometBFT rules): new validators start at -(total + total / 8) priority."""
        by_address = dict(self._index)
        seen: dict[bytes, bool] = {}
        for u in sorted(updates, key=lambda u: u.public_key):
            address = compute_address(u.public_key)
            if address in seen or type(u.power) is not int or u.power < 0:
                raise InvalidValidatorUpdate("duplicate update or negative power")
            seen[address] = True
            if u.power == 0:
                if address not in by_address:
                    raise InvalidValidatorUpdate("cannot remove an unknown validator")
                del by_address[address]
            elif address in by_address:
                by_address[address] = replace(by_address[address], power=u.power)
            else:
                by_address[address] = Validator(address, u.public_key, u.power, priority=None)  # type: ignore[arg-type]
        total = sum(v.power for v in by_address.values())
        start = -(total + (total >> 3))
        vals = tuple(replace(v, priority=start) if v.priority is None else v for v in by_address.values())
        return ValidatorSet(vals)

    def encode(self) -> list:
        return [self.proposer, [[v.public_key, v.power, v.priority] for v in self.validators]]

    @classmethod
    def decode(cls, rows: list) -> ValidatorSet:
        return cls(tuple(Validator(compute_address(pk), pk, power, prio) for pk, power, prio in rows[1]), rows[0])


def compute_centred_priorities(validators: tuple[Validator, ...], total_power: int) -> list[int]:
    """Rescale priorities so max - min <= 2 * total, then subtract their mean."""
    prios = [v.priority for v in validators]
    window = PRIORITY_WINDOW_FACTOR * total_power
    spread = max(prios) - min(prios)
    if spread > window:
        ratio = (spread + window - 1) // window
        prios = [_trunc_div(p, ratio) for p in prios]
    mean = _euclid_div(sum(prios), len(prios))
    return [p - mean for p in prios]


def _step_priorities(prios: list[int], validators: tuple[Validator, ...], total_power: int) -> int:
    """One step in place: everyone gains their power, the top (ties: smaller address) pays `total_power`."""
    top = 0
    for i, v in enumerate(validators):
        prios[i] += v.power
        if prios[i] > prios[top]:
            top = i
    prios[top] -= total_power
    return top
