"""Spec vectors and a model-based property test for the state root (stf/merkle.py, stf/proof.py).

`naive_root` below re-derives the root from docs/STATE_ROOT.md with nothing but hashlib and zlib, independently of
the implementation; the pinned hex values are the ones published in that document.
"""

from __future__ import annotations

import ast
import hashlib
import re
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stf.merkle import MerkleMap, find_record
from stf.proof import (
    ARITY, EMPTY_HASHES, EMPTY_ROOT, LEVELS, MAX_KEY_SIZE, Proof, compute_bucket_index, encode_key_field, verify_proof,
)

STATE_ROOT_MD = Path(__file__).resolve().parents[2] / "docs" / "STATE_ROOT.md"

EMPTY_ROOT_HEX = "1dc64c17a7980de88c18f12f5c89f73434ae9e6e797f5b6f11f7e533465b861c"
EMPTY_BUCKET_HEX = "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"
EXAMPLE = {
    b"a" + bytes(range(20)): bytes.fromhex("93010203"),
    b"o" + (7).to_bytes(8, "big"): b"order-7",
    b"g": b"\x01",
}
EXAMPLE_ROOT_HEX = "db52310066d1721938174f5803c049bfd038f50045e15f117af2a27772149115"
EXAMPLE_G_PATH_HEX = [
    "8591479adcbd5d4360a31177498dbdaac6fedef11bdac2c7634b8969b6203966",  # bucket 468
    "9c7f082ae38f8f354c8a347bb741f9689f6b2a68591abd8e605fe0178c7cac05",  # node (3, 29)
    "8b48baea8879bfba5da38131bd871d3829887c076b80d0275b5c0459712a391f",  # node (2, 1)
    "c4aa49f0d9b9ab87eeea8a03b48c36cb744c91c7df560768ccde232dbeaf42c8",  # node (1, 0)
]
"""The path of b"g" in the worked example, bottom up, as published in docs/STATE_ROOT.md."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def naive_root(contents: dict[bytes, bytes]) -> bytes:
    """The documented rules, computed from scratch over all 65,536 buckets and every inner node."""
    buckets: list[list[bytes]] = [[] for _ in range(65536)]
    for key in sorted(contents):
        index = zlib.crc32(key) >> 16
        leaf = sha256(b"\x00" + bytes([len(key)]) + key + contents[key])
        buckets[index].append(key.ljust(31, b"\x00") + bytes([len(key)]) + leaf)
    level = [sha256(b"\x01" + b"".join(records)) for records in buckets]
    while len(level) > 1:
        level = [sha256(b"\x02" + b"".join(level[i:i + 16])) for i in range(0, len(level), 16)]
    return level[0]


def replace(proof: Proof, **fields: object) -> Proof:
    """A copy of `proof` with some fields swapped, for forging tests."""
    current = {"entries": proof.entries, "siblings": proof.siblings}
    return Proof(**(current | fields))  # type: ignore[arg-type]


def build(contents: dict[bytes, bytes]) -> MerkleMap:
    tree = MerkleMap()
    for key, value in contents.items():
        tree.set(key, value)
    return tree


def keys_in_bucket(index: int, count: int, prefix: bytes = b"a") -> list[bytes]:
    """`count` distinct keys that all land in bucket `index` (found by search, deterministic)."""
    found = []
    n = 0
    while len(found) < count:
        key = prefix + n.to_bytes(20, "big")
        if compute_bucket_index(key) == index:
            found.append(key)
        n += 1
    return found


SHARED = keys_in_bucket(5, 4) + keys_in_bucket(6, 3, prefix=b"o")
"""Keys crowded into two buckets under one level-3 node, so multi-entry buckets and sibling buckets get exercised."""

CORNERS = keys_in_bucket(0, 1, prefix=b"m") + keys_in_bucket(0xFFFF, 1, prefix=b"s")
"""A key at child position 0 and one at position 15 on every level: the ends of each sibling group."""


def prefix_pair_in_one_bucket() -> tuple[bytes, bytes]:
    """Keys x and x + b"\x00" that share a bucket: their key fields differ only in the trailing length byte."""
    n = 0
    while True:
        key = b"p" + n.to_bytes(4, "big")
        if compute_bucket_index(key) == compute_bucket_index(key + b"\x00"):
            return key, key + b"\x00"
        n += 1


PREFIX_PAIR = prefix_pair_in_one_bucket()


# --- spec vectors -------------------------------------------------------------------------------------------


def test_protocol_constants_match_the_document() -> None:
    assert (ARITY, LEVELS) == (16, 4)
    assert MAX_KEY_SIZE == 31
    assert [compute_bucket_index(key) for key in CORNERS] == [0, 0xFFFF]


def test_empty_root_constant() -> None:
    assert EMPTY_ROOT.hex() == EMPTY_ROOT_HEX
    assert MerkleMap().root().hex() == EMPTY_ROOT_HEX
    assert naive_root({}).hex() == EMPTY_ROOT_HEX
    assert sha256(b"\x01").hex() == EMPTY_BUCKET_HEX
    node = EMPTY_BUCKET_HEX
    for _ in range(LEVELS):
        node = sha256(b"\x02" + bytes.fromhex(node) * 16).hex()
    assert node == EMPTY_ROOT_HEX


def test_worked_example_root_matches_document_and_naive_rebuild() -> None:
    tree = build(EXAMPLE)
    assert tree.root().hex() == EXAMPLE_ROOT_HEX
    assert naive_root(EXAMPLE).hex() == EXAMPLE_ROOT_HEX
    assert len(tree) == 3


def test_shared_bucket_root_matches_naive_rebuild() -> None:
    contents = {key: bytes([i]) * i for i, key in enumerate(SHARED + CORNERS)} | EXAMPLE
    assert build(contents).root() == naive_root(contents)


def test_worked_example_intermediate_values() -> None:
    key, leaf = b"g", bytes.fromhex("d27338b6adb1194edde4fcbd3d24a382bcef4d8b9a7131a712433c7e1b1fd0e3")
    assert zlib.crc32(key) == 0x01D41B76
    assert compute_bucket_index(key) == 468
    assert build(EXAMPLE).get_leaf(key) == leaf
    record = b"g" + bytes(30) + b"\x01" + leaf
    bucket = sha256(b"\x01" + record)
    assert bucket.hex() == EXAMPLE_G_PATH_HEX[0]
    # 468 = 0x01d4: child 4 of node (3, 29), which is child 13 of node (2, 1), child 1 of node (1, 0), child 0
    # of the root. Every other bucket below node (1, 0) is empty.
    empty = [bytes.fromhex(h) for h in documented_empty_hashes()]
    node3 = sha256(b"\x02" + empty[4] * 4 + bucket + empty[4] * 11)
    node2 = sha256(b"\x02" + empty[3] * 13 + node3 + empty[3] * 2)
    node1 = sha256(b"\x02" + empty[2] * 1 + node2 + empty[2] * 14)
    assert [node3.hex(), node2.hex(), node1.hex()] == EXAMPLE_G_PATH_HEX[1:]
    assert build(EXAMPLE).prove(key).siblings[1:3] == ((empty[3],) * 15, (empty[2],) * 15)


def documented_empty_hashes() -> list[str]:
    """EMPTY[k] for k = 0..LEVELS as published in the table of docs/STATE_ROOT.md."""
    rows = dict(re.findall(r"^\| (\d+)[^|]* \| `([0-9a-f]{64})` \|$", STATE_ROOT_MD.read_text(), re.M))
    return [rows[str(k)] for k in range(len(rows))]


def test_document_publishes_the_same_constants() -> None:
    text = STATE_ROOT_MD.read_text()
    assert f"| `ARITY` | {ARITY} " in text and f"| `LEVELS` | {LEVELS} " in text
    assert documented_empty_hashes() == [digest.hex() for digest in EMPTY_HASHES]
    assert documented_empty_hashes()[0] == EMPTY_ROOT_HEX and documented_empty_hashes()[-1] == EMPTY_BUCKET_HEX
    assert EXAMPLE_ROOT_HEX in text
    assert all(digest in text for digest in EXAMPLE_G_PATH_HEX)
    for key, value in EXAMPLE.items():
        assert f"| `{key.hex()}`" in text and f"`{value.hex()}`" in text


def test_leaf_digest_follows_documented_layout() -> None:
    key, value = b"g", b"\x01"
    tree = build({key: value})
    assert tree.get_leaf(key) == sha256(b"\x00\x01g\x01")
    assert tree.get_leaf(b"x") is None


def test_a_key_and_its_zero_extension_share_a_bucket_in_key_order() -> None:
    short, long = PREFIX_PAIR
    tree = build({long: b"2", short: b"1"})
    assert tree.root() == naive_root({short: b"1", long: b"2"})
    absent = keys_in_bucket(compute_bucket_index(short), 1, prefix=b"q")[0]
    assert [key for key, _ in tree.prove(absent).entries] == [short, long]
    assert verify_proof(tree.root(), absent, None, tree.prove(absent))
    assert verify_proof(tree.root(), short, b"1", tree.prove(short))
    assert verify_proof(tree.root(), long, b"2", tree.prove(long))


def test_a_key_field_straddling_two_records_is_not_taken_for_a_record() -> None:
    # Bucket digests are arbitrary bytes, so a key field can appear inside a bucket off a record boundary:
    # here field(b"c") spans the tail of record 0's digest and the head of record 1's key field.
    wanted = encode_key_field(b"c")
    first = encode_key_field(b"\x00") + bytes(16) + wanted[:16]
    second = encode_key_field(wanted[16:]) + bytes(32)
    assert first[:32] < second[:32] < wanted
    blob = first + second
    assert blob.find(wanted) == 48
    assert find_record(blob, wanted) == -1
    assert find_record(blob + wanted + bytes(32), wanted) == 128
    assert find_record(blob, second[:32]) == 64 and find_record(blob, first[:32]) == 0


def test_insertion_order_does_not_change_root() -> None:
    contents = {key: key[::-1] for key in SHARED} | EXAMPLE
    forward = build(contents)
    backward = build(dict(reversed(list(contents.items()))))
    assert forward.root() == backward.root() == naive_root(contents)


def test_overwrites_and_deletes_in_any_order_give_the_same_root() -> None:
    first = MerkleMap()
    first.set(SHARED[0], b"old")
    first.set(SHARED[1], b"gone")
    first.root()
    first.delete(SHARED[1])
    first.set(SHARED[0], b"new")
    second = MerkleMap()
    second.set(SHARED[0], b"new")
    assert first.root() == second.root() == naive_root({SHARED[0]: b"new"})


def test_deleting_back_to_empty_gives_the_empty_root() -> None:
    tree = build(EXAMPLE | dict.fromkeys(SHARED, b"v"))
    tree.root()
    for key in list(EXAMPLE) + SHARED:
        tree.delete(key)
    assert tree.root() == EMPTY_ROOT
    assert len(tree) == 0
    assert tree.keys() == []


def test_deleting_an_absent_key_is_a_no_op() -> None:
    tree = build(EXAMPLE)
    before = tree.root()
    tree.delete(b"a" + bytes(20))
    assert tree.root() == before
    assert len(tree) == 3


def test_set_then_delete_in_one_block_leaves_no_trace() -> None:
    tree = build(EXAMPLE)
    before = tree.root()
    tree.set(SHARED[0], b"temporary")
    tree.delete(SHARED[0])
    assert tree.root() == before


def test_keys_and_items_are_sorted_and_reflect_pending_changes() -> None:
    tree = build(EXAMPLE | dict.fromkeys(SHARED, b"v"))
    tree.delete(b"g")
    expected = sorted(list(EXAMPLE) + SHARED)
    expected.remove(b"g")
    assert tree.keys() == expected
    assert [digest for _, digest in tree.items()] == [tree.get_leaf(key) for key in expected]
    assert len(tree) == len(expected)


def test_get_leaf_sees_pending_changes() -> None:
    tree = build({b"g": b"\x01"})
    tree.root()
    tree.set(b"g", b"\x02")
    assert tree.get_leaf(b"g") == sha256(b"\x00\x01g\x02")
    tree.delete(b"g")
    assert tree.get_leaf(b"g") is None
    assert b"g" not in tree


@pytest.mark.parametrize("key", [b"", b"x" * 32, "a", 7, bytearray(b"a")])
def test_invalid_key_is_rejected(key: object) -> None:
    tree = MerkleMap()
    with pytest.raises(ValueError):
        tree.set(key, b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tree.delete(key)  # type: ignore[arg-type]


def test_invalid_value_is_rejected() -> None:
    with pytest.raises(ValueError):
        MerkleMap().set(b"g", "not bytes")  # type: ignore[arg-type]


# --- proofs -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proven() -> tuple[MerkleMap, dict[bytes, bytes]]:
    contents = EXAMPLE | {key: b"value-%d" % i for i, key in enumerate(SHARED + CORNERS)}
    return build(contents), contents


def test_membership_proof_verifies(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    for key, value in contents.items():
        assert verify_proof(tree.root(), key, value, tree.prove(key))


def test_membership_proof_of_crowded_bucket_carries_the_other_entries(
    proven: tuple[MerkleMap, dict[bytes, bytes]],
) -> None:
    tree, _ = proven
    proof = tree.prove(SHARED[1])
    assert [key for key, _ in proof.entries] == sorted(k for k in SHARED[:4] if k != SHARED[1])
    assert len(proof.siblings) == LEVELS and all(len(group) == ARITY - 1 for group in proof.siblings)


def test_absence_proof_verifies(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, _ = proven
    crowded_absent = keys_in_bucket(5, 5)[-1]
    for key in [b"a" + bytes(20), b"zz", crowded_absent]:
        assert tree.get_leaf(key) is None
        assert verify_proof(tree.root(), key, None, tree.prove(key))


def test_proof_survives_wire_json_hex_and_msgpack(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = SHARED[2]
    proof = tree.prove(key)
    packed = msgpack.unpackb(msgpack.packb(proof.to_wire()), use_list=False)
    assert Proof.from_wire(packed) == proof
    as_hex = [[[k.hex(), d.hex()] for k, d in proof.entries], [[s.hex() for s in group] for group in proof.siblings]]
    unhexed = [
        [[bytes.fromhex(k), bytes.fromhex(d)] for k, d in as_hex[0]],
        [[bytes.fromhex(s) for s in group] for group in as_hex[1]],
    ]
    assert verify_proof(tree.root(), key, contents[key], Proof.from_wire(unhexed))


def test_invalid_tampered_value(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = SHARED[0]
    assert not verify_proof(tree.root(), key, contents[key] + b"\x00", tree.prove(key))


def with_sibling(proof: Proof, level: int, position: int, sibling: bytes) -> Proof:
    groups = [list(group) for group in proof.siblings]
    groups[level][position] = sibling
    return replace(proof, siblings=tuple(tuple(group) for group in groups))


@pytest.mark.parametrize("level", range(LEVELS))
@pytest.mark.parametrize("position", [0, 7, ARITY - 2])
def test_invalid_tampered_sibling(proven: tuple[MerkleMap, dict[bytes, bytes]], level: int, position: int) -> None:
    tree, contents = proven
    for key in [SHARED[0], *CORNERS]:
        proof = tree.prove(key)
        sibling = proof.siblings[level][position]
        forged = with_sibling(proof, level, position, bytes([sibling[0] ^ 1]) + sibling[1:])
        assert not verify_proof(tree.root(), key, contents[key], forged)
        assert verify_proof(tree.root(), key, contents[key], with_sibling(proof, level, position, sibling))


@pytest.mark.parametrize("level", range(LEVELS))
def test_invalid_sibling_group_out_of_order(level: int) -> None:
    # Child order is committed: the same 15 hashes in another order (or the groups swapped) prove nothing.
    # Keys in buckets 0x0001, 0x0010, 0x0100 and 0x1000 make child 1 non-empty in each of bucket 0's groups.
    contents = {keys_in_bucket(1 << (4 * k), 1)[0]: b"%d" % k for k in range(LEVELS)} | {CORNERS[0]: b"0"}
    tree, key = build(contents), CORNERS[0]
    proof = tree.prove(key)
    assert verify_proof(tree.root(), key, contents[key], proof)
    groups = list(proof.siblings)
    groups[level] = groups[level][1:] + groups[level][:1]
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, siblings=tuple(groups)))
    swapped = tuple(reversed(proof.siblings))
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, siblings=swapped))


def test_proof_groups_are_the_other_children_in_child_order(
    proven: tuple[MerkleMap, dict[bytes, bytes]],
) -> None:
    # SHARED[0] is in bucket 5 and SHARED[4] in bucket 6: same level-3 node, positions 5 and 6.
    tree, _ = proven
    five, six = tree.prove(SHARED[0]).siblings[0], tree.prove(SHARED[4]).siblings[0]
    assert compute_bucket_index(SHARED[0]) == 5 and compute_bucket_index(SHARED[4]) == 6
    assert five[:5] == six[:5] and five[6:] == six[6:]
    assert five[5] != six[5]  # bucket 6's hash in one proof, bucket 5's in the other
    assert tree.prove(SHARED[0]).siblings[1:] == tree.prove(SHARED[4]).siblings[1:]


def test_invalid_tampered_bucket_entry(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = SHARED[0]
    proof = tree.prove(key)
    (other, digest), *rest = proof.entries
    forged = replace(proof, entries=((other, sha256(b"forged")), *rest))
    assert not verify_proof(tree.root(), key, contents[key], forged)
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, entries=tuple(rest)))


def test_invalid_wrong_key(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    proof = tree.prove(SHARED[0])
    assert not verify_proof(tree.root(), SHARED[1], contents[SHARED[0]], proof)
    assert not verify_proof(tree.root(), b"g", contents[SHARED[0]], proof)


def test_invalid_proof_for_a_different_root(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = b"g"
    other = build(contents | {b"n" + bytes(20): b"\x00"})
    assert not verify_proof(other.root(), key, contents[key], tree.prove(key))
    assert not verify_proof(EMPTY_ROOT, key, contents[key], tree.prove(key))


def test_invalid_truncated_proof(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = SHARED[0]
    proof = tree.prove(key)
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, siblings=proof.siblings[:-1]))
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, siblings=()))
    short_group = (proof.siblings[0][:-1], *proof.siblings[1:])
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, siblings=short_group))
    flat = tuple(sibling for group in proof.siblings for sibling in group)
    assert not verify_proof(tree.root(), key, contents[key], replace(proof, siblings=flat))
    with pytest.raises(ValueError, match="sibling"):
        Proof.from_wire([proof.to_wire()[0], proof.to_wire()[1][:-1]])


def test_invalid_membership_proof_offered_as_absence(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, _ = proven
    for key in [b"g", SHARED[3]]:
        assert not verify_proof(tree.root(), key, None, tree.prove(key))


def test_invalid_absence_proof_offered_as_membership(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, _ = proven
    key = keys_in_bucket(5, 5)[-1]
    assert not verify_proof(tree.root(), key, b"anything", tree.prove(key))


def test_invalid_proof_hiding_the_key_among_the_entries(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    # A prover who lists the key itself among the "others" must not get an absence (or double) proof through.
    tree, contents = proven
    key = SHARED[0]
    proof = tree.prove(key)
    leaf = tree.get_leaf(key)
    assert leaf is not None
    smuggled = replace(proof, entries=tuple(sorted(proof.entries + ((key, leaf),))))
    assert not verify_proof(tree.root(), key, None, smuggled)
    assert not verify_proof(tree.root(), key, contents[key], smuggled)


def test_invalid_entry_from_another_bucket(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = SHARED[0]
    proof = tree.prove(key)
    stranger = (SHARED[5], sha256(b"x"))
    assert compute_bucket_index(SHARED[5]) != compute_bucket_index(key)
    forged = replace(proof, entries=tuple(sorted(proof.entries + (stranger,))))
    assert not verify_proof(tree.root(), key, contents[key], forged)


@pytest.mark.parametrize(
    "root, key, value",
    [(b"short", b"g", b"\x01"), (EMPTY_ROOT, b"", b"\x01"), (EMPTY_ROOT, "g", b"\x01"), (EMPTY_ROOT, b"g", "x")],
)
def test_invalid_arguments_fail_without_raising(root: object, key: object, value: object) -> None:
    proof = MerkleMap().prove(b"g")
    assert not verify_proof(root, key, value, proof)  # type: ignore[arg-type]
    assert not verify_proof(EMPTY_ROOT, b"g", None, "not a proof")  # type: ignore[arg-type]


def test_invalid_unsorted_entries_fail_verification(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, contents = proven
    key = SHARED[0]
    proof = tree.prove(key)
    assert len(proof.entries) >= 2
    shuffled = replace(proof, entries=tuple(reversed(proof.entries)))
    assert not verify_proof(tree.root(), key, contents[key], shuffled)


def test_verifier_file_imports_nothing_but_hashlib_and_zlib() -> None:
    # Wallets copy stf/proof.py alone; any other import would break that promise.
    source = (STATE_ROOT_MD.parents[1] / "stf" / "proof.py").read_text()
    imported = [
        alias.name for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
    ]
    assert imported == ["hashlib", "zlib"]


def test_proof_is_immutable_plain_data(proven: tuple[MerkleMap, dict[bytes, bytes]]) -> None:
    tree, _ = proven
    proof = tree.prove(b"g")
    with pytest.raises(AttributeError):
        proof.siblings = ()  # type: ignore[misc]
    assert proof == tree.prove(b"g") and hash(proof) == hash(tree.prove(b"g"))
    assert proof != tree.prove(SHARED[0])


GROUP = [bytes(32)] * (ARITY - 1)
GOOD_SIBLINGS = [GROUP] * LEVELS


@pytest.mark.parametrize(
    "wire, message",
    [
        ("proof", "expected"),
        ([[], GOOD_SIBLINGS, []], "expected"),
        ({"entries": [], "siblings": GOOD_SIBLINGS}, "expected"),
        ([[], GOOD_SIBLINGS[:-1]], "sibling groups"),
        ([[], GOOD_SIBLINGS + [GROUP]], "sibling groups"),
        ([[], [bytes(32)] * (LEVELS * (ARITY - 1))], "sibling groups"),
        ([[], [bytes(32)] * LEVELS], "sibling group must be a list"),
        ([[], GOOD_SIBLINGS[:-1] + [GROUP[:-1]]], "exactly 15 hashes"),
        ([[], GOOD_SIBLINGS[:-1] + [GROUP + [bytes(32)]]], "exactly 15 hashes"),
        ([[], GOOD_SIBLINGS[:-1] + [GROUP[:-1] + [bytes(31)]]], "32 bytes"),
        ([[], GOOD_SIBLINGS[:-1] + [GROUP[:-1] + [bytes(33)]]], "32 bytes"),
        ([[], [GROUP[:-1] + [bytes(32).hex()]] + GOOD_SIBLINGS[1:]], "must be bytes"),
        ([[], b"siblings"], "sibling groups"),
        ([[[b"g"]], GOOD_SIBLINGS], "entry"),
        ([[[b"g", bytes(31)]], GOOD_SIBLINGS], "digest 32 bytes"),
        ([[[b"", bytes(32)]], GOOD_SIBLINGS], "1..31"),
        ([[[b"x" * 32, bytes(32)]], GOOD_SIBLINGS], "1..31"),
        ([[["g", bytes(32)]], GOOD_SIBLINGS], "must be bytes"),
        ([[[b"h", bytes(32)], [b"g", bytes(32)]], GOOD_SIBLINGS], "ascending"),
        ([[[b"g", bytes(32)], [b"g", bytes(32)]], GOOD_SIBLINGS], "ascending"),
        ([b"entries", GOOD_SIBLINGS], "entries must be a list"),
    ],
)
def test_invalid_wire_raises_value_error(wire: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Proof.from_wire(wire)


# --- model-based property test ------------------------------------------------------------------------------

# Prefix pairs exercise the padded key field's ordering (PREFIX_PAIR inside one bucket); b"\xff" * 31 is the
# longest key.
KEY_POOL = SHARED + list(EXAMPLE) + [
    b"a", b"a\x00", b"a\x00\x01", b"ab", b"a" + bytes(20), b"n" + bytes(range(20)), b"\xff" * 31, *PREFIX_PAIR,
]
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "root"]),
        st.sampled_from(KEY_POOL),
        st.binary(max_size=12),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(actions=ACTIONS)
def test_random_operations_match_a_dict_model(actions: list[tuple[str, bytes, bytes]]) -> None:
    tree = MerkleMap()
    model: dict[bytes, bytes] = {}
    for action, key, value in actions:
        if action == "set":
            tree.set(key, value)
            model[key] = value
        elif action == "delete":
            tree.delete(key)
            model.pop(key, None)
        else:
            assert tree.root() == build(model).root()
    root = tree.root()
    assert root == build(model).root()
    assert len(tree) == len(model)
    assert tree.keys() == sorted(model)
    for key in KEY_POOL:
        proof = tree.prove(key)
        assert verify_proof(root, key, model.get(key), proof)
        assert Proof.from_wire(proof.to_wire()) == proof
        if key in model:
            assert not verify_proof(root, key, None, proof)


@settings(max_examples=20, deadline=None)
@given(contents=st.dictionaries(st.sampled_from(KEY_POOL), st.binary(max_size=8)))
def test_random_contents_match_the_naive_rebuild(contents: dict[bytes, bytes]) -> None:
    assert build(contents).root() == naive_root(contents)
