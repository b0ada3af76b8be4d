"""The one state container of the exchange, its named mutators, and its canonical entries.

The state is changed only through the mutators in this module (`credit`, `debit`, `hold`, `release`,
`add_order`, `remove_order`, `resize_order`, `record_evidence`, ...). Each mutator marks the entry it touched as
dirty; at the end of a block `commit_entries` encodes every dirty entry once, updates the state root and returns
the changed entries (the state half of the block diff). So the cost of the root is proportional to what changed.

Canonical entries (docs/PROTOCOL.md §State): every piece of state is one (key, value) pair with a canonical
msgpack value; the state root commits to all of them; a block diff is the list of changed pairs, and
`apply_entries` installs such a list, rebuilding the derived indexes (books, per-account order maps, expiry
heaps) so that a client holding the state at height h-1 reaches the state at height h exactly.

Atomicity: every `process_*` action validates everything before its first mutation, so a failed action has
nothing to undo; `apply_block` validates every transaction before executing any, so an invalid block leaves the
state untouched. Derived indexes are iterated only in sorted order, never in dict or set order, so behaviour does
not depend on how the state was built (executed or installed from a diff or a snapshot).
"""

import heapq

from stf import codec
from stf.book import Book, Order
from stf.margin import compute_order_margin
from stf.merkle import MerkleMap
from stf.proof import Proof
from stf.params import AssetParams, ChainParams, GenesisConfig, PerpMarketParams, SpotMarketParams
from stf.perp_math import compute_maintenance_deductions_scaled, compute_maintenance_rates_scaled, compute_margin_scale
from stf.units import Atoms, SizeLots, TimeMs

KEY_ACCOUNT = b"a"
KEY_ORDER = b"o"
KEY_MARKET = b"m"
KEY_NONCES = b"n"
KEY_GLOBAL = b"g"
KEY_ASSET = b"s"
KEY_VALIDATORS = b"v"
KEY_PROPOSALS = b"p"
KEY_TRIGGER = b"t"
KEY_EVIDENCE = b"e"


class Position:
    """A perpetual position. `size_lots` is signed (long positive); `cost` is the signed collateral atoms paid for
    the open lots (sum of lots times price, long positive), so entry price = cost / size and unrealized PnL at
    mark m is exactly size * m - cost. `funding_index` is the market's index when funding was last settled.
    `margin` is the isolated margin (0 for a cross position). `realized_pnl` sums the PnL its reducing fills
    realized since it was opened (fees and funding not included)."""

    __slots__ = ("market_id", "size_lots", "cost", "funding_index", "margin", "is_cross", "realized_pnl")

    def __init__(self, market_id: int, size_lots: int, cost: int, funding_index: int, margin: int,
                 is_cross: bool, realized_pnl: int = 0) -> None:
        self.market_id = market_id
        self.size_lots = size_lots
        self.cost = cost
        self.funding_index = funding_index
        self.margin = margin
        self.is_cross = is_cross
        self.realized_pnl = realized_pnl

    def to_fields(self) -> list:
        return [self.market_id, self.size_lots, self.cost, self.funding_index, self.margin, self.is_cross,
                self.realized_pnl]

    def __repr__(self) -> str:
        mode = "cross" if self.is_cross else f"isolated margin={self.margin}"
        return f"Position(m{self.market_id} {self.size_lots} lots cost={self.cost} {mode})"


class Account:
    """Spot `balances` and `holds` per asset; the perp side: `collateral`, the signed cross-margin cash in the
    chain's collateral asset (it may go negative while unrealized profit covers it), `positions` by market,
    `leverage` settings by market as (leverage, is_cross), and `order_margin`, the margin reserved by its resting
    perp orders (derived from the orders, never encoded)."""

    __slots__ = (
        "address", "balances", "holds", "orders", "client_ids", "agents", "cancel_all_at_ms", "collateral",
        "positions", "leverage", "order_margin", "triggers",
    )

    def __init__(self, address: bytes) -> None:
        self.address = address
        self.balances: dict[int, int] = {}
        self.holds: dict[int, int] = {}
        self.orders: dict[int, Order] = {}
        self.client_ids: dict[int, Order] = {}
        self.agents: dict[bytes, None] = {}
        self.cancel_all_at_ms: TimeMs = TimeMs(0)
        self.collateral = 0
        self.positions: dict[int, Position] = {}
        self.leverage: dict[int, tuple[int, bool]] = {}
        self.order_margin = 0
        self.triggers: dict[int, "Trigger"] = {}

    def get_available(self, asset: int) -> Atoms:
        return self.balances.get(asset, 0) - self.holds.get(asset, 0)


