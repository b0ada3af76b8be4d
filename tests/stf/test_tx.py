"""Spec vectors for stf/tx.py: `decode_transaction` and `validate_signature`.

Each `test_invalid_*` builds wire bytes that break exactly one rule (everything else valid, really signed) and
asserts the specific `InvalidTransaction` subclass and its stable `.code`. A property test checks that no input
bytes make `decode_transaction` raise anything but a `KabutoError`.
"""

import hashlib
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stf import codec
from stf.constants import MAX_ACTIONS_PER_TX, MAX_TX_BYTES, PROTOCOL_VERSION, TX_DOMAIN_TAG
from stf.crypto import compute_sign_bytes
from stf.errors import (
    BadSignature, KabutoError, MalformedAction, MalformedTransaction, TooManyActions, TransactionTooLarge,
    UnknownAction,
)
from stf.tx import (
    ApproveAgent, Cancel, CancelAll, CancelByClientId, Faucet, MarketOrder, Modify, PlaceOrder, RevokeAgent,
    ScheduleCancel, Transaction, Transfer, Withdraw, decode_transaction, encode_action, sign_transaction,
    validate_signature,
)
from stf.units import U64_MAX
from stf_helpers import make_key

CHAIN = "kabuto-test"
KEY = make_key(1)
OTHER = make_key(2)
NONCE = 1_767_225_600_001
ADDR = bytes(range(20))

VALID_ACTIONS = [
    Transfer(ADDR, 0, 5),
    Withdraw(1, 7, b"bc1qdestination"),
    Faucet(0, 10),
    ApproveAgent(ADDR),
    RevokeAgent(ADDR),
    PlaceOrder(0, True, 1_000_000, 3, 0, None, 0, False),
    PlaceOrder(1, False, 5, 1, 3, 42, 1_767_225_700_000, False),
    MarketOrder(0, False, 2, 1, 9, False),
    Cancel(0, 1),
    CancelByClientId(1, U64_MAX),
    CancelAll(None),
    CancelAll(1),
    Modify(0, 3, 1_000_001, 4),
    ScheduleCancel(1_767_225_700_000),
    ScheduleCancel(None),
]

# The raw array of one valid action of each type, as the wire carries it (type number first).
RAW = {
    "transfer": [1, ADDR, 0, 5],
    "withdraw": [2, 1, 7, b"dest"],
    "faucet": [3, 0, 10],
    "approve": [4, ADDR],
    "revoke": [5, ADDR],
    "place": [10, 0, True, 1_000_000, 3, 0, None, 0, False],
    "market": [11, 0, False, 2, 1, None, False],
    "cancel": [12, 0, 1],
    "cancel_cid": [13, 0, 1],
    "cancel_all": [14, None],
    "modify": [15, 0, 3, 1_000_001, 4],
    "schedule": [16, None],
}


def signed_wire(body: bytes, key=KEY, chain: str = CHAIN) -> bytes:
    return codec.encode([body, key.sign(compute_sign_bytes(chain, body))])


def body_wire(body_fields: list, key=KEY) -> bytes:
    """Wire bytes of a really-signed transaction whose body is the canonical encoding of `body_fields`."""
    return signed_wire(codec.encode(body_fields), key)


def tx_with_actions(actions: list) -> bytes:
    return body_wire([PROTOCOL_VERSION, KEY.address, KEY.public_key, NONCE, actions])


def with_field(name: str, index: int, value) -> list:
    raw = list(RAW[name])
    raw[index] = value
    return raw


def assert_rejected(wire, exc_class: type) -> KabutoError:
    with pytest.raises(exc_class) as info:
        decode_transaction(wire)
    assert type(info.value) is exc_class
    assert info.value.code == exc_class.code
    return info.value


# --- valid round trips -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("action", VALID_ACTIONS, ids=lambda a: type(a).__name__)
def test_round_trip_each_action(action):
    wire = sign_transaction(KEY, CHAIN, NONCE, [action])
    tx = decode_transaction(wire)
    assert isinstance(tx, Transaction)
    assert tx.actions == (action,)
    assert tx.wire == wire
    assert tx.hash == hashlib.sha256(wire).digest()
    assert tx.account == KEY.address and tx.signer == KEY.address
    assert tx.signer_public_key == KEY.public_key
    assert tx.nonce == NONCE
    assert msgpack.unpackb(tx.body) == [PROTOCOL_VERSION, KEY.address, KEY.public_key, NONCE, [encode_action(action)]]
    validate_signature(tx, CHAIN)


