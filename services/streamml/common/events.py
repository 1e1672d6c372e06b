"""CloudEvents 1.0 construction and the Kafka and HTTP codecs.

Events are the cloudevents SDK's `CloudEvent`, but the wire mappings live here. The
SDK bindings accept what the spec forbids and fill in what the sender left out. Its
`CloudEvent` constructor invents a missing `id` and `time`, its JSON format reads any
specversion, and `dateutil` accepts times that RFC 3339 rejects. Data that fails to
parse as JSON silently becomes a string, and the Kafka binding turns the record key
into a `partitionkey` attribute. The decoders here apply the spec's MUST rules (see
`cloudevent_rules`) and raise InvalidEventError for anything that breaks them.

Kafka records are written in binary content mode: `ce_` headers, the data as the
value and `partitionkey` as the key. Both binary and structured mode are read. HTTP
requests are read in binary, structured and batch mode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, TypeVar

from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from streamml.common import cloudevent_rules as rules
from streamml.common.cloudevent_rules import RuleError, show
from streamml.common.errors import InvalidEventError
from streamml.common.payloads import schema_uri

JSON = "application/json"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
M = TypeVar("M", bound=BaseModel)
_ID_NAMESPACE = uuid.UUID("7a4f6b8e-2f1c-4c1e-9a51-0d6b3f1e2c90")
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
# Templates for naming an attribute in error messages, one per representation.
_JSON_NAMES = "attribute '{}'"
_KAFKA_NAMES = "header ce_{}"
_HTTP_NAMES = "header ce-{}"


@dataclass(frozen=True, slots=True)
class Output:
    """An event to produce, and the topic it goes to."""

    topic: str
    event: CloudEvent


def derived_id(input_id: str, stage: str) -> str:
    """Return a deterministic event id for what `stage` emits about input `input_id`.

    Replays of the same input produce the same id, so consumers can deduplicate.
    """
    # uuid.uuid5 by hand, on the hex digest: the version digit becomes 5 and the first digit of
    # the variant one of 8, 9, a, b. The same UUID as str(uuid.uuid5(...)) in about 30% of its time.
    text = hashlib.sha1(_ID_NAMESPACE_BYTES + f"{stage}\x00{input_id}".encode()).hexdigest()
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT_DIGIT[text[16]]}{text[17:20]}-{text[20:32]}"


# The first hex digit of a UUID's variant field (RFC 9562 §4.1) from any hex digit: its top bits become 10.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_event(
    *,
    type: str,
    source: str,
    subject: str,
    data: BaseModel | dict[str, Any],
    time: datetime | None = None,
    id: str | None = None,
    dataschema: str | None = None,
    extensions: Mapping[str, str] | None = None,
    encoded: bytes | None = None,
) -> CloudEvent:
    """Build a CloudEvent with JSON data and the entity as `subject` and `partitionkey`.

    Raises InvalidEventError when an attribute breaks the spec (an empty or
    control-character subject, a naive time, a bad extension name) or the data
    contains NaN or an infinity, which JSON cannot carry.

    `encoded` is `data` already written as JSON by a caller that made sure it holds
    only finite numbers and does not change it afterwards. The data is then not
    searched for NaN, and the Kafka and HTTP encoders send these bytes instead of
    writing the data again; data replaced with `event._data = ...` is written anew.
    """
    event_id = id or str(uuid.uuid4())
    moment = time or datetime.now(timezone.utc)
    head = None
    head_key = (type, source, subject, dataschema)
    if not extensions:
        try:
            head = _HEADS.get(head_key)
        except TypeError:  # an unhashable value, which the full check below rejects
            pass
    if head is not None and _plain_id_and_time(event_id, moment):
        attributes = head.copy()
        attributes["id"] = event_id
        attributes["time"] = moment
    else:
        attributes = {
            "specversion": rules.SPECVERSION,
            "id": event_id,
            "source": source,
            "type": type,
            "subject": subject,
            "time": moment,
            "datacontenttype": JSON,
            "dataschema": dataschema or schema_uri(type),
            "partitionkey": subject,
        }
        if extensions:
            attributes.update(extensions)
        _check_attributes(attributes, _NewEvent(type, event_id), _JSON_NAMES)
        if not extensions:
            if len(_HEADS) >= _HEADS_LIMIT:
                _HEADS.clear()
            _HEADS[head_key] = attributes.copy()
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    if encoded is not None:
        event = _build(attributes, payload)
        event._streamml_json = (payload, encoded)  # type: ignore[attr-defined]
        return event
    try:
        path = rules.find_non_finite(payload)
    except RecursionError:
        raise InvalidEventError("invalid-data", f"{_NewEvent(type, event_id)}: data is nested too deeply; flatten it") from None
    if path is not None:
        location = "data" + "".join(f"[{step!r}]" for step in path)
        raise InvalidEventError(
            "invalid-data", f"{_NewEvent(type, event_id)}: {location} is not a finite number; JSON has no NaN or Infinity, so send null"
        )
    return _build(attributes, payload)


# Checked attributes of new events without extensions, by the arguments they come from:
# (type, source, subject, dataschema). A service emits a few kinds of event, and many
# streams have few subjects, so often only `id` and `time` differ from one event to the next.
_HEADS: dict[tuple[Any, Any, Any, Any], dict[str, Any]] = {}
_HEADS_LIMIT = 1024


def _plain_id_and_time(event_id: Any, moment: Any) -> bool:
    """Return whether `event_id` is a non-empty printable ASCII string and `moment` an aware datetime.

    Those pass `check_attribute`, so an event whose other attributes were checked
    before needs no further check. Anything else takes the full check.
    """
    return (
        type(event_id) is str
        and event_id != ""
        and event_id.isascii()
        and event_id.isprintable()
        and type(moment) is datetime
        and moment.utcoffset() is not None
    )


def json_or_none(data: Any) -> bytes | None:
    """Return `data` as JSON for `new_event(encoded=...)`, or None for text that JSON cannot carry (an unpaired surrogate).

    With None, `new_event` checks the data itself and names what is wrong.
    """
    try:
        return to_json(data)
    except PydanticSerializationError:
        return None


class _NewEvent:
    """Names an event under construction in error messages; the text is built only for an error."""

    __slots__ = ("type", "id")

    def __init__(self, type: str, id: str) -> None:
        self.type = type
        self.id = id

    def __str__(self) -> str:
        return f"new {self.type!r} event {self.id!r}"


def event_time(event: CloudEvent) -> datetime:
    """Return the event's `time`, or now when it has none."""
    value = event.get_time()
    return value if value is not None else datetime.now(timezone.utc)


