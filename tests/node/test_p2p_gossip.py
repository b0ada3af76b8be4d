"""Sans-IO gossip rules (node/p2p/gossip.py): dedup, validator filtering, relay targets, proposal parts."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.p2p import errors
from node.p2p.gossip import (
    MSG_PROPOSAL, MSG_PROPOSAL_PART, MSG_TX, MSG_VOTE, ROUTE_DUPLICATE, ROUTE_NEW, ROUTE_NOT_VALIDATOR, Gossip,
    PartAssembler, Route, SeenCache, compute_message_id, split_value,
)

A, B, C, V = b"a" * 20, b"b" * 20, b"c" * 20, b"v" * 20


PEERS = (C, V, A, B)


class Routed(Gossip):
    """The gossip under test with a fixed set of connected peers, to keep the vectors short."""

    peer_ids = PEERS

    def on_receive(self, from_peer, msg_type, payload):  # noqa: ANN001, ANN201
        return super().on_receive(from_peer, msg_type, payload, self.peer_ids)

    def on_local(self, msg_type, payload):  # noqa: ANN001, ANN201
        return super().on_local(msg_type, payload, self.peer_ids)


def make_gossip() -> Routed:
    return Routed(validator_ids=[V])


def test_new_transaction_is_delivered_and_relayed_to_everyone_else_in_order() -> None:
    assert make_gossip().on_receive(B, MSG_TX, b"tx1") == Route(ROUTE_NEW, True, (A, C, V))


def test_duplicate_is_dropped() -> None:
    gossip = make_gossip()
    gossip.on_receive(B, MSG_TX, b"tx1")
    assert gossip.on_receive(A, MSG_TX, b"tx1") == Route(ROUTE_DUPLICATE, False, ())
    assert gossip.on_receive(A, MSG_VOTE, b"tx1").status == ROUTE_NOT_VALIDATOR


def test_same_bytes_under_another_type_are_another_message() -> None:
    assert compute_message_id(MSG_TX, b"x") != compute_message_id(MSG_VOTE, b"x")
    gossip = make_gossip()
    gossip.on_receive(V, MSG_TX, b"x")
    assert gossip.on_receive(V, MSG_VOTE, b"x").status == ROUTE_NEW


@pytest.mark.parametrize("msg_type", [MSG_VOTE, MSG_PROPOSAL])
def test_consensus_messages_only_from_validators(msg_type: int) -> None:
    gossip = make_gossip()
    assert gossip.on_receive(A, msg_type, b"m") == Route(ROUTE_NOT_VALIDATOR, False, ())
    assert gossip.on_receive(V, msg_type, b"m") == Route(ROUTE_NEW, True, (A, B, C))


def test_validator_set_update_applies_to_the_next_message() -> None:
    gossip = make_gossip()
    gossip.set_validators([A])
    assert not gossip.is_validator(V) and gossip.is_validator(A)
    assert gossip.on_receive(V, MSG_VOTE, b"m").status == ROUTE_NOT_VALIDATOR
    assert gossip.on_receive(A, MSG_VOTE, b"m").status == ROUTE_NEW


def test_part_from_a_non_validator_is_dropped() -> None:
    part = split_value(b"value", 4)[0]
    assert make_gossip().on_receive(A, MSG_PROPOSAL_PART, part).status == ROUTE_NOT_VALIDATOR


def test_local_message_goes_to_every_peer_and_is_then_a_duplicate() -> None:
    gossip = make_gossip()
    gossip.peer_ids = (A, B, V)
    assert gossip.on_local(MSG_VOTE, b"own vote") == Route(ROUTE_NEW, False, (A, B, V))
    assert gossip.on_receive(V, MSG_VOTE, b"own vote").status == ROUTE_DUPLICATE


def test_invalid_unknown_message_type() -> None:
    with pytest.raises(errors.UnknownMessageType):
        make_gossip().on_receive(V, 99, b"x")


@pytest.mark.parametrize(("msg_type", "payload"), [
    (MSG_TX, "text"), (MSG_VOTE, [b"x"]), (MSG_PROPOSAL, None), (MSG_PROPOSAL_PART, b"x"),
    (MSG_PROPOSAL_PART, [b"h" * 32, 0, 1]), (MSG_PROPOSAL_PART, [b"h" * 31, 0, 1, b""]),
    (MSG_PROPOSAL_PART, [b"h" * 32, 1, 1, b""]), (MSG_PROPOSAL_PART, [b"h" * 32, -1, 1, b""]),
    (MSG_PROPOSAL_PART, [b"h" * 32, False, 1, b""]),
])
def test_invalid_payload_shape(msg_type: int, payload: object) -> None:
    with pytest.raises(errors.MalformedGossip):
        make_gossip().on_receive(V, msg_type, payload)


def test_seen_cache_is_bounded_fifo() -> None:
    seen = SeenCache(2)
    assert seen.add(b"1") and seen.add(b"2") and not seen.add(b"1")
    assert seen.add(b"3") and len(seen) == 2
    assert b"1" not in seen and seen.add(b"1")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 300), st.randoms(use_true_random=False))
def test_parts_reassemble_in_any_order(value: bytes, part_size: int, rng) -> None:  # noqa: ANN001
    parts = split_value(value, part_size)
    assert all(p[0] == hashlib.sha256(value).digest() for p in parts)
    rng.shuffle(parts)
    assembler = PartAssembler(part_size=part_size, max_value_bytes=2000)
    results = [assembler.add(part) for part in parts]
    assert results[:-1] == [None] * (len(parts) - 1) and results[-1] == value


def test_completed_value_is_returned_once() -> None:
    parts = split_value(b"abcdefgh", 4)
    assembler = PartAssembler(part_size=4, max_value_bytes=100)
    assert [assembler.add(p) for p in parts + parts] == [None, b"abcdefgh", None, None]


def test_invalid_parts_that_do_not_hash_to_the_value() -> None:
    parts = split_value(b"abcdefgh", 4)
    parts[1][3] = b"XXXX"
    assembler = PartAssembler(part_size=4, max_value_bytes=100)
    assembler.add(parts[0])
    with pytest.raises(errors.PartsMismatch):
        assembler.add(parts[1])


def test_invalid_conflicting_totals() -> None:
    value_hash = hashlib.sha256(b"v").digest()
    assembler = PartAssembler(part_size=4, max_value_bytes=100)
    assembler.add([value_hash, 0, 3, b"abcd"])
    with pytest.raises(errors.MalformedGossip, match="earlier part"):
        assembler.add([value_hash, 1, 2, b"abcd"])


@pytest.mark.parametrize("payload", [
    [b"h" * 32, 0, 2, b"abc"],       # a non-final part shorter than part_size
    [b"h" * 32, 1, 2, b"abcde"],     # a final part longer than part_size
    [b"h" * 32, 1, 2, b""],          # an empty final part of a non-empty value
    [b"h" * 32, 0, 26, b"abcd"],     # more parts than max_value_bytes allows
])
def test_invalid_part_sizes(payload: list) -> None:
    with pytest.raises(errors.MalformedGossip):
        PartAssembler(part_size=4, max_value_bytes=100).add(payload)


def test_pending_values_are_bounded() -> None:
    assembler = PartAssembler(part_size=4, max_value_bytes=100, max_pending=2)
    values = [b"first!!!", b"second!!", b"third!!!"]
    split = [split_value(v, 4) for v in values]
    for parts in split:
        assembler.add(parts[0])
    assert assembler.add(split[0][1]) is None  # the first value was evicted: its part 0 is gone
    assert assembler.add(split[2][1]) == b"third!!!"


def test_empty_value_is_one_empty_part() -> None:
    parts = split_value(b"", 4)
    assert len(parts) == 1 and parts[0][2:] == [1, b""]
    assert PartAssembler(part_size=4, max_value_bytes=100).add(parts[0]) == b""
