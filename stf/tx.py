"""Transactions and actions: wire format, decoding with validation, signing and hashing (docs/PROTOCOL.md).

Wire format of a signed transaction: the canonical msgpack array `[body, signature]`, both `bin`. The body is
itself canonical msgpack: `[version, account, signer_public_key, nonce, [action, ...]]`; each action is an array
whose first element is its type number. The signature covers `compute_sign_bytes(chain_id, body)`; the
transaction hash is SHA-256 of the whole wire bytes.

Actions and decoded transactions are immutable typed NamedTuples rather than frozen dataclasses: they are built
once per action on the hottest path of the node, and a NamedTuple is built in one C call (about 0.15 us against
1 us for an eight-field frozen dataclass, measured).

`decode_transaction` performs every stateless check (encoding, sizes, field types and ranges, known action
types) and raises a specific `InvalidTransaction` subclass. It does not verify the signature: that is
`validate_signature`, kept apart so a node verifies each transaction once, off the hot path.
"""

import hashlib
from typing import Any, NamedTuple

from stf import codec
from stf.constants import (
    ADDRESS_LEN, HASH_LEN, MAX_ACTIONS_PER_TX, MAX_ORACLE_PRICES_PER_ACTION, MAX_TX_BYTES,
    MAX_WITHDRAW_DESTINATION_LEN, PROTOCOL_VERSION, PUBKEY_LEN, SIGNATURE_LEN, VOTE_PRECOMMIT, VOTE_PREVOTE,
)
from stf.crypto import PrivateKey, compute_address, compute_sign_bytes, is_valid_signature
from stf.errors import (
    BadSignature, MalformedAction, MalformedEncoding, MalformedTransaction, TooManyActions, TransactionTooLarge,
    UnknownAction,
)
from stf.units import U64_MAX

TIF_GTC = 0
TIF_IOC = 1
TIF_FOK = 2
TIF_ALO = 3
TIME_IN_FORCE_NAMES = {TIF_GTC: "gtc", TIF_IOC: "ioc", TIF_FOK: "fok", TIF_ALO: "alo"}


