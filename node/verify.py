"""Signature checks for the admission pipeline (node/submit.py), run in worker processes.

`verify_signatures(checks)` takes (public key, message, signature) triples and answers one bool per triple. It is
what a verify worker runs: a separate process, so the checks run beside the event loop with no lock between them
(threads would not do: each check hands the interpreter lock back and forth with a busy event loop, and a batch
of 2,000 took seconds instead of a tenth of one). This module imports only what the check needs, so a worker
starts quickly.

A worker outlives nothing: `watch_parent`, its pool initializer, ends it within `PARENT_POLL_S` once the node
that started it is gone, even after a `kill -9` of the node (which closes no pipe the worker would notice).
"""

import os
import threading
import time

from stf.crypto import is_valid_signature

PARENT_POLL_S = 0.5


def watch_parent(parent_pid: int) -> None:
    """Pool initializer: a daemon thread that exits this worker once `parent_pid` is no longer its parent."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def verify_signatures(checks: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [is_valid_signature(public_key, message, signature) for public_key, message, signature in checks]
