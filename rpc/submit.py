"""Transaction submission: the `TxSubmitter` protocol the node implements and the `broadcast_tx_*` methods.

The node hands `rpc.server.make_app(..., submitter=...)` an object with `async submit(wire) -> SubmitResult`: it
runs mempool admission (every check a block would run, against the committed state, plus the pool's caps) and
answers `code` "ok" when the transaction was admitted, else the refusing error's stable code
(`KabutoError.code`: "bad_signature", "nonce_too_low", "mempool_full", ...; docs/PROTOCOL.md §6.1). Without a
submitter the three methods answer -32004 "transaction submission is not available on this node".

Methods (HTTP and WebSocket alike; docs/API.md §4 has examples). Params: `tx`, the signed transaction's wire
bytes (docs/PROTOCOL.md §4.2) as hex (optional 0x, either case), or as standard base64 with
`"encoding": "base64"`; at most `MAX_TX_BYTES` bytes (else -32602 naming `tx`). The hash is SHA-256 of the
wire bytes, computed here, so it is known even when admission fails.

- `broadcast_tx_async`: starts admission and answers `{"hash"}` at once, without its outcome (CometBFT's
  async semantics). The admission runs in a task the server owns; at most `max_pending_submissions` run at a
  time (then -32005 naming that limit); they are cancelled when the server shuts down. Whether it was admitted
  shows later through `tx`, the `account` channel, or by sending it again with `broadcast_tx_sync`.
- `broadcast_tx_sync`: waits for admission and answers `{"hash", "code", "message"}`; a refusal is a result
  with its code, not a JSON-RPC error (as CometBFT's CheckTx code).
- `broadcast_tx_commit`: waits for admission, then for a block that includes the transaction, up to
  `commit_timeout_seconds` (or `timeout_ms`, if smaller). Answers `{"hash", "check_tx": {"code", "message"},
  "height", "tx_result"}`; when admission refused it, `height` and `tx_result` are null and nothing is awaited.
  No inclusion in time: -32010 with `data = {"hash", "timeout_ms"}` (the transaction may still be included
  later); a server shutting down ends every wait at once the same way (`timeout_ms` "0"). Inclusion is learnt from the `blocks` channel's messages (`rpc.channels.publish_block`), so a node
  must publish every block. Over WebSocket the connection's other answers and notifications wait behind it.

Error codes here: -32004 not available (`data.feature = "submission"`), -32010 commit timeout, -32005 too many
pending submissions, -32602 bad `tx`/`encoding`/`timeout_ms`.
"""

import asyncio
import base64
import binascii
import hashlib
import logging
from collections.abc import Hashable
from typing import Any, NamedTuple, Protocol

from stf.constants import MAX_TX_BYTES

from rpc.jsonrpc import INVALID_PARAMS, CallContext, OneOf, Param, Route, RpcError, Str, UInt, limit_exceeded
from rpc.methods import NOT_AVAILABLE, TX_NOT_FOUND, format_receipt

__all__ = ["SUBMIT_OK", "COMMIT_TIMEOUT", "SubmitResult", "TxSubmitter", "InclusionWaiters", "Submission"]

log = logging.getLogger(__name__)

SUBMIT_OK = "ok"
COMMIT_TIMEOUT = -32010
BLOCKS_CHANNEL = "blocks"


class SubmitResult(NamedTuple):
    """Admission outcome: `code` "ok" when admitted, else the refusing error's stable code."""

    tx_hash: bytes
    code: str
    message: str


class TxSubmitter(Protocol):
    async def submit(self, wire: bytes) -> SubmitResult: ...


class ServerStopping(Exception):
    """The server is shutting down while a `broadcast_tx_commit` waits for inclusion."""


class InclusionWaiters:
    """Futures waiting for a transaction hash to appear in a published block; fed as a `Hub` listener."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}

    def __len__(self) -> int:
        return sum(len(futures) for futures in self._waiting.values())

    def watch(self, tx_hash: bytes) -> "asyncio.Future[int]":
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tx_hash.hex(), []).append(future)
        return future

    def forget(self, tx_hash: bytes, future: "asyncio.Future[int]") -> None:
        futures = self._waiting.get(tx_hash.hex(), [])
        if future in futures:
            futures.remove(future)
        if not futures:
            self._waiting.pop(tx_hash.hex(), None)

    def stop(self) -> None:
        """Server shutdown: every waiter ends at once with `ServerStopping`."""
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(ServerStopping())

    def on_publish(self, channel: str, key: Hashable, message: Any) -> None:
        """Resolve the waiters of every transaction in a `blocks` message with the block's height."""
        if channel != BLOCKS_CHANNEL or not self._waiting:
            return
        height = int(message["header"]["height"])
        for tx_hash in message["tx_hashes"]:
            for future in self._waiting.pop(tx_hash, ()):
                if not future.done():
                    future.set_result(height)


def _tx_param(value: Any) -> str:
    return Str(4 * MAX_TX_BYTES)(value)


