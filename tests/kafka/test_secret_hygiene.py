"""The ingestion process, run at DEBUG with a SASL password and a bearer token, shows neither in its log or /metrics."""

from __future__ import annotations

import secrets

import httpx
import pytest

from streamml.common.events import to_http_binary
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics
from tests.e2e.test_elec2 import unique_spec
from tests.http_helpers import free_port, wait_http
from tests.kafka.test_ingestion_service import collect, record

pytestmark = pytest.mark.kafka


def test_secrets_not_in_log_or_metrics(bootstrap_servers, elec2_spec_path, tmp_path):
    password = f"sasl-pw-{secrets.token_hex(16)}"
    token = f"bearer-{secrets.token_hex(16)}"
    wrong_token = f"wrong-{secrets.token_hex(16)}"
    spec_path = unique_spec(elec2_spec_path, tmp_path, "secrets")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    port = free_port()
    # Under PLAINTEXT librdkafka does not use the sasl.* properties (it warns about sasl.username
    # only), so the service reaches this broker without SASL while carrying the password.
    service = ServiceProcess(
        "ingestion",
        spec_path,
        settings,
        tmp_path,
        extra_env={
            "STREAMML_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "STREAMML_KAFKA_SASL_USERNAME": "streamml",
            "STREAMML_KAFKA_SASL_PASSWORD": password,
            "STREAMML_INGESTION_HTTP_BEARER_TOKEN": token,
            "STREAMML_INGESTION_HTTP_PORT": str(port),
            "STREAMML_INGESTION_LOG_LEVEL": "DEBUG",
        },
    )
    service.start()
    url = f"http://127.0.0.1:{port}"
    raw = TopicReader(settings, spec.topic("raw"))
    dead = TopicReader(settings, spec.topic("dead_letter"))
    try:
        wait_http(service, url, timeout_s=60)
        authorized = {"authorization": f"Bearer {token}"}

        headers, body = to_http_binary(record("s-ok"))
        assert httpx.post(url, headers=headers | authorized, content=body).status_code == 202
        missing = httpx.post(url, headers=headers, content=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(url, headers=headers | {"authorization": f"Bearer {wrong_token}"}, content=body)
        assert wrong.status_code == 401
        headers, body = to_http_binary(record("s-bad", day="8"))
        assert httpx.post(url, headers=headers | authorized, content=body).status_code == 400
        assert httpx.post(url, headers=headers, content=body).status_code == 401

        assert [event.get_id() for event in collect(raw, 1)] == ["s-ok"]
        letters = collect(dead, 2, timeout_s=5)
        assert [letter.get_data()["event_id"] for letter in letters] == ["s-bad"]

        metrics = httpx.get(f"{url}/metrics").text
        assert 'streamml_http_unauthorized_total{service="ingestion"} 3.0' in metrics
        for text in [metrics, missing.text, wrong.text, str(missing.headers), str(wrong.headers)]:
            assert password not in text
            assert token not in text
            assert wrong_token not in text
    finally:
        raw.close()
        dead.close()
        assert service.stop() == 0, service.log_tail()

    log = service.log_path.read_text(errors="replace")
    assert " DEBUG " in log, "the service did not log at DEBUG"
    assert "sasl_password': SecretStr('**********')" in log
    assert "http_bearer_token=**********" in log
    assert log.count("rejected with 401") == 3
    assert password not in log
    assert token not in log
    assert wrong_token not in log
