"""The two error tiers of the STF.

Tier 1, invalid input: a subclass of `KabutoError` is raised and the transaction is never included; a block that
contains one is rejected whole (`InvalidBlock`). Each rejection rule has its own class so callers (mempool, RPC)
can report exactly which rule failed; `code` is the stable wire name documented in docs/PROTOCOL.md.

Tier 2, a valid transaction whose action fails: no exception; the action's receipt carries a `ResultCode` and
the action leaves no trace in the state.
"""

from enum import IntEnum


class KabutoError(Exception):
    """Base of every error the STF raises on bad input."""

    code = "invalid"


class MalformedEncoding(KabutoError):
    code = "malformed_encoding"


class InvalidTransaction(KabutoError):
    """The transaction can never be included as it stands."""

    code = "invalid_transaction"


class MalformedTransaction(InvalidTransaction):
    code = "malformed_transaction"


class TransactionTooLarge(InvalidTransaction):
    code = "tx_too_large"


class TooManyActions(InvalidTransaction):
    code = "too_many_actions"


class UnknownAction(InvalidTransaction):
    code = "unknown_action"


class MalformedAction(InvalidTransaction):
    code = "malformed_action"


class BadSignature(InvalidTransaction):
    code = "bad_signature"


class Unauthorized(InvalidTransaction):
    """The signer is neither the account nor an approved agent of it, or an agent signed a non-trading action."""

    code = "unauthorized"


class NonceAlreadyUsed(InvalidTransaction):
    code = "nonce_already_used"


class NonceTooLow(InvalidTransaction):
    code = "nonce_too_low"


class NonceTooOld(InvalidTransaction):
    code = "nonce_too_old"


class NonceTooNew(InvalidTransaction):
    code = "nonce_too_new"


class InvalidBlock(KabutoError):
    """The block cannot be applied; the state is unchanged."""

    code = "invalid_block"


class InvalidGenesis(KabutoError):
    code = "invalid_genesis"


class ResultCode(IntEnum):
    """Outcome of one action of an included transaction. 0 is success; the numbers are part of the protocol."""

    OK = 0
    UNAUTHORIZED = 1
    UNKNOWN_ASSET = 2
    INSUFFICIENT_BALANCE = 3
    INVALID_AMOUNT = 4  # a faucet mint above faucet_max_atoms or past an asset's supply cap of 2^64-1
    UNKNOWN_MARKET = 5
    MARKET_HALTED = 6
    INVALID_PRICE = 7
    INVALID_SIZE = 8
    BELOW_MIN_SIZE = 9
    POST_ONLY_WOULD_CROSS = 10
    FOK_NOT_FILLED = 11
    DUPLICATE_CLIENT_ID = 12
    UNKNOWN_ORDER = 13
    INVALID_EXPIRY = 14
    TOO_MANY_OPEN_ORDERS = 15
    FAUCET_DISABLED = 16
    SELF_TRANSFER = 17
    INVALID_AGENT = 18
    AGENT_LIMIT = 19
    REDUCE_ONLY_UNSUPPORTED = 20
    INVALID_SCHEDULE = 21
    NOT_A_VALIDATOR = 23
    PRICE_OUT_OF_BAND = 24
    ORACLE_STALE = 25
    INSUFFICIENT_MARGIN = 26
    REDUCE_ONLY_WOULD_INCREASE = 27
    LEVERAGE_TOO_HIGH = 28
    OPEN_ORDERS_IN_MARKET = 29
    POSITION_OPEN = 30
    NOT_A_PERP_MARKET = 31
    OPEN_INTEREST_CAP = 32
    UNKNOWN_TRIGGER = 33
    INVALID_TRIGGER = 34
    NOT_A_GOVERNOR = 35
    INVALID_PROPOSAL = 36
    TOO_MANY_TRIGGERS = 37
    NO_POSITION = 38
    EVIDENCE_MISMATCH = 39            # the two votes differ in type, height, round or validator
    EVIDENCE_SAME_VALUE = 40          # the two votes are for the same value (nil counts as a value)
    EVIDENCE_WRONG_KEY = 41           # the public key's address is not the votes' validator
    EVIDENCE_NOT_A_VALIDATOR = 42     # the offender is not in the current validator set
    EVIDENCE_FUTURE_HEIGHT = 43       # the votes' height is above the current block's
    EVIDENCE_ALREADY_RECORDED = 44    # the offence (validator, height, round, vote type) is already recorded
    EVIDENCE_BAD_SIGNATURE = 45       # a vote's signature does not verify for the key and the chain id
