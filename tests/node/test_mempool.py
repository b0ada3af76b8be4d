"""Mempool spec vectors: admission (one test per refusal), caps, reaping a block that `apply_block` accepts
on top of the committed state, and the recheck after a block."""

import hashlib

import pytest

from genesis import minimal_genesis, validate_genesis
from node.mempool import AlreadyKnown, compute_encoded_tx_bytes, Mempool, MempoolFull, MempoolLimits, NonceAlreadyPending, SenderLimit
from stf import codec
from stf.block import apply_block, make_block
from stf.crypto import PrivateKey
from stf.errors import (
    BadSignature, MalformedTransaction, NonceAlreadyUsed, NonceTooOld, TransactionTooLarge, Unauthorized,
)
from stf.state import State, initialize_state
from stf.tx import ApproveAgent, Cancel, PlaceOrder, Transfer, sign_transaction

USD = 0
KEYS = [PrivateKey(i.to_bytes(32, "big")) for i in range(1, 5)]


def make_state(**params) -> State:
    balances = [(k.address.hex(), USD, 10**12) for k in KEYS]
    return initialize_state(validate_genesis(minimal_genesis(balances=balances, **params)))


def pay(state: State, key: PrivateKey, nonce_offset: int, amount: int = 1, account: bytes | None = None) -> bytes:
    return sign_transaction(key, state.params.chain_id, state.time_ms + nonce_offset, [Transfer(KEYS[3].address, USD, amount)], account)


def commit(state: State, pool: Mempool, time_ms: int) -> list[bytes]:
    body = pool.reap(state, time_ms)
    result = apply_block(state, make_block(state, time_ms, body), pool.verified())
    pool.update(state, [r.tx_hash for r in result.receipts])
    return body


def test_admit_reap_commit_round_trip() -> None:
    state, pool = make_state(), Mempool()
    wires = [pay(state, KEYS[i], 1 + i) for i in range(3)]
    for wire in wires:
        pool.admit(wire, state)
    assert len(pool) == 3 and pool.size_bytes == sum(map(len, wires))
    assert commit(state, pool, state.time_ms + 1000) == wires
    assert len(pool) == 0 and pool.size_bytes == 0


def test_out_of_order_nonces_of_one_signer_are_all_admitted_and_included() -> None:
    state, pool = make_state(), Mempool()
    for offset in (5, 3, 4):
        pool.admit(pay(state, KEYS[0], offset), state)
    assert len(commit(state, pool, state.time_ms + 1000)) == 3


def test_invalid_duplicate_transaction() -> None:
    state, pool = make_state(), Mempool()
    wire = pay(state, KEYS[0], 1)
    pool.admit(wire, state)
    with pytest.raises(AlreadyKnown):
        pool.admit(wire, state)


def test_invalid_same_nonce_already_pending() -> None:
    state, pool = make_state(), Mempool()
    pool.admit(pay(state, KEYS[0], 1, amount=1), state)
    with pytest.raises(NonceAlreadyPending):
        pool.admit(pay(state, KEYS[0], 1, amount=2), state)


def test_invalid_nonce_used_in_a_committed_block() -> None:
    state, pool = make_state(), Mempool()
    wire = pay(state, KEYS[0], 1)
    pool.admit(wire, state)
    commit(state, pool, state.time_ms + 1000)
    with pytest.raises(NonceAlreadyUsed):
        pool.admit(wire, state)


@pytest.mark.parametrize("wire, error", [
    (b"\x92\xc4\x00", MalformedTransaction),
    (b"\x00" * 20_000, TransactionTooLarge),
])
def test_invalid_undecodable(wire: bytes, error: type) -> None:
    with pytest.raises(error):
        Mempool().admit(wire, make_state())


def test_invalid_bad_signature() -> None:
    state = make_state()
    wire = bytearray(pay(state, KEYS[0], 1))
    wire[-1] ^= 1
    with pytest.raises(BadSignature):
        Mempool().admit(bytes(wire), state)


def test_invalid_unauthorized_signer() -> None:
    state = make_state()
    with pytest.raises(Unauthorized):
        Mempool().admit(pay(state, KEYS[1], 1, account=KEYS[0].address), state)


def test_invalid_nonce_too_old() -> None:
    state = make_state()
    with pytest.raises(NonceTooOld):
        Mempool().admit(pay(state, KEYS[0], -state.params.nonce_window_past_ms), state)


def test_invalid_pool_full_by_count_and_by_bytes() -> None:
    state = make_state()
    pool = Mempool(MempoolLimits(max_txs=2))
    pool.admit(pay(state, KEYS[0], 1), state)
    pool.admit(pay(state, KEYS[1], 1), state)
    with pytest.raises(MempoolFull):
        pool.admit(pay(state, KEYS[2], 1), state)
    small = Mempool(MempoolLimits(max_bytes=100))
    with pytest.raises(MempoolFull):
        small.admit(pay(state, KEYS[0], 1), state)
    assert len(small) == 0


def test_invalid_sender_limit_leaves_other_senders_free() -> None:
    state = make_state()
    pool = Mempool(MempoolLimits(max_txs_per_sender=2))
    pool.admit(pay(state, KEYS[0], 1), state)
    pool.admit(pay(state, KEYS[0], 2), state)
    with pytest.raises(SenderLimit):
        pool.admit(pay(state, KEYS[0], 3), state)
    pool.admit(pay(state, KEYS[1], 1), state)


