"""The ingestion service as an OS process: input topic and `POST /` in, raw and dead-letter topics out."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from streamml.common.events import BATCH, STRUCTURED, new_event, to_http_binary, to_http_structured, to_structured_json
from streamml.common.payloads import RECORD_TYPE
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics, produce_replay
from tests.e2e.test_elec2 import unique_spec
from tests.http_helpers import free_port, wait_http

pytestmark = pytest.mark.kafka

ROW = {
    "date": 0.0, "day": "2", "period": 0.5, "nswprice": 0.05, "nswdemand": 0.4,
    "vicprice": 0.003, "vicdemand": 0.42, "transfer": 0.41, "class": "UP",
}


def record(event_id: str, **changes):
    return new_event(id=event_id, type=RECORD_TYPE, source="tests", subject="NSW", data=ROW | changes)


def collect(reader: TopicReader, count: int, timeout_s: float = 60.0) -> list:
    events = []
    deadline = time.monotonic() + timeout_s
    while len(events) < count and time.monotonic() < deadline:
        events.extend(reader.poll(timeout_s=0.5))
    return events


@pytest.fixture
def ingestion(bootstrap_servers, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "ingest")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    port = free_port()
    service = ServiceProcess("ingestion", spec_path, settings, tmp_path, extra_env={"STREAMML_INGESTION_HTTP_PORT": str(port), "STREAMML_INGESTION_MAX_BODY_BYTES": "20000"})
    service.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(service, url, timeout_s=60)
    yield spec, settings, url, service
    assert service.stop() == 0, service.log_tail()


def test_kafka_input_valid_and_invalid(ingestion):
    spec, settings, _, service = ingestion
    raw = TopicReader(settings, spec.topic("raw"))
    dead = TopicReader(settings, spec.topic("dead_letter"))
    events = [record("k-0"), record("k-1", nswprice="high"), record("k-2")]
    produce_replay(settings, spec.topic("input"), events)

    forwarded = collect(raw, 2)
    assert [event.get_id() for event in forwarded] == ["k-0", "k-2"]
    assert all(event.get_subject() == "NSW" for event in forwarded)

    [letter] = collect(dead, 1)
    data = letter.get_data()
    assert data["reason"] == "invalid-data"
    assert "nswprice" in data["message"]
    assert "'high'" in data["message"]
    assert data["origin_topic"] == spec.topic("input")
    assert data["origin_partition"] == 0
    assert data["origin_offset"] == 1
    assert data["event_id"] == "k-1"
    assert json.loads(base64.b64decode(data["original_value_base64"]))["nswprice"] == "high"
    assert data["original_headers"]["ce_id"] == "k-1"
    raw.close()
    dead.close()


def test_http_modes_and_rejections(ingestion):
    spec, settings, url, _ = ingestion
    raw = TopicReader(settings, spec.topic("raw"))
    dead = TopicReader(settings, spec.topic("dead_letter"))

    headers, body = to_http_binary(record("h-binary"))
    assert httpx.post(url, headers=headers, content=body).status_code == 202

    headers, body = to_http_structured(record("h-structured"))
    assert headers["content-type"].startswith(STRUCTURED)
    assert httpx.post(url, headers=headers, content=body).status_code == 202

    batch = json.dumps([to_structured_json(record("h-batch-0")), to_structured_json(record("h-batch-1"))])
    assert httpx.post(url, headers={"content-type": BATCH}, content=batch).status_code == 202

    headers, body = to_http_binary(record("h-bad", day="8"))
    rejected = httpx.post(url, headers=headers, content=body)
    assert rejected.status_code == 400
    assert rejected.json()["error"] == "invalid-data"
    assert "day" in rejected.json()["message"]

    not_an_event = httpx.post(url, headers={"content-type": "application/json"}, content=b"{}")
    assert not_an_event.status_code == 400
    assert "ce-specversion" in not_an_event.json()["message"]

    empty = httpx.post(url, headers={"content-type": BATCH}, content=b"[]")
    assert empty.status_code == 400
    assert empty.json()["error"] == "invalid-batch"

    too_big = httpx.post(url, headers={"content-type": BATCH}, content=b"[" + b" " * 30000 + b"]")
    assert too_big.status_code == 413

    forwarded = collect(raw, 4)
    assert sorted(event.get_id() for event in forwarded) == ["h-batch-0", "h-batch-1", "h-binary", "h-structured"]
    letters = collect(dead, 3)
    reasons = sorted(letter.get_data()["reason"] for letter in letters)
    assert reasons == ["invalid-batch", "invalid-cloudevent", "invalid-data"]
    assert all(letter.get_data()["http_request_id"] for letter in letters)
    raw.close()
    dead.close()


def test_health_endpoints(ingestion):
    _, _, url, _ = ingestion
    assert httpx.get(f"{url}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{url}/readyz").json() == {"ready": True}
