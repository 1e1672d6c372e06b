"""The ingestion service's handler: validates input events and normalises them for the raw topic."""

from __future__ import annotations

from cloudevents.core.v1.event import CloudEvent

from streamml.common.events import Output, json_or_none, new_event
from streamml.common.handler import EventHandler
from streamml.common.payloads import LABEL_TYPE, schema_uri
from streamml.common.records import RecordValidator, record_schema_uri
from streamml.common.spec import PipelineSpec


class IngestionHandler(EventHandler):
    """Checks each record or label event against the spec and forwards it to the raw topic.

    The event keeps its `id`, `source` and `type`, so the id links every later
    event back to this input. `subject` and `partitionkey` become the entity and
    `time` the event time; invalid events raise InvalidEventError.
    """

    source = "io.streamml.ingestion"
    restamps_ingest_time = True
    # Records and labels are validated from their JSON bytes (see `parse_data`).
    parses_json_data = True

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.validator = RecordValidator(spec)
        self.raw_topic = spec.topic("raw")

    def handle(self, event: CloudEvent) -> list[Output]:
        if event.get_type() == LABEL_TYPE:
            label, entity = self.validator.validate_label(event)
            data = label.model_dump(mode="json")
            time = event.get_time()
            dataschema = schema_uri(LABEL_TYPE)
        else:
            record = self.validator.validate_record(event)
            entity, time = record.entity, record.time
            data = dict(record.values)
            if self.spec.label.field is not None and record.label is not None:
                data[self.spec.label.field] = record.label
            data = {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in data.items()}
            dataschema = record_schema_uri(self.spec)
        # The numbers of a validated record or label are finite, so the data needs no search for NaN.
        normalised = new_event(
            id=event.get_id(),
            type=event.get_type(),
            source=event.get_source(),
            subject=entity,
            time=time,
            dataschema=dataschema,
            data=data,
            encoded=json_or_none(data),
        )
        return [Output(self.raw_topic, normalised)]