class Trigger:
    """A stop or take-profit order waiting for the mark price (docs/PROTOCOL.md §Triggers). `size_lots` 0 means
    the whole position at the time it fires (a position TP/SL); `limit_price` 0 means a market order."""

    __slots__ = ("trigger_id", "market_id", "owner", "is_buy", "size_lots", "trigger_price", "take_profit",
                 "limit_price", "reduce_only")

    def __init__(self, trigger_id: int, market_id: int, owner: bytes, is_buy: bool, size_lots: int,
                 trigger_price: int, take_profit: bool, limit_price: int, reduce_only: bool) -> None:
        self.trigger_id = trigger_id
        self.market_id = market_id
        self.owner = owner
        self.is_buy = is_buy
        self.size_lots = size_lots
        self.trigger_price = trigger_price
        self.take_profit = take_profit
        self.limit_price = limit_price
        self.reduce_only = reduce_only

    def to_fields(self) -> list:
        return [self.trigger_id, self.market_id, self.owner, self.is_buy, self.size_lots, self.trigger_price,
                self.take_profit, self.limit_price, self.reduce_only]

    def fires_above(self) -> bool:
        """True when it fires once the mark rises to the trigger price (a stop buy, a take-profit sell)."""
        return self.is_buy != self.take_profit


class Market:
    """A market's book and mutable state. Oracle: `oracle_submissions` maps a validator to its latest
    (price, block time); `oracle_price` is the last stake-weighted median, taken at `oracle_time_ms`.

    Perpetual markets (`is_perp`) add the funding index, the premium accumulators of the current funding interval
    (`premium_sum` = sum of premium times ms, over `premium_time_ms`; `last_premium` is the newest sample, held
    until the next block), the EMA of the book premium, the mark price and when it was last updated, the next
    funding time, the long open interest, and derived indexes: `positions` (address -> Position) and the
    precomputed exact maintenance scale, rates and deductions of its tiers."""

    __slots__ = (
        "params", "book", "last_trade_price", "halted", "oracle_price", "oracle_time_ms", "oracle_submissions",
        "is_perp", "funding_index", "premium_sum", "premium_time_ms", "last_premium", "premium_ema", "mark_price",
        "mark_time_ms", "next_funding_ms", "open_interest", "last_funding_rate", "positions", "triggers",
        "margin_scale", "mm_bounds", "mm_rates", "mm_deductions",
    )

    def __init__(self, params: SpotMarketParams | PerpMarketParams) -> None:
        self.params = params
        self.book = Book()
        self.last_trade_price = 0
        self.halted = False
        self.oracle_price = 0
        self.oracle_time_ms = 0
        self.oracle_submissions: dict[bytes, tuple[int, int]] = {}
        self.is_perp = isinstance(params, PerpMarketParams)
        self.funding_index = 0
        self.premium_sum = 0
        self.premium_time_ms = 0
        self.last_premium = 0
        self.premium_ema = 0
        self.mark_price = 0
        self.mark_time_ms = 0
        self.next_funding_ms = 0
        self.open_interest = 0
        self.last_funding_rate = 0
        self.positions: dict[bytes, Position] = {}
        self.triggers: dict[int, Trigger] = {}
        self.set_params(params)

    def set_params(self, params: SpotMarketParams | PerpMarketParams) -> None:
        self.params = params
        if self.is_perp:
            tiers = params.margin_tiers
            self.margin_scale = compute_margin_scale(tiers)
            self.mm_bounds = tuple(bound for bound, _ in tiers)
            self.mm_rates = compute_maintenance_rates_scaled(tiers)
            self.mm_deductions = compute_maintenance_deductions_scaled(tiers)


