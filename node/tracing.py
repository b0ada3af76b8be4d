"""OpenTelemetry spans across the block pipeline and a transaction's life (`[telemetry] tracing`).

Exporters: "none" (default: no provider, every call is a no-op), "console" (one JSON span per line on stdout,
batched), "otlp" (the OTLP exporter, when the `opentelemetry-exporter-otlp` package is installed; otherwise
`make_tracing` raises `TracingUnavailable` naming the package, and `start` refuses with that line).

Spans (attributes in brackets):

- `propose` [height, round, txs]: the proposer reaping the mempool and building its block;
- `validate` [height, valid]: judging a proposed block (`validate_block`);
- `prevote`, `precommit` [height, round, nil]: our own vote, at the moment it is sent (after the WAL fsync);
- `apply` [height, txs]: `apply_block` of a decided block;
- `commit` [height]: storing the block (one batch), the mempool recheck and the RPC view;
- `tx` [tx.hash, height, outcome]: a transaction from its admission to the mempool until it is committed
  (outcome "committed") or dropped by the recheck (outcome "dropped"). At most `MAX_OPEN_TX_SPANS` are open;
  beyond that the oldest is ended with outcome "untracked".

Known limit: spans are not propagated across nodes (no trace context in P2P messages).
"""

import contextlib
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

MAX_OPEN_TX_SPANS = 10_000


class TracingUnavailable(RuntimeError):
    """The configured exporter cannot be loaded."""


class Tracing:
    """A tracer (or nothing) and the open transaction spans."""

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider
        self._txs: OrderedDict[bytes, Any] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        if self.tracer is None:
            yield None
            return
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def mark(self, name: str, **attributes: Any) -> None:
        """A span for an instant (our vote, sent)."""
        if self.tracer is not None:
            self.tracer.start_span(name, attributes=attributes).end()

    def start_tx(self, tx_hash: bytes) -> None:
        if self.tracer is None or tx_hash in self._txs:
            return
        self._txs[tx_hash] = self.tracer.start_span("tx", attributes={"tx.hash": tx_hash.hex()})
        while len(self._txs) > MAX_OPEN_TX_SPANS:
            _, span = self._txs.popitem(last=False)
            span.set_attribute("outcome", "untracked")
            span.end()

    def end_tx(self, tx_hash: bytes, outcome: str, height: int) -> None:
        span = self._txs.pop(tx_hash, None)
        if span is not None:
            span.set_attribute("outcome", outcome)
            span.set_attribute("height", height)
            span.end()

    def shutdown(self) -> None:
        for span in self._txs.values():
            span.end()
        self._txs.clear()
        if self.provider is not None:
            self.provider.shutdown()


def make_tracing(exporter: str, service_instance: str) -> Tracing:
    """A `Tracing` for the `[telemetry] tracing` value ("none" | "console" | "otlp")."""
    if exporter == "none":
        return Tracing()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "console":
        span_exporter = ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n")
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise TracingUnavailable(
                    "telemetry.tracing: \"otlp\" needs the opentelemetry-exporter-otlp package "
                    "(pip install opentelemetry-exporter-otlp), or set tracing = \"console\" or \"none\"") from None
        span_exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "kabuto", "service.instance.id": service_instance}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return Tracing(provider.get_tracer("kabuto.node"), provider)