def decode_tx(tx: str, encoding: str) -> bytes:
    """The wire bytes of the `tx` param, or -32602 naming it."""
    try:
        if encoding == "base64":
            wire = base64.b64decode(tx, validate=True)
        else:
            wire = bytes.fromhex(tx[2:] if tx.startswith("0x") else tx)
    except (ValueError, binascii.Error):
        raise RpcError(INVALID_PARAMS, f"Invalid params: tx: must be {encoding}", {"param": "tx"}) from None
    if not wire or len(wire) > MAX_TX_BYTES:
        raise RpcError(INVALID_PARAMS, f"Invalid params: tx: must be 1 to {MAX_TX_BYTES} bytes", {"param": "tx"})
    return wire


class Submission:
    """The broadcast methods over one submitter (or none), the inclusion waiters and the async tasks."""

    def __init__(
        self, submitter: TxSubmitter | None, commit_timeout_seconds: float, max_pending: int,
    ) -> None:
        self.submitter = submitter
        self.commit_timeout_seconds = commit_timeout_seconds
        self.max_pending = max_pending
        self.waiters = InclusionWaiters()
        self.tasks: set[asyncio.Task[None]] = set()

    def require_submitter(self) -> TxSubmitter:
        if self.submitter is None:
            raise RpcError(NOT_AVAILABLE, "transaction submission is not available on this node",
                           {"feature": "submission"})
        return self.submitter

    def reserve(self) -> None:
        if len(self.tasks) + len(self.waiters) >= self.max_pending:
            raise limit_exceeded(f"too many pending submissions: at most {self.max_pending}",
                                 "max_pending_submissions", self.max_pending)

    async def broadcast_tx_async(self, ctx: CallContext, tx: str, encoding: str) -> dict[str, Any]:
        submitter = self.require_submitter()
        wire = decode_tx(tx, encoding)
        self.reserve()
        task = asyncio.get_running_loop().create_task(self._admit_quietly(submitter, wire))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return {"hash": hashlib.sha256(wire).hexdigest()}

    @staticmethod
    async def _admit_quietly(submitter: TxSubmitter, wire: bytes) -> None:
        try:
            result = await submitter.submit(wire)
        except Exception:
            log.exception("asynchronous submission failed")
            return
        if result.code != SUBMIT_OK:
            log.debug("asynchronous submission %s refused: %s", result.tx_hash.hex(), result.code)

    async def broadcast_tx_sync(self, ctx: CallContext, tx: str, encoding: str) -> dict[str, Any]:
        submitter = self.require_submitter()
        wire = decode_tx(tx, encoding)
        result = await submitter.submit(wire)
        return {"hash": hashlib.sha256(wire).hexdigest(), "code": result.code, "message": result.message}

    async def broadcast_tx_commit(
        self, ctx: CallContext, tx: str, encoding: str, timeout_ms: int | None,
    ) -> dict[str, Any]:
        submitter = self.require_submitter()
        wire = decode_tx(tx, encoding)
        tx_hash = hashlib.sha256(wire).digest()
        timeout = self.commit_timeout_seconds
        if timeout_ms is not None:
            timeout = min(timeout, timeout_ms / 1000)
        self.reserve()
        included = self.waiters.watch(tx_hash)  # before submitting: the block may come while we wait
        try:
            result = await submitter.submit(wire)
            check = {"code": result.code, "message": result.message}
            if result.code != SUBMIT_OK:
                return {"hash": tx_hash.hex(), "check_tx": check, "height": None, "tx_result": None}
            if ctx.views.find_tx(tx_hash) is None:
                try:
                    await asyncio.wait_for(included, timeout)
                except TimeoutError:
                    raise RpcError(
                        COMMIT_TIMEOUT, "timed out waiting for the transaction to be included in a block",
                        {"hash": tx_hash.hex(), "timeout_ms": str(int(timeout * 1000))}) from None
                except ServerStopping:
                    raise RpcError(
                        COMMIT_TIMEOUT, "the node is shutting down; the transaction may still be included in a block",
                        {"hash": tx_hash.hex(), "timeout_ms": "0"}) from None
        finally:
            self.waiters.forget(tx_hash, included)
        return {"hash": tx_hash.hex(), "check_tx": check, **self.get_inclusion(ctx.views, tx_hash)}

    @staticmethod
    def get_inclusion(views: Any, tx_hash: bytes) -> dict[str, Any]:
        location = views.find_tx(tx_hash)
        result = None if location is None else views.get_result(location.height)
        if location is None or result is None:
            raise RpcError(TX_NOT_FOUND, "transaction not found in the blocks kept", {"hash": tx_hash.hex()})
        return {"height": str(location.height), "tx_result": format_receipt(location.index,
                                                                            result.receipts[location.index])}

    async def close(self) -> None:
        """Server shutdown: end every commit wait (-32010, "the node is shutting down"), cancel the admissions
        still running and wait for them to end."""
        self.waiters.stop()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def get_routes(self) -> dict[str, Route]:
        tx = Param("tx", _tx_param)
        encoding = Param("encoding", OneOf("hex", "base64"), required=False, default="hex")
        return {
            "broadcast_tx_async": Route(self.broadcast_tx_async, tx, encoding),
            "broadcast_tx_sync": Route(self.broadcast_tx_sync, tx, encoding),
            "broadcast_tx_commit": Route(
                self.broadcast_tx_commit, tx, encoding,
                Param("timeout_ms", UInt(3_600_000), required=False)),
        }