class State:
    __slots__ = (
        "params", "assets", "supply", "validators", "markets", "accounts", "orders", "nonces", "height", "time_ms",
        "last_block_hash", "next_seq", "block_start_seq", "expiry_heap", "schedule_heap", "merkle",
        "dirty_accounts", "dirty_orders", "dirty_markets", "dirty_nonces", "dirty_assets", "dirty_global",
        "dirty_validators", "triggers", "dirty_triggers", "halted", "proposals", "dirty_proposals", "evidence",
        "dirty_evidence",
    )

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        self.assets: dict[int, AssetParams] = {}
        self.supply: dict[int, int] = {}
        self.validators: dict[bytes, int] = {}
        self.markets: dict[int, Market] = {}
        self.accounts: dict[bytes, Account] = {}
        self.orders: dict[int, Order] = {}
        self.nonces: dict[bytes, list[int]] = {}
        self.height = 0
        self.time_ms = TimeMs(0)
        self.last_block_hash = bytes(32)
        self.next_seq = 1
        self.block_start_seq = 1
        self.expiry_heap: list[tuple[int, int]] = []
        self.schedule_heap: list[tuple[int, bytes]] = []
        self.merkle = MerkleMap()
        self.dirty_accounts: dict[bytes, None] = {}
        self.dirty_orders: dict[int, None] = {}
        self.dirty_markets: dict[int, None] = {}
        self.dirty_nonces: dict[bytes, None] = {}
        self.dirty_assets: dict[int, None] = {}
        self.dirty_global = True
        self.dirty_validators = False
        self.triggers: dict[int, Trigger] = {}
        self.dirty_triggers: dict[int, None] = {}
        self.halted = False
        self.proposals: dict[bytes, list[bytes]] = {}
        self.dirty_proposals = False
        # recorded double signing: (validator, height) -> {(round, vote_type): height it was recorded at}
        self.evidence: dict[tuple[bytes, int], dict[tuple[int, int], int]] = {}
        self.dirty_evidence: dict[tuple[bytes, int], None] = {}


# --- accessors ---------------------------------------------------------------------------------------------

def get_account(state: State, address: bytes) -> Account:
    """The account at `address`, created empty on first use (creation alone changes no entry)."""
    account = state.accounts.get(address)
    if account is None:
        account = state.accounts[address] = Account(address)
    return account


def allocate_seq(state: State) -> int:
    seq = state.next_seq
    state.next_seq = seq + 1
    state.dirty_global = True
    return seq


# --- balance mutators ----------------------------------------------------------------------------------------

def credit(state: State, account: Account, asset: int, amount: int) -> None:
    # credit and hold repeat their few lines instead of sharing a helper: they are the hottest mutators and a
    # call costs more than the work (measured). Zero amounts are dropped so an entry's encoding depends only on
    # its logical contents, never on its history.
    if amount:
        balances = account.balances
        new = balances.get(asset, 0) + amount
        if new:
            balances[asset] = new
        else:
            del balances[asset]
        assert new >= 0, "credit left a negative balance"
        state.dirty_accounts[account.address] = None


def debit(state: State, account: Account, asset: int, amount: int) -> None:
    credit(state, account, asset, -amount)
    assert account.balances.get(asset, 0) >= account.holds.get(asset, 0), "debit consumed held funds"


def hold(state: State, account: Account, asset: int, amount: int) -> None:
    if amount:
        holds = account.holds
        new = holds.get(asset, 0) + amount
        if new:
            holds[asset] = new
        else:
            del holds[asset]
        assert 0 <= new <= account.balances.get(asset, 0), "hold outside [0, balance]"
        state.dirty_accounts[account.address] = None


def release(state: State, account: Account, asset: int, amount: int) -> None:
    hold(state, account, asset, -amount)


def mint(state: State, account: Account, asset: int, amount: int) -> None:
    """Create `amount` of `asset` in `account` (faucet, genesis); the caller keeps supply <= 2^64-1."""
    credit(state, account, asset, amount)
    state.supply[asset] = state.supply.get(asset, 0) + amount
    state.dirty_assets[asset] = None


def burn(state: State, account: Account, asset: int, amount: int) -> None:
    """Destroy `amount` of `asset` from the account's available balance (withdrawals leave the chain)."""
    debit(state, account, asset, amount)
    state.supply[asset] -= amount
    state.dirty_assets[asset] = None


# --- order mutators ------------------------------------------------------------------------------------------

