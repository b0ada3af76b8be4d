"""Spec vectors for stf/block.py: header and transaction rejections, execution order, receipts, hashes, diffs.

Every rejection is an `InvalidBlock` that leaves the state exactly as it was: root, height, time, previous
hash and every entry (compared through `export_entries`).
"""

import hashlib
from dataclasses import replace

import msgpack
import pytest

from stf import codec
from stf.block import Block, BlockHeader, apply_block, compute_txs_root, decode_block, make_block, validate_block
from stf.constants import MAX_BLOCK_TXS, MAX_TX_BYTES
from stf.errors import (
    BadSignature, InvalidBlock, MalformedTransaction, NonceAlreadyUsed, ResultCode as R, TransactionTooLarge,
)
from stf.events import REASON_FILLED, REASON_UNFILLED_IOC, OrderAccepted, OrderDone, Trade, decode_event
from stf.state import apply_entries, export_entries, initialize_state
from stf.tx import (
    decode_transaction,
    TIF_ALO, TIF_GTC, TIF_IOC, ApproveAgent, Cancel, Faucet, PlaceOrder, ScheduleCancel, Transfer, Withdraw,
)
from stf_helpers import BTC, BTC_USD, ETH, FUNDED_USD, USD, Chain


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def snapshot(c: Chain):
    s = c.state
    return s.merkle.root(), s.height, s.time_ms, s.last_block_hash, s.next_seq, export_entries(s)


def assert_rejected(c: Chain, block: Block, verified=None, cause: type | None = None) -> InvalidBlock:
    before = snapshot(c)
    balances = [c.balance(k, USD) for k in c.keys]
    with pytest.raises(InvalidBlock) as info:
        apply_block(c.state, block, verified)
    assert info.value.code == "invalid_block"
    if cause is not None:
        assert type(info.value.__cause__) is cause
    assert snapshot(c) == before
    assert [c.balance(k, USD) for k in c.keys] == balances
    return info.value


def pay(c: Chain, sender: int, to: int, amount: int) -> bytes:
    return c.tx(c.keys[sender], Transfer(c.keys[to].address, USD, amount))


def next_block(c: Chain, *txs: bytes, advance_ms: int = 1000) -> Block:
    return make_block(c.state, c.time_ms + advance_ms, list(txs))


def with_header(block: Block, **changes) -> Block:
    return Block(replace(block.header, **changes), block.txs)


# --- txs root -----------------------------------------------------------------------------------------------

def test_txs_root_vectors():
    a, b, c3 = h(b"a"), h(b"b"), h(b"c")
    assert compute_txs_root([]) == h(b"\x00")
    assert compute_txs_root([a]) == h(b"\x00" + a)
    ab = h(b"\x01" + h(b"\x00" + a) + h(b"\x00" + b))
    assert compute_txs_root([a, b]) == ab
    assert compute_txs_root([a, b, c3]) == h(b"\x01" + ab + h(b"\x00" + c3))
    assert compute_txs_root([b, a]) != ab


def test_make_block_commits_to_tx_hashes():
    c = Chain()
    txs = [pay(c, 0, 1, 1), pay(c, 1, 0, 1)]
    block = next_block(c, *txs)
    assert block.header.txs_root == compute_txs_root([h(t) for t in txs])
    assert block.header.height == 1 and block.header.prev_hash == c.state.last_block_hash
    assert msgpack.unpackb(block.to_wire()) == [block.header.to_wire(), txs]


# --- header rejections -------------------------------------------------------------------------------------------

def test_invalid_wrong_chain_id():
    c = Chain()
    assert_rejected(c, with_header(next_block(c, pay(c, 0, 1, 5)), chain_id="kabuto-other"))


@pytest.mark.parametrize("delta", [0, 2, -1])
def test_invalid_wrong_height(delta):
    c = Chain()
    c.block()
    block = next_block(c, pay(c, 0, 1, 5))
    assert_rejected(c, with_header(block, height=c.state.height + delta))


def test_invalid_time_going_backwards():
    c = Chain()
    c.block()
    assert_rejected(c, next_block(c, pay(c, 0, 1, 5), advance_ms=-1))