def data_object(event: CloudEvent) -> dict[str, Any]:
    """Return the event data as a JSON object, or raise InvalidEventError."""
    return _as_object(event.get_data(), event.get_id())


def _as_object(data: Any, event_id: str) -> dict[str, Any]:
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidEventError("invalid-data", f"event {event_id}: data is not UTF-8 ({error}); send a JSON object") from None
    if isinstance(data, str):
        try:
            data = rules.loads_json(data)
        except RuleError as error:
            raise InvalidEventError("invalid-data", _unusable_data(event_id, str(error))) from None
    if not isinstance(data, dict):
        raise InvalidEventError("invalid-data", _not_an_object(event_id, data))
    return data


def _unusable_data(event_id: str, problem: str) -> str:
    return f"event {event_id}: data is not usable because {problem}; send a JSON object with datacontenttype {JSON}"


def _not_an_object(event_id: str, data: Any) -> str:
    return f"event {event_id}: data must be a JSON object, got {rules.json_kind(data)}"


def parse_data(event: CloudEvent, model: type[M]) -> M:
    """Validate the event data against a payload model, or raise InvalidEventError.

    Data that is still bytes, as adapters leave it for a handler that sets
    `parses_json_data`, is validated straight from its JSON: one pass in pydantic-core
    instead of parsing to Python objects and validating those. Data that fails is
    decoded as the codec decodes JSON data and validated again, so the error is the
    one the data would get had it been decoded: it names invalid UTF-8, NaN, numbers
    too large and deep nesting.
    """
    data = event.get_data()
    if type(data) is bytes:
        try:
            return model.model_validate_json(data)
        except ValidationError:
            data = _read_data(data, event.get_datacontenttype(), f"event {event.get_id()}")
    try:
        return model.model_validate(_as_object(data, event.get_id()))
    except ValidationError as error:
        raise InvalidEventError("invalid-data", describe_validation(event.get_id(), error)) from error


