"""Malformed input for the ingestion service of the elec2 pipeline, as named cases.

A case is one raw HTTP request (headers and body) or one raw Kafka record (key, value
and headers), written out byte by byte rather than with streamml's encoders, so a codec
bug cannot hide in the input. Its description states what the service must do with it.
Bad input gets 400 over HTTP (413 for a body over the limit) and exactly one
dead-letter record over Kafka. Odd but valid input, such as an event dated in the year
3000, is forwarded to the raw topic.

Attribute and data cases are written once and rendered in every content mode that can
carry them: HTTP binary, HTTP structured, Kafka binary and Kafka structured. The
generated cases at the end pair hypothesis strategies with `judge`, which predicts the
service's response to a record's data from the elec2 spec alone.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from streamml.common.payloads import LABEL_TYPE, RECORD_TYPE

JSON = "application/json"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: The service's default limit on an HTTP body, which the tests set explicitly.
MAX_BODY_BYTES = 1024 * 1024
TIME = "2024-03-01T10:00:00Z"
SOURCE = "/tests/reliability"

ROW: dict[str, Any] = {
    "date": 0.4251,
    "day": "5",
    "period": 0.5,
    "nswprice": 0.0584,
    "nswdemand": 0.4411,
    "vicprice": 0.0035,
    "vicdemand": 0.4227,
    "transfer": 0.4149,
    "class": "UP",
}
FLOAT_FIELDS = ("date", "period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer")
DAYS = ("1", "2", "3", "4", "5", "6", "7")
CLASSES = ("DOWN", "UP")
#: Every field but the label, which may arrive later in its own event.
REQUIRED_FIELDS = tuple(name for name in ROW if name != "class")

HTTP_BINARY = "http-binary"
HTTP_STRUCTURED = "http-structured"
KAFKA_BINARY = "kafka-binary"
KAFKA_STRUCTURED = "kafka-structured"
ALL_MODES = (HTTP_BINARY, HTTP_STRUCTURED, KAFKA_BINARY, KAFKA_STRUCTURED)
BINARY_MODES = (HTTP_BINARY, KAFKA_BINARY)
STRUCTURED_MODES = (HTTP_STRUCTURED, KAFKA_STRUCTURED)

#: Printable US-ASCII that an HTTP `ce-` header carries as it is (HTTP binding 3.1.3.2).
_HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"%')


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: An attribute or data member that the case leaves out.
ABSENT: Any = _Absent()


@dataclass(frozen=True)
class HttpCase:
    """One `POST /` request and the response it must get."""

    name: str
    description: str
    headers: tuple[tuple[str, str | bytes], ...]
    body: bytes
    status: int
    error: str | None = None
    mentions: tuple[str, ...] = ()
    forwarded: tuple[str, ...] = ()
    withheld: tuple[str, ...] = ()
    raw_headers: tuple[tuple[str, bytes], ...] = ()
    chunked: bool = False
    bug: str | None = None


@dataclass(frozen=True)
class KafkaCase:
    """One record on the input topic and what must come of it.

    `reason` is the dead-letter reason, or None for a record that is forwarded.
    """

    name: str
    description: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str | None = None
    mentions: tuple[str, ...] = ()
    forwarded: tuple[str, ...] = ()
    withheld: tuple[str, ...] = ()
    raw_headers: tuple[tuple[str, bytes], ...] = ()


# Building blocks ---------------------------------------------------------------------------------


def attributes(event_id: str, event_type: str = RECORD_TYPE) -> dict[str, Any]:
    """Return the attributes of a valid event, with the entity as subject."""
    return {"specversion": "1.0", "id": event_id, "source": SOURCE, "type": event_type, "subject": "NSW", "time": TIME}


def header_text(value: str) -> str:
    """Percent-encode an attribute value for an HTTP `ce-` header."""
    return quote(value, safe=_HEADER_SAFE)


def http_binary(members: dict[str, Any], content_type: str | None = JSON) -> tuple[tuple[str, str | bytes], ...]:
    """Return the binary-mode HTTP headers of the string attributes."""
    headers = [(f"ce-{name}", header_text(value)) for name, value in members.items() if value is not ABSENT]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return tuple(headers)


def kafka_binary(members: dict[str, Any], content_type: str | None = JSON) -> tuple[tuple[str, bytes | None], ...]:
    """Return binary-mode Kafka headers for string attributes."""
    headers: list[tuple[str, bytes | None]] = [
        (f"ce_{name}", value.encode()) for name, value in members.items() if value is not ABSENT
    ]
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    return tuple(headers)


def structured(members: dict[str, Any], data_text: bytes | None, content_type: str | None = JSON) -> bytes:
    """Return a JSON-format event with `data_text` spliced in verbatim, so the data may be any JSON text."""
    parts = [f"{json.dumps(name)}: {json.dumps(value)}" for name, value in members.items() if value is not ABSENT]
    if content_type is not None:
        parts.append(f'"datacontenttype": {json.dumps(content_type)}')
    if data_text is not None:
        parts.append('"data": ' + data_text.decode())
    return ("{" + ", ".join(parts) + "}").encode()


def row_json(**changes: Any) -> bytes:
    """Return ROW as JSON, with fields changed, added, or left out when set to ABSENT."""
    row = {name: value for name, value in (ROW | changes).items() if value is not ABSENT}
    return json.dumps(row).encode()


def valid_http(event_id: str, **changes: str | bytes) -> tuple[tuple[str, str | bytes], ...]:
    """Return the headers of a valid binary-mode record, with `ce-` headers replaced by keyword."""
    headers = dict(http_binary(attributes(event_id)))
    headers.update({f"ce-{name}": value for name, value in changes.items()})
    return tuple(headers.items())


def spelled(mode: str, attribute: str) -> str:
    """Return how the service's messages name an attribute in a content mode."""
    if mode == HTTP_BINARY:
        return f"ce-{attribute}"
    if mode == KAFKA_BINARY:
        return f"ce_{attribute}"
    return f"'{attribute}'"


# Attribute cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeCase:
    """An otherwise valid record with one attribute changed. A `reason` of None means it is accepted."""

    name: str
    description: str
    attribute: str
    value: Any
    mentions: tuple[str, ...] = ()
    reason: str | None = "invalid-cloudevent"
    modes: tuple[str, ...] = ALL_MODES
    names_attribute: bool = True
    raw_headers: tuple[tuple[str, bytes], ...] = ()


