import json

import pytest

from streamml.common.errors import InvalidEventError
from streamml.common.events import from_kafka, new_event, to_kafka
from streamml.common.payloads import LABEL_TYPE, RECORD_TYPE
from streamml.ingestion.handler import IngestionHandler

ROW = {
    "date": 0.0, "day": "2", "period": 0.5, "nswprice": 0.05, "nswdemand": 0.4,
    "vicprice": 0.003, "vicdemand": 0.42, "transfer": 0.41, "class": "UP",
}


def record(data, **attributes):
    fields = {"type": RECORD_TYPE, "source": "tests", "subject": "NSW", "data": data} | attributes
    return new_event(**fields)


@pytest.fixture
def handler(elec2_spec):
    return IngestionHandler(elec2_spec)


def test_valid_record_goes_to_raw(handler, elec2_spec):
    event = record(dict(ROW), id="row-1")
    [output] = handler.handle(event)
    assert output.topic == elec2_spec.topic("raw")
    assert output.event.get_id() == "row-1"
    assert output.event.get_subject() == "NSW"
    assert output.event.get_extension("partitionkey") == "NSW"
    assert output.event.get_dataschema().endswith("/pipelines/elec2.record.json")
    assert output.event.get_data()["class"] == "UP"


def test_record_without_label_is_valid(handler):
    data = dict(ROW)
    del data["class"]
    [output] = handler.handle(record(data))
    assert "class" not in output.event.get_data() or output.event.get_data()["class"] is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"nswprice": "0.1"}, "nswprice"),
        ({"nswprice": float("nan")}, "nswprice"),
        ({"nswprice": float("inf")}, "nswprice"),
        ({"day": "9"}, "day"),
        ({"class": "SIDEWAYS"}, "class"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"period": True}, "period"),
    ],
)
def test_invalid_values_are_named(handler, change, fragment):
    with pytest.raises(InvalidEventError) as error:
        handler.handle(record(ROW | change, id="bad-1"))
    assert error.value.reason == "invalid-data"
    assert fragment in error.value.message
    assert "bad-1" in error.value.message


def test_missing_field(handler):
    data = dict(ROW)
    del data["nswprice"]
    with pytest.raises(InvalidEventError, match="nswprice: missing required field"):
        handler.handle(record(data))


def test_data_must_be_object(handler):
    with pytest.raises(InvalidEventError, match="must be a JSON object"):
        handler.handle(record([1, 2, 3]))


def test_unknown_type(handler):
    with pytest.raises(InvalidEventError) as error:
        handler.handle(new_event(type="com.example.other", source="tests", subject="NSW", data=ROW))
    assert error.value.reason == "unknown-type"
    assert "io.streamml.record.v1" in error.value.message


def test_late_label_is_checked(handler, elec2_spec):
    good = new_event(type=LABEL_TYPE, source="tests", subject="NSW", data={"event_id": "row-1", "label": "DOWN"})
    [output] = handler.handle(good)
    assert output.topic == elec2_spec.topic("raw")
    bad = new_event(type=LABEL_TYPE, source="tests", subject="NSW", data={"event_id": "row-1", "label": "MAYBE"})
    with pytest.raises(InvalidEventError, match="'MAYBE' is not one of the classes"):
        handler.handle(bad)


def from_record_bytes(body: bytes, event_id: str = "bad-1"):
    # A record as the Kafka adapter hands it over: JSON data still as the record's bytes.
    event = from_kafka(*to_kafka(record(dict(ROW), id=event_id)), json_as_bytes=True)
    event._data = body
    return event


def test_record_bytes_give_the_same_output(handler):
    assert handler.parses_json_data
    for data in (dict(ROW), ROW | {"period": 1, "nswprice": 2}, {key: value for key, value in ROW.items() if key != "class"}):
        [parsed] = handler.handle(record(data, id="row-1"))
        [raw] = handler.handle(from_record_bytes(json.dumps(data).encode(), event_id="row-1"))
        assert raw.event.get_data() == parsed.event.get_data()
        assert to_kafka(raw.event)[:2] == to_kafka(parsed.event)[:2]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('"nswprice": "0.1"', "nswprice"),
        ('"nswprice": NaN', "NaN is not a JSON number"),
        ('"nswprice": 1e400', "too large"),
        ('"day": "9"', "day"),
        ('"class": "SIDEWAYS"', "class"),
        ('"colour": "red"', "colour: unknown field"),
        ('"period": true', "period"),
    ],
)
def test_invalid_values_in_bytes_are_named(handler, text, fragment):
    body = json.dumps({key: value for key, value in ROW.items() if key not in text}).encode()
    body = body[:-1] + b", " + text.encode() + b"}"
    with pytest.raises(InvalidEventError) as error:
        handler.handle(from_record_bytes(body))
    assert error.value.reason == "invalid-data"
    assert fragment in error.value.message
    assert "bad-1" in error.value.message


@pytest.mark.parametrize(("body", "fragment"), [(b"[1, 2]", "must be a JSON object"), (b"{oops", "not valid JSON")])
def test_unusable_bytes_are_named(handler, body, fragment):
    with pytest.raises(InvalidEventError, match=fragment):
        handler.handle(from_record_bytes(body))
