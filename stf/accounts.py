"""Account actions: transfer, withdraw, faucet, agent keys and the dead-man's switch.

Only the account's own key may move funds or manage agents; an approved agent may trade (stf/tx.py,
AGENT_ACTION_KINDS). Withdrawals debit the available (unheld) balance and emit a `WithdrawalEvent` that the
bridge side acts on; the faucet exists only when genesis enables it, and mints at most `faucet_max_atoms` per
action. Each asset's total supply stays within 2^64-1 (genesis checks it; a mint past it fails with
INVALID_AMOUNT), so no balance can outgrow the encoding.
"""

import heapq

from stf.errors import ResultCode
from stf.events import AgentEvent, FaucetEvent, ScheduleEvent, TransferEvent, WithdrawalEvent
from stf.receipts import ActionResult
from stf.state import Account, State, burn, credit, debit, get_account, mint
from stf.tx import ApproveAgent, Faucet, RevokeAgent, ScheduleCancel, Transfer, Withdraw
from stf.units import U64_MAX

R = ResultCode


def process_transfer(state: State, events: list, account: Account, action: Transfer) -> ActionResult:
    if action.asset not in state.assets:
        return ActionResult(R.UNKNOWN_ASSET)
    if action.to == account.address:
        return ActionResult(R.SELF_TRANSFER)
    if account.get_available(action.asset) < action.amount:
        return ActionResult(R.INSUFFICIENT_BALANCE)
    debit(state, account, action.asset, action.amount)
    credit(state, get_account(state, action.to), action.asset, action.amount)
    events.append(TransferEvent(account.address, action.to, action.asset, action.amount))
    return ActionResult(R.OK)


def process_withdraw(state: State, events: list, account: Account, action: Withdraw) -> ActionResult:
    if action.asset not in state.assets:
        return ActionResult(R.UNKNOWN_ASSET)
    if account.get_available(action.asset) < action.amount:
        return ActionResult(R.INSUFFICIENT_BALANCE)
    burn(state, account, action.asset, action.amount)
    events.append(WithdrawalEvent(account.address, action.asset, action.amount, action.destination))
    return ActionResult(R.OK)


def process_faucet(state: State, events: list, account: Account, action: Faucet) -> ActionResult:
    if not state.params.faucet_enabled:
        return ActionResult(R.FAUCET_DISABLED)
    if action.asset not in state.assets:
        return ActionResult(R.UNKNOWN_ASSET)
    if action.amount > state.params.faucet_max_atoms or state.supply[action.asset] + action.amount > U64_MAX:
        return ActionResult(R.INVALID_AMOUNT)
    mint(state, account, action.asset, action.amount)
    events.append(FaucetEvent(account.address, action.asset, action.amount))
    return ActionResult(R.OK)


def process_approve_agent(state: State, events: list, account: Account, action: ApproveAgent) -> ActionResult:
    if action.agent == account.address:
        return ActionResult(R.INVALID_AGENT)
    if action.agent not in account.agents and len(account.agents) >= state.params.max_agents_per_account:
        return ActionResult(R.AGENT_LIMIT)
    account.agents[action.agent] = None
    state.dirty_accounts[account.address] = None
    events.append(AgentEvent(account.address, action.agent, True))
    return ActionResult(R.OK)


def process_revoke_agent(state: State, events: list, account: Account, action: RevokeAgent) -> ActionResult:
    if action.agent not in account.agents:
        return ActionResult(R.INVALID_AGENT)
    del account.agents[action.agent]
    state.dirty_accounts[account.address] = None
    events.append(AgentEvent(account.address, action.agent, False))
    return ActionResult(R.OK)


def process_schedule_cancel(state: State, events: list, account: Account, action: ScheduleCancel) -> ActionResult:
    at_ms = action.at_ms or 0
    if at_ms and at_ms <= state.time_ms:
        return ActionResult(R.INVALID_SCHEDULE)
    account.cancel_all_at_ms = at_ms
    state.dirty_accounts[account.address] = None
    if at_ms:
        heapq.heappush(state.schedule_heap, (at_ms, account.address))
    events.append(ScheduleEvent(account.address, at_ms, False))
    return ActionResult(R.OK)
