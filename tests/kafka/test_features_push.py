"""The features service in push mode: an input delivered again counts once in its entity's windows.

An input arrives again when a KafkaSource gets no 2xx response, as after a timeout or a
restart of the service, and when a client sends the valid events of a rejected batch again.
The service runs as an OS process on the real broker, and the requests are real HTTP.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cloudevents.core.v1.event import CloudEvent

from streamml.common.events import new_event, to_http_binary, to_structured_json
from streamml.common.payloads import FEATURES_TYPE, RECORD_TYPE
from streamml.common.settings import KafkaSettings
from streamml.common.spec import parse_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics
from tests.http_helpers import free_port, wait_http
from tests.kafka.test_features_faust import expected_vectors, spec_document

pytestmark = pytest.mark.kafka

BATCH = "application/cloudevents-batch+json"


def _record(number: int, x: Any) -> CloudEvent:
    return new_event(type=RECORD_TYPE, source="tests/features-push", subject="alpha", data={"entity": "alpha", "x": x}, id=f"r{number}")


def _post(url: str, event: CloudEvent) -> httpx.Response:
    headers, body = to_http_binary(event)
    return httpx.post(url, headers=headers, content=body, timeout=30)


def _vectors(reader: TopicReader, count: int, timeout_s: float = 30.0) -> list[CloudEvent]:
    """Read feature vectors until `count` arrived, then for one more second, so that extra ones show."""
    vectors: list[CloudEvent] = []
    deadline = time.monotonic() + timeout_s
    while len(vectors) < count and time.monotonic() < deadline:
        vectors.extend(event for event in reader.poll() if event.get_type() == FEATURES_TYPE)
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        vectors.extend(event for event in reader.poll(timeout_s=0.2) if event.get_type() == FEATURES_TYPE)
    return vectors


def test_repeated_inputs_count_once(bootstrap_servers, tmp_path: Path):
    name = f"push-{uuid.uuid4().hex[:10]}"
    topics = {role: f"{name}-{role}" for role in ("input", "raw", "features", "labels", "models", "predictions", "dead_letter", "checkpoints")}
    document = spec_document(name, topics)
    spec_path = tmp_path / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = parse_spec(document)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"STREAMML_FEATURES_MODE": "push", "STREAMML_FEATURES_HTTP_PORT": str(port)}
    service = ServiceProcess("features", spec_path, settings, tmp_path / "logs", extra_env=env)
    reader = TopicReader(settings, spec.topic("features"))
    x_by_number = {1: 1.0, 2: 2.0, 3: 4.0, 4: 8.0, 5: 16.0}
    service.start()
    try:
        wait_http(service, url)
        statuses = [_post(url, _record(number, x_by_number[number])).status_code for number in (1, 2, 2, 3)]
        assert statuses == [202, 202, 202, 202], service.log_tail()

        # SIGKILL after r3's state is committed, then r3 again, as a KafkaSource does without its response.
        service.stop(sig=signal.SIGKILL)
        service.start()
        wait_http(service, url)
        assert _post(url, _record(3, x_by_number[3])).status_code == 202, service.log_tail()
        assert _post(url, _record(4, x_by_number[4])).status_code == 202, service.log_tail()

        # A batch with an invalid event is rejected whole, so its valid event must not count either.
        batch = json.dumps([to_structured_json(_record(5, x_by_number[5])), to_structured_json(_record(6, "not a number"))])
        rejected = httpx.post(url, headers={"content-type": BATCH}, content=batch, timeout=30)
        assert rejected.status_code == 400, rejected.text
        assert _post(url, _record(5, x_by_number[5])).status_code == 202, service.log_tail()

        vectors = _vectors(reader, count=5)
        assert service.stop() == 0, service.log_tail()
    finally:
        reader.close()
        service.stop()

    received = [(event.get_data()["event_id"], event.get_data()["values"]) for event in vectors]
    assert [event_id for event_id, _ in received] == ["r1", "r2", "r3", "r4", "r5"], received
    expected = expected_vectors([(f"r{number}", "alpha", x, None) for number, x in x_by_number.items()])
    for event_id, values in received:
        assert values == pytest.approx(expected[event_id]), event_id
    log = service.log_path.read_text()
    assert "skipped event r2 " in log
    assert "skipped event r3 " in log