def test_same_time_as_previous_block_accepted():
    c = Chain()
    c.block()
    r = apply_block(c.state, next_block(c, advance_ms=0))
    assert c.state.height == 2 and c.state.time_ms == c.time_ms
    assert r.receipts == ()


def test_invalid_wrong_prev_hash():
    c = Chain()
    c.block()
    block = next_block(c, pay(c, 0, 1, 5))
    assert_rejected(c, with_header(block, prev_hash=bytes(32)))
    assert_rejected(c, with_header(block, prev_hash=h(b"other")))


def test_invalid_wrong_txs_root():
    c = Chain()
    t1, t2 = pay(c, 0, 1, 5), pay(c, 1, 0, 7)
    block = next_block(c, t1, t2)
    assert_rejected(c, with_header(block, txs_root=h(b"x")))
    assert_rejected(c, Block(block.header, (t2, t1)))            # reordered
    assert_rejected(c, Block(block.header, (t1,)))               # dropped
    assert_rejected(c, Block(block.header, (t1, t2, pay(c, 2, 0, 1))))  # added


@pytest.mark.parametrize("field,value", [("proposer", bytes(19)), ("proposer", bytes(21)), ("txs_root", bytes(31))])
def test_invalid_malformed_proposer_or_root(field, value):
    c = Chain()
    assert_rejected(c, with_header(next_block(c), **{field: value}))


def test_invalid_too_many_transactions():
    c = Chain()
    tx = pay(c, 0, 1, 1)
    txs = [tx] * (MAX_BLOCK_TXS + 1)
    assert_rejected(c, next_block(c, *txs))


# --- transaction rejections --------------------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\x92\xc4\x00\xc4\x00", b"\xc1" * 10])
def test_invalid_undecodable_tx(garbage):
    c = Chain()
    block = next_block(c, pay(c, 0, 1, 5), garbage, pay(c, 1, 0, 5))
    e = assert_rejected(c, block, cause=MalformedTransaction)
    assert "transaction 1" in str(e)


def test_invalid_oversize_tx():
    c = Chain()
    assert_rejected(c, next_block(c, pay(c, 0, 1, 5), b"\x00" * (MAX_TX_BYTES + 1)), cause=TransactionTooLarge)


def test_invalid_same_tx_twice():
    c = Chain()
    tx = pay(c, 0, 1, 5)
    assert_rejected(c, next_block(c, tx, tx), cause=NonceAlreadyUsed)


def tamper(wire: bytes) -> bytes:
    """Flip one bit of the signature (the last byte of the wire)."""
    return wire[:-1] + bytes((wire[-1] ^ 0x01,))


def test_invalid_bad_signature_in_the_middle():
    c = Chain()
    bad = tamper(pay(c, 1, 2, 5))
    block = next_block(c, pay(c, 0, 1, 5), bad, pay(c, 2, 0, 5))
    e = assert_rejected(c, block, cause=BadSignature)
    assert h(bad).hex() in str(e)


def pre_verified(*wires: bytes) -> dict:
    """What a node's mempool hands to apply_block: wire bytes -> the transaction it decoded and checked."""
    return {w: decode_transaction(w) for w in wires}


def test_verified_skips_the_signature_check_only_for_listed_transactions():
    c = Chain()
    good1, good3 = pay(c, 0, 1, 5), pay(c, 2, 0, 5)
    bad = tamper(pay(c, 1, 2, 7))
    block = next_block(c, good1, bad, good3)
    assert_rejected(c, block, verified=pre_verified(good1, good3), cause=BadSignature)
    assert_rejected(c, block, verified=pre_verified(pay(c, 3, 0, 1)), cause=BadSignature)
    r = apply_block(c.state, block, verified=pre_verified(bad))
    assert [rc.tx_hash for rc in r.receipts] == [h(good1), h(bad), h(good3)]
    assert c.balance(c.keys[1], USD) == FUNDED_USD + 5 - 7


def test_verified_does_not_skip_nonce_checks():
    c = Chain()
    tx = pay(c, 0, 1, 5)
    c.block(tx)
    assert_rejected(c, next_block(c, tx), verified=pre_verified(tx))


# --- execution -----------------------------------------------------------------------------------------------

