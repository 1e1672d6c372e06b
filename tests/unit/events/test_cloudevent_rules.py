"""The spec rules one by one, and the encoders' canonical forms."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

import pytest
from cloudevents.core.v1.event import CloudEvent

from streamml.common import cloudevent_rules as rules
from streamml.common.cloudevent_rules import RuleError
from streamml.common.errors import InvalidEventError
from streamml.common.events import (
    from_http,
    from_kafka,
    new_event,
    to_http_binary,
    to_http_structured,
    to_kafka,
    to_structured_json,
)

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-04-05T17:31:00Z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05t17:31:00z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),  # RFC 3339 allows lower case
        ("2018-04-05T17:31:00.123456789Z", datetime(2018, 4, 5, 17, 31, 0, 123456, tzinfo=UTC)),
        ("2018-04-05T17:31:00.1+01:00", datetime(2018, 4, 5, 16, 31, 0, 100000, tzinfo=UTC)),
        ("2018-04-05T17:31:00-00:00", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),  # leap second
        ("2018-04-05T17:31:00+23:59", datetime(2018, 4, 4, 17, 32, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_parse_to_instants(text, expected):
    assert rules.parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2018-04-05T17:31Z",
        "2018-04-05 17:31:00Z",
        "2018-04-05T17:31:00",
        "2018-04-05T17:31:00+0100",
        "2018-04-05T17:31:00+01",
        "2018-04-05T17:31:00+24:00",
        "2018-04-05T17:31:00+01:60",
        "2018-04-05T17:31:00.Z",
        "2018-02-30T00:00:00Z",
        "2018-04-05T24:00:00Z",
        "0000-01-01T00:00:00Z",
        "20180405T173100Z",
        "2018-W14-4T17:31:00Z",
        "\u0662018-04-05T17:31:00Z",
        "",
    ],
)
def test_non_rfc3339_timestamps_are_rejected(text):
    with pytest.raises(RuleError, match="RFC 3339|out of range|real date"):
        rules.parse_timestamp(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2018, 4, 5, 17, 31, tzinfo=UTC), "2018-04-05T17:31:00Z"),
        (datetime(2018, 4, 5, 17, 31, 0, 500, tzinfo=UTC), "2018-04-05T17:31:00.000500Z"),
        (datetime(2018, 4, 5, 17, 31, tzinfo=timezone(timedelta(hours=-5))), "2018-04-05T17:31:00-05:00"),
        (datetime(2018, 4, 5, 17, 31, tzinfo=timezone(timedelta(hours=1, seconds=30))), "2018-04-05T16:30:30Z"),
    ],
)
def test_timestamps_format_as_rfc3339(value, text):
    assert rules.format_timestamp(value) == text
    assert rules.parse_timestamp(text) == value


@pytest.mark.parametrize("date", ["2018-04-05T17:31:00", "2018-04-05t17:31:00", "1999-12-31T23:59:59"])
@pytest.mark.parametrize("fraction", ["", ".0", ".000000", ".123456", ".1234567", ".5", ".000001"])
@pytest.mark.parametrize("zone", ["Z", "z", "+00:00", "-00:00", "+01:00", "-05:30"])
def test_parse_keeps_only_canonical_text(date, fraction, zone):
    # Parsing keeps the text for formatting the same instant later, which must then give what formatting would.
    text = date + fraction + zone
    value = rules.parse_timestamp(text)
    assert rules._is_canonical(text, value) == (rules._format_timestamp(value) == text)
    assert rules.format_timestamp(value) == rules._format_timestamp(value)


def test_format_keys_on_utc_offset():
    utc = rules.parse_timestamp("2018-04-05T17:31:00Z")
    shifted = utc.astimezone(timezone(timedelta(hours=2)))
    assert rules.format_timestamp(shifted) == "2018-04-05T19:31:00+02:00"
    assert rules.format_timestamp(utc.replace(tzinfo=timezone(timedelta(0), "other"))) == "2018-04-05T17:31:00Z"


class _RepeatedHour(tzinfo):
    """A zone whose clocks go back at 02:00 on 2021-11-07, as New York's did: 01:30 happens twice."""

    def utcoffset(self, moment):
        repeated = moment is not None and moment.replace(tzinfo=None, fold=0) == datetime(2021, 11, 7, 1, 30)
        return timedelta(hours=-5 if repeated and moment.fold else -4)

    def dst(self, moment):
        return timedelta(0)


