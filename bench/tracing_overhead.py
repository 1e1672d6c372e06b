"""Per-event cost of the adapters' observability work, with tracing off and on.

Times what an adapter adds around `handle_batch` for a micro-batch of events: the
batch trace (start, stamp one output per input, end) and the metrics update. With
tracing on, spans go to a BatchSpanProcessor whose exporter drops them, so the
figure is the SDK's cost in the service, not the network's.

    python -m bench.tracing_overhead [--batch 500] [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from streamml.common.events import Output, new_event
from streamml.common.metrics import AdapterMetrics
from streamml.common.otel import OtelEventTracer
from streamml.common.tracing import EventTracer, Origin

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class DroppingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_event_us(tracer: EventTracer, batch: int, rounds: int) -> float:
    """Return the median microseconds per event of trace and metrics work over `rounds` batches."""
    metrics = AdapterMetrics("bench", "kafka")
    inputs = [
        new_event(type="io.streamml.record.v1", source="bench", subject=f"e{i}", data={"i": i}, extensions={"traceparent": TRACEPARENT})
        for i in range(batch)
    ]
    origins = [Origin("raw", 0, i) for i in range(batch)]
    timings = []
    for _ in range(rounds):
        outputs = [Output("features", new_event(type="io.streamml.features.v1", source="bench", subject="e", data={})) for _ in range(batch)]
        started = time.perf_counter()
        trace = tracer.start(inputs, origins)
        for index in range(batch):
            trace.stamp(index, outputs[index : index + 1])
        trace.end()
        metrics.batch_done(batch, outputs, started, trace.ingested_at, "dead")
        timings.append((time.perf_counter() - started) / batch * 1e6)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500, help="events per micro-batch (default: 500)")
    parser.add_argument("--rounds", type=int, default=200, help="batches timed (default: 200)")
    args = parser.parse_args()
    off = per_event_us(EventTracer(), args.batch, args.rounds)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter(), max_queue_size=args.batch * 4))
    on = per_event_us(OtelEventTracer("bench", provider), args.batch, args.rounds)
    provider.shutdown()
    print(f"tracing off: {off:.2f} us per event; tracing on: {on:.2f} us per event (batches of {args.batch})")


if __name__ == "__main__":
    main()
