"""The node's telemetry: Prometheus metrics (`NodeMetrics`) and JSON logs that carry height and round.

Metrics (all on the registry that `/metrics` of the node's RPC server exposes, next to `kabuto_rpc_*`):

| name                                   | type      | what                                                      |
|----------------------------------------|-----------|-----------------------------------------------------------|
| `kabuto_consensus_height`              | gauge     | the height consensus is deciding (committed height + 1)  |
| `kabuto_consensus_round`               | gauge     | its current round                                         |
| `kabuto_chain_height`                  | gauge     | the latest committed and stored height                    |
| `kabuto_block_interval_seconds`        | histogram | wall time between two consecutive commits of this node    |
| `kabuto_block_txs`                     | histogram | transactions per committed block                          |
| `kabuto_stf_apply_seconds`             | histogram | `apply_block` of a decided block                          |
| `kabuto_commit_seconds`                | histogram | the whole commit: apply, store (one batch), mempool, view |
| `kabuto_mempool_txs` / `_bytes`        | gauge     | pending transactions and their bytes                      |
| `kabuto_mempool_admissions_total`      | counter   | admission results by `code` ("ok" or the refusal code)    |
| `kabuto_p2p_peers`                     | gauge     | connected peers                                           |
| `kabuto_p2p_sent_bytes_total` / `_received_bytes_total` | counter | wire bytes, frames included, of connected peers |
| `kabuto_blocksync_blocks_total`        | counter   | blocks applied through block sync                         |
| `kabuto_consensus_rounds_total`        | counter   | rounds entered after round 0 (a proxy for failed rounds)  |
| `kabuto_oracle_submissions_total`      | counter   | oracle feeder attempts by `result` (node/oracle.py)       |
| `kabuto_evidence_reported_total`       | counter   | double-signing reports by `result` (node/evidence.py)     |

Peer byte counters are read from the live connections when scraped, plus what closed connections had sent;
a counter never decreases.

Logs: `configure_logging(format, level, position)` installs one stderr handler. In "json" format each record is one
line `{"ts", "level", "logger", "msg", "height", "round", ...extra}`; "text" is a readable line with the same
fields. `position` is the shared `ConsensusPosition` the driver keeps current, so every record (from any module)
carries the height and round of the moment it was logged. Extra fields: pass `extra={"fields": {...}}`.
"""

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

INTERVAL_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TXS_BUCKETS = (0, 1, 10, 100, 1000, 10_000)


@dataclass(slots=True)
class ConsensusPosition:
    """Where consensus is now: written by the driver, read by logs and metrics."""
    height: int = 0
    round: int = 0


class PeerBytesCollector:
    """Exposes peers and wire bytes from the switch's live connections when scraped."""

    def __init__(self, get_peers: Callable[[], dict]) -> None:
        self.get_peers = get_peers
        self.closed_sent = 0
        self.closed_received = 0

    def record_closed(self, bytes_sent: int, bytes_received: int) -> None:
        self.closed_sent += bytes_sent
        self.closed_received += bytes_received

    def collect(self) -> Iterator[Metric]:
        peers = list(self.get_peers().values())
        yield GaugeMetricFamily("kabuto_p2p_peers", "connected P2P peers", value=len(peers))
        yield CounterMetricFamily("kabuto_p2p_sent_bytes", "P2P bytes sent on the wire",
                                  value=self.closed_sent + sum(p.bytes_sent for p in peers))
        yield CounterMetricFamily("kabuto_p2p_received_bytes", "P2P bytes received on the wire",
                                  value=self.closed_received + sum(p.bytes_received for p in peers))


class NodeMetrics:
    """Every `kabuto_*` metric of the node process, on its own registry (RPC adds `kabuto_rpc_*` to it)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consensus_height = Gauge("kabuto_consensus_height", "height consensus is deciding", registry=r)
        self.consensus_round = Gauge("kabuto_consensus_round", "current consensus round", registry=r)
        self.chain_height = Gauge("kabuto_chain_height", "latest committed height", registry=r)
        self.block_interval = Histogram("kabuto_block_interval_seconds", "time between two commits",
                                        buckets=INTERVAL_BUCKETS, registry=r)
        self.block_txs = Histogram("kabuto_block_txs", "transactions per committed block", buckets=TXS_BUCKETS,
                                   registry=r)
        self.stf_apply = Histogram("kabuto_stf_apply_seconds", "apply_block of a decided block",
                                   buckets=SECONDS_BUCKETS, registry=r)
        self.commit = Histogram("kabuto_commit_seconds", "commit: apply, store, mempool update, view",
                                buckets=SECONDS_BUCKETS, registry=r)
        self.mempool_txs = Gauge("kabuto_mempool_txs", "pending transactions", registry=r)
        self.mempool_bytes = Gauge("kabuto_mempool_bytes", "bytes of pending transactions", registry=r)
        self.admissions = Counter("kabuto_mempool_admissions", "admission results by code", ["code"], registry=r)
        self.blocksync_blocks = Counter("kabuto_blocksync_blocks", "blocks applied through block sync", registry=r)
        self.rounds = Counter("kabuto_consensus_rounds", "rounds entered after round 0", registry=r)
        self.oracle_submissions = Counter("kabuto_oracle_submissions", "oracle price submissions by result",
                                          ["result"], registry=r)
        self.evidence_reported = Counter("kabuto_evidence_reported", "double-signing evidence reports by result",
                                         ["result"], registry=r)
        self._last_commit: float | None = None

    def register_peers(self, collector: PeerBytesCollector) -> None:
        self.registry.register(collector)  # type: ignore[arg-type]

    def observe_commit(self, height: int, txs: int, apply_s: float, commit_s: float) -> None:
        now = time.monotonic()
        if self._last_commit is not None:
            self.block_interval.observe(now - self._last_commit)
        self._last_commit = now
        self.chain_height.set(height)
        self.block_txs.observe(txs)
        self.stf_apply.observe(apply_s)
        self.commit.observe(commit_s)

    def observe_mempool(self, txs: int, size_bytes: int) -> None:
        self.mempool_txs.set(txs)
        self.mempool_bytes.set(size_bytes)


class _PositionFilter(logging.Filter):
    def __init__(self, position: ConsensusPosition) -> None:
        super().__init__()
        self.position = position

    def filter(self, record: logging.LogRecord) -> bool:
        record.height = self.position.height
        record.round = self.position.round
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO-8601 UTC, ms), level, logger, msg, height, round, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        doc = {"ts": ts, "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
               "height": getattr(record, "height", None), "round": getattr(record, "round", None)}
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in (getattr(record, "fields", None) or {}).items())
        line = (f"{self.formatTime(record)} {record.levelname.lower():7} h={getattr(record, 'height', '-')} "
                f"r={getattr(record, 'round', '-')} {record.name}: {record.getMessage()} {fields}").rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(log_format: str, level: str, position: ConsensusPosition) -> logging.Handler:
    """Route every logger to one stderr handler in `log_format` ("json" | "text"); returns the handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_PositionFilter(position))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