def test_format_keeps_fold_offsets():
    # Fold 0 is the first 01:30 (-04:00), fold 1 the second (-05:00). The two datetimes compare equal.
    first = datetime(2021, 11, 7, 1, 30, tzinfo=_RepeatedHour())
    second = first.replace(fold=1)
    assert rules.format_timestamp(first) == "2021-11-07T01:30:00-04:00"
    assert rules.format_timestamp(second) == "2021-11-07T01:30:00-05:00"
    assert rules.format_timestamp(first) == "2021-11-07T01:30:00-04:00"


@pytest.mark.parametrize(
    "text",
    [
        "2018-04-05T17:31:00+02:00",
        "2018-04-05T17:31:00Z",
        "0005-01-01T00:00:00.000001-23:59",
        "1996-05-07T23:59:59.120000Z",
        "2018-04-05T17:31:00.999999+05:30",
    ],
)
def test_format_pydantic_datetimes(text):
    from pydantic import TypeAdapter

    parsed = TypeAdapter(datetime).validate_json(f'"{text}"')
    assert type(parsed.tzinfo) is not timezone
    assert rules._format_timestamp(parsed) == rules._format_timestamp(rules.parse_timestamp(text)) == text
    assert rules.format_timestamp(parsed) == text


def test_format_pydantic_seconds_offset():
    from pydantic_core import TzInfo

    assert rules.format_timestamp(datetime(2018, 4, 5, 1, 0, 30, tzinfo=TzInfo(30))) == "2018-04-05T01:00:00Z"


@pytest.mark.parametrize(
    "value",
    ["https://cloudevents.io", "#fragment", "//authority/path", "/sensors/tn-1234567/alerts", "1-555-123-4567",
     "mailto:cncf-wg-serverless@lists.cncf.io", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "io.streamml.features",
     "cloudevents/spec/pull/123", "http://[::1]:8080/x?q=a%20b", "./a:b"],
)
def test_uri_references_are_accepted(value):
    rules.check_uri(value, absolute=False)


@pytest.mark.parametrize(
    "value", ["has space", "caf\u00e9", "/a%zz", "1abc:x", "a#b#c", "/path[1]", "//host]/", "a\nb", "<tag>", "a\\b"]
)
def test_invalid_uri_references_are_rejected(value):
    with pytest.raises(RuleError):
        rules.check_uri(value, absolute=False)


def test_absolute_uri_needs_a_scheme():
    rules.check_uri("https://streamml.io/schemas/features.v1.json", absolute=True)
    rules.check_uri("https://example.com/schema#/definitions/a", absolute=True)
    with pytest.raises(RuleError, match="no scheme"):
        rules.check_uri("/schemas/features.v1.json", absolute=True)


@pytest.mark.parametrize(
    ("value", "essence", "is_json"),
    [
        ("application/json", "application/json", True),
        ("Application/JSON; charset=UTF-8", "application/json", True),
        ('text/plain;charset="utf-8"', "text/plain", False),
        ("application/vnd.apache.thrift.binary", "application/vnd.apache.thrift.binary", False),
        ("application/ld+json", "application/ld+json", True),
        ("text/json", "text/json", True),
        ("multipart/form-data; boundary=something", "multipart/form-data", False),
    ],
)
def test_media_types_parse(value, essence, is_json):
    media = rules.parse_media_type(value)
    assert (media.essence, media.is_json) == (essence, is_json)


@pytest.mark.parametrize("value", ["xyz", "", "application/", "/json", "a/b;", "a/b; c", "a b/c", "a/b; c=\u00e9", "text/plain\r\nX: y"])
def test_invalid_media_types_are_rejected(value):
    with pytest.raises(RuleError, match="RFC 2046"):
        rules.parse_media_type(value)


