"""Log set-up of the service processes: text or JSON lines, and the fields that name an event.

Log calls about one event pass `extra=event_fields(...)`. The text format shows
the same facts in the message (`topic[partition]@offset`, the event id), and the
JSON format adds them as fields of the object.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

# The attributes every LogRecord has; the others came from `extra` and become JSON fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def event_fields(
    topic: str | None = None, partition: int | None = None, offset: int | None = None, event_id: str | None = None, **more: Any
) -> dict[str, Any]:
    """Return the `extra` of a log call about one event: its Kafka position and CloudEvent id, where known."""
    fields = {"topic": topic, "partition": partition, "offset": offset, "event_id": event_id, **more}
    return {name: value for name, value in fields.items() if value is not None}


class JsonFormatter(logging.Formatter):
    """Formatter that writes a record as one JSON object: time, level, logger, message, the `extra` fields and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Configure the root logger once, at a process entry point."""
    handler = logging.StreamHandler()
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