def test_reap_respects_block_limits_in_arrival_order() -> None:
    state, pool = make_state(), Mempool()
    wires = [pay(state, KEYS[i % 3], 1 + i) for i in range(6)]
    for wire in wires:
        pool.admit(wire, state)
    assert pool.reap(state, state.time_ms + 1000, max_txs=4) == wires[:4]
    two = sum(len(codec.encode(w)) for w in wires[:2])
    assert pool.reap(state, state.time_ms + 1000, max_bytes=two) == wires[:2]
    assert pool.reap(state, state.time_ms + 1000, max_bytes=two - 1) == wires[:1]


def test_reap_counts_each_transaction_with_its_encoding_header() -> None:
    # a block of many small transactions must fit the byte budget as encoded, not just as the sum of the wires
    state, pool = make_state(), Mempool(MempoolLimits(max_txs_per_sender=1000))
    for i in range(300):
        pool.admit(pay(state, KEYS[i % 3], 1 + i), state)
    budget = 20_000
    body = pool.reap(state, state.time_ms + 1000, max_bytes=budget)
    assert len(codec.encode(body)) - len(codec.encode([])) <= budget < sum(len(w) for w in body) + 3 * len(body) + 300
    assert [compute_encoded_tx_bytes(len(w)) for w in body] == [len(codec.encode(w)) for w in body]


def test_reap_skips_what_would_invalidate_the_block() -> None:
    """An agent approved in a pending transaction cannot trade in the same block: the agent's order waits."""
    state, pool = make_state(), Mempool()
    agent = PrivateKey(b"\x09" * 32)
    owner = KEYS[0]
    pool.admit(sign_transaction(owner, state.params.chain_id, state.time_ms + 1, [ApproveAgent(agent.address)]), state)
    body = commit(state, pool, state.time_ms + 1000)
    assert len(body) == 1
    order = sign_transaction(agent, state.params.chain_id, state.time_ms + 2,
                             [PlaceOrder(0, True, 1000, 1, 0, None, 0, False)], owner.address)
    pool.admit(order, state)
    assert commit(state, pool, state.time_ms + 1000) == [order]


def test_reap_with_a_full_nonce_set_follows_execution_order() -> None:
    """With N = 2 kept nonces, a maker-only tx later in the pool runs first in the block: reaping must judge the
    nonce rules in that order, or the block would be invalid."""
    state, pool = make_state(nonce_set_size=2), Mempool()
    key = KEYS[0]
    chain = state.params.chain_id
    for offset in (10, 20):
        pool.admit(pay(state, key, offset), state)
    commit(state, pool, state.time_ms + 1000)
    taker = pay(state, key, 30)
    maker = sign_transaction(key, chain, state.time_ms - 985, [Cancel(0, 1)])  # nonce between the kept 10 and 20
    pool.admit(taker, state)
    pool.admit(maker, state)
    body = pool.reap(state, state.time_ms + 1000)
    apply_block(state, make_block(state, state.time_ms + 1000, body), pool.verified())
    assert set(body) == {taker, maker}


def test_update_drops_what_can_never_be_included() -> None:
    state, pool = make_state(nonce_set_size=1), Mempool()
    key = KEYS[0]
    low, high = pay(state, key, 1), pay(state, key, 2)
    pool.admit(low, state)
    pool.admit(high, state)
    body = pool.reap(state, state.time_ms + 1000)
    assert body == [low, high]
    result = apply_block(state, make_block(state, state.time_ms + 1000, [high]), pool.verified())
    dropped = pool.update(state, [r.tx_hash for r in result.receipts])
    assert len(pool) == 0 and len(dropped) == 1   # `low` is now below the single kept nonce: never includable


def test_update_rechecks_the_block_signers_at_once_and_everyone_after_the_full_recheck_interval() -> None:
    from node.mempool import FULL_RECHECK_MS
    state, pool = make_state(), Mempool()
    first = pay(state, KEYS[0], 1)
    pool.admit(first, state)
    commit(state, pool, state.time_ms + 1000)   # the first update is a full pass
    # KEYS[1]'s pending transaction reuses a nonce that a block (made elsewhere) then commits for KEYS[1]
    mine = pay(state, KEYS[1], 5)
    pool.admit(mine, state)
    other = sign_transaction(KEYS[1], state.params.chain_id, state.time_ms + 5,
                             [Transfer(KEYS[3].address, USD, 2)])
    result = apply_block(state, make_block(state, state.time_ms + 10, [other]))
    assert pool.update(state, [r.tx_hash for r in result.receipts]) == []      # not a signer of ours, not due
    assert pool.reap(state, state.time_ms + 10) == []                           # but reap never takes it
    assert pool.update(state, [], signers=[KEYS[1].address]) == [hashlib.sha256(mine).digest()]
    # a full pass once the block time has moved far enough
    pool.admit(pay(state, KEYS[2], 7), state)
    stale = sign_transaction(KEYS[2], state.params.chain_id, state.time_ms + 7, [Transfer(KEYS[3].address, USD, 3)])
    apply_block(state, make_block(state, state.time_ms + FULL_RECHECK_MS, [stale]))
    assert len(pool.update(state, [])) == 1 and len(pool) == 0


def test_verified_map_follows_admissions_and_removals() -> None:
    state, pool = make_state(), Mempool()
    wires = [pay(state, KEYS[i], 1 + i) for i in range(3)]
    for wire in wires:
        pool.admit(wire, state)
    assert list(pool.verified()) == wires
    commit(state, pool, state.time_ms + 1000)
    assert pool.verified() == {} and len(pool) == 0 and pool.size_bytes == 0
