"""Keys, nonces, actions and signed transactions for wallets and bots (docs/PROTOCOL.md §3-§5).

    wallet = Wallet.from_seed(bytes.fromhex(SEED_HEX), chain_id="kabuto-localnet")
    signed = wallet.sign(place(market=0, is_buy=True, price=999_000, size_lots=5, client_id=7))
    signed.wire, signed.hash, signed.nonce

The action builders below return the `stf.tx` action tuples with every field named and the optional ones
defaulted; `Wallet.sign` encodes them with `stf.tx.sign_transaction`, so the bytes are exactly what the chain
decodes. An agent wallet (`account=` the main account's address) may sign trading actions only (§4.5).

Nonces (§4.6): `NonceSource` hands out millisecond timestamps, strictly increasing per source
(`max(now_ms, last + 1)`), so many transactions may be in flight at once and none repeats. One source per
signing key: two processes signing with the same key need disjoint nonces (the chain keeps the highest 100 by
default and refuses a repeat or one below the smallest kept).
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stf.crypto import PrivateKey
from stf.tx import (
    TIF_GTC, Action, ApproveAgent, Cancel, CancelAll, CancelByClientId, CancelTrigger, CollateralTransfer, Faucet,
    Govern, IsolatedMargin, MarketOrder, Modify, OraclePrice, PlaceOrder, PlaceTrigger, RevokeAgent, ScheduleCancel,
    SetLeverage, Transfer, Withdraw, sign_transaction,
)

__all__ = [
    "NonceSource", "SignedTx", "Wallet", "transfer", "withdraw", "faucet", "approve_agent", "revoke_agent", "place",
    "market_order", "cancel", "cancel_by_client_id", "cancel_all", "modify", "schedule_cancel", "oracle_price",
    "collateral_transfer", "set_leverage", "isolated_margin", "place_trigger", "cancel_trigger", "govern",
]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class NonceSource:
    """Strictly increasing millisecond-timestamp nonces; `clock_ms` is injectable for tests."""

    def __init__(self, clock_ms: Callable[[], int] = _now_ms, last: int = 0) -> None:
        self._clock_ms = clock_ms
        self.last = last

    def next(self) -> int:
        self.last = max(self._clock_ms(), self.last + 1)
        return self.last


@dataclass(frozen=True, slots=True)
class SignedTx:
    wire: bytes
    hash: bytes
    nonce: int


class Wallet:
    """A signing key for one chain, acting for its own address or, as an agent, for `account`."""

    def __init__(self, key: PrivateKey, chain_id: str, account: bytes | None = None,
                 nonces: NonceSource | None = None) -> None:
        self.key = key
        self.chain_id = chain_id
        self.account = account if account is not None else key.address
        self.nonces = nonces if nonces is not None else NonceSource()

    @classmethod
    def from_seed(cls, seed: bytes, chain_id: str, account: bytes | None = None,
                  nonces: NonceSource | None = None) -> "Wallet":
        """A wallet from a 32-byte Ed25519 seed (keep it secret: it is the private key)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(PrivateKey(seed), chain_id, account, nonces)

    @property
    def address(self) -> bytes:
        """The signer's address (the account's own, or the agent's)."""
        return self.key.address

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def sign(self, *actions: Action, nonce: int | None = None) -> SignedTx:
        """One transaction carrying `actions` (1 to 64), with the next nonce unless one is given."""
        nonce = self.nonces.next() if nonce is None else nonce
        wire = sign_transaction(self.key, self.chain_id, nonce, list(actions), self.account)
        return SignedTx(wire, hashlib.sha256(wire).digest(), nonce)


# --- action builders (docs/PROTOCOL.md §5.1) --------------------------------------------------------------------

def transfer(to: bytes, asset: int, amount: int) -> Transfer:
    return Transfer(to, asset, amount)


def withdraw(asset: int, amount: int, destination: bytes) -> Withdraw:
    return Withdraw(asset, amount, destination)


def faucet(asset: int, amount: int) -> Faucet:
    return Faucet(asset, amount)


def approve_agent(agent: bytes) -> ApproveAgent:
    return ApproveAgent(agent)


def revoke_agent(agent: bytes) -> RevokeAgent:
    return RevokeAgent(agent)


def place(market: int, is_buy: bool, price: int, size_lots: int, time_in_force: int = TIF_GTC,
          client_id: int | None = None, expires_at_ms: int = 0, reduce_only: bool = False) -> PlaceOrder:
    """A limit order: `price` in quote atoms per lot, `size_lots` in lots; time in force gtc/ioc/fok/alo."""
    return PlaceOrder(market, is_buy, price, size_lots, time_in_force, client_id, expires_at_ms, reduce_only)


def market_order(market: int, is_buy: bool, size_lots: int, worst_price: int, client_id: int | None = None,
                 reduce_only: bool = False) -> MarketOrder:
    return MarketOrder(market, is_buy, size_lots, worst_price, client_id, reduce_only)


def cancel(market: int, order_id: int) -> Cancel:
    return Cancel(market, order_id)


def cancel_by_client_id(market: int, client_id: int) -> CancelByClientId:
    return CancelByClientId(market, client_id)


def cancel_all(market: int | None = None) -> CancelAll:
    """Every resting order of the account in `market`, or in all markets (None)."""
    return CancelAll(market)


def modify(market: int, order_id: int, price: int, size_lots: int) -> Modify:
    return Modify(market, order_id, price, size_lots)


def schedule_cancel(at_ms: int | None) -> ScheduleCancel:
    """Dead-man's switch: cancel everything at the first block with time >= `at_ms`; None clears it."""
    return ScheduleCancel(at_ms)


def oracle_price(prices: Sequence[tuple[int, int]]) -> OraclePrice:
    """A validator's oracle prices, [(market, price)]; sorted here by market id as the protocol requires."""
    return OraclePrice(tuple(sorted((int(m), int(p)) for m, p in prices)))


def collateral_transfer(amount: int, to_perp: bool = True) -> CollateralTransfer:
    """Move collateral-asset atoms from the spot balance into the cross margin (`to_perp`), or back out."""
    return CollateralTransfer(amount, to_perp)


def set_leverage(market: int, leverage: int, is_cross: bool = True) -> SetLeverage:
    """A perp market's leverage and margin mode for this account (no open orders there; mode fixed while a
    position is open)."""
    return SetLeverage(market, leverage, is_cross)


def isolated_margin(market: int, amount: int, add: bool = True) -> IsolatedMargin:
    """Add margin to an isolated position from the cross collateral, or (`add=False`) take it back."""
    return IsolatedMargin(market, amount, add)


def place_trigger(market: int, is_buy: bool, trigger_price: int, size_lots: int = 0, take_profit: bool = False,
                  limit_price: int = 0, reduce_only: bool = True) -> PlaceTrigger:
    """A stop (default) or take-profit order on the mark price; `size_lots` 0 closes the whole position when it
    fires, `limit_price` 0 makes it a market order (docs/PROTOCOL.md §5.19)."""
    return PlaceTrigger(market, is_buy, size_lots, trigger_price, take_profit, limit_price, reduce_only)


def cancel_trigger(market: int, trigger_id: int) -> CancelTrigger:
    return CancelTrigger(market, trigger_id)


def _freeze(value):
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def govern(op: int, proposal_id: int, *arguments) -> Govern:
    """A governor's approval of `[op, proposal_id, *arguments]` (docs/PROTOCOL.md §5.20); lists become the
    tuples the chain decodes, so the signed bytes and the decoded action compare equal."""
    return Govern(_freeze((op, proposal_id, *arguments)))
