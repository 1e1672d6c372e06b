"""The codec against the CloudEvents reference vectors in the shared reference folder.

- conformance `format/json`: valid events and batches decode to the golden samples
  of `format/README.md`; invalid ones raise InvalidEventError naming the problem.
- sdk-java JSON fixtures with `expectations.json` (strict: `invalid-strict` is rejected).
- conformance `features/*.feature`: HTTP and Kafka, binary and structured mode.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from ce_vectors import given, params, parse_feature, read_json, split_http_request

from streamml.common import cloudevent_rules as rules
from streamml.common.errors import InvalidEventError
from streamml.common.events import BATCH, STRUCTURED, from_http, from_kafka, to_http_binary, to_http_structured, to_kafka

# Golden samples of conformance format/README.md, written out in code as that README recommends.
_MINIMAL = {"specversion": "1.0", "id": "minimal", "type": "io.cloudevents.test", "source": "https://cloudevents.io"}
_WHEN = datetime(2018, 4, 5, 17, 31, tzinfo=timezone.utc)
GOLDEN_EVENTS: dict[str, tuple[dict[str, Any], Any]] = {
    "minimal": (_MINIMAL, None),
    "minimalWithTime": (_MINIMAL | {"id": "minimalWithTime", "time": _WHEN}, None),
    "minimalWithRelativeSource": (_MINIMAL | {"id": "minimalWithRelativeSource", "source": "#fragment"}, None),
    "allCore": (
        _MINIMAL
        | {
            "id": "allCore",
            "datacontenttype": "text/plain",
            "dataschema": "https://cloudevents.io/dataschema",
            "subject": "tests",
            "time": _WHEN,
        },
        None,
    ),
    # The README names this sample simpleTextData but gives its id as "simpleData"; the vector uses the former.
    "simpleTextData": (_MINIMAL | {"id": "simpleTextData", "datacontenttype": "text/plain"}, "Simple text"),
    "allExtensionTypes": (
        _MINIMAL
        | {
            "id": "allExtensionTypes",
            "extinteger": 10,
            "extboolean": True,
            "extstring": "text",
            "extbinary": bytes([77, 97]),
            "exttimestamp": datetime(2023, 3, 31, 15, 12, tzinfo=timezone.utc),
            "exturi": "https://cloudevents.io",
            "exturiref": "//authority/path",
        },
        None,
    ),
}
GOLDEN_BATCHES = {
    "empty": [],
    "minimal": ["minimal"],
    "minimal2": ["minimal", "minimal"],
    "minimalAndAllCore": ["minimal", "allCore"],
    "minimalAndAllExtensionTypes": ["minimal", "allExtensionTypes"],
}
# What each invalid vector's error has to name.
INVALID_MENTIONS = {
    "invalidNoSpecVersion": "'specversion' is missing",
    "invalidNoId": "'id' is missing",
    "invalidNoType": "'type' is missing",
    "invalidNoSource": "'source' is missing",
    "invalidTimeGarbage": "'lunchtime'",
    "invalidTimeToMinute": "'2018-04-05T18:31Z'",
    "invalidTimeOffsetX": "'2018-04-05T18:31:00X'",
    "invalidTimeOffsetOutOfRange": "offset is out of range",
    "invalidTimeOffsetNonInteger": "'2018-04-05T18:31:00+xx:00'",
    "invalidTimeOffsetHourOnly": "'2018-04-05T18:31:00+05'",
    "invalidEmptyId": "'id' is empty",
    "invalidEmptyType": "'type' is empty",
    "invalidEmptySource": "'source' is empty",
    "invalidEmptySpecVersion": "'specversion' is ''",
    "invalidUnknownSpecVersion": "'specversion' is '0.9'",
    "invalidNonRfc2046DataContentType": "'xyz', not an RFC 2046 media type",
    "invalidEmptyDataContentType": "'datacontenttype' is ''",
    "invalidEmptyDataSchema": "'dataschema' is empty",
    "invalidEmptySubject": "'subject' is empty",
    "invalidNumericId": "'id' is 25",
    "invalidObjectId": "'id' is {'xyz': 'abc'}",
    "invalidCapitalizedExtension": "'MyExtension' has an invalid name",
    "invalidPunctuatedExtension": "'my.extension' has an invalid name",
    "invalidNonIntegerExtensionValue": "'my.extension' has an invalid name",
    "invalidBothDataAndDataBase64": "both data and data_base64",
    "invalidBatchMixedSpecVersions": "mixes specversions",
    "invalidBatchContainingInvalidCloudEvent": "batch item 0: required attribute 'id' is missing",
    "invalidBatchContainingNonObject": "batch item 0 is a string",
}


def _tests(file: str, key: str) -> Any:
    def build(folder):
        document = read_json(folder / "vectors" / "conformance" / "format" / "json" / file)
        return [pytest.param(test, id=test["id"]) for test in document["tests"] if key in test]

    return params(build)


def assert_matches(event, attributes: dict[str, Any], data: Any) -> None:
    """Check an event against expected values; Binary and Timestamp expectations also match their string forms."""
    actual = event.get_attributes()
    assert set(actual) == set(attributes), f"attributes differ: got {sorted(actual)}, expected {sorted(attributes)}"
    for name, expected in attributes.items():
        value = actual[name]
        if isinstance(expected, datetime):
            value = rules.parse_timestamp(value) if isinstance(value, str) else value
            assert value == expected, f"{name}: {value} is not the instant {expected}"
        elif isinstance(expected, bytes) and isinstance(value, str):
            assert base64.b64decode(value) == expected, f"{name}: {value!r} is not base64 of {expected!r}"
        else:
            assert value == expected, f"{name}: {value!r} != {expected!r}"
            assert type(value) is type(expected), f"{name}: {type(value).__name__} is not {type(expected).__name__}"
    assert event.get_data() == data


def structured_readers(body: bytes) -> dict[str, Any]:
    """Return a decoder per structured transport: HTTP, and Kafka with a record key."""
    return {
        "http": lambda: from_http({"Content-Type": STRUCTURED}, body)[0],
        "kafka": lambda: from_kafka(b"any-key", body, [("content-type", STRUCTURED.encode())]),
    }


@pytest.mark.parametrize("transport", ["http", "kafka"])
@pytest.mark.parametrize("test", _tests("valid-events.json", "event"))
def test_valid_event_matches_golden(test, transport):
    test = given(test)
    event = structured_readers(json.dumps(test["event"]).encode())[transport]()
    assert_matches(event, *GOLDEN_EVENTS[test["sampleId"]])


@pytest.mark.parametrize("transport", ["http", "kafka"])
@pytest.mark.parametrize("test", _tests("invalid-events.json", "event"))
def test_invalid_json_event_is_rejected(test, transport):
    test = given(test)
    with pytest.raises(InvalidEventError) as raised:
        structured_readers(json.dumps(test["event"]).encode())[transport]()
    assert raised.value.reason == "invalid-cloudevent"
    assert INVALID_MENTIONS[test["id"]] in raised.value.message


@pytest.mark.parametrize("test", _tests("valid-batches.json", "batch"))
def test_valid_batch_matches_golden(test):
    test = given(test)
    events = from_http({"content-type": f"{BATCH}; charset=utf-8"}, json.dumps(test["batch"]).encode())
    expected = GOLDEN_BATCHES[test["sampleId"]]
    assert len(events) == len(expected)
    for event, sample in zip(events, expected):
        assert_matches(event, *GOLDEN_EVENTS[sample])


@pytest.mark.parametrize("test", _tests("invalid-batches.json", "batch"))
def test_invalid_batch_is_rejected(test):
    test = given(test)
    with pytest.raises(InvalidEventError) as raised:
        from_http({"content-type": BATCH}, json.dumps(test["batch"]).encode())
    assert INVALID_MENTIONS[test["id"]] in raised.value.message


@pytest.mark.parametrize("test", _tests("valid-events.json", "event"))
def test_valid_event_survives_reencoding(test):
    test = given(test)
    original = from_http({"content-type": STRUCTURED}, json.dumps(test["event"]).encode())[0]
    assert_round_trips(original)


def assert_round_trips(original) -> None:
    """Encode in structured and binary mode, decode, and compare with the original."""
    headers, body = to_http_structured(original)
    assert from_http(headers, body)[0].get_attributes() == original.get_attributes()
    assert from_http(headers, body)[0].get_data() == original.get_data()
    # Binary mode has no type information, so compare canonical strings and the data bytes.
    for decoded in (from_kafka(*to_kafka(original)), from_http(*to_http_binary(original))[0]):
        expected = {name: rules.canonical_string(value) for name, value in original.get_attributes().items()}
        actual = {name: rules.canonical_string(value) for name, value in decoded.get_attributes().items()}
        if original.get_data() is not None and original.get_datacontenttype() is None:
            expected["datacontenttype"] = "application/json"
        assert actual == expected
        content_type = decoded.get_datacontenttype()
        assert rules.encode_data(decoded.get_data(), content_type) == rules.encode_data(original.get_data(), content_type)


# sdk-java JSON fixtures --------------------------------------------------------------------------


def _java_cases():
    def build(folder):
        root = folder / "vectors" / "sdk-java-json"
        expectations = read_json(root / "expectations.json")
        return [pytest.param((root, case), id=case["file"]) for case in expectations["cases"]]

    return params(build)


def _java_data(expected: dict[str, Any] | None) -> Any:
    if expected is None:
        return None
    if expected["kind"] == "bytes":
        return expected["utf8"].encode("utf-8")
    return expected["value"]


@pytest.mark.parametrize("transport", ["http", "kafka"])
@pytest.mark.parametrize("case", _java_cases())
def test_sdk_java_fixture(case, transport):
    root, case = given(case)
    body = (root / case["file"]).read_bytes()
    decode = structured_readers(body)[transport]
    if case["expect"] in ("invalid", "invalid-strict"):
        with pytest.raises(InvalidEventError):
            decode()
        return
    assert case["expect"] == "valid"
    expected = dict(case["attributes"]) | case["extensions"]
    if "time" in expected:
        expected["time"] = rules.parse_timestamp(expected["time"])
    event = decode()
    assert_matches(event, expected, _java_data(case["data"]))
    assert_round_trips(event)


# Gherkin features --------------------------------------------------------------------------------


def _scenarios(feature: str):
    def build(folder):
        text = (folder / "vectors" / "conformance" / "features" / feature).read_text(encoding="utf-8")
        scenarios = parse_feature(text)
        assert scenarios, f"no scenarios parsed from {feature}"
        return [pytest.param(scenario, id=scenario.name) for scenario in scenarios]

    return params(build)


def assert_scenario(event, scenario) -> None:
    expected: dict[str, Any] = dict(scenario.attributes)
    if "time" in expected:
        expected["time"] = rules.parse_timestamp(expected["time"])
    assert_matches(event, expected, json.loads(scenario.data_json))


@pytest.mark.parametrize("scenario", _scenarios("http-protocol-binding.feature"))
def test_http_binding_feature(scenario):
    scenario = given(scenario)
    headers, body = split_http_request(scenario.http_request)
    [event] = from_http(headers, body)
    assert_scenario(event, scenario)


@pytest.mark.parametrize("scenario", _scenarios("kafka-protocol-binding.feature"))
def test_kafka_binding_feature(scenario):
    scenario = given(scenario)
    headers = [(key, value.encode("utf-8")) for key, value in scenario.kafka_headers]
    event = from_kafka(None, scenario.kafka_payload.encode("utf-8"), headers)
    assert_scenario(event, scenario)


def test_features_cover_both_modes():
    names = [scenario.name for feature in ("http", "kafka") for scenario in _feature_names(feature)]
    assert sum("Binary" in name for name in names) == 3
    assert sum("Structured" in name for name in names) == 4


def _feature_names(feature: str):
    return [given(param.values[0]) for param in _scenarios(f"{feature}-protocol-binding.feature")]
