"""Spec vectors for the nonce rules (stf/nonces.py), directly and through `apply_block`.

Rules: a nonce is accepted only if it lies strictly inside (block time - past window, block time + future
window), is not among the signer's kept nonces, and, once N are kept, is greater than the smallest kept one.
A block carrying a transaction that breaks any rule is rejected whole and leaves the state untouched.
"""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stf.errors import (
    InvalidBlock, NonceAlreadyUsed, NonceTooLow, NonceTooNew, NonceTooOld, ResultCode, Unauthorized,
)
from stf.nonces import accept_nonce, compute_kept_nonces, validate_nonce
from stf.params import ChainParams
from stf.state import export_entries
from stf.tx import ApproveAgent, PlaceOrder, RevokeAgent, Transfer
from stf_helpers import USD, BTC_USD, Chain, make_key

PARAMS = ChainParams("kabuto-test", nonce_set_size=3, nonce_window_past_ms=1_000, nonce_window_future_ms=500)
T = 10_000


# --- validate_nonce / compute_kept_nonces ---------------------------------------------------------------------

def test_first_nonce_accepted():
    validate_nonce(PARAMS, T, [], T)
    assert compute_kept_nonces(PARAMS, [], T) == [T]


def test_out_of_order_accepted_while_not_full():
    validate_nonce(PARAMS, T, [T + 10], T - 10)
    assert compute_kept_nonces(PARAMS, [T + 10], T - 10) == [T - 10, T + 10]
    assert compute_kept_nonces(PARAMS, [T - 10, T + 10], T) == [T - 10, T, T + 10]


def test_invalid_nonce_already_used():
    for kept in ([T], [T - 5, T, T + 5], [T, T + 1]):
        with pytest.raises(NonceAlreadyUsed) as info:
            validate_nonce(PARAMS, T, kept, T)
        assert info.value.code == "nonce_already_used"


def test_invalid_nonce_too_low_once_full():
    kept = [T - 100, T, T + 100]
    with pytest.raises(NonceTooLow) as info:
        validate_nonce(PARAMS, T, kept, T - 101)
    assert info.value.code == "nonce_too_low"


def test_smallest_kept_is_already_used_not_too_low():
    with pytest.raises(NonceAlreadyUsed):
        validate_nonce(PARAMS, T, [T - 100, T, T + 100], T - 100)


def test_just_above_smallest_accepted_when_full_and_smallest_drops_out():
    kept = [T - 100, T, T + 100]
    validate_nonce(PARAMS, T, kept, T - 99)
    assert compute_kept_nonces(PARAMS, kept, T - 99) == [T - 99, T, T + 100]
    validate_nonce(PARAMS, T, kept, T + 101)
    assert compute_kept_nonces(PARAMS, kept, T + 101) == [T, T + 100, T + 101]


def test_below_smallest_accepted_while_not_full():
    validate_nonce(PARAMS, T, [T, T + 100], T - 500)


def test_invalid_nonce_too_old_at_window_edge():
    with pytest.raises(NonceTooOld) as info:
        validate_nonce(PARAMS, T, [], T - 1_000)
    assert info.value.code == "nonce_too_old"
    validate_nonce(PARAMS, T, [], T - 999)


def test_invalid_nonce_too_new_at_window_edge():
    with pytest.raises(NonceTooNew) as info:
        validate_nonce(PARAMS, T, [], T + 500)
    assert info.value.code == "nonce_too_new"
    validate_nonce(PARAMS, T, [], T + 499)


def test_window_is_checked_before_the_set():
    with pytest.raises(NonceTooOld):
        validate_nonce(PARAMS, T, [T - 2_000], T - 2_000)
    with pytest.raises(NonceTooNew):
        validate_nonce(PARAMS, T, [T + 600], T + 600)


def test_compute_kept_nonces_does_not_mutate_its_input():
    kept = [1, 2, 3]
    assert compute_kept_nonces(PARAMS, kept, 4) == [2, 3, 4]
    assert kept == [1, 2, 3]


# --- through apply_block ---------------------------------------------------------------------------------------

def new_chain(**params) -> Chain:
    params.setdefault("nonce_set_size", 3)
    return Chain(accounts=3, **params)


def snapshot(c: Chain):
    return c.state.merkle.root(), c.state.height, c.state.time_ms, c.state.last_block_hash, export_entries(c.state)


def assert_block_rejected(c: Chain, *txs: bytes, cause: type) -> InvalidBlock:
    before = snapshot(c)
    with pytest.raises(InvalidBlock) as info:
        c.block(*txs)
    assert type(info.value.__cause__) is cause
    assert cause.code in str(info.value)
    assert snapshot(c) == before
    return info.value


def pay(c: Chain, sender: int, nonce: int, amount: int = 1) -> bytes:
    return c.tx(c.keys[sender], Transfer(c.keys[2].address, USD, amount), nonce=nonce)