def test_receipts_in_block_order_with_one_result_per_action():
    c = Chain()
    t1 = pay(c, 0, 1, 5)
    t2 = c.tx(c.keys[1], Transfer(c.keys[0].address, USD, 1), Transfer(c.keys[1].address, USD, 1))
    t3 = c.tx(c.keys[2], PlaceOrder(BTC_USD, True, 1_000, 1, TIF_ALO, None, 0, False))   # runs first
    t4 = pay(c, 3, 0, FUNDED_USD + 1)
    r = c.block(t1, t2, t3, t4)
    assert [rc.tx_hash for rc in r.receipts] == [h(t1), h(t2), h(t3), h(t4)]
    assert [[res.code for res in rc.results] for rc in r.receipts] == [
        [R.OK], [R.OK, R.SELF_TRANSFER], [R.OK], [R.INSUFFICIENT_BALANCE],
    ]
    assert isinstance(r.events[0], OrderAccepted)                 # the maker-only tx ran before the transfers


def test_alo_placed_later_in_block_is_filled_by_earlier_taker():
    c = Chain()
    maker, taker = c.keys[0], c.keys[1]
    take = c.tx(taker, PlaceOrder(BTC_USD, True, 1_000_000, 3, TIF_IOC, None, 0, False))
    make = c.tx(maker, PlaceOrder(BTC_USD, False, 1_000_000, 5, TIF_ALO, None, 0, False))
    r = c.block(take, make)
    taker_result, maker_result = r.receipts[0].results[0], r.receipts[1].results[0]
    assert r.receipts[0].tx_hash == h(take) and r.receipts[1].tx_hash == h(make)
    assert maker_result.code == R.OK and maker_result.filled_lots == 0
    assert taker_result.code == R.OK and taker_result.filled_lots == 3
    maker_id, taker_id = maker_result.order_id, taker_result.order_id
    assert maker_id < taker_id
    assert r.events == [
        OrderAccepted(maker_id, BTC_USD, maker.address, False, 1_000_000, 5, None, TIF_ALO),
        OrderAccepted(taker_id, BTC_USD, taker.address, True, 1_000_000, 3, None, TIF_IOC),
        Trade(BTC_USD, 1_000_000, 3, True, taker_id, maker_id, taker.address, maker.address, 1_500, -300),
        OrderDone(taker_id, BTC_USD, taker.address, REASON_FILLED, 0),
    ]
    assert c.state.orders[maker_id].size_lots == 2


def test_gtc_placed_later_in_block_runs_after_earlier_taker():
    c = Chain()
    maker, taker = c.keys[0], c.keys[1]
    take = c.tx(taker, PlaceOrder(BTC_USD, True, 1_000_000, 3, TIF_IOC, None, 0, False))
    make = c.tx(maker, PlaceOrder(BTC_USD, False, 1_000_000, 5, TIF_GTC, None, 0, False))
    r = c.block(take, make)
    assert r.receipts[0].results[0].filled_lots == 0
    assert [type(e) for e in r.events] == [OrderAccepted, OrderDone, OrderAccepted]
    assert r.events[1].reason == REASON_UNFILLED_IOC
    assert c.state.orders[r.receipts[1].results[0].order_id].size_lots == 5


def test_cancel_later_in_block_runs_before_earlier_taker():
    c = Chain()
    maker, taker = c.keys[0], c.keys[1]
    order_id = c.run(maker, PlaceOrder(BTC_USD, False, 1_000_000, 5, TIF_GTC, None, 0, False)).receipts[0].results[0].order_id
    take = c.tx(taker, PlaceOrder(BTC_USD, True, 1_000_000, 3, TIF_IOC, None, 0, False))
    cancel = c.tx(maker, Cancel(BTC_USD, order_id))
    r = c.block(take, cancel)
    assert r.receipts[0].results[0].filled_lots == 0
    assert r.receipts[1].results[0].code == R.OK
    assert not any(isinstance(e, Trade) for e in r.events)


def test_mixed_tx_with_alo_and_taker_action_keeps_block_order():
    c = Chain()
    maker, taker = c.keys[0], c.keys[1]
    take = c.tx(taker, PlaceOrder(BTC_USD, True, 1_000_000, 3, TIF_IOC, None, 0, False))
    mixed = c.tx(maker, PlaceOrder(BTC_USD, False, 1_000_000, 5, TIF_ALO, None, 0, False),
                 Transfer(c.keys[2].address, USD, 1))
    r = c.block(take, mixed)
    assert r.receipts[0].results[0].filled_lots == 0


