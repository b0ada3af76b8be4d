"""Proposer selection (weighted round-robin) and validator-set updates."""

from collections import Counter

import pytest

from consensus.errors import InvalidValidatorUpdate
from consensus.validators import Validator, ValidatorSet, ValidatorUpdate, compute_centred_priorities
from consensus_helpers import make_signers, make_valset

SIGNERS = make_signers(4, b"vals")


def test_equal_power_is_plain_round_robin():
    valset = make_valset(SIGNERS)
    first_four = [valset.proposer_at(r) for r in range(4)]
    assert sorted(first_four) == sorted(s.address for s in SIGNERS)
    assert [valset.proposer_at(r) for r in range(4, 8)] == first_four


def test_rounds_pick_in_proportion_to_power():
    powers = [1, 2, 3, 4]
    valset = make_valset(SIGNERS, powers)
    counts = Counter(valset.proposer_at(r) for r in range(10 * 4))
    assert [counts[s.address] for s in SIGNERS] == [4, 8, 12, 16]


def test_heights_pick_in_proportion_to_power():
    valset = make_valset(SIGNERS, [1, 1, 2, 6])
    counts = Counter()
    for _ in range(100):
        counts[valset.proposer_at(0)] += 1
        valset = valset.next_height_set()
    assert [counts[s.address] for s in SIGNERS] == [10, 10, 20, 60]


def test_selection_is_identical_for_identical_inputs():
    a = make_valset(SIGNERS, [3, 1, 4, 1])
    b = make_valset(list(reversed(SIGNERS)), [1, 4, 1, 3])
    assert a == b
    assert [a.proposer_at(r) for r in range(20)] == [b.proposer_at(r) for r in range(20)]


def test_round_proposer_does_not_depend_on_query_order():
    a = make_valset(SIGNERS, [3, 1, 4, 1])
    b = make_valset(SIGNERS, [3, 1, 4, 1])
    late = a.proposer_at(9)
    assert [b.proposer_at(r) for r in range(10)][9] == late


def test_tie_goes_to_smaller_address():
    vals = tuple(Validator(s.address, s.public_key, 1, 0) for s in SIGNERS)
    valset = ValidatorSet(vals).stepped(1)
    assert valset.proposer == min(s.address for s in SIGNERS)


def test_centring_keeps_spread_within_twice_total_power():
    vals = tuple(Validator(s.address, s.public_key, 1, p) for s, p in zip(SIGNERS, [1000, -1000, 7, 0]))
    prios = compute_centred_priorities(vals, 4)
    assert max(prios) - min(prios) <= 8
    assert abs(sum(prios)) < len(prios)


def test_quorum_thresholds_are_strict():
    valset = make_valset(SIGNERS, [1, 1, 1, 1])
    assert not valset.is_quorum(2) and valset.is_quorum(3)
    assert not valset.is_one_third(1) and valset.is_one_third(2)
    valset = make_valset(SIGNERS[:3], [1, 1, 1])
    assert not valset.is_quorum(2) and valset.is_quorum(3)
    assert not valset.is_one_third(1) and valset.is_one_third(2)


def test_update_changes_power_adds_and_removes():
    valset = make_valset(SIGNERS[:3])
    newcomer = SIGNERS[3]
    updated = valset.next_height_set((
        ValidatorUpdate(SIGNERS[0].public_key, 5),
        ValidatorUpdate(SIGNERS[1].public_key, 0),
        ValidatorUpdate(newcomer.public_key, 2),
    ))
    assert updated.power_of(SIGNERS[0].address) == 5
    assert updated.get(SIGNERS[1].address) is None
    assert updated.power_of(newcomer.address) == 2
    assert updated.total_power == 5 + 1 + 2


def test_newcomer_starts_with_low_priority():
    valset = make_valset(SIGNERS[:3])
    updated = valset.with_updates((ValidatorUpdate(SIGNERS[3].public_key, 1),))
    total = updated.total_power
    assert updated.get(SIGNERS[3].address).priority == -(total + (total >> 3))


def test_encode_decode_round_trip():
    valset = make_valset(SIGNERS, [1, 2, 3, 4]).stepped(3)
    assert ValidatorSet.decode(valset.encode()) == valset


def test_invalid_update_removes_unknown_validator():
    with pytest.raises(InvalidValidatorUpdate):
        make_valset(SIGNERS[:2]).with_updates((ValidatorUpdate(SIGNERS[3].public_key, 0),))


def test_invalid_update_negative_power():
    with pytest.raises(InvalidValidatorUpdate):
        make_valset(SIGNERS[:2]).with_updates((ValidatorUpdate(SIGNERS[0].public_key, -1),))


def test_invalid_update_duplicate_key():
    update = ValidatorUpdate(SIGNERS[0].public_key, 3)
    with pytest.raises(InvalidValidatorUpdate):
        make_valset(SIGNERS[:2]).with_updates((update, update))


def test_invalid_update_empties_the_set():
    with pytest.raises(InvalidValidatorUpdate):
        make_valset(SIGNERS[:1]).with_updates((ValidatorUpdate(SIGNERS[0].public_key, 0),))


def test_invalid_set_zero_power():
    with pytest.raises(InvalidValidatorUpdate):
        ValidatorSet((Validator(SIGNERS[0].address, SIGNERS[0].public_key, 0),))


# CometBFT types/validator_set_test.go, TestProposerSelection1: powers foo 1000, bar 300, baz 330, 99 steps.
COMETBFT_SELECTION1 = (
    "foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar "
    "foo foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar "
    "foo baz foo foo bar foo baz foo foo bar foo baz foo foo foo baz bar foo foo foo baz "
    "foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo "
    "foo bar foo baz foo foo bar foo baz foo foo bar foo baz foo foo"
)


def _cometbft_trio() -> ValidatorSet:
    trio = ((b"foo", 1000), (b"bar", 300), (b"baz", 330))
    vals = tuple(Validator(name, b"key-" + name, power) for name, power in trio)
    return ValidatorSet(vals).stepped(1)


def test_matches_cometbft_selection_vector_across_heights():
    valset, seen = _cometbft_trio(), []
    for _ in range(99):
        seen.append(valset.proposer.decode())
        valset = valset.stepped(1)
    assert " ".join(seen) == COMETBFT_SELECTION1


def test_matches_cometbft_selection_vector_across_rounds():
    valset = _cometbft_trio()
    assert " ".join(valset.proposer_at(r).decode() for r in range(99)) == COMETBFT_SELECTION1
