"""Consensus engine benchmark: time per height for n = 4 and n = 7 validators with zero network latency.

All n engines run in this process; every broadcast is handed to the other engines at once (FIFO), the
application answers immediately and the WAL is in memory (no fsync), so the figures are the engine's own cost.

Two passes per n:
- "engine": signatures replaced by a constant and verification by `True` (the engine still builds the canonical
  sign bytes it would verify), i.e. consensus logic, tallies, WAL encoding and codec only;
- "with signatures": real Ed25519 signing and verification (pynacl), every received message verified.

Reported per validator (one engine's share: total / n) and for the whole in-process cluster;
`heights_per_s_nX` is 1000 / `engine_ms_per_height_nX`, the engine-bound ceiling of one validator (not a network
throughput: real heights are bounded by latency and timeouts). Usage:
    scripts/bench consensus [--heights N] [--json]
Benchmarks measure; they assert nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from consensus.engine import Engine, EngineConfig  # noqa: E402
from consensus.events import (  # noqa: E402
    Broadcast,
    Commit,
    Committed,
    ProposalReceived,
    ProposalValueReady,
    RequestProposal,
    ValidateValue,
    ValueValidated,
    VoteReceived,
)
from consensus.messages import Proposal, Signer, ed25519_verify  # noqa: E402
from consensus.validators import ValidatorSet  # noqa: E402
from consensus.wal import MemoryWAL  # noqa: E402

CHAIN = "kabuto-bench"


class NullSigner(Signer):
    """A real key pair whose `sign` returns a constant: isolates the engine from Ed25519."""

    def sign(self, message: bytes) -> bytes:
        return b"\x00" * 64


def accept_all(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return True


def run(n: int, heights: int, real_signatures: bool) -> tuple[float, int]:
    """Run `heights` heights; return (seconds, messages delivered)."""
    cls = Signer if real_signatures else NullSigner
    signers = [cls(hashlib.sha256(b"bench/%d" % i).digest()) for i in range(n)]
    genesis = ValidatorSet.from_genesis([(s.public_key, 1) for s in signers])
    verifier = ed25519_verify if real_signatures else accept_all
    config = EngineConfig(CHAIN)
    engines = [Engine(config, s, 1, genesis, genesis.next_height_set(), MemoryWAL(), verifier) for s in signers]
    inbox: deque = deque()
    delivered = 0
    start = time.perf_counter()
    for i, e in enumerate(engines):
        inbox.extend((i, a) for a in e.start(0))
    while inbox:
        i, action = inbox.popleft()
        engine = engines[i]
        if isinstance(action, Broadcast):
            message = action.message
            event = ProposalReceived(message) if isinstance(message, Proposal) else VoteReceived(message)
            for j, other in enumerate(engines):
                if j != i and other.height <= heights:
                    delivered += 1
                    inbox.extend((j, a) for a in other.handle(event, 0))
            continue
        if isinstance(action, RequestProposal):
            follow = ProposalValueReady(action.height, action.round, b"block|%d" % action.height)
        elif isinstance(action, ValidateValue):
            follow = ValueValidated(action.height, action.value_hash, True)
        elif isinstance(action, Commit):
            if action.height >= heights:
                continue
            follow = Committed(action.height)
        else:
            continue  # timeouts never fire with zero latency
        inbox.extend((i, a) for a in engine.handle(follow, 0))
    elapsed = time.perf_counter() - start
    assert all(e.decided or e.height > heights for e in engines), "benchmark run did not finish"
    return elapsed, delivered


def measure(n: int, heights: int) -> dict:
    run(n, 5, False)  # warm-up
    engine_s, messages = run(n, heights, False)
    signed_s, _ = run(n, max(heights // 4, 10), True)
    signed_per_height = signed_s / max(heights // 4, 10)
    engine_per_height = engine_s / heights
    return {
        f"engine_ms_per_height_n{n}": round(engine_per_height * 1000 / n, 4),
        f"heights_per_s_n{n}": round(n / engine_per_height, 1),
        f"cluster_engine_ms_per_height_n{n}": round(engine_per_height * 1000, 4),
        f"with_signatures_ms_per_height_n{n}": round(signed_per_height * 1000 / n, 4),
        f"signature_ms_per_height_n{n}": round((signed_per_height - engine_per_height) * 1000 / n, 4),
        f"messages_delivered_per_height_n{n}": messages // heights,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heights", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = {"heights": args.heights, "python": platform.python_version(), "machine": platform.machine()}
    for n in (4, 7):
        figures.update(measure(n, args.heights))
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key:40} {value}")


if __name__ == "__main__":
    main()