def test_round_trip_many_actions_for_another_account():
    wire = sign_transaction(KEY, CHAIN, NONCE, VALID_ACTIONS, account=OTHER.address)
    tx = decode_transaction(wire)
    assert tx.actions == tuple(VALID_ACTIONS)
    assert tx.account == OTHER.address and tx.signer == KEY.address
    validate_signature(tx, CHAIN)


def test_envelope_layout_is_body_then_signature():
    wire = sign_transaction(KEY, CHAIN, NONCE, [Faucet(0, 1)])
    body, signature = msgpack.unpackb(wire)
    assert len(signature) == 64
    assert signature == KEY.sign(TX_DOMAIN_TAG + bytes((len(CHAIN),)) + CHAIN.encode() + body)


def test_nonce_boundaries_accepted():
    for nonce in (1, U64_MAX):
        assert decode_transaction(body_wire([1, KEY.address, KEY.public_key, nonce, [RAW["faucet"]]])).nonce == nonce


def test_exactly_max_actions_accepted():
    tx = decode_transaction(tx_with_actions([RAW["cancel_all"]] * MAX_ACTIONS_PER_TX))
    assert len(tx.actions) == MAX_ACTIONS_PER_TX


# --- envelope rejections -------------------------------------------------------------------------------------

@pytest.mark.parametrize("wire", [None, "text", bytearray(b"\x92"), memoryview(b"\x92"), 5, [b"", b""]])
def test_invalid_not_bytes(wire):
    assert_rejected(wire, MalformedTransaction)


def test_invalid_too_large():
    assert_rejected(b"\x00" * (MAX_TX_BYTES + 1), TransactionTooLarge)


def test_invalid_exactly_max_size_is_judged_on_content_not_size():
    assert_rejected(b"\x00" * MAX_TX_BYTES, MalformedTransaction)


@pytest.mark.parametrize("wire", [b"", b"\xc1", b"\x92\xc4", b"\xdc\x00", b"\xc4\x05ab"], ids=repr)
def test_invalid_not_msgpack(wire):
    assert_rejected(wire, MalformedTransaction)


def test_invalid_trailing_bytes():
    assert_rejected(sign_transaction(KEY, CHAIN, NONCE, [Faucet(0, 1)]) + b"\x00", MalformedTransaction)


def test_invalid_envelope_array16_header():
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    sig = KEY.sign(compute_sign_bytes(CHAIN, body))
    canonical = codec.encode([body, sig])
    assert canonical[0] == 0x92
    wide = b"\xdc\x00\x02" + canonical[1:]
    assert msgpack.unpackb(wide) == msgpack.unpackb(canonical)
    assert_rejected(wide, MalformedTransaction)


def test_invalid_envelope_bin16_for_short_signature():
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    sig = KEY.sign(compute_sign_bytes(CHAIN, body))
    wide = b"\x92" + codec.encode(body) + b"\xc5\x00\x40" + sig
    assert msgpack.unpackb(wide) == [body, sig]
    assert_rejected(wide, MalformedTransaction)


def test_invalid_body_int_wider_than_needed():
    # nonce 5 as uint64 (0xcf + 8 bytes) instead of positive fixint
    body = b"\x95\x01\xc4\x14" + KEY.address + b"\xc4\x20" + KEY.public_key + b"\xcf" + (5).to_bytes(8, "big")
    body += codec.encode([RAW["faucet"]])
    assert msgpack.unpackb(body)[3] == 5
    assert_rejected(signed_wire(body), MalformedTransaction)


@pytest.mark.parametrize("encoded", [b"\xd0\x05", b"\xd1\x00\x05", b"\xcc\x05", b"\xcd\x00\x05", b"\xce\x00\x00\x00\x05"])
def test_invalid_body_small_int_in_a_wider_or_signed_format(encoded):
    body = b"\x95\x01\xc4\x14" + KEY.address + b"\xc4\x20" + KEY.public_key + encoded + codec.encode([RAW["faucet"]])
    assert msgpack.unpackb(body)[3] == 5
    assert_rejected(signed_wire(body), MalformedTransaction)