def describe_validation(event_id: str, error: ValidationError) -> str:
    """Render a pydantic error as one line that names each bad field and its value."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "data"
        if item["type"] == "extra_forbidden":
            parts.append(f"{location}: unknown field; remove it or declare it in the pipeline spec")
        elif item["type"] == "missing":
            parts.append(f"{location}: missing required field")
        else:
            parts.append(f"{location}: {item['msg']} (got {item.get('input')!r})")
    return f"event {event_id}: invalid data: " + "; ".join(parts)


# Attributes --------------------------------------------------------------------------------------


def _invalid(where: str, message: str, reason: str = "invalid-cloudevent") -> InvalidEventError:
    return InvalidEventError(reason, f"{where}: {message}")


def _label(names: str, name: str) -> str:
    if name == "datacontenttype" and names != _JSON_NAMES:
        return "header content-type"
    return names.format(rules.clip(name))


# Attribute values that passed their checks, by (name, value). Most events of a stream repeat
# their source, type, subject and content type, so each distinct value is checked once.
_CHECKED: dict[tuple[str, str], Any] = {}
_CHECKED_LIMIT = 4096
# Attributes whose values differ on every event, which the cache would only fill.
_UNCACHED = frozenset({"id", "time", "traceparent", "tracestate", "streammlingesttime"})
_REQUIRED = frozenset(rules.REQUIRED)
# Names that passed `is_attribute_name`, so each name is matched once. Names are few, so the
# limit only guards against a stream that invents a new extension name per event.
_NAMES_OK: set[str] = set()
_NAMES_LIMIT = 1024


def _check_attributes(attributes: dict[str, Any], where: str, names: str, only: Iterable[str] | None = None) -> None:
    """Validate names, types and values in place, replacing a `time` string with a datetime.

    `only` limits the value checks to those attributes, when the others are known to pass.
    """
    version = attributes.get("specversion")
    if version != rules.SPECVERSION:
        state = "is missing" if version is None else f"is {show(version)}"
        raise _invalid(where, f"{_label(names, 'specversion')} {state}; this codec reads CloudEvents 1.0, so send \"1.0\"")
    if not _REQUIRED <= attributes.keys():
        name = next(name for name in rules.REQUIRED if name not in attributes)
        raise _invalid(where, f"required {_label(names, name)} is missing; send id, source, specversion and type")
    for name in attributes if only is None else only:
        value = attributes[name]
        cacheable = type(value) is str and name not in _UNCACHED
        if cacheable and (name, value) in _CHECKED:
            continue
        if name not in _NAMES_OK:
            if not rules.is_attribute_name(name):
                raise _invalid(where, f"{_label(names, name)} has an invalid name: {rules.name_fix(name)}")
            if name == "data":
                raise _invalid(where, f"{_label(names, name)} is reserved for the event payload; give the extension another name")
            if len(_NAMES_OK) >= _NAMES_LIMIT:
                _NAMES_OK.clear()
            _NAMES_OK.add(name)
        try:
            attributes[name] = rules.check_attribute(name, value)
        except RuleError as error:
            raise _invalid(where, f"{_label(names, name)} {error}") from None
        if cacheable:
            if len(_CHECKED) >= _CHECKED_LIMIT:
                _CHECKED.clear()
            _CHECKED[(name, value)] = True


def _build(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """Assemble an event from attributes that passed `_check_attributes`.

    Those checks cover every rule the SDK's constructor enforces (required attributes,
    their types, non-empty values, extension names), so the SDK's second pass over the
    same values is skipped. In a profile of the inference handler that pass took about a
    fifth of the time per event. Unlike the constructor, this never adds a `time`.
    """
    event = CloudEvent.__new__(CloudEvent)
    event._attributes = attributes
    event._data = data
    return event


# Data --------------------------------------------------------------------------------------------


def _data_bytes(event: CloudEvent) -> tuple[str | None, bytes]:
    written = event.__dict__.get("_streamml_json")
    if written is not None and written[0] is event.get_data():
        # Written by `new_event(encoded=...)`, whose content type is JSON.
        return event.get_datacontenttype(), written[1]
    try:
        return rules.encode_data(event.get_data(), event.get_datacontenttype())
    except RuleError as error:
        raise InvalidEventError("invalid-data", f"event {event.get_id()}: cannot encode data: {error}") from None


def _read_data(body: bytes, content_type: str | None, where: str) -> Any:
    try:
        return rules.decode_data(body, content_type)
    except RuleError as error:
        raise _invalid(where, f"the data is declared {content_type} but {error}; send valid JSON", "invalid-data") from None


# JSON format -------------------------------------------------------------------------------------


def _read_structured(body: bytes, content_type: str, where: str, batch_allowed: bool) -> tuple[bool, Any]:
    """Parse a structured or batch body, and return whether it is a batch with the JSON document."""
    try:
        media = rules.parse_media_type(content_type.strip())
    except RuleError as error:
        raise _invalid(where, f"content-type {error}") from None
    is_batch = media.essence.startswith("application/cloudevents-batch")
    expected = BATCH if is_batch and batch_allowed else STRUCTURED
    if media.essence != expected:
        raise _invalid(where, f"content-type {content_type!r} is an event format this codec cannot read; send {expected}")
    if not media.is_utf8:
        raise _invalid(where, f"content-type {content_type!r} declares charset {media.charset}; JSON MUST be UTF-8")
    try:
        return is_batch, rules.loads_json(bytes(body).decode("utf-8"))
    except UnicodeDecodeError as error:
        problem = f"the body is not UTF-8 ({error})"
    except RuleError as error:
        problem = f"the body is unusable because {error}"
    raise _invalid(where, f"{problem}; send UTF-8 JSON", "invalid-batch" if is_batch else "invalid-cloudevent")


def _event_from_json(item: Any, where: str) -> CloudEvent:
    if not isinstance(item, dict):
        raise _invalid(where, f"the event is {rules.json_kind(item)}, not a JSON object; send each event as a JSON object")
    # A null attribute is the same as an absent one (JSON format §2.2).
    attributes = {name: value for name, value in item.items() if value is not None}
    attributes.pop("data", None)
    encoded = attributes.pop("data_base64", None)
    if encoded is not None and "data" in item:
        raise _invalid(where, "the event has both data and data_base64; send binary data in data_base64 and anything else in data")
    _check_attributes(attributes, where, _JSON_NAMES)
    if encoded is None:
        return _build(attributes, item.get("data"))
    try:
        if not isinstance(encoded, str):
            raise ValueError(f"it is {rules.json_kind(encoded)}")
        data = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as error:
        raise _invalid(where, f"data_base64 is not RFC 4648 base64 ({error}); send a base64 string", "invalid-data") from None
    return _build(attributes, data)


def _structured_bytes(event: CloudEvent) -> bytes:
    try:
        members = rules.json_members(event.get_attributes(), event.get_data(), event.get_datacontenttype())
        return rules.dumps_json(members)
    except RuleError as error:
        raise InvalidEventError("invalid-data", f"event {event.get_id()}: cannot encode the event: {error}") from None


# Kafka -------------------------------------------------------------------------------------------

KafkaHeaders = list[tuple[str, bytes]]


def to_kafka(event: CloudEvent) -> tuple[bytes | None, bytes, KafkaHeaders]:
    """Encode an event as a binary-mode Kafka record: (key, value, headers).

    The key is the `partitionkey` attribute, which also stays in the headers (Kafka binding §3.1).
    """
    content_type, value = _data_bytes(event)
    attributes = event.get_attributes()
    headers: KafkaHeaders = []
    for item in attributes.items():
        try:
            header = _ENCODED.get(item)
        except TypeError:  # an unhashable value, which `_encode_header` rejects
            header = None
        if header is None:
            header = _encode_header(event, *item)
        if header:
            headers.append(header)
    if content_type is not None:
        headers.append(_content_type_header(content_type))
    partition_key = attributes.get("partitionkey")
    key = None if partition_key is None else rules.canonical_string(partition_key).encode("utf-8")
    return key, value, headers


# Headers of attribute values already written, by (name, value): most events of a stream
# repeat their source, type, subject and data schema. Only string values are kept, so a
# value never matches one of another type that compares equal, such as True and 1. The
# empty tuple stands for no header: `datacontenttype` travels as content-type.
_ENCODED: dict[tuple[str, str], tuple[str, bytes] | tuple[()]] = {}


def _encode_header(event: CloudEvent, name: str, attribute: Any) -> tuple[str, bytes] | tuple[()]:
    if attribute is None:
        return ()
    if name == "datacontenttype":
        header: tuple[str, bytes] | tuple[()] = ()
    else:
        try:
            header = ("ce_" + name, rules.canonical_string(attribute).encode("utf-8"))
        except (RuleError, UnicodeEncodeError) as error:
            raise InvalidEventError("invalid-cloudevent", f"event {event.get_id()}: attribute {name!r} {error}") from None
    if type(attribute) is str and name not in _UNCACHED:
        if len(_ENCODED) >= _CHECKED_LIMIT:
            _ENCODED.clear()
        _ENCODED[(name, attribute)] = header
    return header


@lru_cache(maxsize=64)
def _content_type_header(content_type: str) -> tuple[str, bytes]:
    return ("content-type", content_type.encode("utf-8"))


# Decoded headers of events that passed their checks, by (header name, value): the attribute
# and its text, or None and the content type. A header found here is neither decoded nor
# checked again. Headers whose values differ on every event are not kept.
_DECODED: dict[tuple[str, bytes], tuple[str | None, str]] = {}


def header_event_id(headers: Iterable[tuple[str, Any]] | None) -> str | None:
    """Return the `ce_id` header of a record, decoded leniently, for logs and dead letters of records that do not decode."""
    for name, raw in headers or ():
        if isinstance(name, str) and name.lower() == "ce_id" and isinstance(raw, bytes) and raw:
            return raw.decode("utf-8", errors="replace")
    return None


def _header_text(name: str, raw: Any, where: str) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _invalid(where, f"header {rules.clip(name)} is not UTF-8 ({error}); Kafka header values MUST be UTF-8") from None
    if isinstance(raw, str):
        return raw
    raise _invalid(where, f"header {rules.clip(name)} has no value; send the attribute's string form or drop the header")


def from_kafka(
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]] | None,
    where: object = "record",
    json_as_bytes: bool = False,
) -> CloudEvent:
    """Decode a Kafka record in binary or structured mode, or raise InvalidEventError.

    `where` names the record in errors, for example `topic[0]@42`; it is written with
    `str` only for an error. The key is not read: the event is what the value and
    headers carry (Kafka binding §3.1).

    With `json_as_bytes`, binary-mode data of a JSON content type stays the bytes of
    the value, unparsed and unchecked, for a handler that validates it in one step
    (see `EventHandler.parses_json_data`).
    """
    if value is None:
        raise _invalid(where, "tombstone (null value) is not an event; produce CloudEvents with a value")
    attributes: dict[str, Any] = {}
    content_type: str | None = None
    # Attributes whose values this decoder has not seen pass its checks before.
    unchecked: list[str] = []
    # Those of them worth remembering, with the headers they came from.
    fresh: list[tuple[str, tuple[str, bytes]]] = []
    for header in headers or ():
        try:
            known = _DECODED.get(header)
        except TypeError:  # a header that is not a tuple of hashable values
            known = None
        if known is not None:
            attribute, text = known
            if attribute is None:
                content_type = text
            elif attribute in attributes:
                raise _invalid(where, f"header {rules.clip(header[0])} appears twice; send each attribute once")
            else:
                attributes[attribute] = text
            continue
        name, raw = header
        if not isinstance(name, str):
            continue
        if name.startswith("ce_") and ((attribute := name[3:]) in _NAMES_OK or rules.is_attribute_name(attribute)):
            if attribute in attributes:
                raise _invalid(where, f"header {rules.clip(name)} appears twice; send each attribute once")
            try:
                attributes[attribute] = raw.decode("utf-8")
            except (AttributeError, UnicodeDecodeError):
                attributes[attribute] = _header_text(name, raw, where)
            unchecked.append(attribute)
            if attribute not in _UNCACHED:
                fresh.append((attribute, header))
        elif name[:3].lower() == "ce_":
            raise _invalid(where, f"header {rules.clip(name)} names an invalid attribute: {rules.name_fix(name[3:])}")
        elif name.lower() == "content-type":
            content_type = _header_text(name, raw, where).strip()
            unchecked.append("datacontenttype")
            fresh.append(("", header))
    if content_type is not None and content_type[:23].lower() == "application/cloudevents":
        return _event_from_json(_read_structured(value, content_type, where, batch_allowed=False)[1], where)
    if "specversion" not in attributes:
        raise _invalid(
            where,
            f"no ce_specversion header and no content-type {STRUCTURED}; "
            "produce CloudEvents in binary mode (ce_ headers) or structured mode",
        )
    # The content type is checked with the attributes when its header is not known to pass.
    event = _binary_event(attributes, content_type, value, where, _KAFKA_NAMES, unchecked, json_as_bytes)
    if fresh:
        _remember_headers(fresh, attributes, content_type)
    return event


def _remember_headers(fresh: list[tuple[str, tuple[str, bytes]]], attributes: dict[str, Any], content_type: str | None) -> None:
    """Keep the headers of an event that passed its checks; `fresh` leaves out those whose values differ on every event."""
    for attribute, header in fresh:
        if type(header[1]) is not bytes:
            continue
        if len(_DECODED) >= _CHECKED_LIMIT:
            _DECODED.clear()
        if attribute:
            _DECODED[header] = (attribute, attributes[attribute])
        elif content_type is not None:
            _DECODED[header] = (None, content_type)


def _binary_event(
    attributes: dict[str, Any],
    content_type: str | None,
    body: bytes,
    where: str,
    names: str,
    only: Iterable[str] | None = None,
    json_as_bytes: bool = False,
) -> CloudEvent:
    for reserved in ("datacontenttype", "data"):
        if reserved in attributes:
            raise _invalid(where, f"{names.format(reserved)} is not allowed in binary mode; send it as content-type or the body")
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    _check_attributes(attributes, where, names, only)
    if json_as_bytes and body and content_type is not None and rules.parse_media_type(content_type).is_json:
        return _build(attributes, bytes(body))
    return _build(attributes, _read_data(body, content_type, where))


# HTTP --------------------------------------------------------------------------------------------


def from_http(headers: Mapping[str, str], body: bytes, where: str = "request") -> list[CloudEvent]:
    """Decode an HTTP request in binary, structured or batch mode into events.

    Header values of binary mode are percent-decoded (HTTP binding §3.1.3.2). A batch
    may be empty. It is all or nothing, and errors name the first bad event.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    body = body or b""
    content_type = lowered.get("content-type")
    if content_type is not None and not isinstance(content_type, str):
        raise _invalid(where, "header content-type is not text; send a media type such as application/json")
    if content_type is not None and content_type.lstrip()[:23].lower() == "application/cloudevents":
        is_batch, document = _read_structured(body, content_type, where, batch_allowed=True)
        return _batch_events(document, where) if is_batch else [_event_from_json(document, where)]
    if "ce-specversion" not in lowered:
        raise _invalid(
            where,
            f"no ce-specversion header and content-type is {content_type or 'missing'!r}; "
            f"send binary mode (ce-* headers), structured mode ({STRUCTURED}) or a batch ({BATCH})",
        )
    attributes: dict[str, Any] = {}
    for name, value in lowered.items():
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if not rules.is_attribute_name(attribute):
            raise _invalid(where, f"header {rules.clip(name)} names an invalid attribute: {rules.name_fix(attribute)}")
        if not isinstance(value, str):
            raise _invalid(where, f"header {rules.clip(name)} is not text; send a percent-encoded string")
        try:
            attributes[attribute] = rules.percent_decode(value)
        except RuleError as error:
            raise _invalid(where, f"header {rules.clip(name)} {error}") from None
    return [_binary_event(attributes, content_type and content_type.strip(), body, where, _HTTP_NAMES)]