# --- hashes and diffs ----------------------------------------------------------------------------------------------

def test_block_hash_chains():
    c = Chain()
    assert c.state.last_block_hash == bytes(32)
    b1 = next_block(c, pay(c, 0, 1, 5))
    r1 = apply_block(c.state, b1)
    c.time_ms += 1000
    assert r1.block_hash == b1.header.hash() == h(codec.encode(b1.header.to_wire()))
    assert c.state.last_block_hash == r1.block_hash
    b2 = next_block(c)
    assert b2.header.prev_hash == r1.block_hash
    r2 = apply_block(c.state, b2)
    assert r2.block_hash != r1.block_hash and c.state.last_block_hash == r2.block_hash
    assert r2.state_root == c.state.merkle.root()


def test_header_wire_layout():
    header = BlockHeader("kabuto-test", 7, 1_000, b"\x01" * 32, b"\x04" * 32, b"\x02" * 20, b"\x03" * 32)
    assert msgpack.unpackb(codec.encode(header.to_wire())) == [
        b"kabuto-test", 7, 1_000, b"\x01" * 32, b"\x04" * 32, b"\x02" * 20, b"\x03" * 32,
    ]
    assert header.hash() == h(codec.encode(header.to_wire()))


def test_make_block_commits_to_the_state_root_it_builds_on():
    c = Chain()
    c.block(pay(c, 0, 1, 5))
    block = next_block(c)
    assert block.header.app_hash == c.state.merkle.root()


def test_invalid_wrong_app_hash():
    c = Chain()
    c.block(pay(c, 0, 1, 5))
    block = next_block(c, pay(c, 1, 0, 5))
    assert_rejected(c, with_header(block, app_hash=bytes(32)))
    assert_rejected(c, with_header(block, app_hash=h(b"other state")))


# --- decode_block ------------------------------------------------------------------------------------------------

def test_decode_block_round_trip():
    c = Chain()
    block = next_block(c, pay(c, 0, 1, 5), pay(c, 1, 0, 6))
    decoded = decode_block(block.to_wire())
    assert decoded == block
    assert decoded.header.hash() == block.header.hash()
    apply_block(c.state, decoded)
    assert c.state.height == 1


def valid_block_fields(c: Chain) -> list:
    block = next_block(c, pay(c, 0, 1, 5))
    return [block.header.to_wire(), list(block.txs)]


def assert_block_undecodable(wire) -> None:
    with pytest.raises(InvalidBlock) as info:
        decode_block(wire)
    assert info.value.code == "invalid_block"


@pytest.mark.parametrize("wire", [b"", b"\xc1", b"\x92\x97", b"\x92\x90\x90\x00"], ids=repr)
def test_invalid_decode_block_not_msgpack(wire):
    assert_block_undecodable(wire)


@pytest.mark.parametrize("wire", [None, 5], ids=repr)
def test_invalid_decode_block_not_bytes(wire):
    assert_block_undecodable(wire)


def test_invalid_decode_block_str_input():
    assert_block_undecodable("\x92\x90\x90")


def test_invalid_decode_block_non_canonical():
    c = Chain()
    wire = codec.encode(valid_block_fields(c))
    assert wire[0] == 0x92
    assert_block_undecodable(b"\xdc\x00\x02" + wire[1:])
    assert_block_undecodable(wire + b"\x00")


def header_index(name: str) -> int:
    return ["chain_id", "height", "time_ms", "prev_hash", "app_hash", "proposer", "txs_root"].index(name)


@pytest.mark.parametrize("shape", ["not-list", "1-array", "3-array", "header-not-list", "txs-not-list", "header-6",
                                   "header-8"])
def test_invalid_decode_block_shape(shape):
    c = Chain()
    header, txs = valid_block_fields(c)
    raw = {
        "not-list": b"block", "1-array": [header], "3-array": [header, txs, []], "header-not-list": [b"h", txs],
        "txs-not-list": [header, b"tx"], "header-6": [header[:6], txs], "header-8": [header + [b""], txs],
    }[shape]
    assert_block_undecodable(codec.encode(raw))


