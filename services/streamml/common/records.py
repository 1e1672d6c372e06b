"""Input records: a pydantic model built from the pipeline spec, and the checks on each record."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from cloudevents.core.v1.event import CloudEvent
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model

from streamml.common.errors import InvalidEventError
from streamml.common.events import event_time, parse_data
from streamml.common.payloads import LABEL_TYPE, SCHEMA_BASE, LabelData
from streamml.common.spec import InputField, PipelineSpec

# Integers beyond 2**53 lose precision as float32/float64 model inputs and in JSON readers.
_MAX_SAFE_INT = 2**53
_Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Int = Annotated[StrictInt, Field(ge=-_MAX_SAFE_INT, le=_MAX_SAFE_INT)]


def _annotation(field: InputField) -> Any:
    match field.type:
        case "float":
            return _Float | _Int
        case "int":
            return _Int
        case "bool":
            return StrictBool
        case "category":
            return Literal[tuple(field.categories or ())]
        case "string":
            return Annotated[StrictStr, Field(max_length=4096)]
        case "timestamp":
            return AwareDatetime
    raise AssertionError(field.type)


def build_record_model(spec: PipelineSpec) -> type[BaseModel]:
    """Create the pydantic model of the spec's input record (unknown fields are rejected)."""
    fields: dict[str, Any] = {}
    for field in spec.input.fields:
        annotation = _annotation(field)
        if spec.label.field == field.name:
            annotation = _label_annotation(spec)
        if field.required and field.name != spec.label.field:
            fields[field.name] = (annotation, ...)
        else:
            fields[field.name] = (annotation | None, None)
    model_name = "".join(part.capitalize() for part in spec.name.split("-")) + "Record"
    return create_model(  # type: ignore[call-overload]
        model_name,
        __config__=ConfigDict(extra="forbid", frozen=True, title=model_name),
        **fields,
    )


def _label_annotation(spec: PipelineSpec) -> Any:
    if spec.label.kind == "classes":
        return Literal[tuple(spec.label.classes or ())]
    return _Float | _Int


def record_schema_uri(spec: PipelineSpec) -> str:
    return f"{SCHEMA_BASE}/pipelines/{spec.name}.record.json"


@dataclass(frozen=True, slots=True)
class Record:
    """A validated input record."""

    event_id: str
    entity: str
    time: datetime
    values: dict[str, Any]
    label: str | float | None


class RecordValidator:
    """Checks input CloudEvents (records and late labels) against the pipeline spec."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.record_type = spec.input.event_type

    @cached_property
    def model(self) -> type[BaseModel]:
        return build_record_model(self.spec)

    def entity_of(self, values: dict[str, Any], event: CloudEvent) -> str:
        key = self.spec.input.entity_key
        if key is None:
            return event.get_subject() or self.spec.input.default_entity
        entity = values.get(key)
        if entity is None:
            raise InvalidEventError(
                "missing-entity", f"event {event.get_id()}: entity field {key!r} is missing or null"
            )
        return str(entity)

    def validate_record(self, event: CloudEvent) -> Record:
        """Validate a record event, or raise InvalidEventError naming the bad value."""
        if event.get_type() != self.record_type:
            raise InvalidEventError(
                "unknown-type",
                f"event {event.get_id()}: type {event.get_type()!r} is not accepted; "
                f"send {self.record_type!r} for records or {LABEL_TYPE!r} for labels",
            )
        values = parse_data(event, self.model).model_dump()
        label = None
        if self.spec.label.field is not None:
            label = values.pop(self.spec.label.field)
        time_field = self.spec.input.event_time
        time = values[time_field] if time_field and values.get(time_field) else event_time(event)
        return Record(event.get_id(), self.entity_of(values, event), time, values, label)

    def validate_label(self, event: CloudEvent) -> tuple[LabelData, str]:
        """Validate a late label event; return it with its entity."""
        label = parse_data(event, LabelData)
        self.check_label(label.label, event.get_id())
        entity = event.get_subject() or self.spec.input.default_entity
        return label, entity

    def check_label(self, value: str | float, event_id: str) -> None:
        spec = self.spec.label
        if spec.kind == "classes":
            if not isinstance(value, str) or value not in (spec.classes or ()):
                raise InvalidEventError(
                    "invalid-label",
                    f"event {event_id}: label {value!r} is not one of the classes {list(spec.classes or ())}",
                )
        elif isinstance(value, str) or not math.isfinite(value):
            raise InvalidEventError("invalid-label", f"event {event_id}: label {value!r} is not a finite number")
