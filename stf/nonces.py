"""Replay protection (Hyperliquid's scheme): per signer, the N highest nonces seen (N = genesis
`nonce_set_size`). A nonce (a millisecond timestamp chosen by the client) is accepted only if

1. it lies in the window (block time - nonce_window_past_ms, block time + nonce_window_future_ms),
2. it is not among the kept nonces, and
3. once N are kept, it is greater than the smallest kept one.

So a bot may send many transactions concurrently and out of order, but none twice. Each rule has its own error.
"""

from bisect import bisect_left, insort

from stf.errors import NonceAlreadyUsed, NonceTooLow, NonceTooNew, NonceTooOld
from stf.params import ChainParams

NO_NONCES: list[int] = []  # a signer's kept nonces before its first transaction; never changed


def validate_nonce(params: ChainParams, time_ms: int, kept: list[int], nonce: int) -> None:
    if nonce <= time_ms - params.nonce_window_past_ms:
        raise NonceTooOld(f"nonce {nonce} is at or before block time minus {params.nonce_window_past_ms} ms")
    if nonce >= time_ms + params.nonce_window_future_ms:
        raise NonceTooNew(f"nonce {nonce} is at or after block time plus {params.nonce_window_future_ms} ms")
    index = bisect_left(kept, nonce)
    if index < len(kept) and kept[index] == nonce:
        raise NonceAlreadyUsed(f"nonce {nonce} was already used by this signer")
    if len(kept) >= params.nonce_set_size and index == 0:
        raise NonceTooLow(f"nonce {nonce} is below the smallest of the {len(kept)} kept nonces ({kept[0]})")


def compute_kept_nonces(params: ChainParams, kept: list[int], nonce: int) -> list[int]:
    """The kept set after accepting `nonce` (a new sorted list; the smallest drops out past N)."""
    index = bisect_left(kept, nonce)
    new = kept[:index] + [nonce] + kept[index:]
    return new[len(new) - params.nonce_set_size:] if len(new) > params.nonce_set_size else new


def accept_nonce(
    params: ChainParams, kept_by_signer: dict[bytes, list[int]], committed: list[int], signer: bytes, nonce: int,
) -> None:
    """Record `nonce`, already validated, in `kept_by_signer`: a block's (or a candidate block's) new kept lists.

    The signer's first transaction copies its `committed` list (never changed); later ones change that copy in
    place, so a signer with many transactions in a block costs one copy, not one per transaction. The result
    equals `compute_kept_nonces` applied transaction by transaction.
    """
    kept = kept_by_signer.get(signer)
    if kept is None:
        kept = kept_by_signer[signer] = committed.copy()
    insort(kept, nonce)
    if len(kept) > params.nonce_set_size:
        del kept[:len(kept) - params.nonce_set_size]
