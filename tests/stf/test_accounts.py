"""Spec vectors for account actions (stf/accounts.py) and authorization (stf/block.py process_transaction).

Each test gives the pre-state (a funded `Chain`), the input (one transaction in its own block) and the exact
post-state: balances, holds, receipts' result codes, events. A failed action must leave no trace: the block's
changed entries are then only the signer's nonces and the global entry, and the account entries are unchanged.
"""

import pytest

from stf.events import (
    REASON_SCHEDULED_CANCEL, AgentEvent, FaucetEvent, OrderDone, ScheduleEvent, TransferEvent, WithdrawalEvent,
)
from genesis import localnet_genesis, validate_genesis
from stf.block import apply_block, make_block
from stf.errors import InvalidBlock, ResultCode as R, Unauthorized
from stf.state import KEY_GLOBAL, KEY_NONCES, encode_account, export_entries, initialize_state
from stf.tx import (
    TIF_ALO, TIF_GTC, ApproveAgent, Cancel, CancelAll, CancelByClientId, Faucet, MarketOrder, Modify, PlaceOrder,
    RevokeAgent, ScheduleCancel, Transfer, Withdraw, decode_transaction, sign_transaction,
)
from stf.units import U64_MAX
from stf_helpers import BTC, BTC_USD, ETH, ETH_USD, FUNDED_BTC, FUNDED_ETH, FUNDED_USD, USD, Chain, make_key

UNKNOWN_ASSET_ID = 3
NEW_ADDRESS = bytes.fromhex("ab" * 20)
LOT_BTC = 1_000     # base atoms per lot of BTC-USD (genesis preset)


def codes(result) -> list[int]:
    return [res.code for receipt in result.receipts for res in receipt.results]


def account_entry(c: Chain, key_or_address):
    address = getattr(key_or_address, "address", key_or_address)
    account = c.state.accounts.get(address)
    return None if account is None else encode_account(account)


def assert_no_trace(c: Chain, result, before: dict) -> None:
    """Only nonce and global entries changed, no event, and the given account entries are byte-identical."""
    changed = [key for key, _ in result.entries]
    assert all(key == KEY_GLOBAL or key[:1] == KEY_NONCES for key in changed), changed
    assert result.events == []
    for who, encoded in before.items():
        assert account_entry(c, who) == encoded


def entries_of(c: Chain, *who) -> dict:
    return {w: account_entry(c, w) for w in who}


def sell_btc(size_lots: int, price: int = 1_000_000, client_id=None, tif: int = TIF_GTC) -> PlaceOrder:
    return PlaceOrder(BTC_USD, False, price, size_lots, tif, client_id, 0, False)


def buy_btc(size_lots: int, price: int = 1_000_000, client_id=None, tif: int = TIF_GTC) -> PlaceOrder:
    return PlaceOrder(BTC_USD, True, price, size_lots, tif, client_id, 0, False)


# --- transfer ----------------------------------------------------------------------------------------------------

def test_transfer_moves_exact_amount_and_emits_event():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    r = c.run(a, Transfer(b.address, USD, 123_456_789))
    assert codes(r) == [R.OK]
    assert c.balance(a, USD) == FUNDED_USD - 123_456_789
    assert c.balance(b, USD) == FUNDED_USD + 123_456_789
    assert c.balance(a, BTC) == FUNDED_BTC and c.balance(b, BTC) == FUNDED_BTC
    assert r.events == [TransferEvent(a.address, b.address, USD, 123_456_789)]


def test_transfer_whole_balance_removes_the_asset():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    r = c.run(a, Transfer(b.address, ETH, FUNDED_ETH))
    assert codes(r) == [R.OK]
    assert ETH not in c.state.accounts[a.address].balances
    assert c.balance(b, ETH) == 2 * FUNDED_ETH


def test_transfer_to_a_new_address_creates_the_account():
    c = Chain()
    assert NEW_ADDRESS not in c.state.accounts
    r = c.run(c.keys[0], Transfer(NEW_ADDRESS, BTC, 5))
    assert codes(r) == [R.OK]
    assert c.state.accounts[NEW_ADDRESS].balances == {BTC: 5}
    assert (b"a" + NEW_ADDRESS, encode_account(c.state.accounts[NEW_ADDRESS])) in r.entries