ATTRIBUTE_CASES = [
    AttributeCase("no-specversion", "Without specversion the input is not a CloudEvent.", "specversion", ABSENT),
    AttributeCase("no-id", "id is required.", "id", ABSENT, ("is missing",)),
    AttributeCase("no-source", "source is required.", "source", ABSENT, ("is missing",)),
    AttributeCase("no-type", "type is required.", "type", ABSENT, ("is missing",)),
    AttributeCase("empty-id", "id MUST be a non-empty string.", "id", "", ("is empty",)),
    AttributeCase("empty-source", "source MUST be a non-empty URI-reference.", "source", "", ("is empty",)),
    AttributeCase("empty-type", "type MUST be a non-empty string.", "type", "", ("is empty",)),
    AttributeCase("specversion-0.3", "CloudEvents 0.3 is not read.", "specversion", "0.3", ("'0.3'",)),
    AttributeCase("specversion-2.0", "A future major version is not read.", "specversion", "2.0", ("'2.0'",)),
    AttributeCase("specversion-empty", "An empty specversion names no version.", "specversion", "", ("''",)),
    AttributeCase(
        "specversion-number",
        "specversion is the string \"1.0\", so the JSON number 1.0 is rejected.",
        "specversion",
        1.0,
        ("is 1.0",),
        modes=STRUCTURED_MODES,
    ),
    AttributeCase("time-garbage", "time must be an RFC 3339 timestamp.", "time", "yesterday", ("not an RFC 3339 timestamp",)),
    AttributeCase(
        "time-no-seconds", "RFC 3339 requires seconds.", "time", "2024-03-01T10:00Z", ("not an RFC 3339 timestamp",)
    ),
    AttributeCase(
        "time-no-zone",
        "A time without an offset is ambiguous, so it is rejected.",
        "time",
        "2024-03-01T10:00:00",
        ("not an RFC 3339 timestamp",),
    ),
    AttributeCase(
        "time-date-only", "A date is not a date-time.", "time", "2024-03-01", ("not an RFC 3339 timestamp",)
    ),
    AttributeCase(
        "time-space", "RFC 3339 separates date and time with T.", "time", "2024-03-01 10:00:00Z", ("not an RFC 3339",)
    ),
    AttributeCase("time-impossible", "February has no 30th.", "time", "2024-02-30T10:00:00Z", ("not a real date",)),
    AttributeCase(
        "time-offset-24h", "A UTC offset is at most 23:59.", "time", "2024-03-01T10:00:00+24:00", ("out of range",)
    ),
    AttributeCase(
        "time-number",
        "Epoch seconds are not a timestamp string.",
        "time",
        1709287200,
        ("RFC 3339",),
        modes=STRUCTURED_MODES,
    ),
    AttributeCase(
        "time-year-3000",
        "Accepted: the service checks that time is well formed, not that it is plausible, and forwards it unchanged.",
        "time",
        "3000-01-01T00:00:00Z",
        reason=None,
        raw_headers=(("ce_time", b"3000-01-01T00:00:00Z"),),
    ),
    AttributeCase(
        "time-epoch",
        "Accepted: an event 54 years older than its neighbours is forwarded in arrival order, because ingestion does not reorder.",
        "time",
        "1970-01-01T00:00:00Z",
        reason=None,
        raw_headers=(("ce_time", b"1970-01-01T00:00:00Z"),),
    ),
    AttributeCase(
        "time-leap-second",
        "Accepted: RFC 3339 allows :60, which is forwarded as the last microsecond of its minute.",
        "time",
        "2016-12-31T23:59:60Z",
        reason=None,
        raw_headers=(("ce_time", b"2016-12-31T23:59:59.999999Z"),),
    ),
    AttributeCase(
        "time-lower-case",
        "Accepted: RFC 3339 allows t and z, which are forwarded in upper case.",
        "time",
        "2024-03-01t10:00:00z",
        reason=None,
        raw_headers=(("ce_time", b"2024-03-01T10:00:00Z"),),
    ),
    AttributeCase(
        "time-offset",
        "Accepted: the sender's offset is kept.",
        "time",
        "2024-03-01T15:30:00+05:30",
        reason=None,
        raw_headers=(("ce_time", b"2024-03-01T15:30:00+05:30"),),
    ),
    AttributeCase(
        "time-nanoseconds",
        "Accepted: digits beyond microseconds are cut off.",
        "time",
        "2024-03-01T10:00:00.123456789Z",
        reason=None,
        raw_headers=(("ce_time", b"2024-03-01T10:00:00.123456Z"),),
    ),
    AttributeCase("no-time", "Accepted: time is optional, and the arrival time replaces it.", "time", ABSENT, reason=None),
    AttributeCase(
        "source-space", "source must be a URI-reference, which has no spaces.", "source", "not a uri", ("contains ' '",)
    ),
    AttributeCase(
        "source-bad-escape", "A % in a URI must start a %XX escape.", "source", "/a%zz", ("does not start a %XX escape",)
    ),
    AttributeCase(
        "dataschema-relative", "dataschema must be an absolute URI.", "dataschema", "schemas/row.json", ("no scheme",)
    ),
    AttributeCase("subject-empty", "subject, when present, is non-empty.", "subject", "", ("is empty",)),
    AttributeCase(
        "subject-control", "CloudEvents strings hold no control characters.", "subject", "line\nbreak", ("U+000A",)
    ),
    AttributeCase("id-nul", "CloudEvents strings hold no NUL.", "id", "a\x00b", ("U+0000",)),
    AttributeCase(
        "subject-no-ascii",
        "Accepted: a subject is any Unicode text, which HTTP carries percent-encoded as UTF-8.",
        "subject",
        "Zürich",
        reason=None,
        raw_headers=(("ce_subject", "Zürich".encode()),),
    ),
    AttributeCase(
        "no-subject",
        "Accepted: the elec2 pipeline has one entity, so an event without a subject belongs to NSW.",
        "subject",
        ABSENT,
        reason=None,
        raw_headers=(("ce_subject", b"NSW"),),
    ),
    AttributeCase(
        "type-unknown",
        "Only record and label events are ingested.",
        "type",
        "io.example.order.v1",
        ("type 'io.example.order.v1' is not accepted",),
        reason="unknown-type",
        names_attribute=False,
    ),
    AttributeCase("id-number", "id is a string, not a JSON number.", "id", 42, ("MUST be a string",), modes=STRUCTURED_MODES),
    AttributeCase(
        "id-null",
        "A null attribute is an absent one, and id is required.",
        "id",
        None,
        ("is missing",),
        modes=STRUCTURED_MODES,
    ),
    AttributeCase(
        "subject-boolean", "subject is a string.", "subject", True, ("(a boolean)",), modes=STRUCTURED_MODES
    ),
    AttributeCase(
        "subject-null",
        "Accepted: a null attribute is an absent one, and subject is optional.",
        "subject",
        None,
        reason=None,
        modes=STRUCTURED_MODES,
        raw_headers=(("ce_subject", b"NSW"),),
    ),
    AttributeCase(
        "extension-fraction",
        "Extension values are strings, integers or booleans.",
        "retries",
        1.5,
        ("has a fraction",),
        modes=STRUCTURED_MODES,
    ),
    AttributeCase(
        "extension-big-int",
        "A CloudEvents integer is 32 bits.",
        "retries",
        2**31,
        ("outside the CloudEvents Integer range",),
        modes=STRUCTURED_MODES,
    ),
    AttributeCase(
        "extension-object",
        "Extension values are scalars.",
        "retries",
        {"count": 1},
        ("MUST be a string, an integer or a boolean",),
        modes=STRUCTURED_MODES,
    ),
    AttributeCase(
        "extension-underscore", "Attribute names use only a-z and 0-9.", "my_ext", "x", ("lower-case a-z",)
    ),
    AttributeCase(
        "extension-upper-case",
        "Attribute names are lower case. HTTP header names are case-insensitive, so HTTP has its own case.",
        "MyExt",
        "x",
        ("lower-case a-z",),
        modes=(KAFKA_BINARY, HTTP_STRUCTURED, KAFKA_STRUCTURED),
    ),
    AttributeCase(
        "extension-traceparent",
        "Accepted: an unknown extension is allowed, and the raw event carries only the pipeline's attributes.",
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        reason=None,
    ),
    AttributeCase(
        "datacontenttype-header",
        "In binary mode the content type is the content-type header, not a ce_ attribute.",
        "datacontenttype",
        JSON,
        ("not allowed in binary mode",),
        modes=BINARY_MODES,
    ),
    AttributeCase(
        "data-header",
        "In binary mode the data is the body, not a ce_ attribute.",
        "data",
        "{}",
        ("not allowed in binary mode",),
        modes=BINARY_MODES,
    ),
]