def test_invalid_body_version_as_uint8():
    canonical = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    body = b"\x95\xcc\x01" + canonical[2:]
    assert msgpack.unpackb(body) == msgpack.unpackb(canonical)
    assert_rejected(signed_wire(body), MalformedTransaction)


def test_invalid_body_array16_header():
    canonical = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    body = b"\xdc\x00\x05" + canonical[1:]
    assert_rejected(signed_wire(body), MalformedTransaction)


def test_invalid_body_trailing_bytes():
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]]) + b"\xc0"
    assert_rejected(signed_wire(body), MalformedTransaction)


@pytest.mark.parametrize("envelope", [
    [], [b"x"], [b"x", b"\x00" * 64, b""], b"bytes", 7, None, {},
], ids=repr)
def test_invalid_envelope_not_a_2_array(envelope):
    assert_rejected(codec.encode(envelope), MalformedTransaction)


def test_invalid_envelope_is_a_map():
    assert_rejected(codec.encode({b"body": b"x", b"sig": b"\x00" * 64}), MalformedTransaction)


@pytest.mark.parametrize("length", [0, 63, 65])
def test_invalid_signature_wrong_length(length):
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    assert_rejected(codec.encode([body, b"\x01" * length]), MalformedTransaction)


@pytest.mark.parametrize("signature", [None, 0, [b"\x00" * 64], ""], ids=repr)
def test_invalid_signature_not_bytes(signature):
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    assert_rejected(codec.encode([body, signature]), MalformedTransaction)


@pytest.mark.parametrize("body", [
    [1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]],  # an array, not bin
    None, 5, "",
], ids=["array", "nil", "int", "empty-str"])
def test_invalid_body_not_bytes(body):
    sig = b"\x00" * 64
    assert_rejected(codec.encode([body, sig]), MalformedTransaction)


# --- body rejections -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    [1, KEY.address, KEY.public_key, NONCE],
    [1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]], None],
    [],
    5,
    b"raw",
    None,
], ids=["4-array", "6-array", "empty", "int", "bin", "nil"])
def test_invalid_body_not_a_5_array(body):
    assert_rejected(body_wire(body), MalformedTransaction)


@pytest.mark.parametrize("version", [0, 2, True, 1.0, None, b"\x01", -1], ids=repr)
def test_invalid_version(version):
    assert_rejected(body_wire([version, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]]), MalformedTransaction)


@pytest.mark.parametrize("account", [b"\x00" * 19, b"\x00" * 21, b"", None, 0, [ADDR]], ids=repr)
def test_invalid_account(account):
    assert_rejected(body_wire([1, account, KEY.public_key, NONCE, [RAW["faucet"]]]), MalformedTransaction)


@pytest.mark.parametrize("signer", [KEY.public_key[:31], KEY.public_key + b"\x00", KEY.address, None], ids=repr)
def test_invalid_signer(signer):
    assert_rejected(body_wire([1, KEY.address, signer, NONCE, [RAW["faucet"]]]), MalformedTransaction)


@pytest.mark.parametrize("nonce", [0, -1, -(2**63), True, False, None, 1.5, float(NONCE), b"\x01", [NONCE]], ids=repr)
def test_invalid_nonce(nonce):
    assert_rejected(body_wire([1, KEY.address, KEY.public_key, nonce, [RAW["faucet"]]]), MalformedTransaction)


def test_invalid_nonce_above_u64_cannot_be_encoded():
    # msgpack has no integer type above uint64, so a nonce > 2^64-1 cannot even reach decode_transaction.
    with pytest.raises(OverflowError):
        codec.encode([1, KEY.address, KEY.public_key, U64_MAX + 1, [RAW["faucet"]]])


def test_invalid_actions_empty():
    assert_rejected(tx_with_actions([]), MalformedTransaction)


@pytest.mark.parametrize("actions", [None, RAW["faucet"][0], b"\x03", 3], ids=repr)
def test_invalid_actions_not_a_list(actions):
    assert_rejected(body_wire([1, KEY.address, KEY.public_key, NONCE, actions]), MalformedTransaction)