def add_order(state: State, order: Order) -> None:
    """Rest `order` in its book and index it (a spot order's funds must already be held; a perp order's margin
    is reserved here, in the account's `order_margin`)."""
    state.orders[order.order_id] = order
    account = state.accounts[order.owner]
    market = state.markets[order.market_id]
    if market.is_perp and not order.reduce_only:
        account.order_margin += compute_resting_margin(market, account, order.price, order.size_lots)
    account.orders[order.order_id] = order
    if order.client_id is not None:
        account.client_ids[order.client_id] = order
    state.markets[order.market_id].book.side(order.is_buy).insert(order)
    if order.expires_at_ms:
        heapq.heappush(state.expiry_heap, (order.expires_at_ms, order.order_id))
    state.dirty_orders[order.order_id] = None


def unindex_order(state: State, order: Order) -> None:
    """Forget `order` everywhere but the book (the caller has taken it off the book already); a perp order's
    reserved margin is released."""
    del state.orders[order.order_id]
    account = state.accounts[order.owner]
    market = state.markets[order.market_id]
    if market.is_perp and not order.reduce_only:
        account.order_margin -= compute_resting_margin(market, account, order.price, order.size_lots)
    del account.orders[order.order_id]
    if order.client_id is not None:
        del account.client_ids[order.client_id]
    state.dirty_orders[order.order_id] = None


def remove_order(state: State, order: Order) -> None:
    state.markets[order.market_id].book.side(order.is_buy).remove(order)
    unindex_order(state, order)


def resize_order(state: State, order: Order, size_lots: SizeLots) -> None:
    """Shrink a resting order in place, keeping its priority."""
    assert 0 < size_lots <= order.size_lots
    market = state.markets[order.market_id]
    if market.is_perp and not order.reduce_only:
        account = state.accounts[order.owner]
        account.order_margin -= (compute_resting_margin(market, account, order.price, order.size_lots)
                                 - compute_resting_margin(market, account, order.price, size_lots))
    market.book.side(order.is_buy).resize(order, size_lots)
    state.dirty_orders[order.order_id] = None


def compute_resting_margin(market: Market, account: Account, price: int, size_lots: int) -> int:
    """Margin a resting perp order of the account reserves (its leverage cannot change while orders rest)."""
    return compute_order_margin(market.params, get_leverage(market, account)[0], price, size_lots)


def get_leverage(market: Market, account: Account) -> tuple[int, bool]:
    """(leverage, is_cross) of the account in a perp market: its setting, else cross at the market's default."""
    setting = account.leverage.get(market.params.market_id)
    return setting if setting is not None else (market.params.default_leverage, True)


# --- trigger mutators ----------------------------------------------------------------------------------------

def add_trigger(state: State, trigger: Trigger) -> None:
    state.triggers[trigger.trigger_id] = trigger
    state.accounts[trigger.owner].triggers[trigger.trigger_id] = trigger
    state.markets[trigger.market_id].triggers[trigger.trigger_id] = trigger
    state.dirty_triggers[trigger.trigger_id] = None


def remove_trigger(state: State, trigger: Trigger) -> None:
    del state.triggers[trigger.trigger_id]
    del state.accounts[trigger.owner].triggers[trigger.trigger_id]
    del state.markets[trigger.market_id].triggers[trigger.trigger_id]
    state.dirty_triggers[trigger.trigger_id] = None


# --- nonces --------------------------------------------------------------------------------------------------

def set_nonces(state: State, signer: bytes, kept: list[int]) -> None:
    state.nonces[signer] = kept
    state.dirty_nonces[signer] = None


# --- evidence -----------------------------------------------------------------------------------------------

def is_evidence_recorded(state: State, validator: bytes, height: int, round_: int, vote_type: int) -> bool:
    records = state.evidence.get((validator, height))
    return records is not None and (round_, vote_type) in records


def record_evidence(state: State, validator: bytes, height: int, round_: int, vote_type: int) -> None:
    """Record that `validator` double-signed `vote_type` at (`height`, `round_`), at the current block's height."""
    state.evidence.setdefault((validator, height), {})[(round_, vote_type)] = state.height
    state.dirty_evidence[(validator, height)] = None