def next_block_time(c: Chain) -> int:
    return c.time_ms + 1000


def test_apply_block_accepts_out_of_order_nonces_and_keeps_the_highest():
    c = new_chain()
    t = next_block_time(c)
    r = c.block(pay(c, 0, t - 10), pay(c, 0, t - 30), pay(c, 0, t - 20))
    assert [res.code for rc in r.receipts for res in rc.results] == [ResultCode.OK] * 3
    assert c.state.nonces[c.keys[0].address] == [t - 30, t - 20, t - 10]
    r = c.block(pay(c, 0, t - 15))
    assert r.receipts[0].results[0].code == ResultCode.OK
    assert c.state.nonces[c.keys[0].address] == [t - 20, t - 15, t - 10]


def test_invalid_block_nonce_already_used():
    c = new_chain()
    t = next_block_time(c)
    c.block(pay(c, 0, t))
    balances = (c.balance(c.keys[0], USD), c.balance(c.keys[2], USD))
    assert_block_rejected(c, pay(c, 0, t, amount=2), cause=NonceAlreadyUsed)
    assert (c.balance(c.keys[0], USD), c.balance(c.keys[2], USD)) == balances


def test_invalid_block_reused_nonce_rejects_the_valid_txs_too():
    c = new_chain()
    t = next_block_time(c)
    c.block(pay(c, 0, t))
    before_payer = c.balance(c.keys[1], USD)
    assert_block_rejected(c, pay(c, 1, t + 1000), pay(c, 0, t, amount=5), cause=NonceAlreadyUsed)
    assert c.balance(c.keys[1], USD) == before_payer
    # the valid transaction's nonce was not consumed by the rejected block
    r = c.block(pay(c, 1, t + 1000))
    assert r.receipts[0].results[0].code == ResultCode.OK


def test_invalid_block_two_txs_with_the_same_nonce():
    c = new_chain()
    t = next_block_time(c)
    assert_block_rejected(c, pay(c, 0, t, amount=1), pay(c, 0, t, amount=2), cause=NonceAlreadyUsed)
    assert c.keys[0].address not in c.state.nonces


def test_same_nonce_from_two_signers_in_one_block_is_fine():
    c = new_chain()
    t = next_block_time(c)
    r = c.block(pay(c, 0, t), pay(c, 1, t))
    assert len(r.receipts) == 2


def test_invalid_block_nonce_too_low_once_the_set_is_full():
    c = new_chain()
    t = next_block_time(c)
    c.block(pay(c, 0, t - 10), pay(c, 0, t - 20), pay(c, 0, t - 30))
    assert_block_rejected(c, pay(c, 0, t - 31), cause=NonceTooLow)
    assert c.state.nonces[c.keys[0].address] == [t - 30, t - 20, t - 10]
    c.block(pay(c, 0, t - 29))
    assert c.state.nonces[c.keys[0].address] == [t - 29, t - 20, t - 10]


def test_invalid_block_nonce_too_low_within_one_block():
    c = new_chain()
    t = next_block_time(c)
    assert_block_rejected(
        c, pay(c, 0, t - 10), pay(c, 0, t - 20), pay(c, 0, t - 30), pay(c, 0, t - 40), cause=NonceTooLow,
    )


def test_nonce_window_edges_through_apply_block():
    c = new_chain(nonce_window_past_ms=10_000, nonce_window_future_ms=5_000)
    t = next_block_time(c)
    assert_block_rejected(c, pay(c, 0, t - 10_000), cause=NonceTooOld)
    t = next_block_time(c)
    assert_block_rejected(c, pay(c, 0, t + 5_000), cause=NonceTooNew)
    t = next_block_time(c)
    r = c.block(pay(c, 0, t - 9_999), pay(c, 0, t + 4_999))
    assert len(r.receipts) == 2
    assert c.state.nonces[c.keys[0].address] == [t - 9_999, t + 4_999]


def test_window_uses_the_block_time():
    c = new_chain(nonce_window_past_ms=10_000, nonce_window_future_ms=5_000)
    t = c.time_ms
    tx = pay(c, 0, t + 6_000)   # too new for a block at t + 1000, fine for one at t + 2000
    assert_block_rejected(c, tx, cause=NonceTooNew)
    c.block(tx)
    assert c.state.time_ms == t + 2_000
    assert c.state.nonces[c.keys[0].address] == [t + 6_000]


def test_agent_keys_have_their_own_nonce_set():
    c = new_chain()
    owner, agent = c.keys[0], make_key(100)
    t = next_block_time(c)
    c.block(c.tx(owner, ApproveAgent(agent.address), nonce=t))
    t = next_block_time(c)
    order = PlaceOrder(BTC_USD, True, 1_000, 1, 0, None, 0, False)
    r = c.block(c.tx(owner, order, nonce=t), c.tx(agent, order, account=owner.address, nonce=t))
    assert [rc.results[0].code for rc in r.receipts] == [ResultCode.OK, ResultCode.OK]
    assert c.state.nonces[agent.address] == [t]
    assert c.state.nonces[owner.address] == [t - 1000, t]
    assert_block_rejected(c, c.tx(agent, order, account=owner.address, nonce=t), cause=NonceAlreadyUsed)


