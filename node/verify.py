"""Signature checks for the admission pipeline (node/submit.py), run in worker processes.

`verify_signatures(checks)` takes (public key, message, signature) triples and answers one bool per triple.
`VerifyPool` runs it in `workers` separate processes (`python -c ... node.verify.serve()`), so the checks run
beside the event loop with no lock between them. Threads would not do: each check hands the interpreter lock back
and forth with a busy event loop, and a batch of 2,000 took seconds instead of a tenth of one.

The pool has no thread of its own in the node. Each worker's stdin and stdout are asyncio pipes, and a request is
one frame each way: a 4-byte big-endian length, then msgpack `[[public key, message, signature], ...]` going,
one byte per check (1 valid, 0 not) coming back, in order. (A `concurrent.futures.ProcessPoolExecutor` did the
same through a manager thread and a queue feeder thread; those two threads took the interpreter lock from the
event loop for every batch, about a tenth of a loaded validator's loop.)

A request cancelled mid-way (the node stopping) may leave half a request or an unread answer in a pipe, and the
next request would read the wrong answer: the pool then kills its workers, and the next `verify` starts new
ones. A request whose workers were killed meanwhile raises VerifyWorkersLost.

A worker outlives nothing: the node kills its workers when it closes the pool, and a worker whose node died
(`kill -9` included) exits when its stdin ends (nothing else holds the pipe: subprocesses close inherited
descriptors). It ignores SIGINT, so a Ctrl-C in the terminal stops the node, which then closes its workers.
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

import msgpack

from stf.crypto import is_valid_signature

LENGTH_BYTES = 4
ROOT = str(Path(__file__).resolve().parents[1])
WORKER_CODE = f"import sys; sys.path.insert(0, {ROOT!r}); from node.verify import serve; serve()"


class VerifyWorkersLost(Exception):
    """A worker exited or its pipe broke while a request was in flight."""


def verify_signatures(checks: list[tuple[bytes, bytes, bytes]] | list[list[bytes]]) -> list[bool]:
    return [is_valid_signature(public_key, message, signature) for public_key, message, signature in checks]


def serve() -> None:
    """A worker's loop: read a request frame from stdin, answer it on stdout, until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(LENGTH_BYTES)
        if len(header) < LENGTH_BYTES:
            return
        payload = stdin.read(int.from_bytes(header, "big"))
        answer = bytes(verify_signatures(msgpack.unpackb(payload)))
        stdout.write(len(answer).to_bytes(LENGTH_BYTES, "big") + answer)
        stdout.flush()


class VerifyPool:
    """`workers` verify processes, started on first use; `verify` splits a batch of at least `split_min` checks
    between them. Raises VerifyWorkersLost when a worker is gone; the caller then closes the pool."""

    def __init__(self, workers: int, split_min: int = 64) -> None:
        if workers < 1:
            raise ValueError("a verify pool has at least one worker")
        self.workers = workers
        self.split_min = split_min
        self._procs: list[asyncio.subprocess.Process] = []
        self._locks: list[asyncio.Lock] = []

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    async def start(self) -> None:
        if self._procs:
            return
        for _ in range(self.workers):
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", WORKER_CODE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            except OSError as exc:
                self.close()
                raise VerifyWorkersLost(f"a verify worker did not start: {exc}") from None
            self._procs.append(proc)
            self._locks.append(asyncio.Lock())

    async def verify(self, checks: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
        if not checks:
            return []
        await self.start()
        procs, locks = self._procs, self._locks   # this request's workers, even if the pool is closed meanwhile
        parts = 1 if len(checks) < self.split_min else len(procs)
        step = -(-len(checks) // parts)
        answers = await asyncio.gather(*(self._ask(procs[i], locks[i], checks[start:start + step])
                                         for i, start in enumerate(range(0, len(checks), step))))
        return [ok for answer in answers for ok in answer]

    async def _ask(self, proc: asyncio.subprocess.Process, lock: asyncio.Lock,
                   checks: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
        assert proc.stdin is not None and proc.stdout is not None
        payload = msgpack.packb(checks, use_bin_type=True)
        async with lock:
            try:
                proc.stdin.write(len(payload).to_bytes(LENGTH_BYTES, "big") + payload)
                await proc.stdin.drain()
                length = int.from_bytes(await proc.stdout.readexactly(LENGTH_BYTES), "big")
                answer = await proc.stdout.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise VerifyWorkersLost(f"verify worker {proc.pid} is gone ({type(exc).__name__})") from None
            except asyncio.CancelledError:
                # The request may be half sent or its answer unread: the next one on this pipe would read the
                # wrong answer. Kill the workers; the next `verify` starts new ones.
                self.close()
                raise
        if len(answer) != len(checks):
            raise VerifyWorkersLost(f"verify worker {proc.pid} answered {len(answer)} checks of {len(checks)}")
        return [byte == 1 for byte in answer]

    def close(self) -> None:
        """Kill every worker and forget them (also after the event loop closed: no pipe is touched)."""
        for proc in self._procs:
            if proc.returncode is None:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._procs, self._locks = [], []

    async def aclose(self) -> None:
        """`close`, then wait until every worker has been reaped (so nothing of it outlives the event loop)."""
        procs = self._procs
        self.close()
        for proc in procs:
            await proc.wait()
