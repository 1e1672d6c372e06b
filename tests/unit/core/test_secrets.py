"""Secrets in the settings stay out of the start line, reprs and the errors of `streamml run`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streamml.cli import main
from streamml.common.settings import IngestionSettings, KafkaSettings

PASSWORD = "pw-81c4e0a9d2f7436b"
TOKEN = "tok-5be29d1f07a84c63"
SPEC = str(Path(__file__).resolve().parents[3] / "examples" / "elec2.yaml")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("STREAMML_"):
            monkeypatch.delenv(name)


@pytest.fixture
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("STREAMML_KAFKA_SASL_USERNAME", "streamml")
    monkeypatch.setenv("STREAMML_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STREAMML_INGESTION_HTTP_BEARER_TOKEN", TOKEN)


def test_summary_hides_secrets(secrets_in_env):
    settings = IngestionSettings(spec=SPEC)
    summary = settings.summary()
    assert PASSWORD not in summary
    assert TOKEN not in summary
    assert "sasl_username': 'streamml'" in summary
    assert "http_bearer_token=**********" in summary


def test_repr_and_json_hide_secrets(secrets_in_env):
    settings = IngestionSettings(spec=SPEC)
    for text in (repr(settings), str(settings), repr(settings.kafka), settings.model_dump_json()):
        assert PASSWORD not in text
        assert TOKEN not in text
    assert settings.kafka.sasl_password.get_secret_value() == PASSWORD
    assert settings.http_bearer_token.get_secret_value() == TOKEN


def test_client_config_has_password(secrets_in_env):
    assert KafkaSettings().client_config()["sasl.password"] == PASSWORD


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--spec", SPEC], {"STREAMML_INGESTION_BATCH_SIZE": "-1"}, "batch_size"),
        # A missing setting makes pydantic print the whole input, the token included.
        ([], {}, "spec"),
        (["--spec", SPEC, "--bootstrap-servers", "127.0.0.1:9"], {"STREAMML_KAFKA_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
        (["--spec", SPEC], {"STREAMML_KAFKA_SASL_MECHANISM": "MD5"}, "sasl_mechanism"),
        (["--spec", SPEC], {"STREAMML_INGESTION_KAFKA": f'{{"sasl_password": "{PASSWORD}", "client_id": 7}}'}, "kafka.client_id"),
    ],
)
def test_invalid_settings_hide_secrets(secrets_in_env, monkeypatch, capsys, argv, env, named):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "ingestion", *argv]) == 2
    out, err = capsys.readouterr()
    assert "invalid settings" in err
    assert named in err
    assert PASSWORD not in out + err
    assert TOKEN not in out + err


def test_invalid_token_error_hides_token(monkeypatch, capsys):
    monkeypatch.setenv("STREAMML_INGESTION_HTTP_BEARER_TOKEN", f" {TOKEN}")
    assert main(["run", "ingestion", "--spec", SPEC]) == 2
    _, err = capsys.readouterr()
    assert "http_bearer_token" in err
    assert "whitespace" in err
    assert TOKEN not in err


def test_empty_token_is_rejected():
    with pytest.raises(ValidationError, match="it is empty"):
        IngestionSettings(spec=SPEC, http_bearer_token=SecretStr(""))
