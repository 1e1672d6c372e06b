"""Service settings from the command line and environment (pydantic-settings, one prefix per service)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _RepeatFilter(logging.Filter):
    """Drops a message that was already logged in the last `interval_s` seconds."""

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # librdkafka repeats a connection failure every few milliseconds; the broker address,
        # not the client instance, identifies the problem.
        text = record.getMessage().split("]: ", 1)[-1]
        now = time.monotonic()
        if now - self._last.get(text, -self.interval_s) < self.interval_s:
            return False
        self._last[text] = now
        return True


def client_logger() -> logging.Logger:
    """Return the logger that receives librdkafka's own log lines, with repeats dropped."""
    logger = logging.getLogger("streamml.kafka.client")
    if not any(isinstance(item, _RepeatFilter) for item in logger.filters):
        logger.addFilter(_RepeatFilter())
    return logger


class KafkaSettings(BaseSettings):
    """Kafka client settings shared by every service (prefix `STREAMML_KAFKA_`)."""

    model_config = SettingsConfigDict(env_prefix="STREAMML_KAFKA_", frozen=True, extra="forbid")

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="host:port[,host:port…] of the brokers.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    client_id: str = "streamml"

    def client_config(self) -> dict[str, Any]:
        """Return the librdkafka settings shared by producers, consumers and admin clients."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        config["logger"] = client_logger()
        return config


_OTEL_EXPORTERS = ("otlp", "console", "none")


class TracingSettings(BaseSettings):
    """The OpenTelemetry SDK variables (prefix `OTEL_`) that streamml checks and logs at start.

    The SDK reads these variables itself, and others too (OTEL_RESOURCE_ATTRIBUTES,
    OTEL_BSP_*, OTEL_EXPORTER_OTLP_TIMEOUT…). They take effect only with the
    service's `tracing` setting on.
    """

    model_config = SettingsConfigDict(env_prefix="OTEL_", frozen=True, extra="ignore")

    sdk_disabled: bool = Field(default=False, description="true turns tracing off even when the service setting is on.")
    service_name: str | None = Field(default=None, description="service.name of the spans; default streamml-<service>.")
    traces_exporter: str = Field(default="otlp", description="Comma-separated exporters: otlp, console or none.")
    exporter_otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP base URL; /v1/traces is appended.")
    exporter_otlp_traces_endpoint: str | None = Field(default=None, description="Full OTLP/HTTP URL of the traces endpoint.")
    exporter_otlp_protocol: str = "http/protobuf"
    exporter_otlp_traces_protocol: str | None = None
    exporter_otlp_headers: SecretStr | None = None
    exporter_otlp_traces_headers: SecretStr | None = None
    traces_sampler: str | None = Field(default=None, description="Sampler name; the SDK default is parentbased_always_on.")
    traces_sampler_arg: str | None = None

    @field_validator("traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in _OTEL_EXPORTERS]
        if unknown:
            raise ValueError(f"unsupported exporter {', '.join(unknown)}: use otlp, console or none")
        return ",".join(names) or "none"

    @field_validator("exporter_otlp_protocol", "exporter_otlp_traces_protocol")
    @classmethod
    def _http_protobuf(cls, value: str | None) -> str | None:
        if value is not None and value.strip() != "http/protobuf":
            raise ValueError(f"protocol {value!r} is not supported: streamml ships the OTLP/HTTP exporter, so use http/protobuf")
        return value

    @property
    def exporters(self) -> list[str]:
        return [name for name in self.traces_exporter.split(",") if name != "none"]

    @property
    def otlp_traces_endpoint(self) -> str:
        """Return the URL the OTLP exporter posts spans to, resolved as the SDK does."""
        if self.exporter_otlp_traces_endpoint:
            return self.exporter_otlp_traces_endpoint
        base = self.exporter_otlp_endpoint or "http://localhost:4318"
        return base.rstrip("/") + "/v1/traces"


class ServiceSettings(BaseSettings):
    """Settings every service has; each service reads them under its own prefix."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    spec: Path = Field(description="Path of the pipeline spec YAML.")
    mode: Literal["pull", "push"] = Field(
        default="pull",
        description="pull: consume Kafka (and serve HTTP when http_port is set); push: serve HTTP only, for Knative.",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(default=False, description="Log one JSON object per line instead of text.")
    tracing: bool = Field(
        default=False, description="Record OpenTelemetry spans and export them as the OTEL_* variables set (otlp by default)."
    )
    otel: TracingSettings = Field(default_factory=TracingSettings)
    consumer_lag_interval_ms: int = Field(
        default=5000, ge=0, le=3_600_000, description="How often the consumer lag gauges are refreshed, in ms; 0 turns them off."
    )
    batch_size: int = Field(default=500, gt=0, le=100_000, description="Most records consumed per poll.")
    batch_timeout_ms: int = Field(default=20, ge=0, le=60_000, description="Longest wait to fill a batch, in ms.")
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of the HTTP face; unset: 8080 in push mode, no HTTP in pull mode."
    )
    group_id: str | None = Field(default=None, description="Consumer group; default streamml-<service>-<pipeline>.")
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        description="Pull mode: static group membership under this id, unique per process (a StatefulSet pod name); "
        "training and features default to their group id.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="Largest accepted HTTP body, in bytes.")
    max_inflight_requests: int = Field(default=64, gt=0, description="HTTP requests served at once; more get 429.")
    http_bearer_token: SecretStr | None = Field(
        default=None, description="Token that POST / requires in an `Authorization: Bearer` header; unset: no auth."
    )

    @field_validator("http_bearer_token")
    @classmethod
    def _usable_token(cls, token: SecretStr | None) -> SecretStr | None:
        # The message leaves the token out, because a startup error is printed and logged.
        if token is not None:
            value = token.get_secret_value()
            if not value or value != value.strip():
                raise ValueError("invalid bearer token: it is empty or starts or ends with whitespace; set a token without surrounding spaces, or unset it")
        return token

    @property
    def effective_http_port(self) -> int | None:
        if self.http_port is None and self.mode == "push":
            return 8080
        return self.http_port

    @property
    def tracing_enabled(self) -> bool:
        return self.tracing and not self.otel.sdk_disabled

    def summary(self) -> str:
        """Return the effective settings as one line, secrets hidden."""
        return " ".join(f"{key}={value}" for key, value in self.model_dump().items())

    def effective(self) -> dict[str, Any]:
        """Return the effective settings as JSON values, each secret replaced by `**********`."""
        return self.model_dump(mode="json")


class IngestionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMML_INGESTION_", frozen=True, extra="forbid")


class FeaturesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMML_FEATURES_", frozen=True, extra="forbid")

    data_dir: Path = Field(default=Path(".streamml/features"), description="faust's working directory.")
    partitions: int = Field(default=1, gt=0, description="Partition count of the raw topic; the state table matches it.")
    # faust 0.15.3 sends events to topics it does not consume outside its transactions, so
    # exactly_once would not cover the feature vectors; only at_least_once is offered.
    processing_guarantee: Literal["at_least_once"] = "at_least_once"


class TrainingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMML_TRAINING_", frozen=True, extra="forbid")

    model_dir: Path = Field(default=Path(".streamml/models"), description="Where models too big to inline are written.")
    torch_threads: int = Field(default=1, gt=0, le=256, description="Threads torch may use; the models are small, so 1 is fastest.")
    checkpoint_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="Minimum seconds between two checkpoints. In pull mode that is about the most input a crash replays, "
        "and 0 writes one after every batch. In push mode each request goes to a journal before its response.",
    )


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMML_INFERENCE_", frozen=True, extra="forbid")

    provider: Literal["auto", "cuda", "cpu"] = "auto"
    intra_op_threads: int = Field(default=1, gt=0, le=256)
    model_wait_s: float = Field(default=30.0, ge=0, description="How long an HTTP request waits for a first model.")
    dedupe_window: int = Field(
        default=20_000, gt=0, description="Recent prediction ids kept, per partition read at start, to skip redelivered inputs."
    )
