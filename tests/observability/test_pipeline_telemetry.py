"""The four services as OS processes with tracing on: one trace per input across them, and their /metrics.

The services export spans over OTLP/HTTP to a receiver this module runs on 127.0.0.1.
One pipeline run serves every test here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamml.common.events import derived_id
from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.common.tracing import INGEST_TIME, TRACEPARENT, TRACESTATE
from streamml.demo.cluster import PipelineProcesses, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from tests.e2e.test_elec2 import unique_spec
from tests.http_helpers import free_port, wait_http
from tests.kafka.test_ingestion_service import record
from tests.observability.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

SERVICES = ("ingestion", "features", "training", "inference")
ROWS = 40
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
CLIENT_TRACESTATE = "client=tests"
SPAN_KIND_CONSUMER = 5
STATUS_ERROR = 2


@dataclass
class PipelineRun:
    spec: PipelineSpec
    input_ids: list[str]
    invalid_id: str
    spans: list[ReceivedSpan]
    predictions: dict[str, object]
    metrics: dict[str, str]
    log_dir: Path
    exit_codes: dict[str, int | None]


def spans_of(spans: list[ReceivedSpan], service: str, event_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.service == f"streamml-{service}" and span.attributes.get("cloudevents.event_id") == event_id]


def has_full_trace(spans: list[ReceivedSpan], input_id: str) -> bool:
    features_id = derived_id(input_id, "features")
    return all(
        (
            spans_of(spans, "ingestion", input_id),
            spans_of(spans, "features", input_id),
            spans_of(spans, "training", features_id),
            spans_of(spans, "inference", features_id),
        )
    )


def scrape(url: str, ready: tuple[str, ...], timeout_s: float = 30.0) -> str:
    """Return the service's /metrics text once every name in `ready` appears in it."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        if all(name in text for name in ready) or time.monotonic() >= deadline:
            return text
        time.sleep(0.3)


def samples(text: str, name: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples if sample.name == name]