# Data cases --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataCase:
    """Data sent in an otherwise valid event. A `reason` of None means it is accepted.

    `data` is a JSON value. When it is ABSENT, `text` contains the exact bytes of the data.
    """

    name: str
    description: str
    data: Any = ABSENT
    text: bytes = b""
    content_type: str | None = JSON
    reason: str | None = "invalid-data"
    mentions: tuple[str, ...] = ()
    event_type: str = RECORD_TYPE
    modes: tuple[str, ...] = ALL_MODES

    @property
    def body(self) -> bytes:
        return self.text if self.data is ABSENT else json.dumps(self.data).encode()


def _without(*names: str) -> dict[str, Any]:
    return {name: value for name, value in ROW.items() if name not in names}


NESTING_DEPTH = 100_000

DATA_CASES = [
    DataCase("float-word", "A float field rejects a word.", ROW | {"nswprice": "high"}, mentions=("nswprice", "'high'")),
    DataCase(
        "float-numeric-string",
        "Float fields are strict: a number inside a string is rejected.",
        ROW | {"nswprice": "0.5"},
        mentions=("nswprice", "'0.5'"),
    ),
    DataCase("float-boolean", "true is not a number.", ROW | {"nswprice": True}, mentions=("nswprice", "True")),
    DataCase("float-null", "A required float is not null.", ROW | {"nswdemand": None}, mentions=("nswdemand",)),
    DataCase("float-list", "A float field rejects a list.", ROW | {"vicprice": [0.5]}, mentions=("vicprice",)),
    DataCase("float-object", "A float field rejects an object.", ROW | {"transfer": {"value": 0.5}}, mentions=("transfer",)),
    DataCase(
        "float-huge-int",
        "An integer beyond the range of a 64-bit float is rejected.",
        ROW | {"period": 10**400},
        mentions=("period",),
    ),
    DataCase(
        "float-big-int",
        "Accepted: a float field takes any integer that a 64-bit float can represent, so 2**64 becomes 1.8446744073709552e19.",
        ROW | {"nswprice": 2**64},
        reason=None,
    ),
    DataCase("float-max", "Accepted: the largest finite double.", ROW | {"nswprice": 1.7976931348623157e308}, reason=None),
    DataCase("float-subnormal", "Accepted: the smallest positive double.", ROW | {"nswprice": 5e-324}, reason=None),
    DataCase("float-negative-zero", "Accepted: -0.0 is a finite number.", ROW | {"transfer": -0.0}, reason=None),
    DataCase("category-unknown", "day is one of \"1\" to \"7\".", ROW | {"day": "8"}, mentions=("day", "'8'")),
    DataCase("category-int", "A category is a string, and 5 is not \"5\".", ROW | {"day": 5}, mentions=("day",)),
    DataCase("category-padded", "Categories match exactly, and \"5 \" is not \"5\".", ROW | {"day": "5 "}, mentions=("day",)),
    DataCase("category-empty", "An empty string is no category.", ROW | {"day": ""}, mentions=("day",)),
    DataCase("category-null", "day is required.", ROW | {"day": None}, mentions=("day",)),
    DataCase("category-boolean", "A boolean is no category.", ROW | {"day": False}, mentions=("day",)),
    DataCase(
        "label-lower-case",
        "Classes match exactly, and \"up\" is not \"UP\".",
        ROW | {"class": "up"},
        mentions=("class", "'up'"),
    ),
    DataCase("label-unknown", "The label is DOWN or UP.", ROW | {"class": "SIDEWAYS"}, mentions=("class", "'SIDEWAYS'")),
    DataCase("label-int", "A class is a string.", ROW | {"class": 1}, mentions=("class",)),
    DataCase(
        "label-null", "Accepted: a null label means the label comes later in a label event.", ROW | {"class": None}, reason=None
    ),
    DataCase(
        "label-missing", "Accepted: a record may leave out its label and send it later.", _without("class"), reason=None
    ),
    DataCase(
        "field-missing",
        "Every input field but the label is required.",
        _without("nswprice"),
        mentions=("nswprice: missing required field",),
    ),
    DataCase(
        "fields-all-missing",
        "An empty object misses every required field, and the message names each.",
        {},
        mentions=tuple(f"{name}: missing required field" for name in REQUIRED_FIELDS),
    ),
    DataCase(
        "field-unknown",
        "Fields the spec does not declare are rejected.",
        ROW | {"temperature": 21.5},
        mentions=("temperature: unknown field",),
    ),
    DataCase(
        "field-wrong-case",
        "Field names are case-sensitive.",
        _without("nswprice") | {"NSWPRICE": 0.0584},
        mentions=("NSWPRICE: unknown field", "nswprice: missing required field"),
    ),
    DataCase(
        "fields-several-bad",
        "The message names every bad field, not only the first.",
        ROW | {"day": "9", "vicdemand": "low"},
        mentions=("day", "vicdemand"),
    ),
    DataCase(
        "field-deep-list",
        "A float field holding a list nested 500 levels deep is rejected like any list.",
        ROW | {"nswprice": json.loads("[" * 500 + "]" * 500)},
        mentions=("nswprice",),
    ),
    DataCase("data-array", "The data is one JSON object, not an array of rows.", [ROW], mentions=("got an array",)),
    DataCase("data-number", "The data is a JSON object.", 42, mentions=("got a number",)),
    DataCase("data-boolean", "The data is a JSON object.", True, mentions=("got a boolean",)),
    DataCase("data-null", "A record without data carries no row.", None, mentions=("got null",)),
    DataCase("data-word", "A bare JSON string is no row.", "row", mentions=("not valid JSON",)),
    DataCase(
        "duplicate-key-last-valid",
        "Accepted: of duplicate names the last one counts, as in most JSON readers, and it is valid.",
        text=row_json()[:-1] + b', "day": "6"}',
        reason=None,
    ),
    DataCase(
        "duplicate-key-last-bad",
        "Of duplicate names the last one counts, and it is invalid.",
        text=row_json()[:-1] + b', "day": "9"}',
        mentions=("day", "'9'"),
    ),
    DataCase(
        "label-event",
        "Accepted: a late label for an earlier record.",
        {"event_id": "any-record", "label": "DOWN"},
        reason=None,
        event_type=LABEL_TYPE,
    ),
    DataCase(
        "label-event-unknown-class",
        "A late label must be one of the spec's classes.",
        {"event_id": "any-record", "label": "MAYBE"},
        reason="invalid-label",
        mentions=("'MAYBE'",),
        event_type=LABEL_TYPE,
    ),
    DataCase(
        "label-event-number",
        "A classification label is a class name.",
        {"event_id": "any-record", "label": 0.5},
        reason="invalid-label",
        mentions=("label 0.5",),
        event_type=LABEL_TYPE,
    ),
    DataCase(
        "label-event-no-record",
        "A late label names the record it labels.",
        {"label": "UP"},
        mentions=("event_id: missing required field",),
        event_type=LABEL_TYPE,
    ),
    DataCase(
        "label-event-empty-record",
        "The record's id is non-empty.",
        {"event_id": "", "label": "UP"},
        mentions=("event_id",),
        event_type=LABEL_TYPE,
    ),
    # Bytes that are not JSON, so no JSON-format event can carry them.
    DataCase("not-utf8", "JSON is UTF-8.", text=b'{"day": "caf\xe9"}', mentions=("not UTF-8",), modes=BINARY_MODES),
    DataCase(
        "byte-order-mark",
        "JSON text has no byte order mark.",
        text=b"\xef\xbb\xbf" + row_json(),
        mentions=("not valid JSON",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "nan",
        "JSON has no NaN.",
        text=row_json()[:-1] + b', "nswprice": NaN}',
        mentions=("NaN is not a JSON number",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "infinity",
        "JSON has no Infinity.",
        text=row_json(nswprice=ABSENT)[:-1] + b', "nswprice": Infinity}',
        mentions=("Infinity is not a JSON number",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "minus-infinity",
        "JSON has no -Infinity.",
        text=row_json(nswprice=ABSENT)[:-1] + b', "nswprice": -Infinity}',
        mentions=("-Infinity is not a JSON number",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "overflow",
        "1e999 overflows a 64-bit float.",
        text=row_json(nswprice=ABSENT)[:-1] + b', "nswprice": 1e999}',
        mentions=("too large",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "minus-overflow",
        "-1e999 overflows a 64-bit float.",
        text=row_json(nswprice=ABSENT)[:-1] + b', "nswprice": -1e999}',
        mentions=("too large",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "int-5000-digits",
        "An integer literal of 5,000 digits is past what the JSON reader converts.",
        text=row_json(nswprice=ABSENT)[:-1] + b', "nswprice": ' + b"9" * 5000 + b"}",
        mentions=("not valid JSON",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "nested-arrays",
        "Arrays nested 100,000 levels deep are rejected before they exhaust the stack.",
        text=b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH,
        mentions=("nested too deeply",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "nested-objects",
        "Objects nested 100,000 levels deep are rejected before they exhaust the stack.",
        text=b'{"a": ' * NESTING_DEPTH + b"1" + b"}" * NESTING_DEPTH,
        mentions=("nested too deeply",),
        modes=BINARY_MODES,
    ),
    DataCase("truncated", "A row cut short is not JSON.", text=row_json()[:40], mentions=("not valid JSON",), modes=BINARY_MODES),
    DataCase(
        "trailing-garbage",
        "One JSON value per body.",
        text=row_json() + b" x",
        mentions=("not valid JSON",),
        modes=BINARY_MODES,
    ),
    DataCase("empty", "An empty body carries no row.", text=b"", mentions=("got null",), modes=BINARY_MODES),
    DataCase(
        "text-plain",
        "Plain text is not a row.",
        text=b"nswprice=0.0584",
        content_type="text/plain",
        mentions=("not valid JSON",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "xml",
        "XML is not a row.",
        text=b"<row><day>5</day></row>",
        content_type="application/xml",
        mentions=("not valid JSON",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "xml-declared-json",
        "XML under a JSON content type is not JSON.",
        text=b"<row><day>5</day></row>",
        mentions=("not valid JSON",),
        modes=BINARY_MODES,
    ),
    DataCase(
        "json-as-text-plain",
        "Accepted: text data is read as JSON, so a row sent as text/plain passes.",
        text=row_json(),
        content_type="text/plain",
        reason=None,
        modes=BINARY_MODES,
    ),
    DataCase(
        "no-content-type",
        "Accepted: a binary-mode event without a content type is read as JSON.",
        text=row_json(),
        content_type=None,
        reason=None,
        modes=BINARY_MODES,
    ),
    DataCase(
        "json-charset",
        "Accepted: application/json with charset=utf-8.",
        text=row_json(),
        content_type="application/json; charset=utf-8",
        reason=None,
        modes=BINARY_MODES,
    ),
    DataCase(
        "content-type-bare-word",
        "The content type is an RFC 2046 media type.",
        text=row_json(),
        content_type="json",
        reason="invalid-cloudevent",
        mentions=("content-type is 'json'",),
        modes=BINARY_MODES,
    ),
]


# Rendering ---------------------------------------------------------------------------------------


def _render(
    mode: str,
    name: str,
    description: str,
    members: dict[str, Any],
    data_text: bytes,
    content_type: str | None,
    reason: str | None,
    mentions: tuple[str, ...],
    raw_headers: tuple[tuple[str, bytes], ...],
) -> HttpCase | KafkaCase:
    event_id = members.get("id")
    ids = (event_id,) if isinstance(event_id, str) and event_id else ()
    forwarded, withheld = (ids, ()) if reason is None else ((), ids)
    case_name = f"{mode}.{name}"
    if mode == HTTP_BINARY:
        headers, body = http_binary(members, content_type), data_text
    elif mode == KAFKA_BINARY:
        headers, body = kafka_binary(members, content_type), data_text
    else:
        headers = (("content-type", STRUCTURED),) if mode == HTTP_STRUCTURED else (("content-type", STRUCTURED.encode()),)
        body = structured(members, data_text, content_type)
    if mode.startswith("http"):
        return HttpCase(
            name=case_name,
            description=description,
            headers=headers,  # type: ignore[arg-type]
            body=body,
            status=202 if reason is None else 400,
            error=reason,
            mentions=mentions,
            forwarded=forwarded,
            withheld=withheld,
            raw_headers=raw_headers,
        )
    return KafkaCase(
        name=case_name,
        description=description,
        key=b"NSW",
        value=body,
        headers=headers,  # type: ignore[arg-type]
        reason=reason,
        mentions=mentions,
        forwarded=forwarded,
        withheld=withheld,
        raw_headers=raw_headers,
    )


def rendered_attribute_cases() -> list[HttpCase | KafkaCase]:
    cases = []
    for case in ATTRIBUTE_CASES:
        for mode in case.modes:
            members = attributes(f"{mode}.{case.name}")
            members[case.attribute] = case.value
            mentions = case.mentions + ((spelled(mode, case.attribute),) if case.names_attribute and case.reason else ())
            cases.append(
                _render(mode, case.name, case.description, members, row_json(), JSON, case.reason, mentions, case.raw_headers)
            )
    return cases


def rendered_data_cases() -> list[HttpCase | KafkaCase]:
    cases = []
    for case in DATA_CASES:
        for mode in case.modes:
            members = attributes(f"{mode}.{case.name}", case.event_type)
            rendered = _render(
                mode, case.name, case.description, members, case.body, case.content_type, case.reason, case.mentions, ()
            )
            cases.append(rendered)
    return cases


# HTTP only ---------------------------------------------------------------------------------------


def _http(
    name: str,
    description: str,
    headers: Iterable[tuple[str, str | bytes]],
    body: bytes,
    status: int = 400,
    error: str | None = "invalid-cloudevent",
    **fields: Any,
) -> HttpCase:
    return HttpCase(f"http.{name}", description, tuple(headers), body, status, error, **fields)


def _batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def _event(event_id: str, **changes: Any) -> dict[str, Any]:
    """Return a valid JSON-format record event, with attributes or `data` changed."""
    event = attributes(event_id) | {"datacontenttype": JSON, "data": ROW}
    return {name: value for name, value in (event | changes).items() if value is not ABSENT}


_LONG_ROW = row_json(attachment="A" * (1_000_000 - len(row_json()) - len(', "attachment": ""')))
_BATCH_OF_50 = [_event(f"http.batch-one-bad-of-50.{index}") for index in range(50)]
_BATCH_OF_50[37] = _event("http.batch-one-bad-of-50.37", data=ROW | {"nswdemand": "n/a"})

HTTP_ONLY = [
    _http(
        "header-latin-1",
        "HTTP header values are ASCII, so a raw Latin-1 byte is rejected rather than guessed at.",
        valid_http("http.header-latin-1", source=b"/caf\xe9"),
        row_json(),
        mentions=("ce-source", "U+00E9"),
        withheld=("http.header-latin-1",),
    ),
    _http(
        "header-raw-utf8",
        "UTF-8 in a header must be percent-encoded, so raw UTF-8 bytes are rejected.",
        valid_http("http.header-raw-utf8", subject="Zürich".encode()),
        row_json(),
        mentions=("ce-subject", "U+00C3"),
        withheld=("http.header-raw-utf8",),
    ),
    _http(
        "header-id-not-ascii",
        "An id of raw bytes is rejected.",
        valid_http("unused", id=b"\xff\xfe"),
        row_json(),
        mentions=("ce-id", "U+00FF"),
    ),
    _http(
        "header-overlong-escape",
        "Percent escapes must decode to valid UTF-8, and %C0%A0 is an overlong form.",
        valid_http("http.header-overlong-escape", subject="%C0%A0"),
        row_json(),
        mentions=("ce-subject", "not valid UTF-8"),
        withheld=("http.header-overlong-escape",),
    ),
    _http(
        "header-lone-percent",
        "A literal % must be sent as %25.",
        valid_http("http.header-lone-percent", subject="100%"),
        row_json(),
        mentions=("ce-subject", "%XX escape"),
        withheld=("http.header-lone-percent",),
    ),
    _http(
        "header-open-quote",
        "A quoted-string header value must be closed.",
        valid_http("http.header-open-quote", subject='"NSW'),
        row_json(),
        mentions=("ce-subject", "unterminated quoted-string"),
        withheld=("http.header-open-quote",),
    ),
    _http(
        "header-name-case",
        "Accepted: HTTP header names are case-insensitive, so CE-MyExt is the extension myext.",
        valid_http("http.header-name-case") + (("CE-MyExt", "x"),),
        row_json(),
        202,
        None,
        forwarded=("http.header-name-case",),
    ),
    _http(
        "header-twice",
        "Two different ce-id headers leave the event's id ambiguous, as a repeated ce_ header does on Kafka.",
        valid_http("http.header-twice.first") + (("ce-id", "http.header-twice.second"),),
        row_json(),
        mentions=("ce-id",),
        withheld=("http.header-twice.first", "http.header-twice.second"),
    ),
    _http(
        "no-cloudevent-headers",
        "A plain JSON POST is not a CloudEvent.",
        [("content-type", JSON)],
        row_json(),
        mentions=("no ce-specversion header",),
    ),
    _http("no-headers", "A bare body is not a CloudEvent.", [], row_json(), mentions=("no ce-specversion header",)),
    _http(
        "content-type-empty",
        "An empty content type is no media type.",
        valid_http("http.content-type-empty")[:-1] + (("content-type", ""),),
        row_json(),
        mentions=("content-type is ''",),
        withheld=("http.content-type-empty",),
    ),
    _http(
        "structured-not-json",
        "A structured body is JSON.",
        [("content-type", STRUCTURED)],
        b"{",
        mentions=("not valid JSON",),
    ),
    _http(
        "structured-array",
        "A structured body contains one event. Arrays are for the batch content type.",
        [("content-type", STRUCTURED)],
        _batch(_event("http.structured-array")),
        mentions=("the event is an array",),
        withheld=("http.structured-array",),
    ),
    _http(
        "structured-not-utf8",
        "A JSON-format body is UTF-8.",
        [("content-type", STRUCTURED)],
        json.dumps(_event("http.structured-not-utf8")).encode()[:-1] + b', "note": "\xe9"}',
        mentions=("not UTF-8",),
        withheld=("http.structured-not-utf8",),
    ),
    _http(
        "structured-utf16",
        "The JSON event format is UTF-8 only.",
        [("content-type", STRUCTURED + "; charset=utf-16")],
        json.dumps(_event("http.structured-utf16")).encode("utf-16"),
        mentions=("charset utf-16",),
    ),
    _http(
        "structured-xml",
        "Only the JSON event format is read.",
        [("content-type", "application/cloudevents+xml")],
        b"<event/>",
        mentions=("application/cloudevents+xml",),
    ),
    _http(
        "structured-nested",
        "A structured body nested 100,000 levels deep is rejected before it exhausts the stack.",
        [("content-type", STRUCTURED)],
        b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH,
        mentions=("nested too deeply",),
    ),
    _http(
        "structured-nan-id",
        "NaN is not JSON, in attributes either.",
        [("content-type", STRUCTURED)],
        b'{"specversion": "1.0", "id": NaN, "source": "/s", "type": "' + RECORD_TYPE.encode() + b'"}',
        mentions=("NaN is not a JSON number",),
    ),
    _http(
        "structured-data-twice",
        "data and data_base64 exclude each other.",
        [("content-type", STRUCTURED)],
        json.dumps(_event("http.structured-data-twice", data_base64="e30=")).encode(),
        mentions=("both data and data_base64",),
        withheld=("http.structured-data-twice",),
    ),
    _http(
        "structured-bad-base64",
        "data_base64 is RFC 4648 base64.",
        [("content-type", STRUCTURED)],
        json.dumps(_event("http.structured-bad-base64", data=ABSENT, data_base64="not base64!")).encode(),
        error="invalid-data",
        mentions=("data_base64",),
        withheld=("http.structured-bad-base64",),
    ),
    _http(
        "structured-base64-row",
        "Accepted: the row as base64 bytes is read as JSON like a binary-mode body.",
        [("content-type", STRUCTURED)],
        json.dumps(
            _event("http.structured-base64-row", data=ABSENT, data_base64=base64.b64encode(row_json()).decode())
        ).encode(),
        202,
        None,
        forwarded=("http.structured-base64-row",),
    ),
    _http(
        "structured-no-data",
        "An event without data carries no row.",
        [("content-type", STRUCTURED)],
        json.dumps(_event("http.structured-no-data", data=ABSENT)).encode(),
        error="invalid-data",
        mentions=("got null",),
        withheld=("http.structured-no-data",),
    ),
    _http(
        "batch-empty",
        "An empty batch delivers nothing, which is a client bug.",
        [("content-type", BATCH)],
        b"[]",
        error="invalid-batch",
        mentions=("empty",),
    ),
    _http(
        "batch-object",
        "A batch is a JSON array.",
        [("content-type", BATCH)],
        json.dumps(_event("x")).encode(),
        error="invalid-batch",
        mentions=("JSON array",),
    ),
    _http(
        "batch-number",
        "Batch items are events.",
        [("content-type", BATCH)],
        b"[1]",
        error="invalid-batch",
        mentions=("batch item 0 is a number",),
    ),
    _http(
        "batch-nested",
        "A batch nested 100,000 levels deep is rejected.",
        [("content-type", BATCH)],
        b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH,
        error="invalid-batch",
        mentions=("nested too deeply",),
    ),
    _http(
        "batch-not-utf8",
        "A batch is UTF-8.",
        [("content-type", BATCH)],
        b'[{"id": "\xff"}]',
        error="invalid-batch",
        mentions=("not UTF-8",),
    ),
    _http(
        "batch-mixed-versions",
        "All events in a batch share one specversion.",
        [("content-type", BATCH)],
        _batch(_event("http.batch-mixed-versions.0"), _event("http.batch-mixed-versions.1", specversion="0.3")),
        error="invalid-batch",
        mentions=("mixes specversions",),
        withheld=("http.batch-mixed-versions.0", "http.batch-mixed-versions.1"),
    ),
    _http(
        "batch-one-bad-data",
        "A batch is all or nothing: one bad row rejects it, and its valid member is not forwarded.",
        [("content-type", BATCH)],
        _batch(_event("http.batch-one-bad-data.0"), _event("http.batch-one-bad-data.1", data=ROW | {"day": "8"})),
        error="invalid-data",
        mentions=("http.batch-one-bad-data.1", "day"),
        withheld=("http.batch-one-bad-data.0", "http.batch-one-bad-data.1"),
    ),
    _http(
        "batch-one-bad-attribute",
        "A batch is all or nothing, and the message names the bad item.",
        [("content-type", BATCH)],
        _batch(_event("http.batch-one-bad-attribute.0"), _event("http.batch-one-bad-attribute.1", time="now")),
        mentions=("batch item 1", "'time'"),
        withheld=("http.batch-one-bad-attribute.0", "http.batch-one-bad-attribute.1"),
    ),
    _http(
        "batch-one-bad-of-50",
        "One bad row among 50 rejects the batch, and the message names that row.",
        [("content-type", BATCH)],
        _batch(*_BATCH_OF_50),
        error="invalid-data",
        mentions=("http.batch-one-bad-of-50.37", "nswdemand"),
        withheld=tuple(event["id"] for event in _BATCH_OF_50),
    ),
    _http(
        "batch-valid",
        "Accepted: a batch of two records forwards both.",
        [("content-type", BATCH)],
        _batch(_event("http.batch-valid.0"), _event("http.batch-valid.1")),
        202,
        None,
        forwarded=("http.batch-valid.0", "http.batch-valid.1"),
    ),
    _http(
        "batch-duplicate-ids",
        "Accepted: a duplicate id is not an error. Ingestion forwards both, and consumers deduplicate by id.",
        [("content-type", BATCH)],
        _batch(_event("http.batch-duplicate-ids"), _event("http.batch-duplicate-ids")),
        202,
        None,
        forwarded=("http.batch-duplicate-ids", "http.batch-duplicate-ids"),
    ),
    _http(
        "duplicate-id.first",
        "Accepted: the first of two requests with one event id.",
        valid_http("http.duplicate-id"),
        row_json(),
        202,
        None,
        forwarded=("http.duplicate-id",),
    ),
    _http(
        "duplicate-id.second",
        "Accepted: the second delivery of an id is forwarded too, because ingestion does not deduplicate.",
        valid_http("http.duplicate-id"),
        row_json(),
        202,
        None,
        forwarded=("http.duplicate-id",),
    ),
    _http(
        "body-over-limit",
        "A declared length over the limit gets 413 before the body is read, and no dead letter.",
        valid_http("http.body-over-limit"),
        b" " * (MAX_BODY_BYTES + 1),
        413,
        "body-too-large",
        mentions=("over the limit",),
        withheld=("http.body-over-limit",),
    ),
    _http(
        "body-over-limit-chunked",
        "A chunked body gets 413 once it passes the limit, and no dead letter.",
        valid_http("http.body-over-limit-chunked"),
        b" " * (MAX_BODY_BYTES + 1),
        413,
        "body-too-large",
        mentions=("over the limit",),
        withheld=("http.body-over-limit-chunked",),
        chunked=True,
    ),
    _http(
        "body-near-limit",
        "A 1,000,000-byte row with an unknown field, inside the 1 MiB limit, is bad data like any other.",
        valid_http("http.body-near-limit"),
        _LONG_ROW,
        error="invalid-data",
        mentions=("attachment: unknown field",),
        withheld=("http.body-near-limit",),
    ),
]


# Kafka only --------------------------------------------------------------------------------------


def _kafka(
    name: str,
    description: str,
    headers: Iterable[tuple[str, bytes | None]],
    value: bytes | None,
    reason: str | None = "invalid-cloudevent",
    key: bytes | None = b"NSW",
    **fields: Any,
) -> KafkaCase:
    return KafkaCase(f"kafka.{name}", description, key, value, tuple(headers), reason, **fields)


def _valid_kafka(event_id: str, **changes: bytes | None) -> list[tuple[str, bytes | None]]:
    """Return the headers of a valid binary record, with headers changed or, set to ABSENT, left out."""
    headers = dict(kafka_binary(attributes(event_id))) | changes
    return [(name, value) for name, value in headers.items() if value is not ABSENT]


KAFKA_ONLY = [
    _kafka(
        "tombstone",
        "A null value (a tombstone) is not an event.",
        _valid_kafka("kafka.tombstone"),
        None,
        mentions=("tombstone",),
    ),
    _kafka("tombstone-bare", "A tombstone without headers is not an event either.", [], None, mentions=("tombstone",)),
    _kafka(
        "null-key",
        "Accepted: the key is transport metadata, and the raw record is keyed by the entity.",
        _valid_kafka("kafka.null-key"),
        row_json(),
        None,
        key=None,
        forwarded=("kafka.null-key",),
    ),
    _kafka(
        "key-not-utf8",
        "Accepted: the key is not read, so any bytes are valid.",
        _valid_kafka("kafka.key-not-utf8"),
        row_json(),
        None,
        key=b"\xff\xfe",
        forwarded=("kafka.key-not-utf8",),
    ),
    _kafka(
        "header-null",
        "An attribute header needs a value.",
        _valid_kafka("unused", ce_id=None),
        row_json(),
        mentions=("header ce_id has no value",),
    ),
    _kafka(
        "content-type-null",
        "A content-type header needs a value.",
        _valid_kafka("kafka.content-type-null", **{"content-type": None}),
        row_json(),
        mentions=("header content-type has no value",),
        withheld=("kafka.content-type-null",),
    ),
    _kafka(
        "id-not-utf8",
        "Kafka header values are UTF-8.",
        _valid_kafka("unused", ce_id=b"\xff\xfe"),
        row_json(),
        mentions=("header ce_id is not UTF-8",),
    ),
    _kafka(
        "source-latin-1",
        "Kafka header values are UTF-8, not Latin-1.",
        _valid_kafka("kafka.source-latin-1", ce_source=b"/caf\xe9"),
        row_json(),
        mentions=("header ce_source is not UTF-8",),
        withheld=("kafka.source-latin-1",),
    ),
    _kafka(
        "type-not-utf8",
        "Kafka header values are UTF-8.",
        _valid_kafka("kafka.type-not-utf8", ce_type=b"io.streamml.record.v1\x80"),
        row_json(),
        mentions=("header ce_type is not UTF-8",),
        withheld=("kafka.type-not-utf8",),
    ),
    _kafka(
        "content-type-not-utf8",
        "The content-type header is UTF-8.",
        _valid_kafka("kafka.content-type-not-utf8", **{"content-type": b"application/js\xf6n"}),
        row_json(),
        mentions=("header content-type is not UTF-8",),
        withheld=("kafka.content-type-not-utf8",),
    ),
    _kafka(
        "header-twice",
        "Each attribute is sent once.",
        _valid_kafka("kafka.header-twice") + [("ce_id", b"kafka.header-twice.again")],
        row_json(),
        mentions=("header ce_id appears twice",),
        withheld=("kafka.header-twice", "kafka.header-twice.again"),
    ),
    _kafka(
        "header-upper-case",
        "Kafka header names are case-sensitive, and CE_ID is not an attribute header.",
        _valid_kafka("kafka.header-upper-case") + [("CE_ID", b"other")],
        row_json(),
        mentions=("header CE_ID",),
        withheld=("kafka.header-upper-case",),
    ),
    _kafka("no-headers", "A plain JSON value is not a CloudEvent.", [], row_json(), mentions=("no ce_specversion header",)),
    _kafka(
        "content-type-only",
        "A content type alone does not make a CloudEvent.",
        [("content-type", JSON.encode())],
        row_json(),
        mentions=("no ce_specversion header",),
    ),
    _kafka(
        "structured-batch",
        "Kafka has no batch mode, so one record is one event.",
        [("content-type", BATCH.encode())],
        _batch(_event("kafka.structured-batch")),
        mentions=("application/cloudevents+json",),
        withheld=("kafka.structured-batch",),
    ),
    _kafka(
        "structured-array",
        "A structured record contains one event.",
        [("content-type", STRUCTURED.encode())],
        _batch(_event("kafka.structured-array")),
        mentions=("the event is an array",),
        withheld=("kafka.structured-array",),
    ),
    _kafka(
        "structured-not-json",
        "A structured record is JSON.",
        [("content-type", STRUCTURED.encode())],
        b"<event/>",
        mentions=("not valid JSON",),
    ),
    _kafka(
        "structured-nested",
        "A structured record nested 100,000 levels deep is rejected before it exhausts the stack.",
        [("content-type", STRUCTURED.encode())],
        b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH,
        mentions=("nested too deeply",),
    ),
    _kafka(
        "duplicate-id.first",
        "Accepted: the first of two records with one event id.",
        _valid_kafka("kafka.duplicate-id"),
        row_json(),
        None,
        forwarded=("kafka.duplicate-id",),
    ),
    _kafka(
        "duplicate-id.second",
        "Accepted: the second record with that id is forwarded too, because ingestion does not deduplicate.",
        _valid_kafka("kafka.duplicate-id"),
        row_json(),
        None,
        forwarded=("kafka.duplicate-id",),
    ),
]

#: A record of 900,000 bytes, under the default limits of about 1 MB of the producer and the
#: broker. A client can produce it, whereas a record over those limits never reaches the topic.
BIG_VALUE = row_json(attachment="A" * (900_000 - len(row_json()) - len(', "attachment": ""')))


def _check_names(cases) -> None:
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"case names used twice: {duplicates}")


_RENDERED = rendered_attribute_cases() + rendered_data_cases()
HTTP_CASES: list[HttpCase] = [case for case in _RENDERED if isinstance(case, HttpCase)] + HTTP_ONLY
KAFKA_CASES: list[KafkaCase] = [case for case in _RENDERED if isinstance(case, KafkaCase)] + KAFKA_ONLY
_check_names(HTTP_CASES)
_check_names(KAFKA_CASES)


# Generated cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Expected outcome of a record's data: accepted, or rejected with the fields that the message names."""

    accepted: bool
    named: tuple[str, ...] = ()


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False


def _fits(field: str, value: Any) -> bool:
    if field == "day":
        return isinstance(value, str) and value in DAYS
    if field == "class":
        return value is None or (isinstance(value, str) and value in CLASSES)
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return False
        return True
    return False


def judge(data: dict[str, Any]) -> Verdict:
    """Predict what the service does with `data` as an elec2 record, from the spec alone.

    NaN and infinities are rejected while the JSON is read, before any field is checked,
    so their message names no field.
    """
    if _has_non_finite(data):
        return Verdict(False)
    unknown = [name for name in data if name not in ROW]
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    wrong = [name for name, value in data.items() if name in ROW and not _fits(name, value)]
    bad = tuple(unknown + missing + wrong)
    return Verdict(not bad, bad)


def named_fields(message: str) -> set[str]:
    """Return the elec2 fields that a validation message reports as bad.

    The message lists one `field: problem` or `field.kind: problem` part per error,
    after `invalid data: ` and separated by `; `.
    """
    return {name for name in ROW if re.search(rf"(?:: |; ){re.escape(name)}[.:]", message)}


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | _TEXT
    | st.sampled_from(DAYS + CLASSES)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6
)


_TYPED = {
    **dict.fromkeys(
        FLOAT_FIELDS,
        st.floats() | st.integers(min_value=-(10**400), max_value=10**400) | st.booleans() | st.sampled_from(["0.5", "1e3"]),
    ),
    "day": st.sampled_from(DAYS) | st.integers(min_value=0, max_value=8) | st.text(max_size=2),
    "class": st.sampled_from(CLASSES) | st.none() | st.sampled_from(["up", "Down", ""]),
}


@st.composite
def record_data(draw: st.DrawFn) -> dict[str, Any]:
    """Draw elec2 data: ROW with up to three fields dropped or replaced, and sometimes extra fields.

    A replacement is mostly a value of the field's own kind, valid or not, and otherwise
    any JSON value, so that accepted rows and single bad fields are both common.
    """
    data = dict(ROW)
    for name in draw(st.lists(st.sampled_from(tuple(ROW)), max_size=3, unique=True)):
        change = draw(st.sampled_from(["typed", "typed", "any", "drop"]))
        if change == "drop":
            del data[name]
        else:
            data[name] = draw(_TYPED[name] if change == "typed" else JSON_VALUES)
    if draw(st.integers(min_value=0, max_value=3)) == 3:
        data |= draw(st.dictionaries(_TEXT, JSON_VALUES, min_size=1, max_size=2))
    return data


def data_text(data: dict[str, Any]) -> bytes:
    """Write drawn data as JSON text, with NaN and infinities as the bare words that a buggy writer emits."""
    return json.dumps(data).encode()


_HTTP_HEADER_NAMES = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataschema",
        "ce-datacontenttype",
        "content-type",
    ]
) | st.from_regex(r"ce-[a-z0-9_]{0,8}", fullmatch=True)
#: Bytes an HTTP client may put in a header value: visible ASCII, space, and obs-text.
_HEADER_BYTES = st.lists(st.sampled_from([*range(0x20, 0x7F), *range(0x80, 0x100)]), max_size=24).map(
    lambda codes: bytes(codes).strip(b" ")
)
_HTTP_HEADER_VALUES = st.sampled_from(
    ["1.0", "0.3", RECORD_TYPE, SOURCE, TIME, JSON, STRUCTURED, BATCH, "text/plain", "%C0%A0", '"NSW']
) | _HEADER_BYTES
#: Never a valid event, because no body contains a complete row and the label type is not
#: among the header values. The service must respond 400 to every request.
HTTP_REQUESTS = st.tuples(
    st.dictionaries(_HTTP_HEADER_NAMES, _HTTP_HEADER_VALUES, max_size=7).map(lambda headers: tuple(headers.items())),
    st.binary(max_size=200)
    | st.sampled_from([b"", b"{}", b"[]", b"null", b"[1]", b'{"specversion": "1.0"}', row_json()[:-1]]),
)

_KAFKA_HEADER_NAMES = st.sampled_from(
    [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_datacontenttype",
        "content-type",
        "CE_ID",
        "ce_My",
    ]
) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
_KAFKA_HEADER_VALUES = (
    st.none()
    | st.sampled_from(
        [b"1.0", b"0.3", SOURCE.encode(), TIME.encode(), JSON.encode(), STRUCTURED.encode(), BATCH.encode(), b"\xff"]
    )
    | st.binary(max_size=24)
)
#: Never a valid record, for the same reasons as HTTP_REQUESTS, so every one is dead-lettered.
KAFKA_RECORDS = st.tuples(
    st.none() | st.binary(max_size=8),
    st.none() | st.binary(max_size=64) | st.sampled_from([b"", b"{}", b"[]", b"null", b'{"nswprice": NaN}', row_json()[:-1]]),
    st.lists(st.tuples(_KAFKA_HEADER_NAMES, _KAFKA_HEADER_VALUES), max_size=7).map(tuple),
)