def _field_u64(value: Any, name: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= U64_MAX:
        raise MalformedAction(f"{name} must be an integer in [{minimum}, 2^64-1]")
    return value


def _field_optional_u64(value: Any, name: str) -> int | None:
    return None if value is None else _field_u64(value, name, 1)


def _field_bool(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise MalformedAction(f"{name} must be a boolean")
    return value


def _field_bytes(value: Any, name: str, length: int) -> bytes:
    if type(value) is not bytes or len(value) != length:
        raise MalformedAction(f"{name} must be {length} bytes")
    return value


class Transfer(NamedTuple):
    KIND = 1
    to: bytes
    asset: int
    amount: int

    @classmethod
    def from_fields(cls, f: list) -> "Transfer":
        return cls(_field_bytes(f[0], "to", ADDRESS_LEN), _field_u64(f[1], "asset"), _field_u64(f[2], "amount", 1))


class Withdraw(NamedTuple):
    KIND = 2
    asset: int
    amount: int
    destination: bytes

    @classmethod
    def from_fields(cls, f: list) -> "Withdraw":
        destination = f[2]
        if type(destination) is not bytes or not 1 <= len(destination) <= MAX_WITHDRAW_DESTINATION_LEN:
            raise MalformedAction(f"destination must be 1 to {MAX_WITHDRAW_DESTINATION_LEN} bytes")
        return cls(_field_u64(f[0], "asset"), _field_u64(f[1], "amount", 1), destination)


class Faucet(NamedTuple):
    KIND = 3
    asset: int
    amount: int

    @classmethod
    def from_fields(cls, f: list) -> "Faucet":
        return cls(_field_u64(f[0], "asset"), _field_u64(f[1], "amount", 1))


class ApproveAgent(NamedTuple):
    KIND = 4
    agent: bytes

    @classmethod
    def from_fields(cls, f: list) -> "ApproveAgent":
        return cls(_field_bytes(f[0], "agent", ADDRESS_LEN))


class RevokeAgent(NamedTuple):
    KIND = 5
    agent: bytes

    @classmethod
    def from_fields(cls, f: list) -> "RevokeAgent":
        return cls(_field_bytes(f[0], "agent", ADDRESS_LEN))


class PlaceOrder(NamedTuple):
    """A limit order. `expires_at_ms` 0 means good until cancelled; `client_id` None means none."""

    KIND = 10
    market: int
    is_buy: bool
    price: int
    size_lots: int
    time_in_force: int
    client_id: int | None
    expires_at_ms: int
    reduce_only: bool

    @classmethod
    def from_fields(cls, f: list) -> "PlaceOrder":
        tif = _field_u64(f[4], "time_in_force")
        if tif not in TIME_IN_FORCE_NAMES:
            raise MalformedAction("time_in_force must be 0 (gtc), 1 (ioc), 2 (fok) or 3 (alo)")
        return cls(
            _field_u64(f[0], "market"), _field_bool(f[1], "is_buy"), _field_u64(f[2], "price", 1),
            _field_u64(f[3], "size_lots", 1), tif, _field_optional_u64(f[5], "client_id"),
            _field_u64(f[6], "expires_at_ms"), _field_bool(f[7], "reduce_only"),
        )


class MarketOrder(NamedTuple):
    """Immediate-or-cancel at any price up to `worst_price` (a buy) or down to it (a sell)."""

    KIND = 11
    market: int
    is_buy: bool
    size_lots: int
    worst_price: int
    client_id: int | None
    reduce_only: bool

    @classmethod
    def from_fields(cls, f: list) -> "MarketOrder":
        return cls(
            _field_u64(f[0], "market"), _field_bool(f[1], "is_buy"), _field_u64(f[2], "size_lots", 1),
            _field_u64(f[3], "worst_price", 1), _field_optional_u64(f[4], "client_id"),
            _field_bool(f[5], "reduce_only"),
        )


class Cancel(NamedTuple):
    KIND = 12
    market: int
    order_id: int

    @classmethod
    def from_fields(cls, f: list) -> "Cancel":
        return cls(_field_u64(f[0], "market"), _field_u64(f[1], "order_id", 1))


class CancelByClientId(NamedTuple):
    KIND = 13
    market: int
    client_id: int

    @classmethod
    def from_fields(cls, f: list) -> "CancelByClientId":
        return cls(_field_u64(f[0], "market"), _field_u64(f[1], "client_id", 1))


class CancelAll(NamedTuple):
    """Cancel every open order of the account, in one market or (market None) in all."""

    KIND = 14
    market: int | None

    @classmethod
    def from_fields(cls, f: list) -> "CancelAll":
        return cls(None if f[0] is None else _field_u64(f[0], "market"))


class Modify(NamedTuple):
    """Set a resting order's price and remaining size. Priority is kept only if the price is unchanged and the
    size does not grow (a partial cancel, allowed like a cancel on a halted market or with a stale oracle);
    otherwise the order is re-sequenced under the same order id and, unless it was placed post-only (which then
    fails with POST_ONLY_WOULD_CROSS), may trade."""

    KIND = 15
    market: int
    order_id: int
    price: int
    size_lots: int

    @classmethod
    def from_fields(cls, f: list) -> "Modify":
        return cls(
            _field_u64(f[0], "market"), _field_u64(f[1], "order_id", 1), _field_u64(f[2], "price", 1),
            _field_u64(f[3], "size_lots", 1),
        )


class ScheduleCancel(NamedTuple):
    """Dead-man's switch: cancel all the account's orders at the first block with time >= `at_ms`; None clears."""

    KIND = 16
    at_ms: int | None

    @classmethod
    def from_fields(cls, f: list) -> "ScheduleCancel":
        return cls(_field_optional_u64(f[0], "at_ms"))


class OraclePrice(NamedTuple):
    """A validator's oracle prices: [[market, price], ...] with market ids strictly ascending; price in quote
    atoms per lot. Accepted only from a current validator signing for itself."""

    KIND = 20
    prices: tuple[tuple[int, int], ...]

    @classmethod
    def from_fields(cls, f: list) -> "OraclePrice":
        raw = f[0]
        if type(raw) is not list or not 1 <= len(raw) <= MAX_ORACLE_PRICES_PER_ACTION:
            raise MalformedAction(f"prices must be a list of 1 to {MAX_ORACLE_PRICES_PER_ACTION} [market, price]")
        prices = []
        for pair in raw:
            if type(pair) is not list or len(pair) != 2:
                raise MalformedAction("each oracle price is [market, price]")
            prices.append((_field_u64(pair[0], "market"), _field_u64(pair[1], "price", 1)))
        if any(prices[i][0] >= prices[i + 1][0] for i in range(len(prices) - 1)):
            raise MalformedAction("oracle prices must list market ids in strictly ascending order")
        return cls(tuple(prices))


class CollateralTransfer(NamedTuple):
    """Move `amount` atoms of the collateral asset from the spot balance into the cross margin (`to_perp`) or
    back out of it."""

    KIND = 30
    amount: int
    to_perp: bool

    @classmethod
    def from_fields(cls, f: list) -> "CollateralTransfer":
        return cls(_field_u64(f[0], "amount", 1), _field_bool(f[1], "to_perp"))


class SetLeverage(NamedTuple):
    """Choose the leverage (an integer >= 1) and the margin mode (cross or isolated) of a perp market."""

    KIND = 31
    market: int
    leverage: int
    is_cross: bool

    @classmethod
    def from_fields(cls, f: list) -> "SetLeverage":
        return cls(_field_u64(f[0], "market"), _field_u64(f[1], "leverage", 1), _field_bool(f[2], "is_cross"))


class IsolatedMargin(NamedTuple):
    """Add `amount` to an isolated position's margin from the cross collateral (`add`), or remove it."""

    KIND = 32
    market: int
    amount: int
    add: bool

    @classmethod
    def from_fields(cls, f: list) -> "IsolatedMargin":
        return cls(_field_u64(f[0], "market"), _field_u64(f[1], "amount", 1), _field_bool(f[2], "add"))


class PlaceTrigger(NamedTuple):
    """A stop or take-profit order on the mark price. A stop buy and a take-profit sell fire once the mark is
    at or above `trigger_price`; a stop sell and a take-profit buy once it is at or below. `limit_price` 0 makes
    it a market order; `size_lots` 0 closes the whole position when it fires (a position TP/SL, always
    reduce-only)."""

    KIND = 33
    market: int
    is_buy: bool
    size_lots: int
    trigger_price: int
    take_profit: bool
    limit_price: int
    reduce_only: bool

    @classmethod
    def from_fields(cls, f: list) -> "PlaceTrigger":
        return cls(
            _field_u64(f[0], "market"), _field_bool(f[1], "is_buy"), _field_u64(f[2], "size_lots"),
            _field_u64(f[3], "trigger_price", 1), _field_bool(f[4], "take_profit"), _field_u64(f[5], "limit_price"),
            _field_bool(f[6], "reduce_only"),
        )


class CancelTrigger(NamedTuple):
    KIND = 34
    market: int
    trigger_id: int

    @classmethod
    def from_fields(cls, f: list) -> "CancelTrigger":
        return cls(_field_u64(f[0], "market"), _field_u64(f[1], "trigger_id", 1))


class Govern(NamedTuple):
    """A governor's approval of one governance operation (docs/PROTOCOL.md §Governance): `operation` is
    `[op, proposal_id, ...arguments]`; it runs once the threshold of distinct governors approved the identical
    operation. Checked for shape here and for meaning when it runs."""

    KIND = 40
    operation: tuple

    @classmethod
    def from_fields(cls, f: list) -> "Govern":
        raw = f[0]
        if type(raw) is not list or len(raw) < 2 or type(raw[0]) is not int or type(raw[1]) is not int:
            raise MalformedAction("operation must be [op, proposal_id, ...arguments]")
        return cls(_freeze(raw, 0))


class EvidenceVote(NamedTuple):
    """One signed consensus vote, as consensus encodes it (`consensus.messages.encode_message`): `vote_type` 2
    (prevote) or 3 (precommit), `value_hash` None for nil, `validator` the signer's address."""

    vote_type: int
    height: int
    round: int
    value_hash: bytes | None
    validator: bytes
    timestamp_ms: int
    signature: bytes

    @classmethod
    def from_field(cls, raw: Any, name: str) -> "EvidenceVote":
        if type(raw) is not list or len(raw) != 7:
            raise MalformedAction(f"{name} must be a vote [type, height, round, value_hash, validator, "
                                  f"timestamp_ms, signature]")
        vote_type, height, round_, value_hash, validator, timestamp_ms, signature = raw
        if type(vote_type) is not int or vote_type not in (VOTE_PREVOTE, VOTE_PRECOMMIT):
            raise MalformedAction(f"{name} type must be {VOTE_PREVOTE} (prevote) or {VOTE_PRECOMMIT} (precommit)")
        if value_hash is not None:
            value_hash = _field_bytes(value_hash, f"{name} value_hash", HASH_LEN)
        return cls(
            vote_type, _field_u64(height, f"{name} height", 1), _field_u64(round_, f"{name} round"), value_hash,
            _field_bytes(validator, f"{name} validator", ADDRESS_LEN),
            _field_u64(timestamp_ms, f"{name} timestamp_ms"),
            _field_bytes(signature, f"{name} signature", SIGNATURE_LEN),
        )


class ReportEvidence(NamedTuple):
    """Evidence that a validator signed two different votes for one (height, round, vote type): the offender's
    Ed25519 public key and the two votes. Any account may submit it; the first report of an offence records it
    (stf/evidence.py)."""

    KIND = 41
    public_key: bytes
    vote_a: EvidenceVote
    vote_b: EvidenceVote

    @classmethod
    def from_fields(cls, f: list) -> "ReportEvidence":
        return cls(_field_bytes(f[0], "public_key", PUBKEY_LEN), EvidenceVote.from_field(f[1], "vote_a"),
                   EvidenceVote.from_field(f[2], "vote_b"))


def _freeze(value: Any, depth: int) -> Any:
    """Arrays become tuples; only integers, booleans, byte strings and nil may appear (no floats, maps or text),
    at most 6 arrays deep (an operation holding margin tiers needs 5)."""
    kind = type(value)
    if kind is list:
        if depth == 6:
            raise MalformedAction("operation arrays nest at most 6 deep")
        return tuple(_freeze(v, depth + 1) for v in value)
    if kind is int or kind is bool or kind is bytes or value is None:
        return value
    raise MalformedAction(f"operation values are integers, booleans, byte strings or nil, not {kind.__name__}")


Action = (
    Transfer | Withdraw | Faucet | ApproveAgent | RevokeAgent | PlaceOrder | MarketOrder | Cancel
    | CancelByClientId | CancelAll | Modify | ScheduleCancel | OraclePrice | CollateralTransfer | SetLeverage
    | IsolatedMargin | PlaceTrigger | CancelTrigger | Govern | ReportEvidence
)
ACTION_TYPES: dict[int, type] = {
    cls.KIND: cls for cls in (
        Transfer, Withdraw, Faucet, ApproveAgent, RevokeAgent, PlaceOrder, MarketOrder, Cancel, CancelByClientId,
        CancelAll, Modify, ScheduleCancel, OraclePrice, CollateralTransfer, SetLeverage, IsolatedMargin,
        PlaceTrigger, CancelTrigger, Govern, ReportEvidence,
    )
}
ACTION_FIELD_COUNTS: dict[int, int] = {kind: len(cls._fields) for kind, cls in ACTION_TYPES.items()}
# Actions an approved agent key may sign for its account: trading only, never moving funds or keys.
AGENT_ACTION_KINDS = frozenset((10, 11, 12, 13, 14, 15, 16, 31, 32, 33, 34))


def encode_action(action: Action) -> list:
    return [action.KIND, *action]


def decode_action(raw: Any) -> Action:
    if type(raw) is not list or not raw or type(raw[0]) is not int:
        raise MalformedAction("an action must be an array starting with its type number")
    cls = ACTION_TYPES.get(raw[0])
    if cls is None:
        raise UnknownAction(f"unknown action type {raw[0]}")
    if len(raw) - 1 != ACTION_FIELD_COUNTS[raw[0]]:
        raise MalformedAction(f"action type {raw[0]} takes {ACTION_FIELD_COUNTS[raw[0]]} fields")
    return cls.from_fields(raw[1:])


class Transaction(NamedTuple):
    """A decoded signed transaction. `account` is who it acts for; `signer` the address of the signing key."""

    wire: bytes
    hash: bytes
    body: bytes
    signature: bytes
    account: bytes
    signer_public_key: bytes
    signer: bytes
    nonce: int
    actions: tuple[Action, ...]


def _decode_body(body_raw: Any) -> tuple[bytes, bytes, int, tuple[Action, ...]]:
    if type(body_raw) is not list or len(body_raw) != 5:
        raise MalformedTransaction("body must be [version, account, signer, nonce, actions]")
    version, account, signer_public_key, nonce, actions_raw = body_raw
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise MalformedTransaction(f"unsupported version {version!r}")
    if type(account) is not bytes or len(account) != ADDRESS_LEN:
        raise MalformedTransaction("account must be 20 bytes")
    if type(signer_public_key) is not bytes or len(signer_public_key) != PUBKEY_LEN:
        raise MalformedTransaction("signer must be a 32-byte Ed25519 public key")
    if type(nonce) is not int or not 0 < nonce <= U64_MAX:
        raise MalformedTransaction("nonce must be an integer in [1, 2^64-1]")
    if type(actions_raw) is not list or not actions_raw:
        raise MalformedTransaction("actions must be a non-empty array")
    if len(actions_raw) > MAX_ACTIONS_PER_TX:
        raise TooManyActions(f"{len(actions_raw)} actions exceeds the limit of {MAX_ACTIONS_PER_TX}")
    return account, signer_public_key, nonce, tuple(decode_action(raw) for raw in actions_raw)


def decode_transaction(wire: bytes) -> Transaction:
    """Decode and check a signed transaction's bytes; raises a specific InvalidTransaction."""
    if type(wire) is not bytes:
        raise MalformedTransaction("a transaction is a byte string")
    if len(wire) > MAX_TX_BYTES:
        raise TransactionTooLarge(f"{len(wire)} bytes exceeds the limit of {MAX_TX_BYTES}")
    try:
        envelope = codec.decode_canonical(wire, MAX_TX_BYTES)
        if type(envelope) is not list or len(envelope) != 2:
            raise MalformedTransaction("a signed transaction is [body, signature]")
        body, signature = envelope
        if type(body) is not bytes or type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
            raise MalformedTransaction("body must be bytes and signature 64 bytes")
        account, signer_public_key, nonce, actions = _decode_body(codec.decode_canonical(body, MAX_TX_BYTES))
    except MalformedEncoding as exc:
        raise MalformedTransaction(str(exc)) from None
    return Transaction(
        wire, hashlib.sha256(wire).digest(), body, signature, account, signer_public_key,
        compute_address(signer_public_key), nonce, actions,
    )


def validate_signature(tx: Transaction, chain_id: str) -> None:
    if not is_valid_signature(tx.signer_public_key, compute_sign_bytes(chain_id, tx.body), tx.signature):
        raise BadSignature("the signature does not verify for this signer, chain id and body")


def encode_body(account: bytes, signer_public_key: bytes, nonce: int, actions: list[Action]) -> bytes:
    return codec.encode([PROTOCOL_VERSION, account, signer_public_key, nonce, [encode_action(a) for a in actions]])


def sign_transaction(
    key: PrivateKey, chain_id: str, nonce: int, actions: list[Action], account: bytes | None = None,
) -> bytes:
    """The wire bytes of a transaction signed by `key`, acting for `account` (default: the key's own)."""
    body = encode_body(account or key.address, key.public_key, nonce, actions)
    return codec.encode([body, key.sign(compute_sign_bytes(chain_id, body))])
