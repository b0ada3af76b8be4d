"""The mempool: admission, dedup, caps, reaping for a proposal, and recheck after each block.

Contract.
- `admit(wire, state)` runs every check a block runs on a transaction of its own, against the committed
  state: size, canonical decoding, signature (once: the decoded transaction is kept and handed to `apply_block`
  through `verified()`), authority (the account itself, or an agent approved in an earlier block, signing trading
  actions only), and the nonce rules against the signer's kept nonces *and* the nonces of its transactions
  already pending, with the window taken around the last block's time. Then the pool's own caps: total count
  and bytes, count and bytes per signer. A refusal raises a `KabutoError` with a stable `code`: the STF's for
  transaction rules, `MempoolError` subclasses here for the pool's.
- `reap(state, time_ms, max_txs, max_bytes)` returns the wire bytes of a block body that `apply_block` will
  accept on top of `state` at `time_ms`, whose encoded transaction list (each wire with its msgpack header) is at
  most `max_bytes`: it walks the pending transactions in arrival order, then re-checks
  authority and nonces in the block's execution order (makers first), skipping any that would make the block
  invalid. Skipping only relaxes the nonce rules for the ones after, so one pass is enough.
- `update(state, committed)` after a block: drops the committed transactions, then every pending one that can
  no longer be included (nonce used, too low or out of the window, authority gone).

Order and fairness: first come, first served by an arrival counter; no fees. The per-signer caps keep one
sender from filling the pool. Iteration is always over insertion-ordered dicts, never sets.

Known limits: signature verification happens inside `admit`, on the caller's thread; the node runs it off the
event loop. There is no eviction of old transactions other than by `update`'s checks and the window.
"""

from dataclasses import dataclass

from stf.block import compute_execution_order, validate_authority
from stf.constants import MAX_BLOCK_BYTES, MAX_BLOCK_TXS
from stf.errors import InvalidTransaction, KabutoError
from stf.nonces import compute_kept_nonces, validate_nonce
from stf.state import State
from stf.tx import Transaction, decode_transaction, validate_signature


def compute_encoded_tx_bytes(wire_len: int) -> int:
    """The bytes one transaction adds to a block's encoding: its wire plus its msgpack bin header."""
    return wire_len + (2 if wire_len < 0x100 else 3 if wire_len < 0x10000 else 5)


class MempoolError(KabutoError):
    code = "mempool"


class AlreadyKnown(MempoolError):
    code = "already_in_mempool"


class MempoolFull(MempoolError):
    code = "mempool_full"


class SenderLimit(MempoolError):
    code = "sender_limit"


class NonceAlreadyPending(MempoolError):
    code = "nonce_already_pending"


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = 50_000
    max_bytes: int = 64 << 20
    max_txs_per_sender: int = 1_000
    max_bytes_per_sender: int = 4 << 20


class Mempool:
    __slots__ = ("limits", "_pending", "_bytes", "_by_signer")

    def __init__(self, limits: MempoolLimits = MempoolLimits()) -> None:
        self.limits = limits
        self._pending: dict[bytes, Transaction] = {}           # hash -> tx, in arrival order
        self._bytes = 0
        self._by_signer: dict[bytes, dict[bytes, None]] = {}    # signer -> its pending hashes, in arrival order

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._pending

    def admit(self, wire: bytes, state: State) -> Transaction:
        """Check `wire` against the committed `state` and the pool; returns the decoded transaction."""
        tx = decode_transaction(wire)
        if tx.hash in self._pending:
            raise AlreadyKnown("this transaction is already pending")
        validate_signature(tx, state.params.chain_id)
        validate_authority(state, tx)
        self.validate_nonce_with_pending(state, tx)
        self.validate_caps(tx)
        self._pending[tx.hash] = tx
        self._bytes += len(tx.wire)
        self._by_signer.setdefault(tx.signer, {})[tx.hash] = None
        return tx

    def validate_nonce_with_pending(self, state: State, tx: Transaction) -> None:
        kept = state.nonces.get(tx.signer, [])
        for pending_hash in self._by_signer.get(tx.signer, ()):
            if self._pending[pending_hash].nonce == tx.nonce:
                raise NonceAlreadyPending(f"another pending transaction of this signer uses nonce {tx.nonce}")
        validate_nonce(state.params, state.time_ms, kept, tx.nonce)

    def validate_caps(self, tx: Transaction) -> None:
        limits = self.limits
        if len(self._pending) >= limits.max_txs or self._bytes + len(tx.wire) > limits.max_bytes:
            raise MempoolFull(f"the mempool holds {len(self._pending)} transactions, {self._bytes} bytes")
        mine = self._by_signer.get(tx.signer, {})
        mine_bytes = sum(len(self._pending[h].wire) for h in mine)
        if len(mine) >= limits.max_txs_per_sender or mine_bytes + len(tx.wire) > limits.max_bytes_per_sender:
            raise SenderLimit(f"this signer has {len(mine)} pending transactions, {mine_bytes} bytes")

    def verified(self) -> dict[bytes, Transaction]:
        """Wire bytes -> decoded, signature-checked transaction, for `apply_block(..., verified=...)`."""
        return {tx.wire: tx for tx in self._pending.values()}

    def reap(self, state: State, time_ms: int, max_txs: int = MAX_BLOCK_TXS, max_bytes: int = MAX_BLOCK_BYTES) -> list[bytes]:
        """A block body valid on top of `state` at `time_ms`, in arrival order, within the limits."""
        candidates, size = [], 0
        for tx in self._pending.values():
            encoded = compute_encoded_tx_bytes(len(tx.wire))
            if len(candidates) == max_txs or size + encoded > max_bytes:
                break
            candidates.append(tx)
            size += encoded
        accepted: dict[bytes, None] = {}
        kept_by_signer: dict[bytes, list[int]] = {}
        for tx in compute_execution_order(candidates):
            kept = kept_by_signer.get(tx.signer)
            if kept is None:
                kept = state.nonces.get(tx.signer, [])
            try:
                validate_authority(state, tx)
                validate_nonce(state.params, time_ms, kept, tx.nonce)
            except InvalidTransaction:
                continue
            kept_by_signer[tx.signer] = compute_kept_nonces(state.params, kept, tx.nonce)
            accepted[tx.hash] = None
        return [tx.wire for tx in candidates if tx.hash in accepted]

    def update(self, state: State, committed: list[bytes]) -> list[bytes]:
        """Remove the committed hashes, then recheck the rest against the new state; returns the dropped hashes."""
        for tx_hash in committed:
            self._remove(tx_hash)
        dropped = []
        for tx_hash, tx in list(self._pending.items()):
            try:
                validate_authority(state, tx)
                validate_nonce(state.params, state.time_ms, state.nonces.get(tx.signer, []), tx.nonce)
            except InvalidTransaction:
                self._remove(tx_hash)
                dropped.append(tx_hash)
        return dropped

    def _remove(self, tx_hash: bytes) -> None:
        tx = self._pending.pop(tx_hash, None)
        if tx is None:
            return
        self._bytes -= len(tx.wire)
        mine = self._by_signer[tx.signer]
        del mine[tx_hash]
        if not mine:
            del self._by_signer[tx.signer]
