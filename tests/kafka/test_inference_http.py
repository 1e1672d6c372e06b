"""The inference service replies to a CloudEvent with a CloudEvent over HTTP, in each content mode."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from streamml.common.events import BATCH, STRUCTURED, from_http, new_event, to_http_binary, to_http_structured, to_structured_json
from streamml.common.payloads import FEATURES_TYPE, PREDICTION_TYPE, FeatureVector
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, create_topics, produce_replay
from streamml.features.pipeline import FeatureExtractor
from streamml.training.handler import TrainingHandler
from tests.e2e.test_elec2 import unique_spec
from tests.http_helpers import free_port, wait_http

pytestmark = pytest.mark.kafka


def vector_event(spec, event_id: str):
    extractor = FeatureExtractor(spec)
    data = FeatureVector(
        event_id=event_id, entity="NSW", event_time="2024-01-01T00:00:00Z", feature_set=extractor.feature_set, values=[0.5] * extractor.width
    )
    return new_event(type=FEATURES_TYPE, source="tests", subject="NSW", data=data)


def start_inference(spec_path, settings, tmp_path, wait_s: str):
    port = free_port()
    env = {"STREAMML_INFERENCE_MODE": "push", "STREAMML_INFERENCE_HTTP_PORT": str(port), "STREAMML_INFERENCE_MODEL_WAIT_S": wait_s}
    service = ServiceProcess("inference", spec_path, settings, tmp_path, extra_env=env)
    service.start()
    url = f"http://127.0.0.1:{port}"
    wait_http(service, url, path="/healthz", timeout_s=60)
    return service, url


def test_reply_in_each_mode(bootstrap_servers, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "reply")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    produce_replay(settings, spec.topic("models"), [TrainingHandler(spec).initial_model().event])
    service, url = start_inference(spec_path, settings, tmp_path, wait_s="30")
    try:
        headers, body = to_http_binary(vector_event(spec, "in-binary"))
        reply = httpx.post(url, headers=headers, content=body, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.headers["ce-type"] == PREDICTION_TYPE
        assert reply.headers["ce-subject"] == "NSW"
        assert reply.headers["ce-specversion"] == "1.0"
        [prediction] = from_http(dict(reply.headers), reply.content)
        assert prediction.get_data()["event_id"] == "in-binary"
        assert prediction.get_data()["model_version"] == 0

        headers, body = to_http_structured(vector_event(spec, "in-structured"))
        reply = httpx.post(url, headers=headers, content=body)
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith(STRUCTURED)
        assert json.loads(reply.content)["data"]["event_id"] == "in-structured"

        batch = json.dumps([to_structured_json(vector_event(spec, f"in-batch-{i}")) for i in range(3)])
        reply = httpx.post(url, headers={"content-type": BATCH}, content=batch)
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith(BATCH)
        assert [item["data"]["event_id"] for item in reply.json()] == ["in-batch-0", "in-batch-1", "in-batch-2"]

        assert httpx.get(f"{url}/readyz").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'streamml_events_received_total{service="inference",transport="http"} 5.0' in metrics
    finally:
        assert service.stop() == 0, service.log_tail()


def test_no_model_waits_then_503(bootstrap_servers, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "nomodel")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    service, url = start_inference(spec_path, settings, tmp_path, wait_s="2")
    try:
        assert httpx.get(f"{url}/readyz").status_code == 503
        headers, body = to_http_binary(vector_event(spec, "early"))
        started = time.monotonic()
        reply = httpx.post(url, headers=headers, content=body, timeout=30)
        waited = time.monotonic() - started
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "2"
        assert waited >= 1.9

        # Once a model is published, the same request succeeds.
        produce_replay(settings, spec.topic("models"), [TrainingHandler(spec).initial_model().event])
        reply = httpx.post(url, headers=headers, content=body, timeout=30)
        assert reply.status_code == 200
    finally:
        assert service.stop() == 0, service.log_tail()