def test_invalid_too_many_actions():
    assert_rejected(tx_with_actions([RAW["cancel_all"]] * (MAX_ACTIONS_PER_TX + 1)), TooManyActions)


@pytest.mark.parametrize("kind", [0, 6, 9, 17, 255, 65_536, U64_MAX, -1], ids=repr)
def test_invalid_unknown_action_type(kind):
    assert_rejected(tx_with_actions([[kind, 0, 1]]), UnknownAction)


def test_invalid_unknown_action_after_a_valid_one():
    assert_rejected(tx_with_actions([RAW["faucet"], [99]]), UnknownAction)


@pytest.mark.parametrize("action", [3, None, b"\x03\x00\x01", [], [None, 0, 1], [True, 0, 1], [b"\x03", 0, 1]], ids=repr)
def test_invalid_action_not_a_typed_list(action):
    assert_rejected(tx_with_actions([action]), MalformedAction)


@pytest.mark.parametrize("name", sorted(RAW))
def test_invalid_action_wrong_field_count(name):
    assert_rejected(tx_with_actions([RAW[name] + [0]]), MalformedAction)
    assert_rejected(tx_with_actions([RAW[name][:-1]]), MalformedAction)


FIELD_CASES = [
    # (action, field index in the raw array, bad value)
    # bool fields given an int (and nil)
    ("place", 2, 1), ("place", 2, 0), ("place", 8, 0), ("place", 8, None), ("market", 2, 1), ("market", 6, 1),
    # int fields given a bool
    ("transfer", 2, True), ("transfer", 3, True), ("withdraw", 1, False), ("withdraw", 2, True),
    ("faucet", 2, True), ("place", 1, True), ("place", 3, True), ("place", 4, True), ("place", 5, False),
    ("place", 6, True), ("place", 7, False), ("market", 3, True), ("market", 4, True), ("market", 5, True),
    ("cancel", 2, True), ("cancel_cid", 2, True), ("cancel_all", 1, True), ("cancel_all", 1, False),
    ("modify", 3, True), ("schedule", 1, True),
    # negative ints
    ("transfer", 2, -1), ("withdraw", 1, -1), ("faucet", 1, -1), ("place", 1, -1), ("place", 7, -1),
    ("market", 1, -1), ("cancel", 1, -1), ("cancel_all", 1, -1), ("modify", 1, -2**63), ("schedule", 1, -5),
    ("place", 6, -1),
    # zero where at least 1 is required: amounts, prices, sizes, ids, client_id, at_ms
    ("transfer", 3, 0), ("withdraw", 2, 0), ("faucet", 2, 0), ("place", 3, 0), ("place", 4, 0),
    ("place", 6, 0), ("market", 3, 0), ("market", 4, 0), ("market", 5, 0), ("cancel", 2, 0),
    ("cancel_cid", 2, 0), ("modify", 2, 0), ("modify", 3, 0), ("modify", 4, 0), ("schedule", 1, 0),
    # nil where the field is not optional
    ("transfer", 2, None), ("transfer", 3, None), ("withdraw", 1, None), ("place", 1, None), ("place", 7, None),
    ("place", 5, None), ("cancel", 2, None), ("modify", 1, None),
    # bytes of the wrong length or not bytes
    ("transfer", 1, ADDR[:19]), ("transfer", 1, ADDR + b"\x00"), ("transfer", 1, None), ("transfer", 1, 5),
    ("approve", 1, ADDR[:19]), ("approve", 1, b""), ("revoke", 1, ADDR + b"\x00"), ("revoke", 1, None),
    # bytes where an int belongs
    ("faucet", 1, b"\x00"), ("place", 3, b"\x01"),
    # destination empty, too long, not bytes
    ("withdraw", 3, b""), ("withdraw", 3, b"x" * 65), ("withdraw", 3, None), ("withdraw", 3, 7),
    ("withdraw", 3, [b"x"]),
    # time_in_force out of range
    ("place", 5, 4), ("place", 5, 255), ("place", 5, -1),
    # a list where a scalar belongs
    ("cancel_all", 1, [0]), ("place", 2, [True]),
    # a float anywhere
    ("transfer", 3, 5.0), ("faucet", 1, 0.0), ("place", 3, 1.5), ("place", 5, 0.0), ("place", 6, 1.0),
    ("cancel_all", 1, 1.0), ("schedule", 1, 1e12), ("market", 4, float("inf")),
    # an empty str or empty map (non-empty ones cannot even be decoded, see below)
    ("withdraw", 3, ""), ("transfer", 1, ""), ("transfer", 1, {}), ("cancel_all", 1, {}), ("place", 6, ""),
]


