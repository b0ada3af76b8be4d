"""Vote sets: the votes of one type for one (height, round), tallied by value.

Contract
- `VoteSet.add(vote, power)` takes a vote already checked for signature and membership and returns
  `(status, earlier)`: `ADDED` / `DUPLICATE` (the same vote again), or `CONFLICT` with the validator's first vote
  when it already voted for another value here; the caller turns that pair into `DuplicateVoteEvidence`.
- Counting follows the paper, where a process counts *messages*: a validator's power counts once toward each
  distinct value it voted for (so every correct process that eventually holds the same messages reaches the same
  quorums, whatever order a double voter's votes arrived in), and once toward `power_any`. Two values cannot both
  pass 2/3 unless more than 1/3 of the power double-voted, so this is safe under the fault assumption. A validator
  is tracked for at most `MAX_VALUES_PER_VALIDATOR` values per set; further values are only evidence (a bound on
  memory; a limit worth knowing: a faulty validator can then keep its later votes out of some tallies).
- All quorum questions are O(1) reads of incremental tallies.

Invariants: each validator adds to `power_any` once and to each value's tally at most once.
"""

from __future__ import annotations

from consensus.messages import Vote
from consensus.validators import ValidatorSet

ADDED = "added"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
MAX_VALUES_PER_VALIDATOR = 8


class VoteSet:
    __slots__ = ("validators", "votes", "extra", "by_hash", "power_any")

    def __init__(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self.votes: dict[bytes, Vote] = {}
        self.extra: dict[bytes, dict[bytes | None, Vote]] = {}
        self.by_hash: dict[bytes | None, int] = {}
        self.power_any = 0

    def add(self, vote: Vote, power: int) -> tuple[str, Vote | None]:
        first = self.votes.get(vote.validator)
        if first is None:
            self.votes[vote.validator] = vote
            self.power_any += power
            self._count(vote.value_hash, power)
            return ADDED, None
        if first.value_hash == vote.value_hash:
            return DUPLICATE, None
        extra = self.extra.setdefault(vote.validator, {})
        if vote.value_hash not in extra and len(extra) + 1 < MAX_VALUES_PER_VALIDATOR:
            extra[vote.value_hash] = vote
            self._count(vote.value_hash, power)
        return CONFLICT, first

    def _count(self, value_hash: bytes | None, power: int) -> None:
        self.by_hash[value_hash] = self.by_hash.get(value_hash, 0) + power

    def power_for(self, value_hash: bytes | None) -> int:
        return self.by_hash.get(value_hash, 0)

    def has_quorum_for(self, value_hash: bytes | None) -> bool:
        return self.validators.is_quorum(self.by_hash.get(value_hash, 0))

    def has_quorum_any(self) -> bool:
        return self.validators.is_quorum(self.power_any)

    def votes_for(self, value_hash: bytes | None) -> tuple[Vote, ...]:
        """Every counted vote for one value, in validator-address order (a commit certificate's body)."""
        found = []
        for address, vote in sorted(self.votes.items()):
            if vote.value_hash == value_hash:
                found.append(vote)
            else:
                other = self.extra.get(address, {}).get(value_hash)
                if other is not None:
                    found.append(other)
        return tuple(found)
