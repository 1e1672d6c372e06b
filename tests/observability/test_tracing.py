"""Trace context and ingest time from input events to their outputs, with tracing off and on."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError

from streamml.cli import _install_tracer
from streamml.common.errors import InvalidEventError
from streamml.common.events import Output, from_kafka, new_event, to_kafka
from streamml.common.otel import OtelEventTracer
from streamml.common.settings import IngestionSettings, TracingSettings
from streamml.common.tracing import INGEST_TIME, TRACEPARENT, TRACESTATE, EventTracer, Origin, event_tracer, install_tracer

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT_VALUE = f"00-{TRACE_ID}-{PARENT_ID}-01"
RECEIVED = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
SPEC = "examples/elec2.yaml"


def event(event_id: str = "in-1", **extensions: str):
    return new_event(id=event_id, type="io.streamml.record.v1", source="tests", subject="e1", data={"x": 1}, extensions=extensions)


def derived(event_id: str = "out-1") -> Output:
    return Output("out", new_event(id=event_id, type="io.streamml.features.v1", source="tests", subject="e1", data={"y": 2}))


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelEventTracer("features", provider), exporter
    provider.shutdown()


def test_pass_through_copies_trace_context():
    inputs = [event(traceparent=TRACEPARENT_VALUE, tracestate="vendor=1"), event("in-2")]
    outputs = [[derived("a"), derived("b")], [derived("c")]]
    trace = EventTracer().start(inputs, received_at=RECEIVED)
    for index, result in enumerate(outputs):
        trace.stamp(index, result)
    trace.end()

    for output in outputs[0]:
        assert output.event.get_attributes()[TRACEPARENT] == TRACEPARENT_VALUE
        assert output.event.get_attributes()[TRACESTATE] == "vendor=1"
    assert TRACEPARENT not in outputs[1][0].event.get_attributes()
    assert TRACESTATE not in outputs[1][0].event.get_attributes()


def test_first_service_stamps_ingest_time():
    output = derived()
    trace = EventTracer().start([event()], received_at=RECEIVED)
    trace.stamp(0, [output])
    assert output.event.get_attributes()[INGEST_TIME] == "2025-03-01T12:00:00.250000Z"
    assert trace.ingested_at == [RECEIVED.timestamp()]


def test_later_service_keeps_ingest_time():
    output = derived()
    trace = EventTracer().start([event(**{INGEST_TIME: "2025-03-01T11:59:59.000000Z"})], received_at=RECEIVED)
    trace.stamp(0, [output])
    assert output.event.get_attributes()[INGEST_TIME] == "2025-03-01T11:59:59.000000Z"
    assert trace.ingested_at == [RECEIVED.timestamp() - 1.25]


def test_ingest_times_in_turn():
    """Inputs that repeat, change and lose their ingest time each get their own, as the batch trace reuses the last one read."""
    times = ["2025-03-01T11:59:59.000000Z", "2025-03-01T11:59:59.000000Z", "2025-03-01T11:59:58.000000Z", "yesterday"]
    inputs = [event(f"in-{index}", **{INGEST_TIME: value}) for index, value in enumerate(times)]
    outputs = [derived(f"out-{index}") for index in range(len(inputs))]
    trace = EventTracer().start(inputs, received_at=RECEIVED)
    for index, output in enumerate(outputs):
        trace.stamp(index, [output])
    stamped = [output.event.get_attributes()[INGEST_TIME] for output in outputs]
    assert stamped == times[:3] + ["2025-03-01T12:00:00.250000Z"]
    assert trace.ingested_at == [RECEIVED.timestamp() - 1.25] * 2 + [RECEIVED.timestamp() - 2.25, RECEIVED.timestamp()]


@pytest.mark.parametrize("value", ["yesterday", "2025-03-01T11:59:59", "2025-13-01T00:00:00Z", ""])
def test_unreadable_ingest_time_replaced(value):
    output = derived()
    trace = EventTracer().start([event(**{INGEST_TIME: value})], received_at=RECEIVED)
    trace.stamp(0, [output])
    assert output.event.get_attributes()[INGEST_TIME] == "2025-03-01T12:00:00.250000Z"


def test_restamp_ignores_client_ingest_time():
    output = derived()
    trace = EventTracer().start([event(**{INGEST_TIME: "2020-01-01T00:00:00Z"})], received_at=RECEIVED, restamp=True)
    trace.stamp(0, [output])
    assert output.event.get_attributes()[INGEST_TIME] == "2025-03-01T12:00:00.250000Z"


def test_input_without_outputs_counts_for_latency():
    trace = EventTracer().start([event(), event("in-2")], received_at=RECEIVED)
    trace.stamp(0, [])
    trace.stamp(1, [derived()])
    assert trace.ingested_at == [RECEIVED.timestamp()] * 2


def test_stamped_event_survives_kafka_codec():
    output = derived()
    trace = EventTracer().start([event(traceparent=TRACEPARENT_VALUE)], received_at=RECEIVED)
    trace.stamp(0, [output])
    decoded = from_kafka(*to_kafka(output.event))
    assert decoded.get_attributes()[TRACEPARENT] == TRACEPARENT_VALUE
    assert decoded.get_attributes()[INGEST_TIME] == "2025-03-01T12:00:00.250000Z"


def test_span_continues_input_trace(spans):
    tracer, exporter = spans
    output = derived()
    trace = tracer.start([event(traceparent=TRACEPARENT_VALUE, tracestate="vendor=1")], [Origin("raw", 2, 41)])
    trace.stamp(0, [output])
    trace.end()

    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.kind == SpanKind.CONSUMER
    assert span.name == "process raw"
    assert span.attributes["messaging.destination.partition.id"] == "2"
    assert span.attributes["messaging.kafka.offset"] == 41
    assert span.attributes["cloudevents.event_id"] == "in-1"
    _, trace_id, span_id, _ = output.event.get_attributes()[TRACEPARENT].split("-")
    assert (trace_id, span_id) == (TRACE_ID, format(span.context.span_id, "016x"))
    assert output.event.get_attributes()[TRACESTATE] == "vendor=1"


def test_span_without_parent_starts_trace(spans):
    tracer, exporter = spans
    outputs = [derived("a"), derived("b")]
    trace = tracer.start([event(), event("in-2")])
    trace.stamp(0, outputs[:1])
    trace.stamp(1, outputs[1:])
    trace.end()

    first, second = exporter.get_finished_spans()
    assert first.parent is None
    assert first.context.trace_id != second.context.trace_id
    assert outputs[0].event.get_attributes()[TRACEPARENT].split("-")[1] == format(first.context.trace_id, "032x")
    assert TRACESTATE not in outputs[0].event.get_attributes()


def test_unparsable_traceparent_starts_trace(spans):
    tracer, exporter = spans
    trace = tracer.start([event(traceparent="not-a-traceparent")])
    trace.stamp(0, [derived()])
    trace.end()
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_dead_letter_marks_span_error(spans):
    tracer, exporter = spans
    letter = derived("letter")
    trace = tracer.start([event(traceparent=TRACEPARENT_VALUE)])
    trace.reject(0, InvalidEventError("invalid-data", "day is 8"), letter)
    trace.end()

    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "invalid-data"
    assert [item.name for item in span.events] == ["dead-lettered"]
    assert letter.event.get_attributes()[TRACEPARENT].split("-")[1] == TRACE_ID


def test_failed_batch_ends_spans_with_error(spans):
    tracer, exporter = spans
    trace = tracer.start([event(), event("in-2")])
    trace.end(TimeoutError("no acknowledgement"))
    assert [span.status.status_code for span in exporter.get_finished_spans()] == [StatusCode.ERROR] * 2


def test_install_tracer_follows_settings(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    try:
        tracer = _install_tracer("ingestion", IngestionSettings(spec=SPEC, tracing=True))
        assert isinstance(tracer, OtelEventTracer)
        assert event_tracer() is tracer
        tracer.shutdown()
        install_tracer(EventTracer())

        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        assert not _install_tracer("ingestion", IngestionSettings(spec=SPEC, tracing=True)).enabled
        assert not _install_tracer("ingestion", IngestionSettings(spec=SPEC)).enabled
    finally:
        install_tracer(EventTracer())


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "unsupported exporter zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "use http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "use http/protobuf"),
    ],
)
def test_unsupported_otel_settings_rejected(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        TracingSettings()


def test_otlp_endpoint_resolved_like_sdk():
    assert TracingSettings().otlp_traces_endpoint == "http://localhost:4318/v1/traces"
    assert TracingSettings(exporter_otlp_endpoint="http://collector:4318/").otlp_traces_endpoint == "http://collector:4318/v1/traces"
    assert TracingSettings(exporter_otlp_traces_endpoint="http://c:1/x").otlp_traces_endpoint == "http://c:1/x"
    assert TracingSettings(traces_exporter="console, none").exporters == ["console"]


def test_tracing_off_imports_no_opentelemetry():
    code = (
        "import sys\n"
        "import streamml.inference.service, streamml.common.runner, streamml.common.http\n"
        "from streamml.common.tracing import event_tracer\n"
        "from streamml.common.events import new_event\n"
        "event = new_event(type='t', source='s', subject='e', data={}, extensions={'traceparent': '00-" + TRACE_ID + "-" + PARENT_ID + "-01'})\n"
        "event_tracer().start([event]).stamp(0, [])\n"
        "loaded = sorted(name for name in sys.modules if name.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