# --- canonical entries ---------------------------------------------------------------------------------------

def account_key(address: bytes) -> bytes:
    return KEY_ACCOUNT + address


def order_key(order_id: int) -> bytes:
    return KEY_ORDER + order_id.to_bytes(8, "big")


def market_key(market_id: int) -> bytes:
    return KEY_MARKET + market_id.to_bytes(4, "big")


def nonces_key(signer: bytes) -> bytes:
    return KEY_NONCES + signer


def asset_key(asset_id: int) -> bytes:
    return KEY_ASSET + asset_id.to_bytes(4, "big")


def evidence_key(validator: bytes, height: int) -> bytes:
    return KEY_EVIDENCE + validator + height.to_bytes(8, "big")


def encode_evidence(validator: bytes, height: int, records: dict[tuple[int, int], int]) -> bytes:
    return codec.encode([validator, height, [[r, t, at] for (r, t), at in sorted(records.items())]])


def encode_account(account: Account) -> bytes | None:
    """None when the account holds nothing at all (an empty account is not an entry)."""
    if not (account.balances or account.agents or account.cancel_all_at_ms or account.collateral
            or account.positions or account.leverage):
        return None
    return codec.encode([
        sorted(account.balances.items()), sorted(account.holds.items()), sorted(account.agents),
        account.cancel_all_at_ms, account.collateral,
        [account.positions[m].to_fields() for m in sorted(account.positions)],
        [[m, leverage, is_cross] for m, (leverage, is_cross) in sorted(account.leverage.items())],
    ])


def encode_market(market: Market) -> bytes:
    p = market.params
    submissions = [[v, price, t] for v, (price, t) in sorted(market.oracle_submissions.items())]
    if market.is_perp:
        return codec.encode([
            p.to_fields(), market.last_trade_price, market.halted, market.oracle_price, market.oracle_time_ms,
            submissions, market.funding_index, market.premium_sum, market.premium_time_ms, market.last_premium,
            market.premium_ema, market.mark_price, market.mark_time_ms, market.next_funding_ms,
            market.open_interest, market.last_funding_rate,
        ])
    return codec.encode([
        p.market_id, p.symbol.encode(), p.base_asset, p.quote_asset, p.tick_size, p.lot_size, p.min_size_lots,
        p.maker_fee_bps, p.taker_fee_bps, p.fee_account, p.price_band_bps, p.oracle_max_age_ms,
        market.last_trade_price, market.halted, market.oracle_price, market.oracle_time_ms, submissions,
    ])


def trigger_key(trigger_id: int) -> bytes:
    return KEY_TRIGGER + trigger_id.to_bytes(8, "big")


def encode_proposals(state: State) -> bytes:
    return codec.encode([[digest, list(approvers)] for digest, approvers in sorted(state.proposals.items())])


def encode_validators(state: State) -> bytes:
    return codec.encode([[address, power] for address, power in sorted(state.validators.items())])


def encode_asset(asset: AssetParams, supply: int) -> bytes:
    return codec.encode([asset.asset_id, asset.symbol.encode(), asset.decimals, supply])


def encode_global(state: State) -> bytes:
    return codec.encode([
        state.params.chain_id.encode(), state.height, state.time_ms, state.last_block_hash, state.next_seq,
        state.halted,
    ])


