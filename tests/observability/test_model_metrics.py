"""Model metrics: served accuracy in training, and the serving version, age and provider in inference."""

from __future__ import annotations

import copy
import time

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from prometheus_client import REGISTRY

from streamml.common.events import data_object, new_event
from streamml.common.payloads import FEATURES_TYPE, LABEL_TYPE, MODEL_TYPE, ModelArtifact
from streamml.common.spec import load_spec
from streamml.demo.replay import replay_csv
from streamml.features.handler import FeaturesHandler
from streamml.inference.handler import InferenceHandler
from streamml.inference.runtime import read_artifact_bytes
from streamml.ingestion.handler import IngestionHandler
from streamml.training.handler import TrainingHandler
from streamml.training.served import sample_scores

PUBLISH_EVERY = 20


@pytest.fixture
def spec(elec2_spec_path, tmp_path):
    document = yaml.safe_load(elec2_spec_path.read_text())
    document["name"] = f"served-{time.time_ns()}"
    document["training"] = {"every_events": PUBLISH_EVERY}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_spec(path)


def training_inputs(spec, csv_path, rows):
    """Run rows through ingestion and features in process; return the features and label events, in order."""
    ingestion, features = IngestionHandler(spec), FeaturesHandler(spec, {})
    events = []
    for row in replay_csv(csv_path, spec, limit=rows):
        (raw,) = ingestion.handle(row.event)
        events.extend(output.event for output in features.handle(raw.event))
    return events


def samples_of(events, classes):
    """Return the (features, class index) pairs that the events form, in join order."""
    vectors = {e.get_data()["event_id"]: e.get_data()["values"] for e in events if e.get_type() == FEATURES_TYPE}
    labels = [e.get_data() for e in events if e.get_type() == LABEL_TYPE]
    x = np.asarray([vectors[label["event_id"]] for label in labels])
    y = np.asarray([classes.index(label["label"]) for label in labels], dtype=np.float64)
    return x, y


def served(model: str) -> float | None:
    return REGISTRY.get_sample_value("streamml_served_accuracy_ratio", {"model": model})


def test_served_accuracy_scores_published_version(spec, elec2_csv):
    handler = TrainingHandler(spec)
    handler.initial_model()
    version_zero = copy.deepcopy(handler.learner)
    events = training_inputs(spec, elec2_csv, PUBLISH_EVERY)
    x, y = samples_of(events, list(spec.label.classes))

    handler.handle_batch(events[: len(events) // 2])
    handler.handle_batch(events[len(events) // 2 :])

    expected = sample_scores("classification", version_zero.predict_many(x), y)
    assert handler.served.version == 1, "the 20th sample publishes version 1"
    assert list(handler.served.scores) == expected.tolist()
    assert served(spec.model_name) == pytest.approx(expected.mean())
    scored = REGISTRY.get_sample_value("streamml_served_scored_samples_total", {"model": spec.model_name})
    assert scored == PUBLISH_EVERY


def test_served_copy_predicts_like_published_onnx(spec, elec2_csv):
    handler = TrainingHandler(spec)
    handler.initial_model()
    outputs = [output for result in handler.handle_batch(training_inputs(spec, elec2_csv, PUBLISH_EVERY)) for output in result]
    (model_event,) = [output.event for output in outputs if output.event.get_type() == MODEL_TYPE]
    artifact = ModelArtifact.model_validate(data_object(model_event))
    session = ort.InferenceSession(read_artifact_bytes(artifact), providers=["CPUExecutionProvider"])
    probe = np.random.default_rng(0).normal(size=(16, len(artifact.feature_names))).astype(np.float32)

    onnx = session.run(None, {artifact.input_name: probe})[0]
    np.testing.assert_allclose(handler.served._published.predict_many(probe), onnx, rtol=1e-4, atol=1e-5)
    labels = {"service": "training", "model": spec.model_name}
    assert REGISTRY.get_sample_value("streamml_model_version", labels) == 1


def test_served_accuracy_absent_before_first_publish(spec, elec2_csv):
    handler = TrainingHandler(spec)
    handler.handle_batch(training_inputs(spec, elec2_csv, 5))
    assert len(handler.served.scores) == 0
    assert np.isnan(served(spec.model_name))


def test_inference_exports_serving_model(spec):
    model_event = TrainingHandler(spec).initial_model().event
    created = ModelArtifact.model_validate(data_object(model_event)).created_at.timestamp()
    handler = InferenceHandler(spec, provider="cpu")
    assert handler.load(model_event)

    labels = {"service": "inference", "model": spec.model_name}
    assert REGISTRY.get_sample_value("streamml_model_version", labels) == 0
    age = REGISTRY.get_sample_value("streamml_model_age_seconds", labels)
    assert 0 <= age <= time.time() - created + 1
    assert REGISTRY.get_sample_value("streamml_execution_provider_info", {"provider": "CPUExecutionProvider"}) == 1


def test_inference_counts_rejected_model(spec):
    good = TrainingHandler(spec).initial_model().event
    data = data_object(good) | {"version": 5, "sha256": "0" * 64}
    bad = new_event(type=MODEL_TYPE, source="tests", subject=spec.model_name, data=data)
    before = REGISTRY.get_sample_value("streamml_models_rejected_total", {"model": spec.model_name}) or 0
    handler = InferenceHandler(spec, provider="cpu")
    assert handler.load(good)
    assert not handler.load(bad)
    assert REGISTRY.get_sample_value("streamml_models_rejected_total", {"model": spec.model_name}) == before + 1
    assert REGISTRY.get_sample_value("streamml_model_version", {"service": "inference", "model": spec.model_name}) == 0
