"""Replay a CSV file as input CloudEvents, typed by the pipeline spec."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from streamml.common.errors import SpecError
from streamml.common.events import new_event
from streamml.common.records import record_schema_uri
from streamml.common.spec import InputField, PipelineSpec

REPLAY_SOURCE = "io.streamml.replay"
_TRUE = {"1", "true", "yes", "t", "y"}
_FALSE = {"0", "false", "no", "f", "n"}


@dataclass(frozen=True, slots=True)
class ReplayedRow:
    """One input event and the true label of its row (None when the row has none)."""

    event: CloudEvent
    label: str | float | None


def _convert(field: InputField, text: str, where: str) -> Any:
    if text == "" and not field.required:
        return None
    try:
        match field.type:
            case "float":
                return float(text)
            case "int":
                return int(float(text)) if text.strip().endswith(".0") else int(text)
            case "bool":
                lowered = text.strip().lower()
                if lowered in _TRUE:
                    return True
                if lowered in _FALSE:
                    return False
                raise ValueError(f"not a boolean: {text!r}")
            case "timestamp":
                return datetime.fromisoformat(text).isoformat()
            case _:
                return text
    except ValueError as error:
        raise ValueError(f"{where}: column {field.name!r}: {error}") from error


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def replay_csv(path: str | Path, spec: PipelineSpec, limit: int | None = None) -> Iterator[ReplayedRow]:
    """Yield one record event per CSV row, ids `<pipeline>-<row index>`, times from the spec's replay clock.

    Raises SpecError when the CSV header lacks a declared field, and ValueError
    naming the row and column when a value does not convert.
    """
    path = Path(path)
    label_field = spec.label.field
    with _open(path) as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = [f.name for f in spec.input.fields if f.required and f.name not in columns]
        if missing:
            raise SpecError(f"{path}: columns {missing} are declared in the spec but missing from the CSV header {sorted(columns)}")
        for index, row in enumerate(reader):
            if limit is not None and index >= limit:
                return
            where = f"{path.name} row {index + 2}"
            data = {}
            for field in spec.input.fields:
                if field.name in row:
                    data[field.name] = _convert(field, row[field.name], where)
            label = data.get(label_field) if label_field else None
            if spec.label.kind == "numeric" and label is not None:
                label = float(label)
            entity = str(data[spec.input.entity_key]) if spec.input.entity_key else spec.input.default_entity
            time = spec.replay.start_time + index * spec.replay.interval
            if spec.input.event_time:
                time = datetime.fromisoformat(data[spec.input.event_time])
            event = new_event(
                id=f"{spec.name}-{index}",
                type=spec.input.event_type,
                source=REPLAY_SOURCE,
                subject=entity,
                time=time,
                dataschema=record_schema_uri(spec),
                data=data,
            )
            yield ReplayedRow(event, label)
