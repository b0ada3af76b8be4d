"""Blocks and `apply_block`, the entry point of the state transition function.

`apply_block(state, block)` is a table of contents:

1. `validate_header`, before any signature is checked: chain id, height = previous + 1, time never
   decreasing, previous block hash, the app hash (the state root this block builds on, as in CometBFT's
   header) and the transactions root;
2. `decode_block_transactions` decodes every transaction and checks its signature, except those the caller
   hands over already decoded and verified (`verified`, keyed by the exact wire bytes: a node verifies each
   transaction once, at admission); `validate_transactions` then checks, in execution order, that the signer
   may act for the account (the account itself, or an agent it approved before this block, signing trading
   actions only) and its nonce. The first invalid transaction rejects the whole block with `InvalidBlock` and
   the state is untouched (`validate_block` runs steps 1 and 2 alone);
3. `process_block_time`: expire good-til-time orders and fire dead-man's switches whose time has come;
4. `process_transaction` for each transaction, makers first (see `compute_execution_order`), each action
   atomically, producing one receipt per transaction (receipts are returned in block order);
5. `process_oracles`: fold the block's oracle submissions into each market's stake-weighted median
   (stf/oracle.py);
6. `process_perps`: each perp market's mark price and funding, then the triggers the new marks crossed
   (stf/perp.py);
7. `process_liquidations`: accounts and isolated positions below maintenance margin, through the book, the
   insurance fund's backstop or auto-deleveraging (stf/liquidation.py);
8. `commit_entries`: fold the changed entries into the state root; the block diff is the events plus these
   entries.

The state is mutated in place. Steps 1 and 2 complete before any mutation, and steps 3 to 8 cannot fail on valid
input, so a block applies whole or not at all.
"""

import hashlib
import heapq
from dataclasses import dataclass
from typing import Callable, Mapping

from stf import codec
from stf.accounts import (
    process_approve_agent, process_faucet, process_revoke_agent, process_schedule_cancel, process_transfer,
    process_withdraw,
)
from stf.constants import ADDRESS_LEN, HASH_LEN, MAX_BLOCK_BYTES, MAX_BLOCK_TXS
from stf.errors import InvalidBlock, InvalidTransaction, KabutoError, ResultCode, Unauthorized
from stf.evidence import process_report_evidence
from stf.events import REASON_EXPIRED, REASON_SCHEDULED_CANCEL, ScheduleEvent, encode_event
from stf.governance import process_govern
from stf.liquidation import process_liquidations
from stf.nonces import NO_NONCES, accept_nonce, validate_nonce
from stf.oracle import process_oracle_price, process_oracles
from stf.perp import (
    process_cancel_trigger, process_collateral_transfer, process_isolated_margin, process_perps,
    process_place_trigger, process_set_leverage,
)
from stf.receipts import ActionResult, Receipt
from stf.spot import (
    cancel_all_orders, expire_resting, process_cancel, process_cancel_all, process_cancel_by_client_id,
    process_market_order, process_modify, process_place_order,
)
from stf.state import State, commit_entries, get_account, set_nonces
from stf.tx import (
    AGENT_ACTION_KINDS, TIF_ALO, ApproveAgent, Cancel, CancelAll, CancelByClientId, CancelTrigger,
    CollateralTransfer, Faucet, Govern, IsolatedMargin, MarketOrder, Modify, OraclePrice, PlaceOrder,
    PlaceTrigger, ReportEvidence, RevokeAgent, ScheduleCancel, SetLeverage, Transaction, Transfer, Withdraw,
    decode_transaction, validate_signature,
)