def test_transfer_several_actions_in_one_tx_apply_in_order():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    r = c.run(a, Transfer(b.address, USD, FUNDED_USD), Transfer(b.address, USD, 1), Transfer(b.address, BTC, 1))
    assert codes(r) == [R.OK, R.INSUFFICIENT_BALANCE, R.OK]
    assert c.balance(a, USD) == 0 and c.balance(b, USD) == 2 * FUNDED_USD
    assert c.balance(a, BTC) == FUNDED_BTC - 1


def test_invalid_transfer_unknown_asset():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    before = entries_of(c, a, b)
    r = c.run(a, Transfer(b.address, UNKNOWN_ASSET_ID, 1))
    assert codes(r) == [R.UNKNOWN_ASSET]
    assert_no_trace(c, r, before)


def test_invalid_transfer_to_self():
    c = Chain()
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Transfer(a.address, USD, 1))
    assert codes(r) == [R.SELF_TRANSFER]
    assert_no_trace(c, r, before)


def test_invalid_transfer_insufficient_balance():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    before = entries_of(c, a, b)
    r = c.run(a, Transfer(b.address, USD, FUNDED_USD + 1))
    assert codes(r) == [R.INSUFFICIENT_BALANCE]
    assert_no_trace(c, r, before)


def test_invalid_transfer_to_new_address_insufficient_creates_nothing():
    c = Chain()
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Transfer(NEW_ADDRESS, USD, FUNDED_USD + 1))
    assert codes(r) == [R.INSUFFICIENT_BALANCE]
    assert_no_trace(c, r, before)
    assert account_entry(c, NEW_ADDRESS) is None


def test_invalid_transfer_of_funds_held_by_an_open_order():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    r = c.run(a, sell_btc(999_999))
    assert codes(r) == [R.OK]
    assert c.held(a, BTC) == 999_999 * LOT_BTC
    before = entries_of(c, a, b)
    r = c.run(a, Transfer(b.address, BTC, LOT_BTC + 1))
    assert codes(r) == [R.INSUFFICIENT_BALANCE]
    assert_no_trace(c, r, before)
    r = c.run(a, Transfer(b.address, BTC, LOT_BTC))
    assert codes(r) == [R.OK]
    assert c.balance(a, BTC) == c.held(a, BTC) == 999_999 * LOT_BTC


def test_faucet_never_overflows_a_balance():
    """Balances are u64 in state entries: a mint that would push the asset's supply past 2^64-1 fails cleanly."""
    c = Chain(faucet=True, faucet_max_atoms=U64_MAX)
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Faucet(USD, U64_MAX))
    assert codes(r) == [R.INVALID_AMOUNT]
    assert_no_trace(c, r, before)


def test_faucet_supply_boundary_is_exactly_u64_max():
    c = Chain(faucet=True, faucet_max_atoms=U64_MAX)
    a = c.keys[0]
    assert c.state.supply[USD] == 4 * FUNDED_USD
    r = c.run(a, Faucet(USD, U64_MAX - 4 * FUNDED_USD))
    assert codes(r) == [R.OK]
    assert c.state.supply[USD] == U64_MAX
    assert c.balance(a, USD) == U64_MAX - 3 * FUNDED_USD
    before = entries_of(c, a)
    r = c.run(a, Faucet(USD, 1))
    assert codes(r) == [R.INVALID_AMOUNT]
    assert_no_trace(c, r, before)
    r = c.run(a, Withdraw(USD, 10, b"x"), Faucet(USD, 10))    # a withdrawal burns supply, making room again
    assert codes(r) == [R.OK, R.OK]
    assert c.state.supply[USD] == U64_MAX


def test_faucet_of_an_asset_with_no_genesis_balance():
    genesis = validate_genesis(localnet_genesis())
    state = initialize_state(genesis)
    key = make_key(1)
    tx = sign_transaction(key, genesis.params.chain_id, genesis.genesis_time_ms + 1, [Faucet(USD, 5)])
    r = apply_block(state, make_block(state, genesis.genesis_time_ms + 1000, [tx]))
    assert codes(r) == [R.OK]
    assert state.accounts[key.address].balances == {USD: 5}
    assert state.supply[USD] == 5


# --- withdraw ----------------------------------------------------------------------------------------------------

