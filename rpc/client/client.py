"""`KabutoClient`: JSON-RPC over HTTP POST with typed helpers (docs/API.md §4).

    async with KabutoClient("http://127.0.0.1:26657") as client:
        status = await client.status()
        committed = await client.submit_and_wait(wallet.sign(place(0, True, 999_000, 5)))
        orders = await client.open_orders(wallet.account)

Every helper returns plain typed values (ints for amounts and heights, bytes for hashes and addresses) built
from the documented JSON. A JSON-RPC error raises `RpcCallError` (code, message, data); an admission refusal
in `submit`/`submit_and_wait` raises `TxRejected` with the stable code. `get_account_proof` verifies the proof
with `stf/proof.py` before returning and raises `ProofError` when it does not verify.
"""

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from stf import codec
from stf.proof import Proof, verify_proof
from stf.state import account_key

from rpc.client.wallet import SignedTx

__all__ = [
    "RpcCallError", "TxRejected", "ProofError", "Status", "Order", "Balance", "ActionOutcome", "Committed",
    "Fill", "TradeRecord", "AccountProof", "KabutoClient", "parse_account_proof", "compute_tx_root",
]


class RpcCallError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class TxRejected(Exception):
    """Admission refused the transaction; `code` is the stable code ("bad_signature", "nonce_too_low", ...)."""

    def __init__(self, tx_hash: bytes, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.tx_hash = tx_hash
        self.code = code
        self.message = message


class ProofError(Exception):
    """An account proof that does not verify against the root it came with (or the root you trust)."""


@dataclass(frozen=True, slots=True)
class Status:
    chain_id: str
    height: int
    block_hash: bytes
    app_hash: bytes
    time_ms: int
    earliest_height: int
    catching_up: bool


@dataclass(frozen=True, slots=True)
class Order:
    order_id: int
    market: int
    is_buy: bool
    price: int
    size_lots: int
    orig_size_lots: int
    client_id: int | None
    expires_at_ms: int
    post_only: bool
    seq: int


@dataclass(frozen=True, slots=True)
class Balance:
    asset: int
    balance: int
    hold: int

    @property
    def available(self) -> int:
        return self.balance - self.hold


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    code: int
    name: str
    order_id: int | None
    filled_lots: int


@dataclass(frozen=True, slots=True)
class Committed:
    tx_hash: bytes
    height: int
    results: tuple[ActionOutcome, ...]


@dataclass(frozen=True, slots=True)
class Fill:
    height: int
    time_ms: int
    market: int
    order_id: int
    is_buy: bool
    is_maker: bool
    price: int
    size_lots: int
    fee: int
    counterparty: bytes


@dataclass(frozen=True, slots=True)
class TradeRecord:
    height: int
    time_ms: int
    market: int
    price: int
    size_lots: int
    taker_is_buy: bool
    taker_order_id: int
    maker_order_id: int
    taker: bytes
    maker: bytes


@dataclass(frozen=True, slots=True)
class AccountProof:
    """A verified account entry: `value` the canonical entry bytes (None: the account holds nothing)."""

    address: bytes
    height: int
    root: bytes
    value: bytes | None
    balances: dict[int, int]
    holds: dict[int, int]


def parse_order(raw: dict[str, Any]) -> Order:
    return Order(
        int(raw["order_id"]), raw["market"], raw["side"] == "buy", int(raw["price"]), int(raw["size_lots"]),
        int(raw["orig_size_lots"]), None if raw["client_id"] is None else int(raw["client_id"]),
        int(raw["expires_at_ms"]), raw["post_only"], int(raw["seq"]),
    )


def parse_balances(raw: list[dict[str, Any]]) -> dict[int, Balance]:
    return {b["asset"]: Balance(b["asset"], int(b["balance"]), int(b["hold"])) for b in raw}


def parse_results(raw: dict[str, Any]) -> tuple[ActionOutcome, ...]:
    return tuple(
        ActionOutcome(r["code"], r["name"], None if r["order_id"] is None else int(r["order_id"]),
                      int(r["filled_lots"]))
        for r in raw["results"]
    )


def compute_tx_root(tx_hash: bytes, path: list[list[str]]) -> bytes:
    """The transactions root that the `tx` method's `proof.path` leads to from `tx_hash` (docs/API.md `tx`)."""
    node = hashlib.sha256(b"\x00" + tx_hash).digest()
    for side, sibling_hex in path:
        sibling = bytes.fromhex(sibling_hex)
        pair = sibling + node if side == "left" else node + sibling
        node = hashlib.sha256(b"\x01" + pair).digest()
    return node


def parse_account_proof(raw: dict[str, Any], trusted_root: bytes | None = None) -> AccountProof:
    """Check an `account_proof` result with stf/proof.py; `trusted_root` (e.g. a committed app hash) if known."""
    address, root = bytes.fromhex(raw["address"]), bytes.fromhex(raw["root"])
    value = None if raw["value"] is None else bytes.fromhex(raw["value"])
    entries, siblings = raw["proof"]
    try:
        proof = Proof.from_wire([[[bytes.fromhex(k), bytes.fromhex(d)] for k, d in entries],
                                 [[bytes.fromhex(h) for h in group] for group in siblings]])
    except (ValueError, TypeError) as exc:
        raise ProofError(f"malformed proof: {exc}") from None
    if trusted_root is not None and root != trusted_root:
        raise ProofError(f"proof is against root {root.hex()}, not the trusted {trusted_root.hex()}")
    if not verify_proof(root, account_key(address), value, proof):
        raise ProofError(f"the proof of account {address.hex()} does not verify against {root.hex()}")
    balances: dict[int, int] = {}
    holds: dict[int, int] = {}
    if value is not None:
        raw_balances, raw_holds = codec.decode(value, len(value))[:2]
        balances, holds = dict(raw_balances), dict(raw_holds)
    return AccountProof(address, int(raw["height"]), root, value, balances, holds)


class KabutoClient:
    """An async JSON-RPC client over HTTP; pass a `session` to share one, else it opens its own."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/") + "/"
        self._session = session
        self._owns_session = session is None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> "KabutoClient":
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, params: Any = None) -> Any:
        """One call; the result, or RpcCallError."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        async with self._session.post(self.url, data=json.dumps(request),
                                      headers={"Content-Type": "application/json"}) as response:
            body = json.loads(await response.read())
        if "error" in body:
            error = body["error"]
            raise RpcCallError(error["code"], error["message"], error.get("data"))
        return body["result"]

    # -- queries -------------------------------------------------------------------------------------------

    async def status(self) -> Status:
        raw = await self.call("status")
        sync = raw["sync_info"]
        return Status(
            raw["node_info"]["network"], int(sync["latest_block_height"]), bytes.fromhex(sync["latest_block_hash"]),
            bytes.fromhex(sync["latest_app_hash"]), int(sync["latest_block_time_ms"]),
            int(sync["earliest_block_height"]), sync["catching_up"],
        )

    async def markets(self) -> dict[str, Any]:
        return await self.call("markets")

    async def book(self, market: int | str, depth: int = 20) -> dict[str, Any]:
        """`{"market", "seq", "height", "bids": [(price, size)], "asks": [...], "checksum"}` with ints."""
        raw = await self.call("book", {"market": market, "depth": depth})
        return {**raw, "seq": int(raw["seq"]), "height": int(raw["height"]),
                "bids": [(int(p), int(s)) for p, s in raw["bids"]], "asks": [(int(p), int(s)) for p, s in raw["asks"]]}

    async def balances(self, address: bytes) -> dict[int, Balance]:
        return parse_balances((await self.call("account", {"address": address.hex()}))["balances"])

    async def open_orders(self, address: bytes, market: int | str | None = None) -> list[Order]:
        params: dict[str, Any] = {"address": address.hex()}
        if market is not None:
            params["market"] = market
        return [parse_order(o) for o in (await self.call("open_orders", params))["orders"]]

    async def order_status(self, order_id: int | None = None, address: bytes | None = None,
                           client_id: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if order_id is not None:
            params["order_id"] = str(order_id)
        if address is not None:
            params["address"] = address.hex()
        if client_id is not None:
            params["client_id"] = str(client_id)
        return await self.call("order_status", params)

    async def fills(self, address: bytes, market: int | str | None = None, limit: int = 100,
                    before: str | None = None) -> tuple[list[Fill], str | None]:
        """One page of the account's fills, newest first, and the cursor of the next page (None: no more)."""
        params: dict[str, Any] = {"address": address.hex(), "limit": limit}
        if market is not None:
            params["market"] = market
        if before is not None:
            params["before"] = before
        raw = await self.call("fills", params)
        fills = [
            Fill(int(f["height"]), int(f["time_ms"]), f["market"], int(f["order_id"]), f["side"] == "buy",
                 f["liquidity"] == "maker", int(f["price"]), int(f["size_lots"]), int(f["fee"]),
                 bytes.fromhex(f["counterparty"]))
            for f in raw["fills"]
        ]
        return fills, raw["next_cursor"]

    async def trades(self, market: int | str, limit: int = 100) -> list[TradeRecord]:
        raw = await self.call("trades", {"market": market, "limit": limit})
        return [
            TradeRecord(int(t["height"]), int(t["time_ms"]), t["market"], int(t["price"]), int(t["size_lots"]),
                        t["side"] == "buy", int(t["taker_order_id"]), int(t["maker_order_id"]),
                        bytes.fromhex(t["taker"]), bytes.fromhex(t["maker"]))
            for t in raw["trades"]
        ]

    async def tx(self, tx_hash: bytes) -> dict[str, Any]:
        """The transaction with its receipt, its inclusion proof checked against its block's `txs_root`."""
        raw = await self.call("tx", {"hash": tx_hash.hex()})
        header = (await self.block(int(raw["height"])))["header"]
        if raw["proof"]["txs_root"] != header["txs_root"] or \
                compute_tx_root(tx_hash, raw["proof"]["path"]).hex() != header["txs_root"]:
            raise ProofError(f"transaction {tx_hash.hex()} is not proven in block {raw['height']}")
        return raw

    async def block(self, height: int | None = None) -> dict[str, Any]:
        return await self.call("block", {} if height is None else {"height": str(height)})

    async def block_diff(self, height: int | None = None) -> dict[str, Any]:
        return await self.call("block_diff", {} if height is None else {"height": str(height)})

    async def genesis(self) -> dict[str, Any]:
        return await self.call("genesis")

    async def validators(self) -> dict[bytes, int]:
        raw = await self.call("validators")
        return {bytes.fromhex(v["address"]): int(v["power"]) for v in raw["validators"]}

    async def get_account_proof(self, address: bytes, trusted_root: bytes | None = None) -> AccountProof:
        """The account's state entry, verified against the state root served with it (and `trusted_root`)."""
        return parse_account_proof(await self.call("account_proof", {"address": address.hex()}), trusted_root)

    # -- submission ----------------------------------------------------------------------------------------

    async def broadcast_async(self, signed: SignedTx | bytes) -> bytes:
        wire = signed.wire if isinstance(signed, SignedTx) else signed
        return bytes.fromhex((await self.call("broadcast_tx_async", {"tx": wire.hex()}))["hash"])

    async def submit(self, signed: SignedTx | bytes) -> bytes:
        """Admission only (`broadcast_tx_sync`): the hash, or TxRejected."""
        wire = signed.wire if isinstance(signed, SignedTx) else signed
        raw = await self.call("broadcast_tx_sync", {"tx": wire.hex()})
        if raw["code"] != "ok":
            raise TxRejected(bytes.fromhex(raw["hash"]), raw["code"], raw["message"])
        return bytes.fromhex(raw["hash"])

    async def submit_and_wait(self, signed: SignedTx | bytes, timeout_ms: int | None = None) -> Committed:
        """Admission, then inclusion (`broadcast_tx_commit`): the height and per-action results.

        Raises TxRejected when admission refuses it, RpcCallError -32010 when no block included it in time.
        """
        wire = signed.wire if isinstance(signed, SignedTx) else signed
        params: dict[str, Any] = {"tx": wire.hex()}
        if timeout_ms is not None:
            params["timeout_ms"] = timeout_ms
        raw = await self.call("broadcast_tx_commit", params)
        tx_hash = bytes.fromhex(raw["hash"])
        if raw["check_tx"]["code"] != "ok":
            raise TxRejected(tx_hash, raw["check_tx"]["code"], raw["check_tx"]["message"])
        return Committed(tx_hash, int(raw["height"]), parse_results(raw["tx_result"]))