@pytest.mark.parametrize("name,index,value", FIELD_CASES, ids=[f"{n}[{i}]={v!r}" for n, i, v in FIELD_CASES])
def test_invalid_action_field(name, index, value):
    assert_rejected(tx_with_actions([with_field(name, index, value)]), MalformedAction)


def test_destination_length_boundaries_accepted():
    for destination in (b"x", b"x" * 64):
        assert decode_transaction(tx_with_actions([with_field("withdraw", 3, destination)])).actions[0].destination \
            == destination


def test_u64_max_accepted_in_int_fields():
    tx = decode_transaction(tx_with_actions([[10, U64_MAX, False, U64_MAX, U64_MAX, 2, U64_MAX, U64_MAX, False]]))
    assert tx.actions[0] == PlaceOrder(U64_MAX, False, U64_MAX, U64_MAX, 2, U64_MAX, U64_MAX, False)


@pytest.mark.parametrize("value", ["a", "withdraw-to", {b"k": 1}, {1: 2}], ids=repr)
@pytest.mark.parametrize("where", ["action-field", "action-type", "version", "nonce", "actions", "account"])
def test_invalid_str_or_map_anywhere_in_body(where, value):
    body = [1, KEY.address, KEY.public_key, NONCE, [RAW["withdraw"]]]
    if where == "action-field":
        body[4] = [with_field("withdraw", 3, value)]
    elif where == "action-type":
        body[4] = [[value, 0, 1]]
    elif where == "version":
        body[0] = value
    elif where == "nonce":
        body[3] = value
    elif where == "actions":
        body[4] = value
    else:
        body[1] = value
    assert_rejected(body_wire(body), MalformedTransaction)


@pytest.mark.parametrize("value", ["sig", {b"a": b"b"}, 1.5], ids=repr)
def test_invalid_str_map_or_float_in_envelope(value):
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    assert_rejected(codec.encode([body, value]), MalformedTransaction)
    assert_rejected(codec.encode([value, b"\x00" * 64]), MalformedTransaction)


def test_invalid_float32_encoding_is_not_canonical():
    # 0xca = float32; the canonical encoder would write a float64, so this is rejected as non-canonical too.
    canonical = codec.encode([1, KEY.address, KEY.public_key, NONCE, [[14, 1.0]]])
    body = canonical.replace(b"\xcb" + struct.pack(">d", 1.0), b"\xca" + struct.pack(">f", 1.0))
    assert body != canonical
    assert_rejected(signed_wire(body), MalformedTransaction)


# --- signatures --------------------------------------------------------------------------------------------------

def test_invalid_bad_signature_flipped_bit():
    wire = sign_transaction(KEY, CHAIN, NONCE, [Faucet(0, 1)])
    tampered = wire[:-1] + bytes((wire[-1] ^ 1,))
    tx = decode_transaction(tampered)
    with pytest.raises(BadSignature) as info:
        validate_signature(tx, CHAIN)
    assert info.value.code == "bad_signature"


def test_invalid_bad_signature_other_key():
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    tx = decode_transaction(codec.encode([body, OTHER.sign(compute_sign_bytes(CHAIN, body))]))
    with pytest.raises(BadSignature):
        validate_signature(tx, CHAIN)


def test_invalid_bad_signature_body_changed_after_signing():
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    sig = KEY.sign(compute_sign_bytes(CHAIN, body))
    other_body = codec.encode([1, KEY.address, KEY.public_key, NONCE + 1, [RAW["faucet"]]])
    tx = decode_transaction(codec.encode([other_body, sig]))
    with pytest.raises(BadSignature):
        validate_signature(tx, CHAIN)