def _batch_events(document: Any, where: str) -> list[CloudEvent]:
    if not isinstance(document, list):
        raise _invalid(where, f"a batch is a JSON array of events, got {rules.json_kind(document)}", "invalid-batch")
    versions: dict[str, int] = {}
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise _invalid(where, f"batch item {index} is {rules.json_kind(item)}, not a JSON object", "invalid-batch")
        versions.setdefault(show(item.get("specversion")), index)
    if len(versions) > 1:
        found = ", ".join(f"{version} (item {index})" for version, index in versions.items())
        raise _invalid(where, f"the batch mixes specversions {found}; all events in a batch MUST share one", "invalid-batch")
    return [_event_from_json(item, f"{where} batch item {index}") for index, item in enumerate(document)]


def to_http_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Encode an event as binary-mode HTTP headers, percent-encoded, and body."""
    content_type, body = _data_bytes(event)
    headers: dict[str, str] = {}
    for name, value in event.get_attributes().items():
        if value is None or name == "datacontenttype":
            continue
        try:
            headers["ce-" + name] = rules.percent_encode(rules.canonical_string(value))
        except RuleError as error:
            raise InvalidEventError("invalid-cloudevent", f"event {event.get_id()}: attribute {name!r} {error}") from None
    if content_type is not None:
        try:
            rules.parse_media_type(content_type)
        except RuleError as error:
            raise InvalidEventError("invalid-cloudevent", f"event {event.get_id()}: datacontenttype {error}") from None
        headers["content-type"] = content_type
    return headers, body


def to_http_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Encode an event as a structured-mode HTTP body."""
    return {"content-type": STRUCTURED}, _structured_bytes(event)


def to_http_batch(events: Iterable[CloudEvent]) -> tuple[dict[str, str], bytes]:
    """Encode events as a batch-mode HTTP body: a JSON array of structured-mode events."""
    return {"content-type": BATCH}, b"[" + b",".join(_structured_bytes(event) for event in events) + b"]"


def to_structured_json(event: CloudEvent) -> dict[str, Any]:
    """Return the structured JSON form of an event, for batches and logs."""
    return json.loads(_structured_bytes(event))