@pytest.mark.parametrize("field,value", [
    ("chain_id", ""), ("chain_id", None), ("chain_id", b"\xff\xfe"), ("height", 0), ("height", -1),
    ("height", True), ("height", b"\x01"), ("time_ms", -1), ("time_ms", False), ("time_ms", None),
    ("prev_hash", bytes(31)), ("prev_hash", bytes(33)), ("app_hash", bytes(31)), ("app_hash", None),
    ("proposer", bytes(19)), ("proposer", bytes(21)), ("txs_root", bytes(33)), ("txs_root", 0),
], ids=lambda v: repr(v)[:20])
def test_invalid_decode_block_header_field(field, value):
    c = Chain()
    header, txs = valid_block_fields(c)
    header[header_index(field)] = value
    assert_block_undecodable(codec.encode([header, txs]))


@pytest.mark.parametrize("tx", [None, 5, [b"tx"], ""], ids=repr)
def test_invalid_decode_block_tx_not_bytes(tx):
    c = Chain()
    header, txs = valid_block_fields(c)
    assert_block_undecodable(codec.encode([header, txs + [tx]]))


def test_invalid_decode_block_too_many_txs():
    c = Chain()
    header, _ = valid_block_fields(c)
    assert_block_undecodable(codec.encode([header, [b""] * (MAX_BLOCK_TXS + 1)]))


def test_decode_block_accepts_undecodable_txs_that_apply_block_then_rejects():
    c = Chain()
    block = next_block(c, b"\x00")
    decoded = decode_block(block.to_wire())
    assert_rejected(c, decoded, cause=MalformedTransaction)


def test_diff_wire_layout_and_it_reaches_the_same_state():
    c = Chain()
    maker, taker = c.keys[0], c.keys[1]
    c.run(maker, PlaceOrder(BTC_USD, False, 1_000_000, 5, TIF_GTC, 11, 0, False))
    replica = initialize_state(c.genesis)
    apply_entries(replica, export_entries(c.state))    # a client synced to height 1 from a snapshot
    assert replica.merkle.root() == c.state.merkle.root()
    r = c.run(taker, PlaceOrder(BTC_USD, True, 1_000_000, 2, TIF_IOC, None, 0, False))
    height = c.state.height
    diff = msgpack.unpackb(r.diff_wire(height), raw=False)
    assert diff[:3] == [height, r.block_hash, r.state_root]
    assert len(diff) == 5
    events, entries = diff[3], diff[4]
    assert [decode_event(e) for e in events] == r.events
    assert all(e[0] == type(ev).KIND for e, ev in zip(events, r.events))
    assert entries == [[k, v] for k, v in r.entries]
    assert [k for k, _ in r.entries] == sorted(k for k, _ in r.entries)
    root = apply_entries(replica, [(k, v) for k, v in entries])
    assert root == r.state_root == c.state.merkle.root()
    assert export_entries(replica) == export_entries(c.state)


def test_diff_of_each_block_replays_to_the_same_root():
    c = Chain(faucet=True)
    replica = initialize_state(c.genesis)
    a, b = c.keys[0], c.keys[1]
    steps = [
        (a, PlaceOrder(BTC_USD, False, 1_000_000, 5, TIF_GTC, 11, 0, False)),
        (b, PlaceOrder(BTC_USD, True, 1_000_000, 5, TIF_IOC, None, 0, False)),     # fills and removes the order
        (a, Transfer(b"\x77" * 20, USD, 9)),
        (b, PlaceOrder(BTC_USD, True, 999_000, 4, TIF_GTC, None, 0, False)),
        (a, Faucet(USD, 1_000)),                                                    # changes the asset's supply
        (b, Withdraw(BTC, 77, b"dest")),
        (a, ApproveAgent(b"\x66" * 20)),
        (a, ScheduleCancel(c.time_ms + 100_000)),
    ]
    for key, action in steps:
        r = c.run(key, action)
        diff = msgpack.unpackb(r.diff_wire(c.state.height), raw=False)
        assert apply_entries(replica, [(k, v) for k, v in diff[4]]) == r.state_root
    assert export_entries(replica) == export_entries(c.state)