def collect_dirty_entries(state: State) -> list[tuple[bytes, bytes | None]]:
    """Encode every dirty entry once, in key order, and clear the dirty marks.

    An order created and gone within the block (order id at or above `block_start_seq`) never existed between
    blocks, so it is neither a diff entry nor a state-root change; the same holds for triggers. Groups are
    appended in tag order (a < e < g < m < n < o < p < s < t < v) and sorted within, so the list comes out in
    key order without a final sort (evidence keys are a fixed-width address then a big-endian height, so sorting
    (address, height) pairs sorts their keys).
    """
    entries: list[tuple[bytes, bytes | None]] = []
    accounts = state.accounts
    for address in sorted(state.dirty_accounts):
        entries.append((KEY_ACCOUNT + address, encode_account(accounts[address])))
    for validator, height in sorted(state.dirty_evidence):
        records = state.evidence[(validator, height)]
        entries.append((evidence_key(validator, height), encode_evidence(validator, height, records)))
    if state.dirty_global:
        entries.append((KEY_GLOBAL, encode_global(state)))
    for market_id in sorted(state.dirty_markets):
        entries.append((market_key(market_id), encode_market(state.markets[market_id])))
    for signer in sorted(state.dirty_nonces):
        entries.append((KEY_NONCES + signer, codec.encode(state.nonces[signer])))
    orders = state.orders
    born = state.block_start_seq
    for order_id in sorted(state.dirty_orders):
        order = orders.get(order_id)
        if order is not None:
            entries.append((KEY_ORDER + order_id.to_bytes(8, "big"), codec.encode(order.to_fields())))
        elif order_id < born:
            entries.append((KEY_ORDER + order_id.to_bytes(8, "big"), None))
    if state.dirty_proposals:
        entries.append((KEY_PROPOSALS, encode_proposals(state)))
    for asset_id in sorted(state.dirty_assets):
        entries.append((asset_key(asset_id), encode_asset(state.assets[asset_id], state.supply.get(asset_id, 0))))
    for trigger_id in sorted(state.dirty_triggers):
        trigger = state.triggers.get(trigger_id)
        if trigger is not None:
            entries.append((trigger_key(trigger_id), codec.encode(trigger.to_fields())))
        elif trigger_id < born:
            entries.append((trigger_key(trigger_id), None))
    if state.dirty_validators:
        entries.append((KEY_VALIDATORS, encode_validators(state)))
    state.dirty_accounts.clear()
    state.dirty_orders.clear()
    state.dirty_markets.clear()
    state.dirty_nonces.clear()
    state.dirty_assets.clear()
    state.dirty_global = False
    state.dirty_validators = False
    state.dirty_triggers.clear()
    state.dirty_proposals = False
    state.dirty_evidence.clear()
    return entries


def commit_entries(state: State) -> tuple[list[tuple[bytes, bytes | None]], bytes]:
    """Write the dirty entries into the state root; returns (changed entries, new root)."""
    entries = collect_dirty_entries(state)
    merkle = state.merkle
    for key, value in entries:
        if value is None:
            merkle.delete(key)
        else:
            merkle.set(key, value)
    return entries, merkle.root()


def export_entries(state: State) -> list[tuple[bytes, bytes]]:
    """Every entry of the state, in key order: a full snapshot."""
    entries = [(asset_key(a), encode_asset(state.assets[a], state.supply.get(a, 0))) for a in sorted(state.assets)]
    entries += [(market_key(m), encode_market(state.markets[m])) for m in sorted(state.markets)]
    for address in sorted(state.accounts):
        value = encode_account(state.accounts[address])
        if value is not None:
            entries.append((account_key(address), value))
    entries += [(order_key(o), codec.encode(state.orders[o].to_fields())) for o in sorted(state.orders)]
    entries += [(nonces_key(s), codec.encode(state.nonces[s])) for s in sorted(state.nonces)]
    entries += [(trigger_key(t), codec.encode(state.triggers[t].to_fields())) for t in sorted(state.triggers)]
    entries += [(evidence_key(v, h), encode_evidence(v, h, state.evidence[(v, h)])) for v, h in sorted(state.evidence)]
    entries.append((KEY_GLOBAL, encode_global(state)))
    entries.append((KEY_VALIDATORS, encode_validators(state)))
    entries.append((KEY_PROPOSALS, encode_proposals(state)))
    entries.sort()
    return entries


def prove_account(state: State, address: bytes) -> tuple[bytes | None, Proof]:
    """An account's entry value (None if it holds nothing) and its proof against the current state root.

    Valid between blocks, when every change has been committed; `stf.proof.verify_proof(root, key, value,
    proof)` with key `account_key(address)` checks it using the standard library only.
    """
    assert not state.dirty_accounts, "proofs are served between blocks"
    account = state.accounts.get(address)
    value = None if account is None else encode_account(account)
    return value, state.merkle.prove(account_key(address))


# --- installing entries (block diffs and snapshots) ---------------------------------------------------------

