"""Property tests: every codec gives back the attributes and data that `new_event` put in."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamml.common.events import (
    BATCH,
    STRUCTURED,
    from_http,
    from_kafka,
    new_event,
    to_http_batch,
    to_http_binary,
    to_http_structured,
    to_kafka,
    to_structured_json,
)

NONCHARACTERS = [chr(code) for code in range(0xFDD0, 0xFDF0)] + [
    chr(plane << 16 | low) for plane in range(0x11) for low in (0xFFFE, 0xFFFF)
]
# CloudEvents Strings: any Unicode except control characters, noncharacters and surrogates.
ATTRIBUTE_TEXT = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=NONCHARACTERS), min_size=1, max_size=30
)
JSON_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | JSON_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(JSON_TEXT, children, max_size=4),
    max_leaves=12,
)
DATA = st.dictionaries(JSON_TEXT, JSON_VALUES, max_size=6)
OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
TIMES = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.builds(timezone, OFFSETS)
)
CORE = {"id", "source", "type", "specversion", "subject", "time", "datacontenttype", "dataschema", "data", "partitionkey"}
EXTENSIONS = st.dictionaries(
    st.from_regex(r"[a-z0-9]{1,24}", fullmatch=True).filter(lambda name: name not in CORE), ATTRIBUTE_TEXT, max_size=3
)
SOURCES = st.sampled_from(["/sensors/tn-1234567", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "https://example.com/a?b=c#d"])

EVENTS = st.builds(
    lambda id, subject, data, time, extensions, source: new_event(
        type="io.streamml.test.v1", source=source, subject=subject, data=data, time=time, id=id, extensions=extensions
    ),
    id=ATTRIBUTE_TEXT,
    subject=ATTRIBUTE_TEXT,
    data=DATA,
    time=TIMES,
    extensions=EXTENSIONS,
    source=SOURCES,
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(decoded, original) -> None:
    # Aware datetimes compare as instants, so `time` may come back in another offset.
    assert decoded.get_attributes() == original.get_attributes()
    assert decoded.get_data() == original.get_data()


@PROPERTY
@given(EVENTS)
def test_kafka_binary_round_trip(event):
    key, value, headers = to_kafka(event)
    assert key == event.get_subject().encode("utf-8")
    assert_same(from_kafka(key, value, headers), event)


@PROPERTY
@given(EVENTS)
def test_kafka_structured_round_trip(event):
    _, body = to_http_structured(event)
    assert_same(from_kafka(None, body, [("content-type", STRUCTURED.encode())]), event)


@PROPERTY
@given(EVENTS)
def test_http_binary_round_trip(event):
    headers, body = to_http_binary(event)
    [decoded] = from_http(headers, body)
    assert_same(decoded, event)


@PROPERTY
@given(EVENTS)
def test_http_structured_round_trip(event):
    headers, body = to_http_structured(event)
    [decoded] = from_http(headers, body)
    assert_same(decoded, event)


@PROPERTY
@given(st.lists(EVENTS, max_size=4))
def test_http_batch_round_trip(events):
    body = json.dumps([to_structured_json(event) for event in events]).encode()
    decoded = from_http({"content-type": BATCH}, body)
    assert len(decoded) == len(events)
    for event, original in zip(decoded, events):
        assert_same(event, original)


@PROPERTY
@given(st.lists(EVENTS, max_size=4))
def test_http_batch_encoder_round_trip(events):
    headers, body = to_http_batch(events)
    assert headers == {"content-type": BATCH}
    decoded = from_http(headers, body)
    assert len(decoded) == len(events)
    for event, original in zip(decoded, events):
        assert_same(event, original)


def test_derived_ids_are_uuid5():
    import uuid

    from streamml.common.events import _ID_NAMESPACE, derived_id

    for input_id in ("elec2-5", "\u00e9\u65e5\u672c", ""):
        for stage in ("prediction", "features", "dead-letter/ingestion"):
            assert derived_id(input_id, stage) == str(uuid.uuid5(_ID_NAMESPACE, f"{stage}\x00{input_id}"))


def test_kafka_headers_keep_value_types():
    # "1", 1 and True compare or hash alike in Python, but each keeps its own string form.
    values = ["1", 1, True, b"\x01\x02", bytearray(b"\x01\x02")]
    events = [
        new_event(type="io.streamml.test.v1", source="/tests", subject="s", data={}, extensions={"count": value})
        for value in values
    ]
    assert [dict(to_kafka(event)[2])["ce_count"] for event in events] == [b"1", b"1", b"true", b"AQI=", b"AQI="]


def test_kafka_key_and_content_type():
    event = new_event(type="io.streamml.test.v1", source="/tests", subject="entity-7", data={"x": 1})
    key, value, headers = to_kafka(event)
    names = [name for name, _ in headers]
    assert key == b"entity-7"
    assert dict(headers)["content-type"] == b"application/json"
    assert "ce_datacontenttype" not in names
    assert len(names) == len(set(names))