def test_withdraw_debits_and_emits_event():
    c = Chain()
    a = c.keys[0]
    r = c.run(a, Withdraw(BTC, 12_345, b"bc1q-destination"))
    assert codes(r) == [R.OK]
    assert c.balance(a, BTC) == FUNDED_BTC - 12_345
    assert c.state.supply[BTC] == 4 * FUNDED_BTC - 12_345
    assert r.events == [WithdrawalEvent(a.address, BTC, 12_345, b"bc1q-destination")]


def test_withdraw_whole_available_balance():
    c = Chain()
    a = c.keys[0]
    r = c.run(a, Withdraw(USD, FUNDED_USD, b"x"))
    assert codes(r) == [R.OK]
    assert c.balance(a, USD) == 0


def test_invalid_withdraw_unknown_asset():
    c = Chain()
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Withdraw(UNKNOWN_ASSET_ID, 1, b"x"))
    assert codes(r) == [R.UNKNOWN_ASSET]
    assert_no_trace(c, r, before)


def test_invalid_withdraw_insufficient_balance():
    c = Chain()
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Withdraw(USD, FUNDED_USD + 1, b"x"))
    assert codes(r) == [R.INSUFFICIENT_BALANCE]
    assert_no_trace(c, r, before)


def test_invalid_withdraw_of_held_funds():
    c = Chain()
    a = c.keys[0]
    c.run(a, sell_btc(1_000_000))
    assert c.held(a, BTC) == FUNDED_BTC
    before = entries_of(c, a)
    r = c.run(a, Withdraw(BTC, 1, b"x"))
    assert codes(r) == [R.INSUFFICIENT_BALANCE]
    assert_no_trace(c, r, before)


# --- faucet ------------------------------------------------------------------------------------------------------

def test_faucet_credits_when_enabled():
    c = Chain(faucet=True)
    a = c.keys[0]
    r = c.run(a, Faucet(ETH, 10**15))
    assert codes(r) == [R.OK]
    assert c.balance(a, ETH) == FUNDED_ETH + 10**15
    assert c.state.supply[ETH] == 4 * FUNDED_ETH + 10**15
    assert r.events == [FaucetEvent(a.address, ETH, 10**15)]


def test_faucet_creates_a_new_account():
    c = Chain(faucet=True)
    stranger = make_key(300)
    r = c.run(stranger, Faucet(USD, 7))
    assert codes(r) == [R.OK]
    assert c.state.accounts[stranger.address].balances == {USD: 7}


def test_invalid_faucet_disabled():
    c = Chain()
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Faucet(USD, 1))
    assert codes(r) == [R.FAUCET_DISABLED]
    assert_no_trace(c, r, before)


def test_invalid_faucet_amount_above_max():
    c = Chain(faucet=True)
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Faucet(USD, 10**15 + 1))
    assert codes(r) == [R.INVALID_AMOUNT]
    assert_no_trace(c, r, before)


def test_invalid_faucet_unknown_asset():
    c = Chain(faucet=True)
    a = c.keys[0]
    before = entries_of(c, a)
    r = c.run(a, Faucet(UNKNOWN_ASSET_ID, 1))
    assert codes(r) == [R.UNKNOWN_ASSET]
    assert_no_trace(c, r, before)


# --- agents ------------------------------------------------------------------------------------------------------

def approved_chain(**params):
    c = Chain(**params)
    owner, agent = c.keys[0], make_key(100)
    r = c.run(owner, ApproveAgent(agent.address))
    assert codes(r) == [R.OK]
    assert r.events == [AgentEvent(owner.address, agent.address, True)]
    assert list(c.state.accounts[owner.address].agents) == [agent.address]
    return c, owner, agent


def test_approve_and_revoke_agent():
    c, owner, agent = approved_chain()
    r = c.run(owner, RevokeAgent(agent.address))
    assert codes(r) == [R.OK]
    assert r.events == [AgentEvent(owner.address, agent.address, False)]
    assert c.state.accounts[owner.address].agents == {}


def test_invalid_approve_self_as_agent():
    c = Chain()
    owner = c.keys[0]
    before = entries_of(c, owner)
    r = c.run(owner, ApproveAgent(owner.address))
    assert codes(r) == [R.INVALID_AGENT]
    assert_no_trace(c, r, before)


def test_invalid_revoke_unknown_agent():
    c = Chain()
    owner = c.keys[0]
    before = entries_of(c, owner)
    r = c.run(owner, RevokeAgent(make_key(100).address))
    assert codes(r) == [R.INVALID_AGENT]
    assert_no_trace(c, r, before)


