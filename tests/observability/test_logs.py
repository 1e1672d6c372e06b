"""Structured logs: the JSON format, the start line with masked secrets, and the fields of error lines."""

from __future__ import annotations

import json
import logging
import secrets
import time

import pytest

from streamml.common.deadletter import dead_letter_output
from streamml.common.errors import InvalidEventError
from streamml.common.logs import JsonFormatter, event_fields
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics, produce_replay
from tests.e2e.test_elec2 import unique_spec
from tests.kafka.test_ingestion_service import collect, record

MASK = "**********"


def make_record(message: str, level: int = logging.WARNING, **extra) -> logging.LogRecord:
    entry = logging.LogRecord("streamml.test", level, __file__, 1, message, (), None)
    entry.__dict__.update(extra)
    return entry


def test_json_line_carries_extra_fields():
    line = JsonFormatter().format(make_record("dead-lettered raw[3]@17", **event_fields("raw", 3, 17, "e-1", reason="invalid-data")))
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "streamml.test"
    assert entry["message"] == "dead-lettered raw[3]@17"
    assert (entry["topic"], entry["partition"], entry["offset"], entry["event_id"]) == ("raw", 3, 17, "e-1")
    assert entry["reason"] == "invalid-data"
    assert "args" not in entry
    assert "msg" not in entry


def test_json_line_renders_other_values_as_text():
    entry = json.loads(JsonFormatter().format(make_record("x", settings={"path": object.__new__(object)})))
    assert entry["settings"]["path"].startswith("<object object")


def test_json_line_includes_exception():
    try:
        raise ValueError("bad value")
    except ValueError:
        import sys

        entry = logging.LogRecord("streamml.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: bad value" in json.loads(JsonFormatter().format(entry))["exception"]


def test_event_fields_leave_out_unknowns():
    assert event_fields(event_id="e-1") == {"event_id": "e-1"}
    assert event_fields("raw", 0, 0) == {"topic": "raw", "partition": 0, "offset": 0}


def test_dead_letter_line_names_record(caplog):
    caplog.set_level(logging.WARNING, logger="streamml.common.deadletter")
    error = InvalidEventError("invalid-data", "event e-9: day is 8")
    dead_letter_output(
        topic="dead", service="features", error=error, value=b"{}", origin_topic="raw", origin_partition=3, origin_offset=17, event_id="e-9"
    )
    (entry,) = caplog.records
    assert "raw[3]@17" in entry.getMessage()
    assert "'e-9'" in entry.getMessage()
    assert (entry.topic, entry.partition, entry.offset, entry.event_id) == ("raw", 3, 17, "e-9")
    assert (entry.reason, entry.service) == ("invalid-data", "features")


def test_http_dead_letter_line_names_request(caplog):
    caplog.set_level(logging.WARNING, logger="streamml.common.deadletter")
    error = InvalidEventError("invalid-cloudevent", "no ce-specversion header")
    dead_letter_output(topic="dead", service="ingestion", error=error, value=b"", http_request_id="req-1", event_id="e-2")
    (entry,) = caplog.records
    assert "HTTP request req-1" in entry.getMessage()
    assert (entry.http_request_id, entry.event_id) == ("req-1", "e-2")
    assert not hasattr(entry, "topic")


@pytest.mark.kafka
def test_json_logs_of_service_process(bootstrap_servers, elec2_spec_path, tmp_path):
    password = f"sasl-pw-{secrets.token_hex(12)}"
    spec_path = unique_spec(elec2_spec_path, tmp_path, "logs")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    # Under PLAINTEXT librdkafka does not use the SASL password, so the service connects while carrying it.
    service = ServiceProcess(
        "ingestion", spec_path, settings, tmp_path,
        extra_env={
            "STREAMML_INGESTION_LOG_JSON": "true",
            "STREAMML_KAFKA_SASL_USERNAME": "streamml",
            "STREAMML_KAFKA_SASL_PASSWORD": password,
        },
    )
    service.start()
    dead = TopicReader(settings, spec.topic("dead_letter"))
    try:
        produce_replay(settings, spec.topic("input"), [record("logs-ok"), record("logs-bad", day="8")])
        assert len(collect(dead, 1)) == 1
        # The log line is written before the dead letter is produced, but give the file a moment.
        time.sleep(0.5)
    finally:
        dead.close()
        assert service.stop() == 0, service.log_tail()

    text = service.log_path.read_text()
    assert password not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    start = lines[0]
    assert start["level"] == "INFO"
    assert start["message"].startswith("starting ingestion: ")
    assert start["service"] == "ingestion"
    assert start["settings"]["kafka"]["sasl_password"] == MASK
    assert start["settings"]["kafka"]["sasl_username"] == "streamml"
    assert start["settings"]["log_json"] is True
    assert start["settings"]["tracing"] is False
    assert MASK in start["message"]
    [letter] = [line for line in lines if line["message"].startswith("dead-lettered")]
    assert letter["level"] == "WARNING"
    assert letter["topic"] == spec.topic("input")
    assert letter["partition"] == 0
    assert letter["offset"] == 1
    assert letter["event_id"] == "logs-bad"
    assert letter["reason"] == "invalid-data"
