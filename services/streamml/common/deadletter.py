"""Dead-letter records: the rejected input (its first 256 KiB), with the reason and its origin."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from datetime import datetime, timezone

from streamml.common.errors import InvalidEventError
from streamml.common.events import Output, derived_id, new_event
from streamml.common.logs import event_fields
from streamml.common.payloads import DEAD_LETTER_TYPE, DeadLetter

logger = logging.getLogger(__name__)

# A dead letter must fit under the brokers' default message.max.bytes (1 MiB) after base64
# encoding, which adds a third. Longer originals are cut, and `original_size` keeps their length.
MAX_ORIGINAL_BYTES = 256 * 1024


def dead_letter_output(
    *,
    topic: str,
    service: str,
    error: InvalidEventError,
    value: bytes | None,
    key: bytes | None = None,
    headers: Iterable[tuple[str, bytes | None]] | None = None,
    origin_topic: str | None = None,
    origin_partition: int | None = None,
    origin_offset: int | None = None,
    http_request_id: str | None = None,
    event_id: str | None = None,
) -> Output:
    """Build the dead-letter event for one rejected input."""
    decoded_headers = {
        name: (raw or b"").decode("utf-8", errors="replace") if isinstance(raw, (bytes, type(None))) else str(raw)
        for name, raw in headers or ()
    }
    payload = DeadLetter(
        reason=error.reason,
        message=error.message,
        service=service,
        failed_at=datetime.now(timezone.utc),
        origin_topic=origin_topic,
        origin_partition=origin_partition,
        origin_offset=origin_offset,
        http_request_id=http_request_id,
        event_id=event_id,
        original_key_base64=base64.b64encode(key).decode() if key is not None else None,
        original_headers=decoded_headers,
        original_value_base64=base64.b64encode((value or b"")[:MAX_ORIGINAL_BYTES]).decode(),
        original_size=len(value or b""),
    )
    subject = event_id or (f"{origin_topic}[{origin_partition}]@{origin_offset}" if origin_topic else http_request_id or "unknown")
    # A replayed rejection gets the same id, so the dead-letter topic can be deduplicated.
    origin = f"{origin_topic}[{origin_partition}]@{origin_offset}" if origin_topic else None
    event_id_out = derived_id(origin, f"dead-letter/{service}") if origin else None
    try:
        event = new_event(id=event_id_out, type=DEAD_LETTER_TYPE, source=f"io.streamml.{service}", subject=subject, data=payload)
    except InvalidEventError:
        # The subject came from the rejected input and may break the attribute rules itself.
        event = new_event(id=event_id_out, type=DEAD_LETTER_TYPE, source=f"io.streamml.{service}", subject="unreadable-input", data=payload)
    if origin_topic is not None:
        where = f"{origin_topic}[{origin_partition}]@{origin_offset}"
    else:
        where = f"HTTP request {http_request_id}"
    fields = event_fields(
        origin_topic, origin_partition, origin_offset, event_id, http_request_id=http_request_id, reason=error.reason, service=service
    )
    logger.warning("dead-lettered %s (event id %r): %s: %s", where, event_id, error.reason, error.message, extra=fields)
    return Output(topic, event)
