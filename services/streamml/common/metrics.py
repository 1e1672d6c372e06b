"""Prometheus metrics shared by the adapters, served on `GET /metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECEIVED = Counter(
    "streamml_events_received_total", "Events handed to a service handler.", ["service", "transport"]
)
EVENTS_EMITTED = Counter(
    "streamml_events_emitted_total", "Events acknowledged by Kafka, per output topic.", ["service", "topic"]
)
DEAD_LETTERS = Counter(
    "streamml_dead_letters_total", "Inputs sent to the dead-letter topic, per reason.", ["service", "reason"]
)
RETRIES = Counter(
    "streamml_retries_total", "Batches or requests that hit a retriable failure.", ["service", "transport"]
)
HTTP_UNAUTHORIZED = Counter(
    "streamml_http_unauthorized_total", "POST / requests rejected for a missing or wrong bearer token.", ["service"]
)
BATCH_SIZE = Histogram(
    "streamml_batch_size", "Events per handled micro-batch.", ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
PROCESSING_SECONDS = Histogram(
    "streamml_batch_processing_seconds", "Time from receiving a batch to the acknowledgement of its outputs.", ["service", "transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MODEL_VERSION = Gauge("streamml_model_version", "Model version the inference service is serving.", ["model"])
MODELS_REJECTED = Counter("streamml_models_rejected_total", "Model events that failed the serving checks.", ["model"])
EXECUTION_PROVIDER = Gauge(
    "streamml_execution_provider_info", "ONNX Runtime execution provider in use (value 1).", ["provider"]
)
PROVIDER_FALLBACKS = Counter(
    "streamml_execution_provider_fallbacks_total", "Sessions that asked for CUDA and run on CPU instead."
)