PROCESSORS: dict[type, Callable] = {
    Transfer: process_transfer,
    Withdraw: process_withdraw,
    Faucet: process_faucet,
    ApproveAgent: process_approve_agent,
    RevokeAgent: process_revoke_agent,
    PlaceOrder: process_place_order,
    MarketOrder: process_market_order,
    Cancel: process_cancel,
    CancelByClientId: process_cancel_by_client_id,
    CancelAll: process_cancel_all,
    Modify: process_modify,
    ScheduleCancel: process_schedule_cancel,
    OraclePrice: process_oracle_price,
    CollateralTransfer: process_collateral_transfer,
    SetLeverage: process_set_leverage,
    IsolatedMargin: process_isolated_margin,
    PlaceTrigger: process_place_trigger,
    CancelTrigger: process_cancel_trigger,
    Govern: process_govern,
    ReportEvidence: process_report_evidence,
}
_UNAUTHORIZED = ActionResult(ResultCode.UNAUTHORIZED)


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    time_ms: int
    prev_hash: bytes
    app_hash: bytes
    proposer: bytes
    txs_root: bytes

    def to_wire(self) -> list:
        return [
            self.chain_id.encode(), self.height, self.time_ms, self.prev_hash, self.app_hash, self.proposer,
            self.txs_root,
        ]

    def hash(self) -> bytes:
        return hashlib.sha256(codec.encode(self.to_wire())).digest()


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]

    def to_wire(self) -> bytes:
        return codec.encode([self.header.to_wire(), list(self.txs)])


@dataclass(frozen=True, slots=True)
class BlockResult:
    block_hash: bytes
    receipts: tuple[Receipt, ...]
    events: list
    entries: list[tuple[bytes, bytes | None]]
    state_root: bytes

    def diff_wire(self, height: int) -> bytes:
        """The block diff: what a client at height - 1 needs to reach this height exactly."""
        return codec.encode([
            height, self.block_hash, self.state_root, [encode_event(e) for e in self.events],
            [[k, v] for k, v in self.entries],
        ])


def compute_txs_root(tx_hashes: list[bytes]) -> bytes:
    """Binary Merkle root over transaction hashes: leaf = H(0x00 | hash), node = H(0x01 | left | right), an odd
    node is carried up unchanged; the empty list gives H(0x00)."""
    if not tx_hashes:
        return hashlib.sha256(b"\x00").digest()
    level = [hashlib.sha256(b"\x00" + h).digest() for h in tx_hashes]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def make_block(state: State, time_ms: int, txs: list[bytes], proposer: bytes = bytes(ADDRESS_LEN)) -> Block:
    """The next block on top of `state` carrying `txs` (proposers and tests)."""
    hashes = [hashlib.sha256(tx).digest() for tx in txs]
    header = BlockHeader(
        state.params.chain_id, state.height + 1, time_ms, state.last_block_hash, state.merkle.root(), proposer,
        compute_txs_root(hashes),
    )
    return Block(header, tuple(txs))


def decode_block(wire: bytes, max_len: int = MAX_BLOCK_BYTES) -> Block:
    """A block from its canonical bytes `[header, [tx, ...]]`; raises InvalidBlock on any malformation."""
    if type(wire) is not bytes:
        raise InvalidBlock("a block is a byte string")
    try:
        raw = codec.decode_canonical(wire, max_len)
    except KabutoError as exc:
        raise InvalidBlock(f"block: {exc}") from None
    if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not list or type(raw[1]) is not list:
        raise InvalidBlock("a block is [header, [tx, ...]]")
    header_raw, txs = raw
    if len(header_raw) != 7:
        raise InvalidBlock("a header has 7 fields")
    chain_id, height, time_ms, prev_hash, app_hash, proposer, txs_root = header_raw
    if type(chain_id) is not bytes or type(height) is not int or type(time_ms) is not int or height < 1 or time_ms < 0:
        raise InvalidBlock("header chain id, height or time malformed")
    for value, length in ((prev_hash, HASH_LEN), (app_hash, HASH_LEN), (proposer, ADDRESS_LEN), (txs_root, HASH_LEN)):
        if type(value) is not bytes or len(value) != length:
            raise InvalidBlock("header hash or address field malformed")
    if len(txs) > MAX_BLOCK_TXS or any(type(tx) is not bytes for tx in txs):
        raise InvalidBlock(f"a block carries at most {MAX_BLOCK_TXS} transactions, each as bytes")
    try:
        chain = chain_id.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidBlock("header chain id is not ASCII") from None
    return Block(BlockHeader(chain, height, time_ms, prev_hash, app_hash, proposer, txs_root), tuple(txs))