def test_invalid_agent_limit():
    c = Chain(max_agents_per_account=2)
    owner = c.keys[0]
    r = c.run(owner, ApproveAgent(make_key(100).address), ApproveAgent(make_key(101).address))
    assert codes(r) == [R.OK, R.OK]
    before = entries_of(c, owner)
    r = c.run(owner, ApproveAgent(make_key(102).address))
    assert codes(r) == [R.AGENT_LIMIT]
    assert_no_trace(c, r, before)
    r = c.run(owner, ApproveAgent(make_key(101).address))   # re-approving an existing agent is not a new one
    assert codes(r) == [R.OK]
    assert len(c.state.accounts[owner.address].agents) == 2


def test_invalid_agent_limit_zero_allows_no_agent():
    c = Chain(max_agents_per_account=0)
    owner = c.keys[0]
    before = entries_of(c, owner)
    r = c.run(owner, ApproveAgent(make_key(100).address))
    assert codes(r) == [R.AGENT_LIMIT]
    assert_no_trace(c, r, before)


def test_approved_agent_places_and_cancels_orders_for_the_account():
    c, owner, agent = approved_chain()
    r = c.run(agent, buy_btc(10, client_id=7), account=owner.address)
    assert codes(r) == [R.OK]
    order_id = r.receipts[0].results[0].order_id
    order = c.state.orders[order_id]
    assert order.owner == owner.address
    assert c.held(owner, USD) == 10 * 1_000_000
    assert agent.address not in c.state.accounts or c.held(agent, USD) == 0
    r = c.run(agent, Cancel(BTC_USD, order_id), account=owner.address)
    assert codes(r) == [R.OK]
    assert order_id not in c.state.orders and c.held(owner, USD) == 0
    r = c.run(agent, buy_btc(1, client_id=8), CancelByClientId(BTC_USD, 8), account=owner.address)
    assert codes(r) == [R.OK, R.OK]
    r = c.run(agent, sell_btc(1, price=2_000_000), CancelAll(None), ScheduleCancel(c.time_ms + 10_000),
              ScheduleCancel(None), account=owner.address)
    assert codes(r) == [R.OK, R.OK, R.OK, R.OK]
    assert c.state.accounts[owner.address].orders == {}


def test_agent_can_modify_and_market_order():
    c, owner, agent = approved_chain()
    maker = c.keys[1]
    c.run(maker, sell_btc(5))
    r = c.run(agent, buy_btc(1, price=900_000), account=owner.address)
    order_id = r.receipts[0].results[0].order_id
    r = c.run(agent, Modify(BTC_USD, order_id, 900_000, 1), MarketOrder(BTC_USD, True, 2, 1_000_000, None, False),
              account=owner.address)
    assert codes(r) == [R.OK, R.OK]
    assert r.receipts[0].results[1].filled_lots == 2
    assert c.balance(owner, BTC) == FUNDED_BTC + 2 * LOT_BTC


def assert_unauthorized_rejection(c: Chain, *txs: bytes) -> None:
    """Authority is a tier-1 rule (stf/block.py validate_authority): the block is rejected whole, nothing changes."""
    before = (c.state.merkle.root(), c.state.height, export_entries(c.state))
    with pytest.raises(InvalidBlock) as info:
        c.block(*txs)
    assert type(info.value.__cause__) is Unauthorized
    assert info.value.__cause__.code == "unauthorized"
    assert (c.state.merkle.root(), c.state.height, export_entries(c.state)) == before


FUND_OR_KEY_ACTIONS = [
    Transfer(bytes(20), USD, 1), Withdraw(USD, 1, b"x"), Faucet(USD, 1), ApproveAgent(make_key(101).address),
    RevokeAgent(make_key(100).address),
]


@pytest.mark.parametrize("action", FUND_OR_KEY_ACTIONS, ids=lambda a: type(a).__name__)
def test_invalid_agent_fund_or_key_action_unauthorized(action):
    c, owner, agent = approved_chain(faucet=True)
    assert_unauthorized_rejection(c, c.tx(agent, action, account=owner.address))
    assert list(c.state.accounts[owner.address].agents) == [agent.address]


def test_invalid_agent_tx_mixing_trade_and_transfer_is_rejected_whole():
    c, owner, agent = approved_chain()
    assert_unauthorized_rejection(c, c.tx(agent, buy_btc(1), Transfer(agent.address, USD, 1), account=owner.address))
    assert c.state.accounts[owner.address].orders == {}


