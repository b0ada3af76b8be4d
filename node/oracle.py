"""The oracle feeder: this validator's own price submissions (`OraclePrice`, docs/PROTOCOL.md §5.14).

Contract:

- A price source is one function, `source() -> {market_id: price}` (or a coroutine function returning the same),
  prices in the market's quote atoms per lot. That function is the whole interface: `static_source` (the
  `[oracle] source = "static"` of node/config.py) returns fixed prices and is meant for local and test networks
  only; a production validator plugs in a function that reads real market prices (its own exchange feeds or a
  price service) and hands it to `OracleFeeder`. Nothing else changes.
- `OracleFeeder.run()` is a task of the node's TaskGroup. Every `interval_ms`, when this node's validator key is
  in the STF's current validator set (`state.validators`), it asks the source, builds ONE transaction signed by
  the validator key for its own account, holding the `OraclePrice` actions of every market the source priced
  (`build_oracle_prices`: markets of the chain only, ids strictly ascending, each price rounded to the nearest
  point of the market's tick grid and at least one tick; at most 64 prices per action and 64 actions), and hands
  it to the node's submitter: the mempool admission path RPC's `broadcast_tx_*` uses, which gossips it on
  success.
- Nonces are millisecond timestamps strictly increasing for the key (`rpc.client.wallet.NonceSource`), starting
  above the highest nonce the committed state kept for the key (so a restart never reuses one). A nonce is only
  valid within the window around the last block's time (stf/nonces.py); while this node's clock lies outside it
  (a chain whose genesis time is in the past has not committed its first block yet, or this node is far behind),
  the feeder waits and re-checks every `WAIT_S` instead of submitting a transaction the mempool would refuse.
- While its previous submission is still pending in the mempool (no block is being committed), it submits
  nothing new, so a halted chain does not fill the pool with stale prices.
- Metrics: `kabuto_oracle_submissions_total{result}`: "ok" (admitted), the admission refusal code otherwise,
  "source_error" when the source raised, "no_prices" when it priced no market of the chain. Logs name a change
  of outcome only (not one line a second).

`resolve_static_prices(config, genesis)` checks a static source against the genesis markets at start (called by
`node.home.load_home`): a known symbol, a price on its tick grid, and an interval below the market's
`oracle_max_age_ms` (else the price goes stale between submissions); each refusal is a `ConfigError` naming
`oracle.prices.<symbol>` or `oracle.interval_ms`.

Known limits: the feeder signs with the consensus key, which a validator already holds hot; a separate oracle
key (an agent) cannot be used because the STF accepts oracle prices only from the validator's own signature.
"""

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from node.config import ConfigError, NodeConfig
from node.telemetry import NodeMetrics
from rpc.client.wallet import NonceSource, Wallet
from stf.constants import MAX_ACTIONS_PER_TX, MAX_ORACLE_PRICES_PER_ACTION
from stf.crypto import PrivateKey
from stf.params import ChainParams, GenesisConfig
from stf.state import State
from stf.tx import OraclePrice

log = logging.getLogger("node.oracle")

PriceSource = Callable[[], Mapping[int, int] | Awaitable[Mapping[int, int]]]
WAIT_S = 0.1  # re-check period while the nonce window or the previous submission holds the feeder back
MAX_PRICES_PER_TX = MAX_ORACLE_PRICES_PER_ACTION * MAX_ACTIONS_PER_TX


def static_source(prices: Mapping[int, int]) -> PriceSource:
    """A source that always answers `prices` ({market_id: price}): for local and test networks only."""
    fixed = dict(prices)
    return lambda: fixed


def resolve_static_prices(config: NodeConfig, genesis: GenesisConfig, path: str | None = None) -> dict[int, int]:
    """`[oracle] prices` as {market_id: price}, checked against the genesis markets (see the module contract)."""
    markets = {m.symbol: m for m in (*genesis.spot_markets, *genesis.perp_markets)}
    prices: dict[int, int] = {}
    for symbol, price in config.oracle.prices:
        market = markets.get(symbol)
        where = f"oracle.prices.{symbol}"
        if market is None:
            raise ConfigError(where, f"no market {symbol!r} in genesis (markets: {', '.join(markets)})", path)
        if price % market.tick_size:
            raise ConfigError(where, f"{price} is not on the market's tick grid (a multiple of tick_size "
                                     f"{market.tick_size})", path)
        if config.oracle.interval_ms >= market.oracle_max_age_ms:
            raise ConfigError("oracle.interval_ms", f"{config.oracle.interval_ms} is not below {symbol}'s "
                                                    f"oracle_max_age_ms ({market.oracle_max_age_ms}): its price "
                                                    f"would go stale between two submissions", path)
        prices[market.market_id] = price
    return prices