def test_non_finite_path_finds_nested_nan():
    assert rules.non_finite_path({"a": [1.0, {"b": float("nan")}]}) == ["a", 1, "b"]
    assert rules.non_finite_path({"a": [1.0, 2, "x", None]}) is None


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1.5, -0.0, 1e-05, 123456789012345678901234567890], "c": {"d": null, "e": true}, "f": "\\u00e9"}',
        '[[[[[[[[[[["deep"]]]]]]]]]]]',
        '"\\ud800 alone"',  # an unpaired surrogate escape: pydantic-core refuses it, the json module reads it
        "[" * 300 + "]" * 300,  # deeper than pydantic-core's limit, within the json module's
        '{"a": 1, "a": 2}',
    ],
)
def test_json_reads_like_json_module(text):
    import json

    assert rules.loads_json(text) == json.loads(text)
    assert rules.loads_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        ('{"x": [1.0, 1e400]}', "the number at ['x'][1] is too large"),
        ("1e999", "the number given is too large"),
        ("[" + "9" * 400 + ".0]", "the number at [0] is too large"),
        ('{"x": NaN}', "NaN is not a JSON number"),
        ('{"x": 1', "not valid JSON"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_unusable_json_is_named(text, mention):
    with pytest.raises(RuleError, match=re.escape(mention)):
        rules.loads_json(text)


@pytest.mark.parametrize(
    "value",
    [
        {"values": [0.1, 1e-05, 1e22, -0.0, 3], "name": "\u00e9\u2028", "ok": True, "none": None},
        [1, 2.5, "x"],
        {"big": 123456789012345678901234567890},
        {"nested": {"at": datetime(2020, 1, 1, 0, 0, 30, tzinfo=timezone(timedelta(seconds=30)))}},
        {"at": datetime(2020, 1, 1, tzinfo=timezone(timedelta(seconds=30)))},
    ],
)
def test_json_writes_json_module_values(value):
    import json

    written = rules.dumps_json(value)
    expected = json.loads(json.dumps(value, default=lambda moment: rules.format_timestamp(moment)))
    assert json.loads(written) == expected


def test_non_finite_probe_ignores_strings():
    assert not rules.has_non_finite({"text": "NaN and Infinity", "values": [1.0, 2.0]})
    assert rules.has_non_finite({"values": [1.0, float("-inf")]})
    assert rules.has_non_finite([{"deep": [float("nan")]}])


# Encoders ----------------------------------------------------------------------------------------


def sdk_event(**extensions) -> CloudEvent:
    attributes = {"id": "1", "source": "/s", "type": "t", "time": datetime(2020, 1, 1, tzinfo=UTC)} | extensions
    return CloudEvent(attributes, {"k": "v"})


def test_header_values_use_canonical_strings():
    # The SDK bindings write str(value): "True", and "b'...'" for bytes.
    event = sdk_event(flag=True, count=-7, blob=b"\xe0\xff\x00\x44\xaa", when=datetime(2021, 1, 1, tzinfo=UTC))
    _, _, headers = to_kafka(event)
    found = dict(headers)
    assert found["ce_flag"] == b"true"
    assert found["ce_count"] == b"-7"
    assert found["ce_blob"] == b"4P8ARKo="
    assert found["ce_when"] == b"2021-01-01T00:00:00Z"
    assert found["ce_time"] == b"2020-01-01T00:00:00Z"
    assert found["content-type"] == b"application/json"  # implied by the JSON data, made explicit
    http_headers, _ = to_http_binary(event)
    assert http_headers["ce-flag"] == "true"
    assert http_headers["ce-time"] == "2020-01-01T00:00:00Z"


def test_bytes_become_data_base64():
    event = CloudEvent({"id": "1", "source": "/s", "type": "t", "datacontenttype": "image/png"}, b"\x89PNG")
    document = to_structured_json(event)
    assert document["data_base64"] == "iVBORw=="
    assert "data" not in document


def test_json_string_data_is_quoted():
    event = CloudEvent({"id": "1", "source": "/s", "type": "t", "datacontenttype": "application/json"}, "I'm just a string")
    _, value, _ = to_kafka(event)
    assert value == b'"I\'m just a string"'
    assert from_kafka(*to_kafka(event)).get_data() == "I'm just a string"


def test_object_data_needs_json_type():
    event = CloudEvent({"id": "1", "source": "/s", "type": "t", "datacontenttype": "text/plain"}, {"a": 1})
    for encode in (to_kafka, to_http_binary, to_http_structured):
        with pytest.raises(InvalidEventError, match="'text/plain' is not JSON"):
            encode(event)


def test_nan_data_cannot_be_encoded():
    event = sdk_event()
    event = CloudEvent(dict(event.get_attributes()), {"x": float("nan")})
    with pytest.raises(InvalidEventError, match="event 1: cannot encode data"):
        to_kafka(event)


def test_data_datetimes_become_rfc3339():
    event = CloudEvent({"id": "1", "source": "/s", "type": "t"}, {"at": datetime(2020, 1, 1, tzinfo=UTC)})
    assert from_kafka(*to_kafka(event)).get_data() == {"at": "2020-01-01T00:00:00Z"}


def test_decoded_events_pass_sdk_checks():
    # Everything the strict decoder accepts, the SDK's own constructor accepts as well.
    event = new_event(type="io.test", source="/s", subject="\u00e9", data={"a": [1, 2.5]}, extensions={"trace": "t1"})
    for decoded in (from_kafka(*to_kafka(event)), from_http(*to_http_binary(event))[0], from_http(*to_http_structured(event))[0]):
        rebuilt = CloudEvent(dict(decoded.get_attributes()), decoded.get_data())
        assert rebuilt.get_attributes() == decoded.get_attributes()


def test_new_event_keeps_its_public_shape():
    time = datetime(2024, 5, 1, tzinfo=UTC)
    event = new_event(type="io.streamml.features.v1", source="io.streamml.features", subject="NSW", data={"x": 1}, time=time, id="e1")
    assert event.get_attributes() == {
        "specversion": "1.0",
        "id": "e1",
        "source": "io.streamml.features",
        "type": "io.streamml.features.v1",
        "subject": "NSW",
        "time": time,
        "datacontenttype": "application/json",
        "dataschema": "https://streamml.io/schemas/features.v1.json",
        "partitionkey": "NSW",
    }
    key, _, _ = to_kafka(event)
    assert key == b"NSW"


def test_untyped_attribute_cannot_be_encoded():
    event = sdk_event(ratio=1.5)
    for encode in (to_kafka, to_http_binary, to_http_structured):
        with pytest.raises(InvalidEventError, match="attribute 'ratio' is 1.5"):
            encode(event)


def test_json_data_stays_bytes_on_request():
    event = new_event(type="io.test", source="/s", subject="k", data={"a": [1, 2.5]})
    key, value, headers = to_kafka(event)
    assert from_kafka(key, value, headers, json_as_bytes=True).get_data() == value
    assert from_kafka(key, value, headers).get_data() == {"a": [1, 2.5]}
    text = [(name, b"text/plain") if name == "content-type" else (name, raw) for name, raw in headers]
    assert from_kafka(key, b"plain", text, json_as_bytes=True).get_data() == "plain"
    # Structured mode carries the data inside the JSON document, which is parsed either way.
    structured_headers, body = to_http_structured(event)
    structured = from_kafka(key, body, [("content-type", structured_headers["content-type"].encode())], json_as_bytes=True)
    assert structured.get_data() == {"a": [1, 2.5]}


def test_pre_encoded_data_is_sent_as_given():
    data = {"score": 0.1, "label": "UP"}
    event = new_event(type="io.test", source="/s", subject="k", data=data, encoded=b'{"score":0.1,"label":"UP"}')
    assert to_kafka(event)[1] == b'{"score":0.1,"label":"UP"}'
    assert to_http_binary(event)[1] == b'{"score":0.1,"label":"UP"}'
    assert to_structured_json(event)["data"] == data
    # Data replaced after construction is written again rather than sent as the stale bytes.
    event._data = {"score": 0.2}
    assert to_kafka(event)[1] == b'{"score":0.2}'