def test_invalid_unauthorized_tx_rejects_the_valid_txs_of_its_block():
    c, owner, agent = approved_chain()
    valid = c.tx(c.keys[1], Transfer(c.keys[2].address, USD, 1))
    assert_unauthorized_rejection(c, valid, c.tx(agent, Withdraw(USD, 1, b"x"), account=owner.address))


ALL_ACTIONS = [
    Transfer(bytes(20), USD, 1), Withdraw(USD, 1, b"x"), Faucet(USD, 1), ApproveAgent(bytes(20)),
    RevokeAgent(bytes(20)), buy_btc(1), MarketOrder(BTC_USD, True, 1, 1_000_000, None, False), Cancel(BTC_USD, 1),
    CancelByClientId(BTC_USD, 1), CancelAll(None), Modify(BTC_USD, 1, 1_000_000, 1), ScheduleCancel(None),
    PlaceOrder(BTC_USD, True, 1_000, 1, TIF_ALO, None, 0, False),
]


@pytest.mark.parametrize("action", ALL_ACTIONS, ids=lambda a: type(a).__name__)
def test_invalid_non_approved_key_unauthorized_for_every_action(action):
    c = Chain(faucet=True)
    owner, stranger = c.keys[0], c.keys[1]
    c.run(owner, sell_btc(3))     # order id 1 exists, so Cancel/Modify would otherwise succeed
    assert_unauthorized_rejection(c, c.tx(stranger, action, account=owner.address))
    assert 1 in c.state.orders


def test_invalid_acting_for_a_nonexistent_account():
    c = Chain()
    stranger = c.keys[1]
    assert_unauthorized_rejection(c, c.tx(stranger, buy_btc(1), account=NEW_ADDRESS))
    assert NEW_ADDRESS not in c.state.accounts


def test_invalid_revoked_agent_is_refused_again():
    c, owner, agent = approved_chain()
    c.run(owner, RevokeAgent(agent.address))
    assert_unauthorized_rejection(c, c.tx(agent, buy_btc(1), account=owner.address))


def test_invalid_agent_approved_in_the_same_block_is_not_yet_an_agent():
    c = Chain()
    owner, agent = c.keys[0], make_key(100)
    assert_unauthorized_rejection(
        c, c.tx(owner, ApproveAgent(agent.address)), c.tx(agent, buy_btc(1), account=owner.address),
    )


def test_agent_revoked_earlier_in_the_same_block_gets_unauthorized_at_execution():
    c, owner, agent = approved_chain()
    before = entries_of(c, owner)
    revoke = c.tx(owner, RevokeAgent(agent.address))
    trade = c.tx(agent, buy_btc(1), ScheduleCancel(None), account=owner.address)   # not maker-only: runs after
    r = c.block(revoke, trade)
    assert [[res.code for res in rc.results] for rc in r.receipts] == [[R.OK], [R.UNAUTHORIZED, R.UNAUTHORIZED]]
    assert r.events == [AgentEvent(owner.address, agent.address, False)]
    assert c.state.accounts[owner.address].orders == {}
    assert c.state.nonces[agent.address] == [decode_transaction(trade).nonce]   # still consumed by inclusion
    assert before[owner] != account_entry(c, owner) and c.state.accounts[owner.address].agents == {}


def test_agent_maker_only_tx_runs_before_a_revoke_in_the_same_block():
    c, owner, agent = approved_chain()
    revoke = c.tx(owner, RevokeAgent(agent.address))
    quote = c.tx(agent, PlaceOrder(BTC_USD, True, 1_000, 1, TIF_ALO, None, 0, False), account=owner.address)
    r = c.block(revoke, quote)
    assert [rc.results[0].code for rc in r.receipts] == [R.OK, R.OK]
    assert len(c.state.accounts[owner.address].orders) == 1


def test_invalid_agent_approval_is_per_account():
    c, owner, agent = approved_chain()
    assert_unauthorized_rejection(c, c.tx(agent, buy_btc(1), account=c.keys[1].address))


# --- schedule cancel (dead-man's switch) ------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0, -1, -1_000_000])
def test_invalid_schedule_not_in_the_future(offset):
    c = Chain()
    a = c.keys[0]
    before = entries_of(c, a)
    block_time = c.time_ms + 1000
    r = c.run(a, ScheduleCancel(block_time + offset))
    assert codes(r) == [R.INVALID_SCHEDULE]
    assert_no_trace(c, r, before)
    assert c.state.accounts[a.address].cancel_all_at_ms == 0


