"""Bearer-token auth on `POST /`: rejections, the open probes, the counter, and no echo of the token."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from starlette.testclient import TestClient

from streamml.common.events import new_event, to_http_binary
from streamml.common.http import build_http_app
from tests.unit.serving.test_http_adapter import Echo, RecordingEmitter

TOKEN = "tok-3f9a1c77e2b54d0c9e1f"
SERVICE = "auth-test"


def client_for(token: str | None = TOKEN):
    emitter = RecordingEmitter()
    app = build_http_app(
        Echo(), service=SERVICE, emitter=emitter, dead_letter_topic="dead", bearer_token=SecretStr(token) if token else None
    )
    return TestClient(app), emitter


def event():
    return to_http_binary(new_event(type="io.example.test", source="tests", subject="a", data={"x": 1}))


def unauthorized_count() -> float:
    return REGISTRY.get_sample_value("streamml_http_unauthorized_total", {"service": SERVICE}) or 0.0


def assert_no_token(response, *secrets: str) -> None:
    text = response.text + "".join(f"{name}: {value}\n" for name, value in response.headers.items())
    for secret in secrets or (TOKEN,):
        assert secret not in text


def test_no_header_gets_401_with_challenge():
    client, emitter = client_for()
    headers, body = event()
    response = client.post("/", headers=headers, content=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert response.json()["request_id"]
    assert emitter.sent == []
    assert_no_token(response)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Bearer{TOKEN}", "Bearer "],
)
def test_bad_credentials_get_401(authorization):
    client, emitter = client_for()
    headers, body = event()
    response = client.post("/", headers=headers | {"authorization": authorization}, content=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"
    assert emitter.sent == []
    assert_no_token(response, TOKEN, authorization.partition(" ")[2] or TOKEN)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token_gets_202(scheme):
    client, emitter = client_for()
    headers, body = event()
    response = client.post("/", headers=headers | {"authorization": f"{scheme} {TOKEN}"}, content=body)
    assert response.status_code == 202
    assert [output.topic for output in emitter.sent] == ["out"]
    assert_no_token(response)


@pytest.mark.parametrize(("presented", "status"), [("cl\u00e9-secr\u00e8te", 202), ("cl\u00e8-secr\u00e9te", 401)])
def test_non_ascii_token_compares_bytes(presented, status):
    client, _ = client_for("cl\u00e9-secr\u00e8te")
    headers, body = event()
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    raw.append((b"authorization", b"Bearer " + presented.encode("utf-8")))
    assert client.post("/", headers=raw, content=body).status_code == status


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_stay_open(path):
    client, _ = client_for()
    response = client.get(path)
    assert response.status_code == 200
    assert_no_token(response)


def test_unset_token_disables_auth():
    client, _ = client_for(token=None)
    headers, body = event()
    assert client.post("/", headers=headers, content=body).status_code == 202


def test_rejections_counted_and_logged(caplog):
    client, _ = client_for()
    headers, body = event()
    before = unauthorized_count()
    with caplog.at_level(logging.DEBUG):
        client.post("/", headers=headers | {"x-request-id": "req-missing"}, content=body)
        client.post("/", headers=headers | {"x-request-id": "req-wrong", "authorization": "Bearer not-it"}, content=body)
        client.post("/", headers=headers | {"authorization": f"Bearer {TOKEN}"}, content=body)
    assert unauthorized_count() == before + 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("req-missing" in message and "401" in message for message in warnings)
    assert any("req-wrong" in message and "401" in message for message in warnings)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert "not-it" not in record.getMessage()
    metrics = client.get("/metrics").text
    assert f'streamml_http_unauthorized_total{{service="{SERVICE}"}}' in metrics
    assert TOKEN not in metrics
