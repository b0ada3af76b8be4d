"""The transaction test vector of docs/PROTOCOL.md §9, checked against the code and against an independent
re-implementation of the documented encoding (hand-assembled msgpack bytes, no stf.codec, no msgpack library).

If the code's wire format changes, these tests fail until the document is updated (scripts/protocol_vector.py
prints the new values).
"""

import hashlib
import re
import struct
from pathlib import Path

import nacl.signing
import pytest

from genesis import minimal_genesis, validate_genesis
from stf import codec
from stf.block import apply_block, decode_block, make_block
from stf.crypto import PrivateKey, compute_address, compute_sign_bytes
from stf.errors import BadSignature, InvalidBlock, MalformedAction, MalformedTransaction, ResultCode
from stf.events import Trade, encode_event
from stf.spot import compute_order_hold, compute_placement_need
from stf.state import initialize_state
from stf.tx import TIF_GTC, PlaceOrder, decode_transaction, sign_transaction, validate_signature
from stf.units import compute_fee

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
CHAIN_ID = "kabuto-test"
NONCE = 1_767_225_601_000
DOMAIN_TAG = b"kabuto/tx/v1"
DOCUMENTED_ORDER = PlaceOrder(
    market=0, is_buy=True, price=1_000_000, size_lots=100, time_in_force=TIF_GTC, client_id=42, expires_at_ms=0,
    reduce_only=False,
)


def read_vector() -> dict[str, bytes]:
    """The `name: hex` lines of the fenced ```hex block of docs/PROTOCOL.md."""
    text = PROTOCOL_MD.read_text()
    block = re.search(r"^```hex\n(.*?)^```", text, re.S | re.M)
    assert block, "docs/PROTOCOL.md has no ```hex block"
    return {name: bytes.fromhex(value) for name, value in re.findall(r"^(\w+): ([0-9a-f]+)$", block.group(1), re.M)}


VECTOR = read_vector()


# --- an independent encoder, written from docs/PROTOCOL.md §1 alone -----------------------------------------

def mp_uint(value: int) -> bytes:
    assert 0 <= value < 1 << 64
    if value < 0x80:
        return bytes((value,))
    for limit, prefix, fmt in ((0xFF, 0xCC, ">B"), (0xFFFF, 0xCD, ">H"), (0xFFFF_FFFF, 0xCE, ">I")):
        if value <= limit:
            return bytes((prefix,)) + struct.pack(fmt, value)
    return b"\xcf" + struct.pack(">Q", value)


def mp_int(value: int) -> bytes:
    """Signed integers: unsigned formats for value >= 0, else the shortest signed format."""
    if value >= 0:
        return mp_uint(value)
    if value >= -32:
        return struct.pack(">b", value)
    for low, prefix, fmt in ((-(1 << 7), 0xD0, ">b"), (-(1 << 15), 0xD1, ">h"), (-(1 << 31), 0xD2, ">i")):
        if value >= low:
            return bytes((prefix,)) + struct.pack(fmt, value)
    return b"\xd3" + struct.pack(">q", value)


def mp_bin(value: bytes) -> bytes:
    if len(value) < 1 << 8:
        return b"\xc4" + struct.pack(">B", len(value)) + value
    if len(value) < 1 << 16:
        return b"\xc5" + struct.pack(">H", len(value)) + value
    return b"\xc6" + struct.pack(">I", len(value)) + value


def mp_array(items: list[bytes]) -> bytes:
    assert len(items) < 1 << 16
    head = bytes((0x90 | len(items),)) if len(items) < 16 else b"\xdc" + struct.pack(">H", len(items))
    return head + b"".join(items)


def mp_bool(value: bool) -> bytes:
    return b"\xc3" if value else b"\xc2"


MP_NIL = b"\xc0"


def hand_body(account: bytes, public_key: bytes, nonce: int) -> bytes:
    place_order = mp_array([
        mp_uint(10), mp_uint(0), mp_bool(True), mp_uint(1_000_000), mp_uint(100), mp_uint(0), mp_uint(42),
        mp_uint(0), mp_bool(False),
    ])
    return mp_array([mp_uint(1), mp_bin(account), mp_bin(public_key), mp_uint(nonce), mp_array([place_order])])


# --- the document against itself and against the independent encoder ----------------------------------------

def test_vector_has_every_documented_value():
    assert set(VECTOR) == {
        "seed", "public_key", "address", "chain_id", "body", "sign_bytes", "signature", "wire", "tx_hash",
        "receipt", "trade_event",
    }
    assert VECTOR["seed"] == bytes([0x01] * 32)
    assert VECTOR["chain_id"] == CHAIN_ID.encode("ascii")