def test_empty_block_changes_only_the_global_entry():
    c = Chain()
    r = c.block()
    assert r.receipts == () and r.events == []
    assert [k for k, _ in r.entries] == [b"g"]


def test_value_is_conserved_by_trades_fees_and_rebates():
    """Sum of balances per asset equals the recorded supply after trading (fees, rebates), transfers, a faucet
    mint and a withdrawal."""
    c = Chain(faucet=True)
    a, b, d = c.keys[0], c.keys[1], c.keys[2]
    c.run(a, PlaceOrder(BTC_USD, False, 1_000_003, 7, TIF_GTC, None, 0, False))
    c.run(b, PlaceOrder(BTC_USD, True, 1_000_003, 3, TIF_IOC, None, 0, False))
    c.run(d, PlaceOrder(BTC_USD, True, 1_100_000, 4, TIF_GTC, None, 0, False))      # fills the rest, as taker
    c.run(a, PlaceOrder(1, True, 777, 13, TIF_GTC, None, 0, False))
    c.run(b, PlaceOrder(1, False, 700, 9, TIF_IOC, None, 0, False))
    c.run(a, Faucet(ETH, 12_345), Withdraw(USD, 1_001, b"x"), Transfer(d.address, BTC, 3))
    for asset in (USD, BTC, ETH):
        total = sum(account.balances.get(asset, 0) for account in c.state.accounts.values())
        assert total == c.state.supply[asset], asset
    assert c.balance(bytes.fromhex("fee0" * 10), USD) > 0


def test_invalid_header_is_refused_before_any_signature_is_checked():
    """A block with a bad header costs no signature verification: the header error wins over a bad signature."""
    c = Chain()
    good = next_block(c, tamper(pay(c, 1, 2, 7)))
    wrong_height = Block(BlockHeader(**{**_header_fields(good.header), "height": good.header.height + 5}), good.txs)
    e = assert_rejected(c, wrong_height)
    assert "height" in str(e) and e.__cause__ is None


def _header_fields(header: BlockHeader) -> dict:
    return {name: getattr(header, name) for name in header.__slots__}


def test_validate_block_judges_without_changing_the_state():
    c = Chain()
    good = next_block(c, pay(c, 0, 1, 5))
    before = snapshot(c)
    validate_block(c.state, good)
    assert snapshot(c) == before
    bad = next_block(c, tamper(pay(c, 1, 2, 7)))
    with pytest.raises(InvalidBlock):
        validate_block(c.state, bad)
    assert snapshot(c) == before
    apply_block(c.state, good)
    assert c.state.height == before[1] + 1


def test_apply_reuses_a_check_of_the_same_block_on_the_same_state(monkeypatch):
    import stf.block as block_module
    a, b = Chain(), Chain()
    block_a = next_block(a, pay(a, 0, 1, 5), pay(a, 1, 2, 7))
    block_b = next_block(b, pay(b, 0, 1, 5), pay(b, 1, 2, 7))
    checked = validate_block(a.state, block_a)
    calls = []
    real = block_module.check_block
    monkeypatch.setattr(block_module, "check_block", lambda *args: calls.append(1) or real(*args))
    result_a = apply_block(a.state, block_a, checked=checked)
    result_b = apply_block(b.state, block_b)
    assert calls == [1]   # only the chain without a check checked again
    assert (result_a.state_root, result_a.receipts, result_a.entries) == (
        result_b.state_root, result_b.receipts, result_b.entries)


def test_a_check_for_another_block_or_state_is_not_reused():
    c = Chain()
    first = next_block(c, pay(c, 0, 1, 5))
    stale = validate_block(c.state, first)
    apply_block(c.state, first, checked=stale)
    # the same check handed over at the next height: ignored, so the bad block is still refused
    bad = next_block(c, tamper(pay(c, 1, 2, 7)))
    with pytest.raises(InvalidBlock):
        apply_block(c.state, bad, checked=stale)
    # a check of the right state but another block: ignored too
    good = next_block(c, pay(c, 1, 2, 7))
    other = validate_block(c.state, next_block(c, pay(c, 2, 1, 1)))
    with pytest.raises(InvalidBlock):
        apply_block(c.state, bad, checked=other)
    height = c.state.height
    apply_block(c.state, good, checked=other)
    assert c.state.height == height + 1