def _install_account(state: State, address: bytes, value: bytes | None) -> None:
    account = get_account(state, address)
    for market_id in account.positions:
        del state.markets[market_id].positions[address]
    if value is None:
        account.balances, account.holds, account.agents, account.cancel_all_at_ms = {}, {}, {}, TimeMs(0)
        account.collateral, account.positions, account.leverage = 0, {}, {}
        return
    balances, holds, agents, cancel_all_at_ms, collateral, positions, leverage = codec.decode(value, len(value))
    account.balances = {asset: amount for asset, amount in balances}
    account.holds = {asset: amount for asset, amount in holds}
    account.agents = dict.fromkeys(agents)
    account.cancel_all_at_ms = cancel_all_at_ms
    account.collateral = collateral
    account.positions = {fields[0]: Position(*fields) for fields in positions}
    account.leverage = {market_id: (lev, is_cross) for market_id, lev, is_cross in leverage}
    for market_id, position in account.positions.items():
        state.markets[market_id].positions[address] = position
    if cancel_all_at_ms:
        heapq.heappush(state.schedule_heap, (cancel_all_at_ms, address))


def _install_trigger(state: State, trigger_id: int, value: bytes | None) -> None:
    old = state.triggers.get(trigger_id)
    if old is not None:
        remove_trigger(state, old)
    if value is not None:
        trigger = Trigger(*codec.decode(value, len(value)))
        get_account(state, trigger.owner)
        add_trigger(state, trigger)


def recompute_order_margin(state: State, account: Account) -> None:
    """Rebuild the derived `order_margin` of an account from its resting perp orders."""
    total = 0
    for order in account.orders.values():
        market = state.markets[order.market_id]
        if market.is_perp and not order.reduce_only:
            total += compute_resting_margin(market, account, order.price, order.size_lots)
    account.order_margin = total


def _install_order(state: State, order_id: int, value: bytes | None) -> None:
    """Install an order without touching margins: `apply_entries` recomputes the owners' order margin after."""
    old = state.orders.get(order_id)
    if old is not None:
        state.markets[old.market_id].book.side(old.is_buy).remove(old)
        del state.orders[order_id]
        owner = state.accounts[old.owner]
        del owner.orders[order_id]
        if old.client_id is not None:
            del owner.client_ids[old.client_id]
    if value is None:
        return
    order = Order(*codec.decode(value, len(value)))
    get_account(state, order.owner)
    state.orders[order.order_id] = order
    account = state.accounts[order.owner]
    account.orders[order.order_id] = order
    if order.client_id is not None:
        account.client_ids[order.client_id] = order
    state.markets[order.market_id].book.side(order.is_buy).insert_by_seq(order)
    if order.expires_at_ms:
        heapq.heappush(state.expiry_heap, (order.expires_at_ms, order.order_id))


def _install_evidence(state: State, rest: bytes, value: bytes | None) -> None:
    where = (rest[:20], int.from_bytes(rest[20:], "big"))
    if value is None:
        state.evidence.pop(where, None)
        return
    validator, height, records = codec.decode(value, len(value))
    state.evidence[(validator, height)] = {(round_, vote_type): at for round_, vote_type, at in records}


def _install_market(state: State, value: bytes) -> None:
    fields = codec.decode(value, len(value))
    if len(fields) == 16:
        params = PerpMarketParams.from_fields(fields[0])
        (last_trade_price, halted, oracle_price, oracle_time_ms, submissions, funding_index, premium_sum,
         premium_time_ms, last_premium, premium_ema, mark_price, mark_time_ms, next_funding_ms, open_interest,
         last_funding_rate) = fields[1:]
    else:
        (market_id, symbol, base, quote, tick, lot, min_size, maker_bps, taker_bps, fee_account, band_bps,
         max_age_ms, last_trade_price, halted, oracle_price, oracle_time_ms, submissions) = fields
        params = SpotMarketParams(
            market_id, symbol.decode(), base, quote, tick, lot, min_size, maker_bps, taker_bps, fee_account,
            band_bps, max_age_ms,
        )
    market = state.markets.get(params.market_id)
    if market is None:
        market = state.markets[params.market_id] = Market(params)
    market.set_params(params)
    if market.is_perp:
        market.funding_index, market.premium_sum, market.premium_time_ms = funding_index, premium_sum, premium_time_ms
        market.last_premium, market.premium_ema, market.mark_price = last_premium, premium_ema, mark_price
        market.mark_time_ms, market.next_funding_ms, market.open_interest = mark_time_ms, next_funding_ms, open_interest
        market.last_funding_rate = last_funding_rate
    market.last_trade_price = last_trade_price
    market.halted = halted
    market.oracle_price = oracle_price
    market.oracle_time_ms = oracle_time_ms
    market.oracle_submissions = {v: (price, t) for v, price, t in submissions}


