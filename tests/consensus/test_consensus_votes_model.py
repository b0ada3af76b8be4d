"""Model-based property test: `VoteSet` against a plain reference tally on random vote sequences."""

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.messages import PREVOTE, Vote, compute_value_hash
from consensus.votes import ADDED, CONFLICT, DUPLICATE, MAX_VALUES_PER_VALIDATOR, VoteSet
from consensus_helpers import make_signers, make_valset

SIGNERS = make_signers(5, b"model")
POWERS = [1, 2, 3, 5, 8]
VALSET = make_valset(SIGNERS, POWERS)
VALUES = [None] + [compute_value_hash(b"%d" % i) for i in range(10)]


def unsigned_vote(who: int, value: int) -> Vote:
    return Vote(PREVOTE, 1, 0, VALUES[value], SIGNERS[who].address, 0, b"\x00" * 64)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10)), max_size=60))
def test_vote_set_matches_reference(sequence):
    vs = VoteSet(VALSET)
    seen: dict[int, list[int]] = {}
    for who, value in sequence:
        status, _ = vs.add(unsigned_vote(who, value), POWERS[who])
        values = seen.setdefault(who, [])
        expected = ADDED if not values else DUPLICATE if values[0] == value else CONFLICT
        assert status == expected
        if value not in values and len(values) < MAX_VALUES_PER_VALIDATOR:
            values.append(value)
    assert vs.power_any == sum(POWERS[w] for w in seen)
    for value in range(len(VALUES)):
        holders = [w for w, vals in seen.items() if value in vals]
        assert vs.power_for(VALUES[value]) == sum(POWERS[w] for w in holders)
        assert vs.has_quorum_for(VALUES[value]) == (sum(POWERS[w] for w in holders) * 3 > sum(POWERS) * 2)
        expected_voters = sorted(SIGNERS[w].address for w in holders)
        assert [v.validator for v in vs.votes_for(VALUES[value])] == expected_voters
