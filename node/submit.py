"""Transaction submission: `NodeSubmitter` is the `rpc.submit.TxSubmitter` the node hands RPC, and the entry point
for transactions gossiped by peers.

`admit(wire)` runs mempool admission against the committed state (node/mempool.py) and answers
`SubmitResult(tx_hash, code, message)`: code "ok" or the refusal's `KabutoError.code`. `submit(wire)` does the
same and gossips the transaction on success.
"""

import hashlib
from collections.abc import Callable
from typing import NamedTuple

from node.mempool import Mempool
from node.telemetry import NodeMetrics
from node.tracing import Tracing
from stf.errors import KabutoError
from stf.state import State


class SubmitResult(NamedTuple):
    tx_hash: bytes
    code: str      # "ok" when admitted, else the KabutoError code ("bad_signature", "mempool_full", ...)
    message: str


class NodeSubmitter:
    """RPC's `TxSubmitter`: mempool admission against the committed state, then gossip on success."""

    def __init__(self, mempool: Mempool, get_state: Callable[[], State], gossip: Callable[[bytes], int],
                 metrics: NodeMetrics, tracing: Tracing = Tracing()) -> None:
        self.tracing = tracing
        self.mempool = mempool
        self.get_state = get_state
        self.gossip = gossip
        self.metrics = metrics

    def admit(self, wire: bytes) -> SubmitResult:
        tx_hash = hashlib.sha256(wire).digest() if type(wire) is bytes else b""
        try:
            tx = self.mempool.admit(wire, self.get_state())
        except KabutoError as exc:
            self.metrics.admissions.labels(exc.code).inc()
            return SubmitResult(tx_hash, exc.code, str(exc))
        self.metrics.admissions.labels("ok").inc()
        self.tracing.start_tx(tx.hash)
        self.metrics.observe_mempool(len(self.mempool), self.mempool.size_bytes)
        return SubmitResult(tx.hash, "ok", "admitted to the mempool")

    async def submit(self, wire: bytes) -> SubmitResult:
        result = self.admit(wire)
        if result.code == "ok":
            self.gossip(wire)
        return result
