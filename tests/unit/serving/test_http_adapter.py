"""The HTTP push adapter's status codes, headers and dead letters, with a fake producer."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.testclient import TestClient

from streamml.common.errors import InvalidEventError
from streamml.common.events import Output, new_event, to_http_binary
from streamml.common.handler import EventHandler
from streamml.common.http import build_http_app
from streamml.common.kafka import DeliveryError


class RecordingEmitter:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Output] = []
        self.fail = fail

    def send_all(self, outputs):
        self.sent.extend(outputs)
        return []

    def wait(self, futures, timeout_s=30.0):
        if self.fail:
            raise DeliveryError("delivery to out failed: broker down")


class Echo(EventHandler):
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate

    def handle(self, event):
        if self.gate is not None:
            self.gate.wait(5)
        if event.get_subject() == "bad":
            raise InvalidEventError("invalid-data", f"event {event.get_id()}: subject is bad")
        return [Output("out", event)]


def binary(subject: str = "a"):
    return to_http_binary(new_event(type="io.example.test", source="tests", subject=subject, data={"x": 1}))


def client_for(handler=None, emitter=None, **options):
    emitter = emitter or RecordingEmitter()
    app = build_http_app(handler or Echo(), service="svc", emitter=emitter, dead_letter_topic="dead", **options)
    return TestClient(app), emitter


def test_accepted_after_ack():
    client, emitter = client_for()
    headers, body = binary()
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 202
    assert response.headers["x-request-id"]
    assert [output.topic for output in emitter.sent] == ["out"]


def test_invalid_event_gets_400_and_dead_letter():
    client, emitter = client_for()
    headers, body = binary(subject="bad")
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid-data"
    [letter] = emitter.sent
    assert letter.topic == "dead"
    assert letter.event.get_data()["reason"] == "invalid-data"
    assert letter.event.get_data()["http_request_id"] == response.json()["request_id"]


def test_kafka_failure_gets_503():
    client, _ = client_for(emitter=RecordingEmitter(fail=True))
    headers, body = binary()
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def test_body_over_limit_gets_413():
    client, emitter = client_for(max_body_bytes=100)
    response = client.post("/", headers={"content-type": "application/cloudevents+json"}, content=b" " * 200)
    assert response.status_code == 413
    assert emitter.sent == []


def test_not_ready_waits_then_503():
    class NeverReady(Echo):
        def ready(self):
            return False

    client, _ = client_for(handler=NeverReady(), ready_wait_s=0.3)
    headers, body = binary()
    started = time.monotonic()
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 503
    assert time.monotonic() - started >= 0.3
    assert client.get("/readyz").status_code == 503


def test_overload_gets_429():
    gate = threading.Event()
    client, _ = client_for(handler=Echo(gate), max_inflight=1)
    headers, body = binary()
    first: list[int] = []
    thread = threading.Thread(target=lambda: first.append(client.post("/", headers=headers, content=body).status_code))
    thread.start()
    time.sleep(0.3)
    response = client.post("/", headers=headers, content=body)
    gate.set()
    thread.join()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert first == [202]


@pytest.mark.parametrize(
    ("subject", "emitter_fails", "finish_fails", "status"),
    [("bad", False, False, 400), ("a", True, False, 503), ("a", False, True, 503)],
    ids=["invalid-event", "delivery", "after-handle"],
)
def test_failed_request_calls_after_failure(subject, emitter_fails, finish_fails, status):
    calls: list[str] = []

    def finish():
        calls.append("after_handle")
        if finish_fails:
            raise DeliveryError("state write failed: broker down")

    client, _ = client_for(
        emitter=RecordingEmitter(fail=emitter_fails), after_handle=finish, after_failure=lambda: calls.append("after_failure")
    )
    headers, body = binary(subject=subject)
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == status
    assert calls[-1] == "after_failure"
    assert calls.count("after_failure") == 1


def test_success_skips_after_failure():
    calls: list[str] = []
    client, _ = client_for(after_handle=lambda: calls.append("after_handle"), after_failure=lambda: calls.append("after_failure"))
    headers, body = binary()
    assert client.post("/", headers=headers, content=body).status_code == 202
    assert calls == ["after_handle"]


def test_serial_requests_do_not_overlap():
    steps: list[str] = []

    class Recording(Echo):
        def handle(self, event):
            steps.append(f"handle {event.get_subject()}")
            return super().handle(event)

    def finish():
        time.sleep(0.3)
        steps.append("after_handle")

    client, _ = client_for(handler=Recording(), after_handle=finish, serial=True)
    first_headers, first_body = binary(subject="first")
    thread = threading.Thread(target=lambda: client.post("/", headers=first_headers, content=first_body))
    thread.start()
    time.sleep(0.1)
    headers, body = binary(subject="second")
    assert client.post("/", headers=headers, content=body).status_code == 202
    thread.join()
    assert steps == ["handle first", "after_handle", "handle second", "after_handle"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_return_200(path):
    client, _ = client_for()
    assert client.get(path).status_code == 200