def validate_header(state: State, header: BlockHeader, tx_hashes: list[bytes]) -> None:
    if header.chain_id != state.params.chain_id:
        raise InvalidBlock(f"chain id {header.chain_id!r} is not {state.params.chain_id!r}")
    if header.height != state.height + 1:
        raise InvalidBlock(f"height {header.height} does not follow {state.height}")
    if header.time_ms < state.time_ms:
        raise InvalidBlock(f"time {header.time_ms} is before the previous block's {state.time_ms}")
    if header.prev_hash != state.last_block_hash:
        raise InvalidBlock("previous block hash does not match")
    if header.app_hash != state.merkle.root():
        raise InvalidBlock("app hash is not the state root this block builds on")
    if len(header.proposer) != ADDRESS_LEN or len(header.txs_root) != HASH_LEN:
        raise InvalidBlock("malformed proposer or transactions root")
    if len(tx_hashes) > MAX_BLOCK_TXS:
        raise InvalidBlock(f"{len(tx_hashes)} transactions exceeds the limit of {MAX_BLOCK_TXS}")
    if compute_txs_root(tx_hashes) != header.txs_root:
        raise InvalidBlock("transactions root does not match the transactions")


def is_maker_only(tx: Transaction) -> bool:
    """True when every action only cancels or places a post-only order: such transactions run first."""
    for action in tx.actions:
        kind = type(action)
        if kind is PlaceOrder:
            if action.time_in_force != TIF_ALO:
                return False
        elif kind is not Cancel and kind is not CancelByClientId and kind is not CancelAll:
            return False
    return True


def compute_execution_order(txs: list[Transaction]) -> list[Transaction]:
    """Makers first (Hyperliquid's rule, which protects resting liquidity), otherwise block order."""
    makers, takers = [], []
    for tx in txs:
        (makers if is_maker_only(tx) else takers).append(tx)
    return makers + takers


def validate_authority(state: State, tx: Transaction) -> None:
    """The signer is the account, or an agent the account approved before this block that signs only trading
    actions. (An agent revoked earlier in the same block is refused at execution, with UNAUTHORIZED.)"""
    if tx.signer == tx.account:
        return
    account = state.accounts.get(tx.account)
    if account is None or tx.signer not in account.agents:
        raise Unauthorized("the signer is not the account nor one of its approved agents")
    for action in tx.actions:
        if action.KIND not in AGENT_ACTION_KINDS:
            raise Unauthorized(f"an agent may not sign action type {action.KIND}")


def validate_transactions(state: State, header: BlockHeader, txs: list[Transaction]) -> dict[bytes, list[int]]:
    """Check authority and nonces in execution order; returns the new kept-nonce lists per signer."""
    kept_by_signer: dict[bytes, list[int]] = {}
    params, nonces, time_ms = state.params, state.nonces, header.time_ms
    for tx in txs:
        committed = nonces.get(tx.signer, NO_NONCES)
        try:
            validate_authority(state, tx)
            validate_nonce(params, time_ms, kept_by_signer.get(tx.signer, committed), tx.nonce)
        except InvalidTransaction as exc:
            raise InvalidBlock(f"transaction {tx.hash.hex()}: {exc.code}: {exc}") from exc
        accept_nonce(params, kept_by_signer, committed, tx.signer, tx.nonce)
    return kept_by_signer


def process_block_time(state: State, events: list) -> None:
    """Expire good-til-time orders, then fire dead-man's switches, both in (time, id) order."""
    now = state.time_ms
    expiry_heap = state.expiry_heap
    while expiry_heap and expiry_heap[0][0] <= now:
        expires_at_ms, order_id = heapq.heappop(expiry_heap)
        order = state.orders.get(order_id)
        if order is not None and order.expires_at_ms == expires_at_ms:
            expire_resting(state, events, state.markets[order.market_id], order, REASON_EXPIRED)
    schedule_heap = state.schedule_heap
    while schedule_heap and schedule_heap[0][0] <= now:
        at_ms, address = heapq.heappop(schedule_heap)
        account = state.accounts.get(address)
        if account is not None and account.cancel_all_at_ms == at_ms:
            cancel_all_orders(state, events, account, None, REASON_SCHEDULED_CANCEL)
            account.cancel_all_at_ms = 0
            state.dirty_accounts[address] = None
            events.append(ScheduleEvent(address, at_ms, True))


def process_transaction(state: State, events: list, tx: Transaction) -> Receipt:
    account = get_account(state, tx.account)
    if tx.signer != tx.account and tx.signer not in account.agents:
        return Receipt(tx.hash, tuple(_UNAUTHORIZED for _ in tx.actions))
    return Receipt(tx.hash, tuple(PROCESSORS[type(action)](state, events, account, action) for action in tx.actions))