def test_hand_assembled_body_equals_documented_body():
    public_key = bytes(nacl.signing.SigningKey(VECTOR["seed"]).verify_key)
    address = hashlib.sha256(public_key).digest()[:20]
    assert public_key == VECTOR["public_key"]
    assert address == VECTOR["address"]
    assert hand_body(address, public_key, NONCE) == VECTOR["body"]


def test_hand_assembled_sign_bytes_wire_and_hash_equal_documented():
    sign_bytes = DOMAIN_TAG + bytes((len(CHAIN_ID),)) + CHAIN_ID.encode("ascii") + VECTOR["body"]
    assert sign_bytes == VECTOR["sign_bytes"]
    signature = nacl.signing.SigningKey(VECTOR["seed"]).sign(sign_bytes).signature
    assert signature == VECTOR["signature"]
    wire = mp_array([mp_bin(VECTOR["body"]), mp_bin(signature)])
    assert wire == VECTOR["wire"]
    assert hashlib.sha256(wire).digest() == VECTOR["tx_hash"]


def test_signature_verifies_with_pynacl():
    nacl.signing.VerifyKey(VECTOR["public_key"]).verify(VECTOR["sign_bytes"], VECTOR["signature"])


# --- the document against the code --------------------------------------------------------------------------

def test_code_produces_the_documented_bytes():
    key = PrivateKey(VECTOR["seed"])
    assert key.public_key == VECTOR["public_key"]
    assert key.address == compute_address(key.public_key) == VECTOR["address"]
    wire = sign_transaction(key, CHAIN_ID, NONCE, [DOCUMENTED_ORDER])
    assert wire == VECTOR["wire"]
    tx = decode_transaction(wire)
    assert tx.body == VECTOR["body"]
    assert compute_sign_bytes(CHAIN_ID, tx.body) == VECTOR["sign_bytes"]
    assert tx.signature == VECTOR["signature"]
    assert tx.hash == VECTOR["tx_hash"]


def test_decode_transaction_gives_the_documented_fields():
    tx = decode_transaction(VECTOR["wire"])
    assert tx.account == tx.signer == VECTOR["address"]
    assert tx.signer_public_key == VECTOR["public_key"]
    assert tx.nonce == NONCE
    assert tx.actions == (DOCUMENTED_ORDER,)
    validate_signature(tx, CHAIN_ID)


SELLER = PrivateKey(bytes([0x02] * 32))


def execute_vector_transaction():
    """§9 "Executing it": block 1 rests the seller's ask, block 2 carries the vector transaction."""
    buyer = PrivateKey(VECTOR["seed"])
    balances = [(buyer.address.hex(), 0, 200_000_000), (SELLER.address.hex(), 1, 100_000)]
    state = initialize_state(validate_genesis(minimal_genesis(chain_id=CHAIN_ID, balances=balances)))
    ask = PlaceOrder(0, False, 1_000_000, 100, TIF_GTC, None, 0, False)
    apply_block(state, make_block(state, NONCE, [sign_transaction(SELLER, CHAIN_ID, NONCE - 1, [ask])]))
    return state, apply_block(state, make_block(state, NONCE + 1000, [VECTOR["wire"]]))


def test_block_layout_of_section_7_1():
    """§7.1: the 7-field header (app_hash = the root the block builds on), the block hash, the block bytes and the
    transactions root of block 2 of the scenario, hand-assembled and compared with the code. The state root's
    bytes come from the code (docs/STATE_ROOT.md); only their place in the header is checked here."""
    buyer = PrivateKey(VECTOR["seed"])
    balances = [(buyer.address.hex(), 0, 200_000_000), (SELLER.address.hex(), 1, 100_000)]
    state = initialize_state(validate_genesis(minimal_genesis(chain_id=CHAIN_ID, balances=balances)))
    genesis_root = state.merkle.root()
    ask = PlaceOrder(0, False, 1_000_000, 100, TIF_GTC, None, 0, False)
    block1 = make_block(state, NONCE, [sign_transaction(SELLER, CHAIN_ID, NONCE - 1, [ask])])
    assert block1.header.app_hash == genesis_root
    result1 = apply_block(state, block1)
    block = make_block(state, NONCE + 1000, [VECTOR["wire"]])
    txs_root = hashlib.sha256(b"\x00" + VECTOR["tx_hash"]).digest()
    header = mp_array([
        mp_bin(CHAIN_ID.encode("ascii")), mp_uint(2), mp_uint(NONCE + 1000), mp_bin(result1.block_hash),
        mp_bin(result1.state_root), mp_bin(bytes(20)), mp_bin(txs_root),
    ])
    assert codec.encode(block.header.to_wire()) == header
    wire = mp_array([header, mp_array([mp_bin(VECTOR["wire"])])])
    assert block.to_wire() == wire
    assert decode_block(wire) == block
    result2 = apply_block(state, block)
    assert result2.block_hash == hashlib.sha256(header).digest()


