"""The metrics follow the Prometheus naming conventions and cover what operators watch."""

from __future__ import annotations

import re
import time

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from streamml.common import metrics

NAME = re.compile(r"^streamml_[a-z][a-z0-9]*(_[a-z0-9]+)*$")
LABEL = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SERVICE_METRICS = {
    name: value for name, value in vars(metrics).items() if isinstance(value, MetricWrapperBase)
}

# What operators watch on each service, and the metric that shows it.
REQUIRED = {
    "events consumed": ("streamml_events_received_total", "counter"),
    "events produced": ("streamml_events_emitted_total", "counter"),
    "errors by reason": ("streamml_errors_total", "counter"),
    "dead letters by reason": ("streamml_dead_letters_total", "counter"),
    "consumer lag per partition": ("streamml_consumer_lag_records", "gauge"),
    "batch sizes": ("streamml_batch_size", "histogram"),
    "processing latency": ("streamml_batch_processing_seconds", "histogram"),
    "end-to-end latency": ("streamml_end_to_end_latency_seconds", "histogram"),
    "model version": ("streamml_model_version", "gauge"),
    "model age": ("streamml_model_age_seconds", "gauge"),
    "served accuracy": ("streamml_served_accuracy_ratio", "gauge"),
    "execution provider": ("streamml_execution_provider_info", "gauge"),
}
REQUIRED_LABELS = {
    "streamml_dead_letters_total": {"service", "reason"},
    "streamml_errors_total": {"service", "reason"},
    "streamml_consumer_lag_records": {"service", "topic", "partition"},
    "streamml_model_version": {"service", "model"},
    "streamml_model_age_seconds": {"service", "model"},
    "streamml_served_accuracy_ratio": {"model"},
}


def declared_name(metric: MetricWrapperBase) -> str:
    """Return the name as declared, with `_total` for counters (prometheus_client strips it from the family)."""
    (family,) = metric.describe()
    return f"{family.name}_total" if family.type == "counter" else family.name


def family_type(metric: MetricWrapperBase) -> str:
    (family,) = metric.describe()
    return family.type


@pytest.mark.parametrize("variable", sorted(SERVICE_METRICS))
def test_metric_follows_conventions(variable):
    metric = SERVICE_METRICS[variable]
    name, kind = declared_name(metric), family_type(metric)
    (family,) = metric.describe()
    assert NAME.match(name), f"{name} is not a snake_case name with the streamml_ prefix"
    assert family.documentation.endswith("."), f"{name} needs a help text that is a sentence"
    if kind == "counter":
        assert name.endswith("_total"), name
    else:
        assert not name.endswith("_total"), f"{name} is a {kind}; only counters end with _total"
    for unit in ("milliseconds", "_ms", "minutes", "hours", "percent", "bytes_kb"):
        assert unit not in name, f"{name}: use base units (seconds, ratio 0-1)"
    if kind == "histogram" and ("latency" in name or "processing" in name):
        assert name.endswith("_seconds"), name
    if "accuracy" in name:
        assert name.endswith("_ratio"), f"{name}: a fraction from 0 to 1 ends with _ratio"
    if name.endswith("_info"):
        assert kind == "gauge"
    for label in metric._labelnames:
        assert LABEL.match(label), f"{name}: label {label!r} is not snake_case"
        assert label not in ("le", "quantile", "job", "instance"), f"{name}: label {label!r} is reserved"


@pytest.mark.parametrize("what", sorted(REQUIRED))
def test_required_metric_exists(what):
    name, kind = REQUIRED[what]
    found = {declared_name(metric): metric for metric in SERVICE_METRICS.values()}
    assert name in found, f"no metric shows {what}"
    assert family_type(found[name]) == kind
    assert REQUIRED_LABELS.get(name, set()) <= set(found[name]._labelnames)


def test_names_are_unique():
    names = [declared_name(metric) for metric in SERVICE_METRICS.values()]
    assert len(names) == len(set(names))


def test_model_age_computed_at_scrape():
    labels = {"service": "age-test", "model": "m"}
    metrics.set_model("age-test", "m", 3, time.time() - 100)
    first = REGISTRY.get_sample_value("streamml_model_age_seconds", labels)
    time.sleep(0.05)
    second = REGISTRY.get_sample_value("streamml_model_age_seconds", labels)
    assert 99 < first < second < 110
    assert REGISTRY.get_sample_value("streamml_model_version", labels) == 3