@pytest.fixture(scope="module")
def run(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path_factory) -> PipelineRun:
    folder = tmp_path_factory.mktemp("telemetry")
    spec_path = unique_spec(elec2_spec_path, folder, "telemetry")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    rows = list(replay_csv(elec2_csv, spec, limit=ROWS))
    events = [row.event for row in rows]
    # The second input arrives inside a client's trace; the others start a trace at ingestion.
    events[1].get_attributes().update({TRACEPARENT: f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01", TRACESTATE: CLIENT_TRACESTATE})
    invalid = record("telemetry-invalid", day="8")
    ports = {service: free_port() for service in SERVICES}

    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        for service, port in ports.items():
            prefix = f"STREAMML_{service.upper()}_"
            env |= {f"{prefix}TRACING": "true", f"{prefix}HTTP_PORT": str(port), f"{prefix}CONSUMER_LAG_INTERVAL_MS": "300"}
        predictions: dict[str, object] = {}
        reader = TopicReader(settings, spec.topic("predictions"))
        try:
            with PipelineProcesses(spec_path, settings, folder / "logs", extra_env=env) as services:
                for service, port in ports.items():
                    wait_http(services.services[service], f"http://127.0.0.1:{port}", timeout_s=120)
                produce_replay(settings, spec.topic("input"), [*events, invalid])
                deadline = time.monotonic() + 120
                while len(predictions) < ROWS:
                    for event in reader.poll(timeout_s=0.5):
                        predictions[event.get_data()["event_id"]] = event
                    services.check_alive()
                    assert time.monotonic() < deadline, f"{len(predictions)} of {ROWS} predictions within 120s"
                input_ids = [event.get_id() for event in events]
                spans = receiver.wait_for(lambda found: all(has_full_trace(found, event_id) for event_id in input_ids[:3]))
                metrics = {
                    "ingestion": scrape(f"http://127.0.0.1:{ports['ingestion']}", ("streamml_consumer_lag_records{",)),
                    "features": scrape(f"http://127.0.0.1:{ports['features']}", ("streamml_consumer_lag_records{",)),
                    "training": scrape(f"http://127.0.0.1:{ports['training']}", ("streamml_served_accuracy_ratio{",)),
                    "inference": scrape(f"http://127.0.0.1:{ports['inference']}", ("streamml_model_age_seconds{",)),
                }
                exit_codes = services.stop()
        finally:
            reader.close()
        # Spans still buffered at SIGTERM are exported as the processes stop.
        spans = receiver.wait_for(lambda found: bool(spans_of(found, "ingestion", invalid.get_id())), timeout_s=30)
    return PipelineRun(spec, input_ids, invalid.get_id(), spans, predictions, metrics, folder / "logs", exit_codes)


def test_one_trace_across_four_services(run):
    input_id = run.input_ids[0]
    features_id = derived_id(input_id, "features")
    (ingestion,) = spans_of(run.spans, "ingestion", input_id)
    (features,) = spans_of(run.spans, "features", input_id)
    (training,) = spans_of(run.spans, "training", features_id)
    (inference,) = spans_of(run.spans, "inference", features_id)
    (label,) = spans_of(run.spans, "training", derived_id(input_id, "label"))

    assert ingestion.parent_span_id == "", "an input without traceparent starts a new trace at ingestion"
    for span in (features, training, inference, label):
        assert span.trace_id == ingestion.trace_id, f"{span.service} {span.name} is in another trace"
    assert features.parent_span_id == ingestion.span_id
    assert training.parent_span_id == features.span_id
    assert inference.parent_span_id == features.span_id
    assert label.parent_span_id == features.span_id


def test_each_input_has_its_own_trace(run):
    first, third = run.input_ids[0], run.input_ids[2]
    (first_span,) = spans_of(run.spans, "ingestion", first)
    (third_span,) = spans_of(run.spans, "ingestion", third)
    assert first_span.trace_id != third_span.trace_id


def test_client_trace_context_continues(run):
    input_id = run.input_ids[1]
    (ingestion,) = spans_of(run.spans, "ingestion", input_id)
    (inference,) = spans_of(run.spans, "inference", derived_id(input_id, "features"))
    assert ingestion.trace_id == CLIENT_TRACE_ID
    assert ingestion.parent_span_id == CLIENT_SPAN_ID
    assert inference.trace_id == CLIENT_TRACE_ID
    prediction = run.predictions[input_id]
    assert prediction.get_attributes()[TRACESTATE] == CLIENT_TRACESTATE


def test_prediction_carries_inference_span(run):
    input_id = run.input_ids[0]
    (inference,) = spans_of(run.spans, "inference", derived_id(input_id, "features"))
    version, trace_id, parent_id, flags = run.predictions[input_id].get_attributes()[TRACEPARENT].split("-")
    assert (version, trace_id, parent_id) == ("00", inference.trace_id, inference.span_id)
    assert int(flags, 16) & 1, f"trace flags {flags} do not mark the span sampled"
    assert INGEST_TIME in run.predictions[input_id].get_attributes()


def test_span_attributes(run):
    input_id = run.input_ids[0]
    (features,) = spans_of(run.spans, "features", input_id)
    assert features.kind == SPAN_KIND_CONSUMER
    assert features.name == f"process {run.spec.topic('raw')}"
    assert features.attributes["messaging.system"] == "kafka"
    assert features.attributes["messaging.destination.name"] == run.spec.topic("raw")
    assert features.attributes["messaging.destination.partition.id"] == "0"
    assert isinstance(features.attributes["messaging.kafka.offset"], int)
    assert features.attributes["cloudevents.event_type"] == "io.streamml.record.v1"


def test_dead_letter_span_is_error(run):
    (span,) = spans_of(run.spans, "ingestion", run.invalid_id)
    assert span.status_code == STATUS_ERROR
    assert span.attributes["error.type"] == "invalid-data"


def test_services_stop_cleanly(run):
    assert run.exit_codes == {service: 0 for service in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_service_counts_events(run, service):
    text = run.metrics[service]
    received = sum(sample.value for sample in samples(text, "streamml_events_received_total") if sample.labels["service"] == service)
    emitted = [sample for sample in samples(text, "streamml_events_emitted_total") if sample.labels["service"] == service]
    assert received >= ROWS
    if service != "training":  # training publishes a version every 2000 samples, and only version 0 came out
        assert sum(sample.value for sample in emitted) >= ROWS
    (info,) = samples(text, "streamml_build_info")
    assert info.labels["service"] == service


@pytest.mark.parametrize(("service", "roles"), [("ingestion", ["input"]), ("features", ["raw"]), ("training", ["features", "labels"]), ("inference", ["features"])])
def test_consumer_lag_per_partition(run, service, roles):
    lags = samples(run.metrics[service], "streamml_consumer_lag_records")
    found = {(sample.labels["topic"], sample.labels["partition"]) for sample in lags if sample.labels["service"] == service}
    assert found == {(run.spec.topic(role), "0") for role in roles}
    assert all(sample.value >= 0 for sample in lags)


def test_dead_letters_by_reason(run):
    letters = samples(run.metrics["ingestion"], "streamml_dead_letters_total")
    assert [(sample.labels["reason"], sample.value) for sample in letters] == [("invalid-data", 1.0)]


@pytest.mark.parametrize("service", SERVICES)
def test_latency_histograms(run, service):
    text = run.metrics[service]
    (processed,) = [
        s for s in samples(text, "streamml_batch_processing_seconds_count") if s.labels == {"service": service, "transport": "kafka"}
    ]
    assert processed.value >= 1
    (end_to_end,) = [s for s in samples(text, "streamml_end_to_end_latency_seconds_count") if s.labels["service"] == service]
    assert end_to_end.value >= ROWS


def test_end_to_end_latency_grows_along_pipeline(run):
    def mean(service: str) -> float:
        text = run.metrics[service]
        (total,) = samples(text, "streamml_end_to_end_latency_seconds_sum")
        (count,) = samples(text, "streamml_end_to_end_latency_seconds_count")
        return total.value / count.value

    # A service observes a batch's inputs once every output of the batch is acknowledged. The
    # features worker's batches write vectors and labels, and inference can handle a vector before
    # the labels of its batch are acknowledged, so only ingestion comes before the other two.
    assert 0 < mean("ingestion") < mean("features") < 60
    assert mean("ingestion") < mean("inference") < 60


def test_inference_model_version_and_age(run):
    text = run.metrics["inference"]
    (version,) = samples(text, "streamml_model_version")
    (age,) = samples(text, "streamml_model_age_seconds")
    assert version.labels == {"service": "inference", "model": run.spec.model_name}
    assert version.value == 0
    assert 0 < age.value < 300
    (provider,) = samples(text, "streamml_execution_provider_info")
    assert provider.labels["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert provider.value == 1


def test_training_served_accuracy(run):
    text = run.metrics["training"]
    (accuracy,) = samples(text, "streamml_served_accuracy_ratio")
    (scored,) = samples(text, "streamml_served_scored_samples_total")
    assert accuracy.labels == {"model": run.spec.model_name}
    assert 0.0 <= accuracy.value <= 1.0
    assert scored.value >= 1
    (version,) = samples(text, "streamml_model_version")
    assert version.labels == {"service": "training", "model": run.spec.model_name}


def test_logs_show_no_failure(run):
    logs = sorted(run.log_dir.glob("*.log"))
    assert [path.stem for path in logs] == sorted(SERVICES)
    for path in logs:
        text = path.read_text(errors="replace")
        assert "Failed to export" not in text, path.name
        assert "Traceback" not in text, path.name
