"""The one state container of the exchange, its named mutators, and its canonical entries.

The state is changed only through the mutators in this module (`credit`, `debit`, `hold`, `release`,
`add_order`, `remove_order`, `resize_order`, ...). Each mutator marks the entry it touched as dirty; at the end
of a block `commit_entries` encodes every dirty entry once, updates the state root and returns the changed entries
(the state half of the block diff). So the cost of the root is proportional to what changed.

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
from stf.merkle import MerkleMap
from stf.proof import Proof
from stf.params import AssetParams, ChainParams, GenesisConfig, SpotMarketParams
from stf.units import Atoms, SizeLots, TimeMs

KEY_ACCOUNT = b"a"
KEY_ORDER = b"o"
KEY_MARKET = b"m"
KEY_NONCES = b"n"
KEY_GLOBAL = b"g"
KEY_ASSET = b"s"
KEY_VALIDATORS = b"v"


class Account:
    __slots__ = ("address", "balances", "holds", "orders", "client_ids", "agents", "cancel_all_at_ms")

    def __init__(self, address: bytes) -> None:
        self.address = address
        self.balances: dict[int, int] = {}
        self.holds: dict[int, int] = {}
        self.orders: dict[int, Order] = {}
        self.client_ids: dict[int, Order] = {}
        self.agents: dict[bytes, None] = {}
        self.cancel_all_at_ms: TimeMs = TimeMs(0)

    def get_available(self, asset: int) -> Atoms:
        return self.balances.get(asset, 0) - self.holds.get(asset, 0)


class Market:
    """A market's book and mutable state. Oracle: `oracle_submissions` maps a validator to its latest
    (price, block time); `oracle_price` is the last stake-weighted median, taken at `oracle_time_ms`."""

    __slots__ = (
        "params", "book", "last_trade_price", "halted", "oracle_price", "oracle_time_ms", "oracle_submissions",
    )

    def __init__(self, params: SpotMarketParams) -> None:
        self.params = params
        self.book = Book()
        self.last_trade_price = 0
        self.halted = False
        self.oracle_price = 0
        self.oracle_time_ms = 0
        self.oracle_submissions: dict[bytes, tuple[int, int]] = {}


class State:
    __slots__ = (
        "params", "assets", "supply", "validators", "markets", "accounts", "orders", "nonces", "height", "time_ms",
        "last_block_hash", "next_seq", "block_start_seq", "expiry_heap", "schedule_heap", "merkle",
        "dirty_accounts", "dirty_orders", "dirty_markets", "dirty_nonces", "dirty_assets", "dirty_global",
        "dirty_validators",
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
    """Rest `order` in its book and index it (its funds must already be held)."""
    state.orders[order.order_id] = order
    account = state.accounts[order.owner]
    account.orders[order.order_id] = order
    if order.client_id is not None:
        account.client_ids[order.client_id] = order
    state.markets[order.market_id].book.side(order.is_buy).insert(order)
    if order.expires_at_ms:
        heapq.heappush(state.expiry_heap, (order.expires_at_ms, order.order_id))
    state.dirty_orders[order.order_id] = None


def unindex_order(state: State, order: Order) -> None:
    """Forget `order` everywhere but the book (the caller has taken it off the book already)."""
    del state.orders[order.order_id]
    account = state.accounts[order.owner]
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
    order.size_lots = size_lots
    state.dirty_orders[order.order_id] = None


# --- nonces --------------------------------------------------------------------------------------------------

def set_nonces(state: State, signer: bytes, kept: list[int]) -> None:
    state.nonces[signer] = kept
    state.dirty_nonces[signer] = None


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


def encode_account(account: Account) -> bytes | None:
    """None when the account holds nothing at all (an empty account is not an entry)."""
    if not (account.balances or account.agents or account.cancel_all_at_ms):
        return None
    return codec.encode([
        sorted(account.balances.items()), sorted(account.holds.items()), sorted(account.agents),
        account.cancel_all_at_ms,
    ])


def encode_market(market: Market) -> bytes:
    p = market.params
    submissions = [[v, price, t] for v, (price, t) in sorted(market.oracle_submissions.items())]
    return codec.encode([
        p.market_id, p.symbol.encode(), p.base_asset, p.quote_asset, p.tick_size, p.lot_size, p.min_size_lots,
        p.maker_fee_bps, p.taker_fee_bps, p.fee_account, p.price_band_bps, p.oracle_max_age_ms,
        market.last_trade_price, market.halted, market.oracle_price, market.oracle_time_ms, submissions,
    ])


def encode_validators(state: State) -> bytes:
    return codec.encode([[address, power] for address, power in sorted(state.validators.items())])


def encode_asset(asset: AssetParams, supply: int) -> bytes:
    return codec.encode([asset.asset_id, asset.symbol.encode(), asset.decimals, supply])


def encode_global(state: State) -> bytes:
    return codec.encode([
        state.params.chain_id.encode(), state.height, state.time_ms, state.last_block_hash, state.next_seq,
    ])


def collect_dirty_entries(state: State) -> list[tuple[bytes, bytes | None]]:
    """Encode every dirty entry once, in key order, and clear the dirty marks.

    An order created and gone within the block (order id at or above `block_start_seq`) never existed between
    blocks, so it is neither a diff entry nor a state-root change. Groups are appended in tag order
    (a < g < m < n < o < s < v) and sorted within, so the list comes out in key order without a final sort.
    """
    entries: list[tuple[bytes, bytes | None]] = []
    accounts = state.accounts
    for address in sorted(state.dirty_accounts):
        entries.append((KEY_ACCOUNT + address, encode_account(accounts[address])))
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
    for asset_id in sorted(state.dirty_assets):
        entries.append((asset_key(asset_id), encode_asset(state.assets[asset_id], state.supply.get(asset_id, 0))))
    if state.dirty_validators:
        entries.append((KEY_VALIDATORS, encode_validators(state)))
    state.dirty_accounts.clear()
    state.dirty_orders.clear()
    state.dirty_markets.clear()
    state.dirty_nonces.clear()
    state.dirty_assets.clear()
    state.dirty_global = False
    state.dirty_validators = False
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
    entries.append((KEY_GLOBAL, encode_global(state)))
    entries.append((KEY_VALIDATORS, encode_validators(state)))
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
    if value is None:
        account.balances, account.holds, account.agents, account.cancel_all_at_ms = {}, {}, {}, TimeMs(0)
        return
    balances, holds, agents, cancel_all_at_ms = codec.decode(value, len(value))
    account.balances = {asset: amount for asset, amount in balances}
    account.holds = {asset: amount for asset, amount in holds}
    account.agents = dict.fromkeys(agents)
    account.cancel_all_at_ms = cancel_all_at_ms
    if cancel_all_at_ms:
        heapq.heappush(state.schedule_heap, (cancel_all_at_ms, address))


def _install_order(state: State, order_id: int, value: bytes | None) -> None:
    old = state.orders.get(order_id)
    if old is not None:
        remove_order(state, old)
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


def _install_market(state: State, value: bytes) -> None:
    (market_id, symbol, base, quote, tick, lot, min_size, maker_bps, taker_bps, fee_account, band_bps, max_age_ms,
     last_trade_price, halted, oracle_price, oracle_time_ms, submissions) = codec.decode(value, len(value))
    params = SpotMarketParams(
        market_id, symbol.decode(), base, quote, tick, lot, min_size, maker_bps, taker_bps, fee_account, band_bps,
        max_age_ms,
    )
    market = state.markets.get(market_id)
    if market is None:
        market = state.markets[market_id] = Market(params)
    market.params = params
    market.last_trade_price = last_trade_price
    market.halted = halted
    market.oracle_price = oracle_price
    market.oracle_time_ms = oracle_time_ms
    market.oracle_submissions = {v: (price, t) for v, price, t in submissions}


def apply_entries(state: State, entries: list[tuple[bytes, bytes | None]]) -> bytes:
    """Install changed entries (a block diff's, or a whole snapshot) and return the new state root.

    Markets and assets are installed before orders so an order always finds its book.
    """
    for key, value in sorted(entries, key=lambda kv: (kv[0][:1] not in (KEY_ASSET, KEY_MARKET), kv[0])):
        tag, rest = key[:1], key[1:]
        if tag == KEY_ACCOUNT:
            _install_account(state, rest, value)
        elif tag == KEY_ORDER:
            _install_order(state, int.from_bytes(rest, "big"), value)
        elif tag == KEY_MARKET:
            _install_market(state, value)
        elif tag == KEY_NONCES:
            state.nonces[rest] = codec.decode(value, len(value))
        elif tag == KEY_ASSET:
            asset_id, symbol, decimals, state.supply[asset_id] = codec.decode(value, len(value))
            state.assets[asset_id] = AssetParams(asset_id, symbol.decode(), decimals)
        elif tag == KEY_VALIDATORS:
            state.validators = {address: power for address, power in codec.decode(value, len(value))}
        elif tag == KEY_GLOBAL:
            _chain, state.height, state.time_ms, state.last_block_hash, state.next_seq = codec.decode(
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
    state.dirty_global = False
    state.dirty_validators = False
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
    for params in genesis.spot_markets:
        state.markets[params.market_id] = Market(params)
        state.dirty_markets[params.market_id] = None
    for address, asset, amount in genesis.balances:
        mint(state, get_account(state, address), asset, amount)
    state.validators = dict(genesis.validators)
    state.dirty_validators = True
    commit_entries(state)
    return state
