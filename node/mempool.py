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
  most `max_bytes`: it walks the pending transactions in arrival order, then re-checks authority and nonces in
  the block's execution order (makers first), skipping any that would make the block invalid. Skipping only relaxes the nonce rules for the ones after, so one pass is enough.
- `update(state, committed, signers=())` after a block: drops the committed transactions, then the pending ones
  of the block's signers that can no longer be included (nonce used, too low or out of the window); a full pass
  over the pool (authority gone, the window moved) runs once the block time has advanced `FULL_RECHECK_MS`.
- `admit_verified(tx, state)` is `admit` after the signature: for callers that verify signatures themselves, in
  batches and off the event loop (node/submit.py).

Order and fairness: first come, first served by an arrival counter; no fees. The per-signer caps keep one
sender from filling the pool. Iteration is always over insertion-ordered dicts, never sets.

Cost: admission, removal and the per-signer checks are O(1) in the pool size (a record per signer: its pending
nonces and bytes); `verified()` is a map kept up to date, not rebuilt. Known limits: there is no eviction of old
transactions other than by `update`'s checks and the window.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from stf.block import compute_execution_order, validate_authority
from stf.constants import MAX_BLOCK_BYTES, MAX_BLOCK_TXS
from stf.errors import InvalidTransaction, KabutoError
from stf.nonces import NO_NONCES, accept_nonce, validate_nonce
from stf.state import State
from stf.tx import Transaction, decode_transaction, validate_signature


def compute_encoded_tx_bytes(wire_len: int) -> int:
    """The bytes one transaction adds to a block's encoding: its wire plus its msgpack bin header."""
    return wire_len + (2 if wire_len < 0x100 else 3 if wire_len < 0x10000 else 5)


FULL_RECHECK_MS = 2_000  # block time between two full rechecks of the pool (see `Mempool.update`)


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


class _Sender:
    """One signer's pending transactions: nonce -> hash (arrival order) and their total wire bytes."""
    __slots__ = ("by_nonce", "bytes")

    def __init__(self) -> None:
        self.by_nonce: dict[int, bytes] = {}
        self.bytes = 0


class Mempool:
    __slots__ = ("limits", "_pending", "_by_wire", "_bytes", "_by_signer", "_recheck_all_at_ms")

    def __init__(self, limits: MempoolLimits = MempoolLimits()) -> None:
        self.limits = limits
        self._pending: dict[bytes, Transaction] = {}           # hash -> tx, in arrival order
        self._by_wire: dict[bytes, Transaction] = {}           # wire -> tx: what `verified()` hands the STF
        self._bytes = 0
        self._by_signer: dict[bytes, _Sender] = {}
        self._recheck_all_at_ms: int | None = None              # block time of the last full recheck

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
        return self.admit_verified(tx, state)

    def admit_verified(self, tx: Transaction, state: State) -> Transaction:
        """`admit` for a transaction already decoded and signature-checked by the caller (node/submit.py checks
        signatures in batches off the event loop): every other check, then the pool."""
        if tx.hash in self._pending:
            raise AlreadyKnown("this transaction is already pending")
        validate_authority(state, tx)
        self.validate_nonce_with_pending(state, tx)
        self.validate_caps(tx)
        self._pending[tx.hash] = tx
        self._by_wire[tx.wire] = tx
        self._bytes += len(tx.wire)
        sender = self._by_signer.get(tx.signer)
        if sender is None:
            sender = self._by_signer[tx.signer] = _Sender()
        sender.by_nonce[tx.nonce] = tx.hash
        sender.bytes += len(tx.wire)
        return tx

    def validate_nonce_with_pending(self, state: State, tx: Transaction) -> None:
        sender = self._by_signer.get(tx.signer)
        if sender is not None and tx.nonce in sender.by_nonce:
            raise NonceAlreadyPending(f"another pending transaction of this signer uses nonce {tx.nonce}")
        validate_nonce(state.params, state.time_ms, state.nonces.get(tx.signer, []), tx.nonce)

    def validate_caps(self, tx: Transaction) -> None:
        limits = self.limits
        if len(self._pending) >= limits.max_txs or self._bytes + len(tx.wire) > limits.max_bytes:
            raise MempoolFull(f"the mempool holds {len(self._pending)} transactions, {self._bytes} bytes")
        sender = self._by_signer.get(tx.signer)
        count, size = (len(sender.by_nonce), sender.bytes) if sender is not None else (0, 0)
        if count >= limits.max_txs_per_sender or size + len(tx.wire) > limits.max_bytes_per_sender:
            raise SenderLimit(f"this signer has {count} pending transactions, {size} bytes")

    def verified(self) -> dict[bytes, Transaction]:
        """Wire bytes -> decoded, signature-checked transaction, for `apply_block(..., verified=...)`. The pool's
        own map, kept as transactions come and go: read it, never change it."""
        return self._by_wire

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
        params, nonces = state.params, state.nonces
        for tx in compute_execution_order(candidates):
            committed = nonces.get(tx.signer, NO_NONCES)
            try:
                validate_authority(state, tx)
                validate_nonce(params, time_ms, kept_by_signer.get(tx.signer, committed), tx.nonce)
            except InvalidTransaction:
                continue
            accept_nonce(params, kept_by_signer, committed, tx.signer, tx.nonce)
            accepted[tx.hash] = None
        return [tx.wire for tx in candidates if tx.hash in accepted]

    def update(self, state: State, committed: list[bytes], signers: Iterable[bytes] = ()) -> list[bytes]:
        """Remove the committed hashes, then recheck against the new state the pending transactions a block can
        have invalidated; returns the dropped hashes.

        A block changes the nonces of its own signers only, so their pending transactions (the signers of the
        committed ones, plus `signers`) are rechecked at every block. Everything else (an agent revoked, the nonce
        window moving past an old nonce) is rechecked in one full pass once the block time has moved
        `FULL_RECHECK_MS` past the previous full pass. Until then such a transaction may stay pending, but never
        reaches a block: `reap` checks authority and nonces again for each one it takes.
        """
        touched: dict[bytes, None] = dict.fromkeys(signers)
        for tx_hash in committed:
            tx = self._pending.get(tx_hash)
            if tx is not None:
                touched[tx.signer] = None
            self._remove(tx_hash)
        if self._recheck_all_at_ms is None or state.time_ms - self._recheck_all_at_ms >= FULL_RECHECK_MS:
            self._recheck_all_at_ms = state.time_ms
            candidates = list(self._pending.items())
        else:
            candidates = [(h, self._pending[h]) for signer in touched if signer in self._by_signer
                          for h in list(self._by_signer[signer].by_nonce.values())]
        dropped = []
        for tx_hash, tx in candidates:
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
        del self._by_wire[tx.wire]
        self._bytes -= len(tx.wire)
        sender = self._by_signer[tx.signer]
        del sender.by_nonce[tx.nonce]
        sender.bytes -= len(tx.wire)
        if not sender.by_nonce:
            del self._by_signer[tx.signer]
