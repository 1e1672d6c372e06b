"""Trace context and ingest time, which a service's outputs inherit from the input event they derive from.

Trace context travels in the CloudEvents distributed-tracing extension, the
`traceparent` and `tracestate` attributes in W3C Trace Context format. With tracing
off (the default) nothing from OpenTelemetry is imported, and each output gets its
input's two attributes unchanged, so a downstream service that traces still
continues the trace. With tracing on, `streamml.common.otel` replaces the tracer:
each input gets a span whose parent is the input's context, and the outputs carry
the context of that span.

`streammlingesttime` is an extension attribute with the RFC 3339 time at which
the first streamml service received the input. Later services copy it, and
`streamml_end_to_end_latency_seconds` measures from it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from cloudevents.core.v1.event import CloudEvent

from streamml.common.errors import InvalidEventError
from streamml.common.events import Output

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
INGEST_TIME = "streammlingesttime"


class Origin(NamedTuple):
    """Position of an input event: the topic, partition and offset of its Kafka record."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        """Return the position as `topic[partition]@offset`, the form of logs and error messages."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


def format_ingest_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ingest_time(value: object) -> float | None:
    """Return the Unix time of a `streammlingesttime` value, or None when it is not an RFC 3339 string."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


class BatchTrace:
    """The trace of one batch of inputs: stamps outputs, and records spans when tracing is on.

    An adapter calls `stamp` with each input's outputs before producing them,
    `reject` for each input it dead-letters, and `end` once, after Kafka
    acknowledged the outputs or the batch failed.
    """

    def __init__(self, events: Sequence[CloudEvent], received_at: datetime, restamp: bool) -> None:
        self._events = events
        self._received = format_ingest_time(received_at)
        self._received_unix = received_at.timestamp()
        self._restamp = restamp
        self.ingested_at: list[float] = []
        # The last ingest time read and its Unix time: the ingestion service stamps a whole batch
        # with one time, so consecutive inputs often carry the same text.
        self._last_ingest: tuple[str, float] | None = None

    def stamp(self, index: int, outputs: Sequence[Output]) -> None:
        """Copy input `index`'s trace context and ingest time into its outputs, which may be none."""
        self.ingested_at.append(self._copy_into(index, outputs))

    def reject(self, index: int, error: InvalidEventError, letter: Output) -> None:
        """Record that input `index` goes to the dead-letter topic as `letter`, and stamp the letter."""
        self._copy_into(index, [letter])

    def _copy_into(self, index: int, outputs: Sequence[Output]) -> float:
        attributes = self._events[index].get_attributes()
        ingested, ingested_unix = self._ingest_time(attributes)
        carried = self._trace_context(index, attributes)
        for output in outputs:
            target = output.event.get_attributes()
            target[INGEST_TIME] = ingested
            target.update(carried)
        return ingested_unix

    def end(self, error: BaseException | None = None) -> None:
        """Finish the batch. `error` is the reason its outputs were not acknowledged."""

    def _trace_context(self, index: int, attributes: dict[str, object]) -> dict[str, object]:
        parent = attributes.get(TRACEPARENT)
        if parent is None:
            return {}
        state = attributes.get(TRACESTATE)
        return {TRACEPARENT: parent} if state is None else {TRACEPARENT: parent, TRACESTATE: state}

    def _ingest_time(self, attributes: dict[str, object]) -> tuple[str, float]:
        if not self._restamp:
            value = attributes.get(INGEST_TIME)
            if value is not None:
                last = self._last_ingest
                if last is not None and value == last[0]:
                    return last
                unix = parse_ingest_time(value)
                if unix is not None:
                    self._last_ingest = (value, unix)  # type: ignore[assignment]
                    return value, unix  # type: ignore[return-value]
        return self._received, self._received_unix


class EventTracer:
    """Tracer that starts the trace of each batch. This base class records no spans."""

    enabled = False

    def start(
        self,
        events: Sequence[CloudEvent],
        origins: Sequence[Origin | None] | None = None,
        *,
        received_at: datetime | None = None,
        restamp: bool = False,
    ) -> BatchTrace:
        """Start the trace of a batch. With `restamp`, this service's receive time becomes the outputs' ingest time."""
        return self._batch(events, origins, received_at or datetime.now(timezone.utc), restamp)

    def _batch(
        self, events: Sequence[CloudEvent], origins: Sequence[Origin | None] | None, received_at: datetime, restamp: bool
    ) -> BatchTrace:
        return BatchTrace(events, received_at, restamp)

    def shutdown(self) -> None:
        """Export the spans still buffered."""


_tracer: EventTracer = EventTracer()


def event_tracer() -> EventTracer:
    """Return the tracer this process configured with `install_tracer`, else one that records no spans."""
    return _tracer


def install_tracer(tracer: EventTracer) -> None:
    global _tracer
    _tracer = tracer