def compute_tx_hashes(block: Block, verified: Mapping[bytes, Transaction]) -> list[bytes]:
    hashes = []
    for index, wire in enumerate(block.txs):
        if type(wire) is not bytes:
            raise InvalidBlock(f"transaction {index} is not a byte string")
        tx = verified.get(wire)
        hashes.append(tx.hash if tx is not None else hashlib.sha256(wire).digest())
    return hashes


def decode_block_transactions(
    chain_id: str, block: Block, verified: Mapping[bytes, Transaction],
) -> list[Transaction]:
    """Decode and signature-check each transaction, unless `verified` already holds it for these exact bytes."""
    txs = []
    for index, wire in enumerate(block.txs):
        tx = verified.get(wire)
        if tx is None:
            try:
                tx = decode_transaction(wire)
                validate_signature(tx, chain_id)
            except InvalidTransaction as exc:
                raise InvalidBlock(
                    f"transaction {index} ({hashlib.sha256(wire).hexdigest()}): {exc.code}: {exc}") from exc
        txs.append(tx)
    return txs


@dataclass(frozen=True, slots=True)
class CheckedBlock:
    """What `check_block` found for `block` on top of the state at (`height`, `parent_hash`): its transactions in
    block order and in execution order, and each signer's new kept nonces. `apply_block` reuses it instead of
    checking again when it is handed the same block on a state still at that height and hash."""
    block: Block
    height: int
    parent_hash: bytes
    txs: list[Transaction]
    ordered: list[Transaction]
    kept_by_signer: dict[bytes, list[int]]


def check_block(state: State, block: Block, verified: Mapping[bytes, Transaction]) -> CheckedBlock:
    """Steps 1 and 2, which never mutate: the header, every transaction's bytes and signature, then authority and
    nonces in execution order."""
    header = block.header
    # The header first: it is cheap, and a block with a bad header must not cost a signature check per tx.
    validate_header(state, header, compute_tx_hashes(block, verified))
    txs = decode_block_transactions(state.params.chain_id, block, verified)
    ordered = compute_execution_order(txs)
    kept_by_signer = validate_transactions(state, header, ordered)
    return CheckedBlock(block, state.height, state.last_block_hash, txs, ordered, kept_by_signer)


def validate_block(
    state: State, block: Block, verified: Mapping[bytes, Transaction] | None = None,
) -> CheckedBlock:
    """Raise InvalidBlock unless `apply_block(state, block)` would succeed; never changes the state.

    Consensus uses it to judge a proposal before voting: a block that passes always applies, because every
    check of `apply_block` happens before its first mutation. The result may be handed to `apply_block`.
    """
    return check_block(state, block, verified or {})


def apply_block(
    state: State, block: Block, verified: Mapping[bytes, Transaction] | None = None,
    checked: CheckedBlock | None = None,
) -> BlockResult:
    """Apply `block` to `state` in place.

    `verified` maps wire bytes to the Transaction the caller already decoded and signature-checked from exactly
    those bytes (the node's mempool does this once per transaction); anything else is decoded and checked here.
    `checked`, from `validate_block` on this same state (unchanged since), skips the checks; one made for
    another block or at another height or parent is ignored and the block is checked again.
    """
    header = block.header
    if checked is None or checked.block is not block or (checked.height, checked.parent_hash) != (
            state.height, state.last_block_hash):
        checked = check_block(state, block, verified or {})
    txs, ordered, kept_by_signer = checked.txs, checked.ordered, checked.kept_by_signer

    events: list = []
    state.block_start_seq = state.next_seq
    state.height = header.height
    state.time_ms = header.time_ms
    state.dirty_global = True
    for signer, kept in kept_by_signer.items():
        set_nonces(state, signer, kept)
    process_block_time(state, events)
    by_hash = {tx.hash: process_transaction(state, events, tx) for tx in ordered}
    receipts = tuple(by_hash[tx.hash] for tx in txs)
    process_oracles(state)
    process_perps(state, events)
    process_liquidations(state, events)
    block_hash = header.hash()
    state.last_block_hash = block_hash
    entries, root = commit_entries(state)
    return BlockResult(block_hash, receipts, events, entries, root)
