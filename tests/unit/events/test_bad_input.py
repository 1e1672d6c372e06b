"""Bad input gives InvalidEventError that names the problem, never another exception."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamml.common.errors import InvalidEventError
from streamml.common.events import BATCH, JSON, STRUCTURED, data_object, from_http, from_kafka, new_event, to_kafka

KAFKA_BINARY = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"1"),
    ("ce_source", b"/tests"),
    ("ce_type", b"io.test"),
    ("content-type", b"application/json"),
]
HTTP_BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/tests", "ce-type": "io.test", "content-type": JSON}
MINIMAL = {"specversion": "1.0", "id": "1", "source": "/tests", "type": "io.test"}
DEEP = b"[" * 100_000 + b"]" * 100_000
STRUCTURED_HEADER = [("content-type", STRUCTURED.encode())]


def kafka_headers(**changes: bytes | None) -> list[tuple[str, bytes | None]]:
    """Return KAFKA_BINARY with headers replaced or added, and those set to `...` removed."""
    headers = [(name, value) for name, value in KAFKA_BINARY if name not in changes]
    return headers + [(name, value) for name, value in changes.items() if value is not ...]


def rejected(call, *mentions: str, reason: str | None = None) -> InvalidEventError:
    """Run `call`, expect InvalidEventError, and check its message contains every mention."""
    with pytest.raises(InvalidEventError) as raised:
        call()
    for mention in mentions:
        assert mention in raised.value.message
    if reason is not None:
        assert raised.value.reason == reason
    return raised.value


# Kafka -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "mentions"),
    [
        (kafka_headers(ce_id=b"\xff\xfe"), ("header ce_id is not UTF-8",)),
        (kafka_headers(ce_id=None), ("header ce_id has no value",)),
        (kafka_headers(**{"content-type": b"\xc3("}), ("header content-type is not UTF-8",)),
        (kafka_headers(ce_specversion=b"0.3"), ("header ce_specversion is '0.3'",)),
        (kafka_headers(ce_specversion=b"1.0.2"), ("'1.0.2'", 'send "1.0"')),
        ([h for h in KAFKA_BINARY if h[0] != "ce_source"], ("required header ce_source is missing",)),
        (kafka_headers(ce_time=b"2018-04-05 17:31:00Z"), ("header ce_time", "not an RFC 3339 timestamp")),
        (kafka_headers(ce_time=b"2018-04-05T18:31Z"), ("header ce_time", "'2018-04-05T18:31Z'")),
        (kafka_headers(ce_MyExt=b"x"), ("header ce_MyExt", "lower-case", "'myext'")),
        (kafka_headers(ce_my_ext=b"x"), ("header ce_my_ext",)),
        (kafka_headers(CE_ID=b"1"), ("header CE_ID",)),
        (kafka_headers(ce_datacontenttype=b"text/plain"), ("ce_datacontenttype is not allowed in binary mode",)),
        (kafka_headers(ce_data=b"x"), ("ce_data is not allowed",)),
        (kafka_headers(ce_subject=b""), ("header ce_subject is empty",)),
        (kafka_headers(ce_subject=b"a\x1bb"), ("header ce_subject", "U+001B")),
        (kafka_headers(ce_source=b"has space"), ("header ce_source", "' '", "percent-encode")),
        (kafka_headers(ce_dataschema=b"/relative"), ("header ce_dataschema", "no scheme")),
        (kafka_headers(**{"content-type": b"xyz"}), ("header content-type is 'xyz'",)),
        (KAFKA_BINARY + [("ce_id", b"2")], ("header ce_id appears twice",)),
        ([("content-type", JSON.encode())], ("no ce_specversion header",)),
        ([], ("no ce_specversion header",)),
    ],
)
def test_bad_kafka_binary_record(headers, mentions):
    rejected(lambda: from_kafka(None, b"{}", headers, where="t[0]@7"), "t[0]@7: ", *mentions, reason="invalid-cloudevent")


@pytest.mark.parametrize(
    ("value", "content_type", "mention"),
    [
        (b"\xff{}", JSON, "not UTF-8"),
        (b"{not json", JSON, "not valid JSON"),
        (b'{"x": NaN}', JSON, "NaN is not a JSON number"),
        (b'{"x": -Infinity}', "application/vnd.example+json", "-Infinity is not a JSON number"),
        (b'{"x": 1e999}', JSON, "too large"),
        (b'{"x": ' + b"9" * 5000 + b"}", JSON, "not valid JSON"),
        (DEEP, JSON, "nested too deeply"),
        (b"abc", JSON, "not valid JSON"),  # a JSON string needs its quotes (JSON format §3.2)
    ],
)
def test_bad_kafka_binary_data(value, content_type, mention):
    headers = kafka_headers(**{"content-type": content_type.encode()})
    rejected(lambda: from_kafka(None, value, headers), mention, reason="invalid-data")


def test_tombstone_is_not_an_event():
    rejected(lambda: from_kafka(b"key", None, KAFKA_BINARY), "tombstone")
    rejected(lambda: from_kafka(b"key", None, None), "tombstone")


def test_long_extension_names_accepted():
    # The spec says names SHOULD NOT exceed 20 characters; only the character set is a MUST.
    name = "averyveryverylongextensionname42"
    event = from_kafka(None, b"{}", kafka_headers(**{f"ce_{name}": b"v"}))
    assert event.get_extension(name) == "v"
    [event] = from_http(HTTP_BINARY | {f"ce-{name}": "v"}, b"{}")
    assert event.get_extension(name) == "v"
    [event] = from_http({"content-type": STRUCTURED}, json.dumps(MINIMAL | {name: 5}).encode())
    assert event.get_extension(name) == 5


def test_record_key_not_an_attribute():
    # Non-UTF-8 keys are fine: the key is transport metadata, not part of the event (Kafka binding §3.1).
    event = from_kafka(b"\xff\xfe", b"{}", KAFKA_BINARY)
    assert "partitionkey" not in event.get_attributes()
    event = from_kafka(b"\xff\xfe", json.dumps(MINIMAL | {"partitionkey": "p"}).encode(), STRUCTURED_HEADER)
    assert event.get_extension("partitionkey") == "p"


def test_structured_wins_over_ce_headers():
    event = from_kafka(None, json.dumps(MINIMAL | {"id": "from-value"}).encode(), STRUCTURED_HEADER + [("ce_id", b"x")])
    assert event.get_id() == "from-value"


@pytest.mark.parametrize(
    ("content_type", "mention"),
    [
        ("application/cloudevents+avro", "cannot read; send application/cloudevents+json"),
        (BATCH, "cannot read; send application/cloudevents+json"),  # Kafka has no batch mode
        (f"{STRUCTURED}; charset=utf-16", "charset utf-16"),
        ("application/cloudevents+json; charset", "not an RFC 2046 media type"),
    ],
)
def test_bad_kafka_structured_content_type(content_type, mention):
    rejected(lambda: from_kafka(None, json.dumps(MINIMAL).encode(), [("content-type", content_type.encode())]), mention)


def test_binary_data_follows_content_type():
    assert from_kafka(None, b"\xff\x00", kafka_headers(**{"content-type": b"application/octet-stream"})).get_data() == b"\xff\x00"
    assert from_kafka(None, b"caf\xc3\xa9", kafka_headers(**{"content-type": b"text/plain"})).get_data() == "caf\u00e9"
    assert from_kafka(None, b'"text"', KAFKA_BINARY).get_data() == "text"
    assert from_kafka(None, b"[1, 2]", KAFKA_BINARY).get_data() == [1, 2]
    assert from_kafka(None, b"{}", kafka_headers(**{"content-type": ...})).get_data() == b"{}"
    assert from_kafka(None, b"", KAFKA_BINARY).get_data() is None


# JSON format -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "mention"),
    [
        (b"\xff\xfe{}", "the body is not UTF-8"),
        (b"[]", "the event is an array"),
        (b'"event"', "the event is a string"),
        (b"{", "not valid JSON"),
        (DEEP, "nested too deeply"),
        (b'{"specversion": "1.0", "id": NaN}', "NaN is not a JSON number"),
        (json.dumps(MINIMAL | {"specversion": "0.3"}).encode(), "'specversion' is '0.3'"),
        (json.dumps(MINIMAL | {"specversion": 1.0}).encode(), "'specversion' is 1.0"),
        (json.dumps(MINIMAL | {"time": "2018-04-05T17:31:00"}).encode(), "'time' is '2018-04-05T17:31:00'"),
        (json.dumps(MINIMAL | {"time": 1522949460}).encode(), "'time' is 1522949460"),
        (json.dumps(MINIMAL | {"subject": True}).encode(), "'subject' is True (a boolean)"),
        (json.dumps(MINIMAL | {"ext": 2**31}).encode(), "'ext' is 2147483648, outside the CloudEvents Integer range"),
        (json.dumps(MINIMAL | {"ext": 1.0}).encode(), "'ext' is 1.0, which has a fraction"),
        (json.dumps(MINIMAL | {"ext": [1]}).encode(), "'ext' is [1]"),
        (json.dumps(MINIMAL | {"ext": {"a": 1}}).encode(), "'ext' is {'a': 1}"),
        (json.dumps(MINIMAL | {"ext": "\ud800"}).encode(), "'ext' contains U+D800"),
        (json.dumps(MINIMAL | {"ext": "\ufffe"}).encode(), "'ext' contains U+FFFE"),
        (json.dumps(MINIMAL | {"id": "a\u0085b"}).encode(), "'id' contains U+0085"),
        (json.dumps(MINIMAL | {"data_base64": "not base64!"}).encode(), "data_base64 is not RFC 4648 base64"),
        (json.dumps(MINIMAL | {"data_base64": 5}).encode(), "data_base64 is not RFC 4648 base64"),
        (json.dumps(MINIMAL | {"data": None, "data_base64": "e30="}).encode(), "both data and data_base64"),
        (json.dumps(MINIMAL | {"source": "1:2"}).encode(), "'1' is not a valid URI scheme"),
        (json.dumps(MINIMAL | {"source": "/a%2"}).encode(), "does not start a %XX escape"),
        (json.dumps(MINIMAL | {"source": "/caf\u00e9"}).encode(), "'\u00e9'"),
        (json.dumps(MINIMAL | {"dataschema": "schema.json"}).encode(), "'dataschema' is 'schema.json', which has no scheme"),
    ],
)
def test_bad_structured_event(body, mention):
    rejected(lambda: from_http({"content-type": STRUCTURED}, body, where="req-1"), "req-1: ", mention)
    rejected(lambda: from_kafka(None, body, STRUCTURED_HEADER), mention)


def test_null_attributes_mean_unset():
    body = json.dumps(MINIMAL | {"subject": None, "custom": None, "data": {"a": 1}, "data_base64": None}).encode()
    [event] = from_http({"content-type": STRUCTURED}, body)
    assert event.get_attributes() == MINIMAL
    assert event.get_data() == {"a": 1}


def test_omissions_not_filled_in():
    # The SDK's CloudEvent() invents an id and a time; a decoder must not.
    [event] = from_http({"content-type": STRUCTURED}, json.dumps(MINIMAL).encode())
    assert event.get_time() is None
    _, _, headers = to_kafka(event)
    assert "ce_time" not in dict(headers)
    rejected(lambda: from_http({"content-type": STRUCTURED}, json.dumps(MINIMAL | {"id": None}).encode()), "'id' is missing")


# HTTP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "mention"),
    [
        (HTTP_BINARY | {"ce-id": "\u00ff\u00fe"}, b"{}", "U+00FF"),
        (HTTP_BINARY | {"ce-datacontenttype": JSON}, b"{}", "ce-datacontenttype is not allowed in binary mode"),
        (HTTP_BINARY | {"ce-my_ext": "x"}, b"{}", "header ce-my_ext names an invalid attribute"),
        (HTTP_BINARY | {"ce-": "x"}, b"{}", "header ce- names an invalid attribute"),
        (HTTP_BINARY | {"ce-specversion": "0.3"}, b"{}", "header ce-specversion is '0.3'"),
        (HTTP_BINARY | {"content-type": ""}, b"{}", "header content-type is ''"),
        (HTTP_BINARY, b"\xff", "not UTF-8"),
        (HTTP_BINARY, DEEP, "nested too deeply"),
        ({"content-type": JSON}, b"{}", "no ce-specversion header"),
        ({}, b"", "no ce-specversion header and content-type is 'missing'"),
        ({"content-type": STRUCTURED}, b"", "not valid JSON"),
        ({"content-type": BATCH}, DEEP, "nested too deeply"),
        ({"content-type": BATCH}, b"\xff", "not UTF-8"),
        ({"content-type": BATCH}, b"{}", "a batch is a JSON array"),
        ({"content-type": BATCH}, b"[1]", "batch item 0 is a number"),
        ({"content-type": "application/cloudevents-batch+avro"}, b"[]", f"cannot read; send {BATCH}"),
    ],
)
def test_bad_http_request(headers, body, mention):
    rejected(lambda: from_http(headers, body), mention)


def test_batch_error_names_item():
    body = json.dumps([MINIMAL, MINIMAL | {"time": "yesterday"}]).encode()
    rejected(lambda: from_http({"content-type": BATCH}, body, where="req"), "req batch item 1: attribute 'time' is 'yesterday'")


# Callers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"\xff", "NaN", "[" * 50_000 + "]" * 50_000, '{"x": 1e400}', "[1]"])
def test_data_object_rejects_non_objects(data):
    event = from_kafka(None, b"{}", KAFKA_BINARY)
    rebuilt = type(event)(dict(event.get_attributes()), data)
    rejected(lambda: data_object(rebuilt), "event 1", reason="invalid-data")


@pytest.mark.parametrize(
    ("changes", "mention"),
    [
        ({"subject": ""}, "'subject' is empty"),
        ({"subject": "line\nbreak"}, "'subject' contains U+000A"),
        ({"id": "x\x00"}, "'id' contains U+0000"),
        ({"source": "not a uri"}, "'source' is 'not a uri'"),
        ({"extensions": {"BadName": "x"}}, "'BadName' has an invalid name"),
        ({"extensions": {"data": "x"}}, "'data' is reserved for the event payload"),
        ({"data": {"values": [1.0, float("nan")]}}, "data['values'][1] is not a finite number"),
        ({"data": {"score": float("inf")}}, "data['score'] is not a finite number"),
    ],
)
def test_new_event_rejects_bad_input(changes, mention):
    arguments = {"type": "io.test", "source": "/tests", "subject": "s", "data": {"x": 1}} | changes
    rejected(lambda: new_event(**arguments), mention)


def test_new_event_rejects_a_naive_time():
    rejected(lambda: new_event(type="io.test", source="/t", subject="s", data={}, time=datetime(2024, 1, 1)), "naive")


@pytest.mark.parametrize(
    ("changes", "mention"),
    [
        ({"id": "x\x00"}, "'id' contains U+0000"),
        ({"id": "\ud800"}, "'id' contains U+D800"),
        ({"id": 7}, "'id' is 7"),
        ({"time": datetime(2024, 1, 1)}, "naive"),
        ({"time": "yesterday"}, "'time' is 'yesterday'"),
    ],
)
def test_new_event_checks_every_id_and_time(changes, mention):
    # The other attributes of a kind of event are checked once, but the id and time of every event.
    arguments = {"type": "io.test.kind", "source": "/tests", "subject": "s", "data": {"x": 1}}
    new_event(**arguments)
    rejected(lambda: new_event(**arguments | changes), mention)


# Random input ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER_NAMES = st.sampled_from(
    ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_dataschema", "content-type", "ce_X", "ce_"]
) | st.text(max_size=12)
HEADER_VALUES = st.sampled_from([b"1.0", b"application/json", STRUCTURED.encode(), b"2018-04-05T17:31:00Z", b"/x"]) | st.binary(
    max_size=24
)
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_DOCUMENTS = st.recursive(
    JSON_LEAVES, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
)
ATTRIBUTE_MAPS = st.fixed_dictionaries(
    {},
    optional={
        "specversion": st.sampled_from(["1.0", "0.3", "", 1.0]),
        "id": JSON_LEAVES,
        "source": st.sampled_from(["/x", "#f", "a b", "", "1:x"]) | JSON_LEAVES,
        "type": JSON_LEAVES,
        "time": st.sampled_from(["2018-04-05T17:31:00Z", "2018-04-05T17:31:60+23:59", "2018-02-30T00:00:00Z"]) | JSON_LEAVES,
        "datacontenttype": st.sampled_from([JSON, "text/plain", "xyz"]) | JSON_LEAVES,
        "data": JSON_DOCUMENTS,
        "data_base64": st.sampled_from(["e30=", "!!"]) | JSON_LEAVES,
        "ext": JSON_LEAVES,
        "Ext": JSON_LEAVES,
    },
)


def decodes_or_rejects(call) -> None:
    try:
        call()
    except InvalidEventError:
        pass


@FUZZ
@given(st.none() | st.binary(max_size=8), st.none() | st.binary(max_size=64), st.lists(st.tuples(HEADER_NAMES, st.none() | HEADER_VALUES), max_size=8))
def test_random_kafka_records(key, value, headers):
    decodes_or_rejects(lambda: from_kafka(key, value, headers))


@FUZZ
@given(st.dictionaries(HEADER_NAMES, st.text(max_size=24) | st.sampled_from([JSON, STRUCTURED, BATCH, "1.0"]), max_size=8), st.binary(max_size=64))
def test_random_http_requests(headers, body):
    decodes_or_rejects(lambda: from_http(headers, body))


@FUZZ
@given(ATTRIBUTE_MAPS, st.sampled_from([STRUCTURED, BATCH]))
def test_random_json_events(attributes, content_type):
    document = [attributes] if content_type == BATCH else attributes
    decodes_or_rejects(lambda: from_http({"content-type": content_type}, json.dumps(document).encode()))
    decodes_or_rejects(lambda: from_kafka(None, json.dumps(attributes).encode(), [("content-type", STRUCTURED.encode())]))