def test_an_agent_of_two_accounts_shares_one_nonce_set():
    c = new_chain()
    agent = make_key(100)
    t = next_block_time(c)
    c.block(c.tx(c.keys[0], ApproveAgent(agent.address), nonce=t), c.tx(c.keys[1], ApproveAgent(agent.address), nonce=t))
    t = next_block_time(c)
    order = PlaceOrder(BTC_USD, True, 1_000, 1, 0, None, 0, False)
    c.block(c.tx(agent, order, account=c.keys[0].address, nonce=t))
    assert_block_rejected(c, c.tx(agent, order, account=c.keys[1].address, nonce=t), cause=NonceAlreadyUsed)


def test_tx_unauthorized_at_execution_still_consumes_its_nonce():
    c = new_chain()
    owner, agent = c.keys[0], make_key(100)
    t = next_block_time(c)
    c.block(c.tx(owner, ApproveAgent(agent.address), nonce=t))
    t = next_block_time(c)
    trade = c.tx(agent, PlaceOrder(BTC_USD, True, 1_000, 1, 0, None, 0, False), account=owner.address, nonce=t)
    r = c.block(c.tx(owner, RevokeAgent(agent.address), nonce=t), trade)     # revoked earlier in the block
    assert r.receipts[1].results[0].code == ResultCode.UNAUTHORIZED
    assert c.state.nonces[agent.address] == [t]
    c.block(c.tx(owner, ApproveAgent(agent.address)))
    assert_block_rejected(c, trade, cause=NonceAlreadyUsed)


def test_rejected_unauthorized_tx_does_not_consume_its_nonce():
    c = new_chain()
    stranger = make_key(200)
    t = next_block_time(c)
    tx = c.tx(stranger, Transfer(stranger.address, USD, 1), account=c.keys[0].address, nonce=t)
    assert_block_rejected(c, tx, cause=Unauthorized)
    assert stranger.address not in c.state.nonces


def test_nonces_are_checked_in_execution_order_makers_first():
    """With a full set, a maker-only tx later in the block is checked (and kept) before an earlier taker tx."""
    c = new_chain()
    key = c.keys[0]
    t = next_block_time(c)
    c.block(pay(c, 0, t - 30), pay(c, 0, t - 20), pay(c, 0, t - 10))
    t = next_block_time(c)          # the first block was at t1 = t - 1000
    taker = c.tx(key, PlaceOrder(BTC_USD, True, 1_000, 1, 0, None, 0, False), nonce=t - 1_000 - 15)
    maker = c.tx(key, PlaceOrder(BTC_USD, True, 1_000, 1, 3, None, 0, False), nonce=t - 1_000 - 28)
    # in block order the taker (t1-15) would evict t1-30 first, leaving the maker's t1-28 below the smallest kept
    r = c.block(taker, maker)
    assert len(r.receipts) == 2
    assert c.state.nonces[key.address] == [t - 1_000 - 20, t - 1_000 - 15, t - 1_000 - 10]


def test_taker_first_in_execution_order_makes_a_later_low_maker_nonce_too_low():
    c = new_chain()
    key = c.keys[0]
    t = next_block_time(c)
    c.block(pay(c, 0, t - 30), pay(c, 0, t - 20), pay(c, 0, t - 10))
    t = next_block_time(c)
    maker = c.tx(key, PlaceOrder(BTC_USD, True, 1_000, 1, 3, None, 0, False), nonce=t - 1_000 - 15)
    taker = c.tx(key, PlaceOrder(BTC_USD, True, 1_000, 1, 0, None, 0, False), nonce=t - 1_000 - 28)
    # the maker runs first and evicts t-30, so the taker's t-28 is below the new smallest (t-20)
    assert_block_rejected(c, taker, maker, cause=NonceTooLow)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 60)), max_size=40),
       st.lists(st.integers(1, 60), unique=True, max_size=5).map(sorted))
def test_accept_nonce_equals_compute_kept_nonces_in_sequence(txs, committed):
    params = replace(PARAMS, nonce_set_size=4)
    frozen = list(committed)
    expected: dict[bytes, list[int]] = {}
    kept_by_signer: dict[bytes, list[int]] = {}
    for signer_index, nonce in txs:
        signer = bytes([signer_index]) * 20
        current = expected.get(signer, committed)
        if nonce in current:
            continue
        expected[signer] = compute_kept_nonces(params, current, nonce)
        accept_nonce(params, kept_by_signer, committed, signer, nonce)
    assert kept_by_signer == expected
    assert committed == frozen