def test_schedule_set_then_cleared():
    c = Chain()
    a = c.keys[0]
    before = account_entry(c, a)
    at = c.time_ms + 1000 + 5000
    r = c.run(a, ScheduleCancel(at))
    assert codes(r) == [R.OK]
    assert r.events == [ScheduleEvent(a.address, at, False)]
    assert c.state.accounts[a.address].cancel_all_at_ms == at
    assert account_entry(c, a) != before
    r = c.run(a, ScheduleCancel(None))
    assert codes(r) == [R.OK]
    assert r.events == [ScheduleEvent(a.address, 0, False)]
    assert c.state.accounts[a.address].cancel_all_at_ms == 0
    assert account_entry(c, a) == before
    # the cleared schedule never fires
    r = c.block(advance_ms=10_000)
    assert r.events == []


def test_schedule_fires_at_its_time_and_releases_holds_exactly():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    r = c.run(a, sell_btc(10, price=1_000_000), buy_btc(4, price=900_000), PlaceOrder(ETH_USD, True, 500, 3, TIF_ALO, 9, 0, False))
    ids = [res.order_id for res in r.receipts[0].results]
    c.run(b, buy_btc(6, price=1_000_000, tif=1))               # fills 6 of the 10-lot sell
    b_order = c.run(b, sell_btc(2, price=3_000_000)).receipts[0].results[0].order_id
    assert c.state.orders[ids[0]].size_lots == 4
    assert c.held(a, BTC) == 4 * LOT_BTC
    assert c.held(a, USD) == 4 * 900_000 + 3 * (500 + 1)   # ETH-USD maker fee bound: ceil(500*2/10000) = 1 per lot
    balances = {asset: c.balance(a, asset) for asset in (USD, BTC, ETH)}
    t = c.time_ms
    c.run(a, ScheduleCancel(t + 1500))
    r = c.block(advance_ms=499)                                 # t + 1499: not yet
    assert r.events == [] and len(c.state.accounts[a.address].orders) == 3
    r = c.block(advance_ms=1)                                   # t + 1500: fires
    assert r.events == [
        OrderDone(ids[0], BTC_USD, a.address, REASON_SCHEDULED_CANCEL, 4),
        OrderDone(ids[1], BTC_USD, a.address, REASON_SCHEDULED_CANCEL, 4),
        OrderDone(ids[2], ETH_USD, a.address, REASON_SCHEDULED_CANCEL, 3),
        ScheduleEvent(a.address, t + 1500, True),
    ]
    account = c.state.accounts[a.address]
    assert account.orders == {} and account.holds == {} and account.cancel_all_at_ms == 0
    assert {asset: c.balance(a, asset) for asset in (USD, BTC, ETH)} == balances
    assert b_order in c.state.orders                            # other accounts' orders untouched
    r = c.block(advance_ms=10_000)
    assert r.events == []


def test_schedule_fires_before_the_blocks_transactions():
    c = Chain()
    a, b = c.keys[0], c.keys[1]
    order_id = c.run(a, sell_btc(5)).receipts[0].results[0].order_id
    c.run(a, ScheduleCancel(c.time_ms + 1500))
    r = c.block(c.tx(b, buy_btc(5, tif=1)), advance_ms=1000)   # block time > at_ms
    assert r.receipts[0].results[0].filled_lots == 0
    assert r.events[0] == OrderDone(order_id, BTC_USD, a.address, REASON_SCHEDULED_CANCEL, 5)


def test_schedule_replaced_fires_only_at_the_new_time():
    c = Chain()
    a = c.keys[0]
    c.run(a, sell_btc(5))
    t = c.time_ms
    c.run(a, ScheduleCancel(t + 2500))                           # block at t + 1000
    c.run(a, ScheduleCancel(t + 6000))                           # block at t + 2000
    r = c.block(advance_ms=1000)                                 # t + 3000: the old time has passed
    assert r.events == []
    r = c.block(advance_ms=2999)                                 # t + 5999
    assert r.events == []
    r = c.block(advance_ms=1)                                    # t + 6000
    assert [type(e) for e in r.events] == [OrderDone, ScheduleEvent]