def compute_grid_price(price: int, tick_size: int) -> int:
    """`price` rounded to the nearest multiple of `tick_size` (half up), and at least one tick."""
    return max(tick_size, (price + tick_size // 2) // tick_size * tick_size)


def build_oracle_prices(prices: Mapping[int, int], state: State) -> tuple[tuple[int, int], ...]:
    """The (market, price) pairs to submit: markets of the chain only, ids ascending, prices on the tick grid;
    a non-positive price is left out (at most `MAX_PRICES_PER_TX`, the lowest ids)."""
    pairs = []
    for market_id in sorted(prices):
        market = state.markets.get(market_id)
        price = prices[market_id]
        if market is None or type(price) is not int or price <= 0:
            continue
        pairs.append((market_id, compute_grid_price(price, market.params.tick_size)))
    return tuple(pairs[:MAX_PRICES_PER_TX])


def build_oracle_actions(pairs: tuple[tuple[int, int], ...]) -> list[OraclePrice]:
    """`pairs` split into `OraclePrice` actions of at most 64 prices each, in order."""
    step = MAX_ORACLE_PRICES_PER_ACTION
    return [OraclePrice(pairs[i:i + step]) for i in range(0, len(pairs), step)]


def is_nonce_in_window(params: ChainParams, time_ms: int, nonce: int) -> bool:
    """The window rule of stf/nonces.py around the last block's time."""
    return time_ms - params.nonce_window_past_ms < nonce < time_ms + params.nonce_window_future_ms


class OracleFeeder:
    """Submits this validator's prices every `interval_ms` (see the module contract)."""

    def __init__(
        self, key: PrivateKey, chain_id: str, source: PriceSource, submit: Callable[[bytes], Awaitable[Any]],
        get_state: Callable[[], State], is_pending: Callable[[bytes], bool], metrics: NodeMetrics,
        interval_ms: int, clock_ms: Callable[[], int],
    ) -> None:
        self.source = source
        self.submit = submit
        self.get_state = get_state
        self.is_pending = is_pending
        self.metrics = metrics
        self.interval_s = interval_ms / 1000
        self.clock_ms = clock_ms
        kept = get_state().nonces.get(key.address, [])
        self.wallet = Wallet(key, chain_id, nonces=NonceSource(clock_ms, max(kept, default=0)))
        self.last_hash: bytes | None = None
        self.last_outcome = ""

    @property
    def address(self) -> bytes:
        return self.wallet.address

    async def run(self) -> None:
        while True:
            await asyncio.sleep(await self.step())

    async def step(self) -> float:
        """One attempt; returns the seconds to wait before the next."""
        state = self.get_state()
        if self.address not in state.validators:
            self.note("idle", "not in the validator set: not submitting oracle prices")
            return self.interval_s
        if self.last_hash is not None and self.is_pending(self.last_hash):
            return WAIT_S
        if not is_nonce_in_window(state.params, state.time_ms, self.clock_ms()):
            self.note("waiting", "waiting for a block whose time is within the nonce window of this clock")
            return WAIT_S
        wire = await self.make_transaction(state)
        if wire is not None:
            result = await self.submit(wire)
            self.count(result.code, result.message)
            if result.code == "ok":
                self.last_hash = result.tx_hash
        return self.interval_s

    async def make_transaction(self, state: State) -> bytes | None:
        """The signed transaction of the source's current prices, or None (counted) when there is none."""
        try:
            prices = self.source()
            if inspect.isawaitable(prices):
                prices = await prices
            pairs = build_oracle_prices(prices, state)
        except Exception as exc:  # a source is outside code: its failure skips one submission, never the node
            self.count("source_error", f"the price source failed: {exc!r}")
            return None
        if not pairs:
            self.count("no_prices", "the price source priced no market of this chain")
            return None
        return self.wallet.sign(*build_oracle_actions(pairs)).wire

    def count(self, result: str, message: str) -> None:
        self.metrics.oracle_submissions.labels(result).inc()
        self.note(result, "submitting oracle prices" if result == "ok" else f"oracle submission: {message}")

    def note(self, outcome: str, message: str) -> None:
        if outcome != self.last_outcome:
            level = logging.INFO if outcome in ("ok", "idle", "waiting") else logging.WARNING
            log.log(level, message, extra={"fields": {"result": outcome}})
            self.last_outcome = outcome


def make_oracle_feeder(
    config: NodeConfig, genesis: GenesisConfig, key: PrivateKey, submit: Callable[[bytes], Awaitable[Any]],
    get_state: Callable[[], State], is_pending: Callable[[bytes], bool], metrics: NodeMetrics,
    clock_ms: Callable[[], int],
) -> OracleFeeder | None:
    """The feeder `[oracle]` asks for, or None for `source = "none"`."""
    if config.oracle.source == "none":
        return None
    source = static_source(resolve_static_prices(config, genesis))
    return OracleFeeder(key, genesis.params.chain_id, source, submit, get_state, is_pending, metrics,
                        config.oracle.interval_ms, clock_ms)