@pytest.mark.parametrize("chain", ["kabuto-main", "kabuto-tes", "kabuto-test-2", ""])
def test_invalid_signature_for_another_chain_id(chain):
    tx = decode_transaction(sign_transaction(KEY, chain, NONCE, [Faucet(0, 1)]))
    with pytest.raises(BadSignature) as info:
        validate_signature(tx, CHAIN)
    assert info.value.code == "bad_signature"
    validate_signature(tx, chain)


def test_invalid_malleated_signature_s_plus_l():
    """S + L verifies under a lax Ed25519 check; it must be refused (non-canonical S), or tx hashes could be
    changed by anyone relaying the transaction."""
    wire = sign_transaction(KEY, CHAIN, NONCE, [Faucet(0, 1)])
    body, sig = msgpack.unpackb(wire)
    order = 2**252 + 27742317777372353535851937790883648493
    s_plus_l = (int.from_bytes(sig[32:], "little") + order).to_bytes(32, "little")
    tx = decode_transaction(codec.encode([body, sig[:32] + s_plus_l]))
    with pytest.raises(BadSignature):
        validate_signature(tx, CHAIN)


def test_invalid_signature_without_domain_tag():
    body = codec.encode([1, KEY.address, KEY.public_key, NONCE, [RAW["faucet"]]])
    tx = decode_transaction(codec.encode([body, KEY.sign(body)]))
    with pytest.raises(BadSignature):
        validate_signature(tx, CHAIN)


@pytest.mark.parametrize("public_key", [b"\xff" * 32, b"\x00" * 32, b"\x01" + b"\x00" * 31], ids=["ff", "zero", "one"])
def test_invalid_signer_not_a_valid_point_is_bad_signature(public_key):
    body = codec.encode([1, KEY.address, public_key, NONCE, [RAW["faucet"]]])
    tx = decode_transaction(codec.encode([body, b"\x00" * 64]))
    with pytest.raises(BadSignature):
        validate_signature(tx, CHAIN)


def test_signer_address_is_derived_from_public_key_not_account():
    tx = decode_transaction(sign_transaction(OTHER, CHAIN, NONCE, [Faucet(0, 1)], account=KEY.address))
    assert tx.signer == OTHER.address == hashlib.sha256(OTHER.public_key).digest()[:20]
    assert tx.account == KEY.address


# --- property: nothing but KabutoError escapes ------------------------------------------------------------------

def decode_or_kabuto_error(data) -> None:
    try:
        tx = decode_transaction(data)
    except KabutoError:
        return
    try:
        validate_signature(tx, CHAIN)
    except KabutoError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_kabuto_errors(data):
    decode_or_kabuto_error(data)


VALID_WIRE = sign_transaction(KEY, CHAIN, NONCE, VALID_ACTIONS)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID_WIRE) - 1), st.integers(1, 255), st.integers(0, 3))
def test_mutated_valid_wire_raises_only_kabuto_errors(position, xor, cut):
    mutated = bytearray(VALID_WIRE)
    mutated[position] ^= xor
    decode_or_kabuto_error(bytes(mutated[:len(mutated) - cut]))


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), U64_MAX) | st.binary(max_size=40) | st.floats()
    | st.just("") | st.just({}),
    lambda children: st.lists(children, max_size=6),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgpack_values, msgpack_values, msgpack_values, msgpack_values, msgpack_values)
def test_random_structured_bodies_raise_only_kabuto_errors(version, account, signer, nonce, actions):
    body = codec.encode([version, account, signer, nonce, actions])
    decode_or_kabuto_error(signed_wire(body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(RAW)), st.data())
def test_random_action_fields_raise_only_kabuto_errors(name, data):
    raw = list(RAW[name])
    index = data.draw(st.integers(1, len(raw) - 1))
    raw[index] = data.draw(msgpack_values)
    decode_or_kabuto_error(tx_with_actions([raw]))


def test_deep_nesting_raises_only_kabuto_errors():
    for depth in (100, 511, 512, 600, 1023, 1024, 1025, 5000):
        decode_or_kabuto_error(b"\x91" * depth + b"\xc0")
        body = b"\x95\x01" + b"\x91" * depth + b"\xc0"
        decode_or_kabuto_error(signed_wire(body))
