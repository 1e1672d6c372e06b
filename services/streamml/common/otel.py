"""OpenTelemetry spans for events, imported only when a service runs with tracing on.

One CONSUMER span per input event, named `process <topic>` (`process <service>` for
HTTP deliveries), with the messaging and CloudEvents semantic-convention attributes.
Its parent is the context in the event's `traceparent` and `tracestate`; an event
without them starts a new trace. The span starts when the batch is handed to the
handler and ends when Kafka acknowledged the outputs, and the outputs carry its context.

The SDK reads the standard variables itself: OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES for the resource, OTEL_TRACES_SAMPLER for sampling,
OTEL_BSP_* for batching and OTEL_EXPORTER_OTLP_* for the OTLP/HTTP exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from cloudevents.core.v1.event import CloudEvent
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streamml import __version__
from streamml.common.errors import InvalidEventError
from streamml.common.events import Output
from streamml.common.settings import TracingSettings
from streamml.common.tracing import TRACEPARENT, TRACESTATE, BatchTrace, EventTracer, Origin

logger = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()


class _SpanBatchTrace(BatchTrace):
    """Batch trace with one span per input. Each output carries the context of its input's span."""

    def __init__(
        self,
        tracer: trace.Tracer,
        service: str,
        events: Sequence[CloudEvent],
        origins: Sequence[Origin | None] | None,
        received_at: datetime,
        restamp: bool,
    ) -> None:
        super().__init__(events, received_at, restamp)
        self._spans = [
            _start_span(tracer, service, event, origins[index] if origins else None)
            for index, event in enumerate(events)
        ]

    def reject(self, index: int, error: InvalidEventError, letter: Output) -> None:
        span = self._spans[index]
        span.set_status(Status(StatusCode.ERROR, f"{error.reason}: {error.message}"))
        span.set_attribute("error.type", error.reason)
        span.add_event("dead-lettered", {"streamml.dead_letter.reason": error.reason, "streamml.dead_letter.topic": letter.topic})
        super().reject(index, error, letter)

    def end(self, error: BaseException | None = None) -> None:
        for span in self._spans:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                span.set_attribute("error.type", type(error).__name__)
            span.end()

    def _trace_context(self, index: int, attributes: dict[str, object]) -> dict[str, object]:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(self._spans[index]))
        return carrier


def _start_span(tracer: trace.Tracer, service: str, event: CloudEvent, origin: Origin | None) -> trace.Span:
    attributes = event.get_attributes()
    carrier = {}
    parent = attributes.get(TRACEPARENT)
    if isinstance(parent, str):
        carrier[TRACEPARENT] = parent
        state = attributes.get(TRACESTATE)
        if isinstance(state, str):
            carrier[TRACESTATE] = state
    span_attributes: dict[str, str | int] = {
        "messaging.operation.type": "process",
        "cloudevents.event_id": event.get_id(),
        "cloudevents.event_source": event.get_source(),
        "cloudevents.event_type": event.get_type(),
        "cloudevents.event_spec_version": "1.0",
    }
    subject = event.get_subject()
    if subject is not None:
        span_attributes["cloudevents.event_subject"] = subject
    if origin is not None:
        span_attributes.update({
            "messaging.system": "kafka",
            "messaging.destination.name": origin.topic,
            "messaging.destination.partition.id": str(origin.partition),
            "messaging.kafka.offset": origin.offset,
        })
        name = f"process {origin.topic}"
    else:
        name = f"process {service}"
    return tracer.start_span(
        name, context=_PROPAGATOR.extract(carrier) if carrier else None, kind=SpanKind.CONSUMER, attributes=span_attributes
    )


class OtelEventTracer(EventTracer):
    """Tracer that records one span per input event with the OpenTelemetry SDK."""

    enabled = True

    def __init__(self, service: str, provider: TracerProvider) -> None:
        self.service = service
        self.provider = provider
        self._tracer = provider.get_tracer("streamml", __version__)

    def _batch(
        self, events: Sequence[CloudEvent], origins: Sequence[Origin | None] | None, received_at: datetime, restamp: bool
    ) -> BatchTrace:
        return _SpanBatchTrace(self._tracer, self.service, events, origins, received_at, restamp)

    def shutdown(self) -> None:
        self.provider.shutdown()


def build_tracer(service: str, settings: TracingSettings) -> OtelEventTracer:
    """Build the tracer of a service, with the exporters that OTEL_TRACES_EXPORTER names (otlp by default)."""
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"streamml-{service}"}))
    provider = TracerProvider(resource=resource)
    for exporter in _exporters(settings):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    logger.info(
        "tracing on: service.name %s, exporters %s, OTLP endpoint %s",
        resource.attributes.get(SERVICE_NAME),
        ",".join(settings.exporters) or "none",
        settings.otlp_traces_endpoint if "otlp" in settings.exporters else "unused",
    )
    return OtelEventTracer(service, provider)


def _exporters(settings: TracingSettings) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in settings.exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
    return exporters