def test_invalid_block_with_a_six_field_header():
    """The header of protocol drafts without app_hash is not a block any more."""
    header = mp_array([
        mp_bin(CHAIN_ID.encode("ascii")), mp_uint(1), mp_uint(NONCE), mp_bin(bytes(32)), mp_bin(bytes(20)),
        mp_bin(hashlib.sha256(b"\x00").digest()),
    ])
    with pytest.raises(InvalidBlock):
        decode_block(mp_array([header, mp_array([])]))


def test_executing_the_vector_gives_the_documented_receipt_and_trade():
    state, result = execute_vector_transaction()
    (receipt,) = result.receipts
    assert receipt.tx_hash == VECTOR["tx_hash"]
    assert [tuple(r) for r in receipt.results] == [(ResultCode.OK, 2, 100)]
    assert codec.encode(receipt.to_wire()) == VECTOR["receipt"]
    assert [type(e).__name__ for e in result.events] == ["OrderAccepted", "Trade", "OrderDone", "OrderDone"]
    trade = result.events[1]
    assert codec.encode(encode_event(trade)) == VECTOR["trade_event"]
    assert [(e.order_id, e.reason, e.remaining_lots) for e in result.events[2:]] == [(1, 1, 0), (2, 1, 0)]


def test_hand_assembled_receipt_and_trade_event_equal_documented():
    receipt = mp_array([mp_bin(VECTOR["tx_hash"]), mp_array([mp_array([mp_uint(0), mp_uint(2), mp_uint(100)])])])
    assert receipt == VECTOR["receipt"]
    trade = mp_array([
        mp_uint(2), mp_uint(0), mp_uint(1_000_000), mp_uint(100), mp_bool(True), mp_uint(2), mp_uint(1),
        mp_bin(VECTOR["address"]), mp_bin(SELLER.address), mp_int(50_000), mp_int(-10_000),
    ])
    assert trade == VECTOR["trade_event"]


def test_worked_example_of_units_section():
    """§2.5: buying 0.001 BTC at $100,000.0 on BTC-USD (the vector transaction taking a resting ask)."""
    state, result = execute_vector_transaction()
    trade = result.events[1]
    assert isinstance(trade, Trade)
    assert (trade.price, trade.size_lots, trade.taker_fee, trade.maker_fee) == (1_000_000, 100, 50_000, -10_000)
    buyer_account, seller_account = state.accounts[VECTOR["address"]], state.accounts[SELLER.address]
    assert buyer_account.balances == {0: 200_000_000 - 100_000_000 - 50_000, 1: 100_000}
    assert seller_account.balances == {0: 100_000_000 + 10_000}
    assert state.accounts[bytes.fromhex("fee0" * 10)].balances == {0: 40_000}
    market = state.markets[0]
    assert compute_placement_need(market, True, 1_000_000, 100) == (0, 100_050_000)
    assert compute_order_hold(market, True, 1_000_000, 100) == (0, 100_000_000)
    assert compute_placement_need(market, True, 1_000_001, 3) == (0, 3_001_506)
    assert (compute_fee(3_000_003, 5), compute_fee(3_000_003, -1)) == (1_501, -300)
    assert compute_order_hold(state.markets[1], True, 1_000_000, 1) == (0, 1_000_200)


# --- rejections ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [-1, 79, 40])  # last signature byte; low byte of the price; a public-key byte
def test_invalid_one_changed_wire_byte_is_bad_signature(index):
    wire = bytearray(VECTOR["wire"])
    wire[index] ^= 0x01
    tx = decode_transaction(bytes(wire))
    with pytest.raises(BadSignature):
        validate_signature(tx, CHAIN_ID)


def test_invalid_other_chain_id_is_bad_signature():
    with pytest.raises(BadSignature):
        validate_signature(decode_transaction(VECTOR["wire"]), "kabuto-other")


def test_invalid_non_canonical_integer_is_malformed_transaction():
    """§1.2 rule 2: the price 1 000 000 as uint 64 instead of uint 32 is not canonical."""
    body = VECTOR["body"].replace(bytes.fromhex("ce000f4240"), bytes.fromhex("cf00000000000f4240"))
    assert len(body) == len(VECTOR["body"]) + 4
    wire = mp_array([mp_bin(body), mp_bin(VECTOR["signature"])])
    with pytest.raises(MalformedTransaction):
        decode_transaction(wire)


def test_invalid_float_field_is_malformed_action():
    """§1.2 rule 7: a float64 where the price belongs is rejected even though its encoding is canonical."""
    body = VECTOR["body"].replace(bytes.fromhex("ce000f4240"), b"\xcb" + struct.pack(">d", 1_000_000.0))
    wire = mp_array([mp_bin(body), mp_bin(VECTOR["signature"])])
    with pytest.raises(MalformedAction):
        decode_transaction(wire)