def apply_entries(state: State, entries: list[tuple[bytes, bytes | None]]) -> bytes:
    """Install changed entries (a block diff's, or a whole snapshot) and return the new state root.

    Markets and assets are installed before orders so an order always finds its book.
    """
    touched: dict[bytes, None] = {}
    for key, value in sorted(entries, key=lambda kv: (kv[0][:1] not in (KEY_ASSET, KEY_MARKET), kv[0])):
        tag, rest = key[:1], key[1:]
        if tag == KEY_ACCOUNT:
            _install_account(state, rest, value)
            touched[rest] = None
        elif tag == KEY_ORDER:
            old = state.orders.get(int.from_bytes(rest, "big"))
            if old is not None:
                touched[old.owner] = None
            _install_order(state, int.from_bytes(rest, "big"), value)
            if value is not None:
                touched[state.orders[int.from_bytes(rest, "big")].owner] = None
        elif tag == KEY_TRIGGER:
            _install_trigger(state, int.from_bytes(rest, "big"), value)
        elif tag == KEY_PROPOSALS:
            state.proposals = {digest: list(approvers) for digest, approvers in codec.decode(value, len(value))}
        elif tag == KEY_MARKET:
            _install_market(state, value)
        elif tag == KEY_NONCES:
            state.nonces[rest] = codec.decode(value, len(value))
        elif tag == KEY_ASSET:
            asset_id, symbol, decimals, state.supply[asset_id] = codec.decode(value, len(value))
            state.assets[asset_id] = AssetParams(asset_id, symbol.decode(), decimals)
        elif tag == KEY_EVIDENCE:
            _install_evidence(state, rest, value)
        elif tag == KEY_VALIDATORS:
            state.validators = {address: power for address, power in codec.decode(value, len(value))}
        elif tag == KEY_GLOBAL:
            _chain, state.height, state.time_ms, state.last_block_hash, state.next_seq, state.halted = codec.decode(
                value, len(value))
        else:
            raise ValueError(f"unknown state key tag {tag!r}")
        if value is None:
            state.merkle.delete(key)
        else:
            state.merkle.set(key, value)
    state.dirty_accounts.clear()
    state.dirty_orders.clear()
    state.dirty_markets.clear()
    state.dirty_nonces.clear()
    state.dirty_assets.clear()
    for address in sorted(touched):
        recompute_order_margin(state, state.accounts[address])
    state.dirty_global = False
    state.dirty_validators = False
    state.dirty_triggers.clear()
    state.dirty_proposals = False
    state.dirty_evidence.clear()
    return state.merkle.root()


# --- genesis -------------------------------------------------------------------------------------------------

def initialize_state(genesis: GenesisConfig) -> State:
    """The state at height 0: assets, markets and balances from genesis, with its root computed."""
    state = State(genesis.params)
    state.time_ms = genesis.genesis_time_ms
    for asset in genesis.assets:
        state.assets[asset.asset_id] = asset
        state.supply[asset.asset_id] = 0
        state.dirty_assets[asset.asset_id] = None
    for params in genesis.spot_markets + genesis.perp_markets:
        market = state.markets[params.market_id] = Market(params)
        if market.is_perp:
            market.mark_time_ms = genesis.genesis_time_ms
            market.next_funding_ms = compute_next_funding_ms(genesis.genesis_time_ms, params.funding_interval_ms)
        state.dirty_markets[params.market_id] = None
    for address, asset, amount in genesis.balances:
        mint(state, get_account(state, address), asset, amount)
    state.validators = dict(genesis.validators)
    state.dirty_validators = True
    state.dirty_proposals = True
    commit_entries(state)
    return state


def compute_next_funding_ms(now_ms: int, interval_ms: int) -> int:
    """The first funding time strictly after now_ms: the next multiple of the interval since the epoch."""
    return (now_ms // interval_ms + 1) * interval_ms
