"""TrainingHandler: the feature/label join, test-then-train, rejections and the publish cadence."""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import onnxruntime as ort
import pytest

from streamml.common.errors import InvalidEventError
from streamml.common.events import data_object, from_kafka, new_event, to_kafka
from streamml.common.payloads import MODEL_TYPE, ModelArtifact
from streamml.training.handler import TrainingHandler
from streamml.training.learner import OnlineLearner

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def toy_samples(n: int, seed: int = 0) -> list[tuple[str, list[float], str]]:
    """Return (record id, features, label) rows where the label is 'yes' when a + b > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return [(f"s{seed}-r{i}", row.tolist(), "yes" if row[0] + row[1] > 0 else "no") for i, row in enumerate(x)]


def interleaved_events(spec, samples, feature_event, label_event, labels_first=False):
    events = []
    for record_id, values, label in samples:
        pair = [feature_event(spec, record_id, values), label_event(record_id, label)]
        events.extend(reversed(pair) if labels_first else pair)
    return events


def artifacts(results) -> list[ModelArtifact]:
    found = []
    for entry in results:
        assert not isinstance(entry, InvalidEventError), entry
        for output in entry:
            assert output.event.get_type() == MODEL_TYPE
            found.append(ModelArtifact.model_validate(data_object(output.event)))
    return found


@pytest.mark.parametrize("labels_first", [False, True], ids=["features-first", "labels-first"])
def test_join_in_either_order(make_spec, feature_event, label_event, labels_first):
    spec = make_spec()
    handler = TrainingHandler(spec)
    first, second = feature_event(spec, "r1", [1.0, 2.0, 3.0]), label_event("r1", "yes")
    if labels_first:
        first, second = second, first

    assert handler.handle(first) == []
    assert handler.pending == ((0, 1) if labels_first else (1, 0))
    assert handler.learner.samples == 0

    assert handler.handle(second) == []
    assert handler.pending == (0, 0)
    assert handler.learner.samples == 1
    assert handler.metrics.samples == 1


def test_join_across_batch_boundaries(make_spec, feature_event, label_event):
    spec = make_spec()
    handler = TrainingHandler(spec)
    samples = toy_samples(6)
    features = [feature_event(spec, record_id, values) for record_id, values, _ in samples]
    labels = [label_event(record_id, label) for record_id, _, label in samples]

    handler.handle_batch(labels[3:] + features[:2])
    assert handler.learner.samples == 0
    handler.handle_batch(features[2:] + labels[:3])

    assert handler.learner.samples == 6
    assert handler.pending == (0, 0)
    assert handler.counters["features"] == 6
    assert handler.counters["labels"] == 6


def test_test_then_train_order(make_spec, feature_event, label_event):
    spec = make_spec()
    handler = TrainingHandler(spec)
    reference = OnlineLearner.from_spec(spec, 3)
    samples = toy_samples(300)
    correct = []
    for _, values, label in samples:
        prediction = reference.predict_one(values)
        target = ["no", "yes"].index(label)
        correct.append(float(np.argmax(prediction) == target))
        reference.learn_one(values, target)

    handler.handle_batch(interleaved_events(spec, samples, feature_event, label_event))

    metrics = handler.metrics.snapshot()
    assert metrics.samples == 300
    assert metrics.prequential_accuracy == pytest.approx(np.mean(correct))
    assert metrics.recent_accuracy == pytest.approx(np.mean(correct))
    np.testing.assert_array_equal(handler.learner.linear_layers()[0][0], reference.linear_layers()[0][0])


def test_regression_metrics_report_mae(make_spec, feature_event, label_event):
    spec = make_spec(kind="linear", classes=None)
    handler = TrainingHandler(spec)
    events = []
    for i in range(50):
        events += [feature_event(spec, f"r{i}", [float(i), 1.0, 2.0]), label_event(f"r{i}", 2.0 * i)]

    handler.handle_batch(events)

    metrics = handler.metrics.snapshot()
    assert metrics.samples == 50
    assert metrics.prequential_mae is not None
    assert metrics.recent_mae is not None
    assert metrics.prequential_accuracy is None


@pytest.mark.parametrize("batch_size", [4, 7])
def test_block_learning_ignores_transport_batching(make_spec, feature_event, label_event, batch_size):
    spec = make_spec(kind="mlp")
    events = interleaved_events(spec, toy_samples(90), feature_event, label_event)
    whole, split = TrainingHandler(spec, batch_size=batch_size), TrainingHandler(spec, batch_size=batch_size)

    whole.handle_batch(events)
    for start in range(0, len(events), 5):
        split.handle_batch(events[start : start + 5])

    assert whole.learner.samples == split.learner.samples == 90 - 90 % batch_size
    assert whole.metrics.samples == split.metrics.samples == 90
    assert whole.metrics.total == split.metrics.total
    for (ours, _), (theirs, _) in zip(whole.learner.linear_layers(), split.learner.linear_layers()):
        np.testing.assert_array_equal(ours, theirs)


def test_learns_the_same_from_json_bytes(make_spec, feature_event, label_event):
    # The Kafka adapter leaves JSON data as bytes for this handler, which validates it in one step.
    spec = make_spec(kind="mlp")
    events = interleaved_events(spec, toy_samples(40), feature_event, label_event)
    records = [from_kafka(*to_kafka(event), json_as_bytes=True) for event in events]
    assert TrainingHandler.parses_json_data
    assert all(type(record.get_data()) is bytes for record in records)
    parsed, raw = TrainingHandler(spec, batch_size=4), TrainingHandler(spec, batch_size=4)

    parsed.handle_batch(events)
    raw.handle_batch(records)

    assert raw.learner.samples == parsed.learner.samples == 40
    assert raw.metrics.total == parsed.metrics.total
    for (ours, _), (theirs, _) in zip(raw.learner.linear_layers(), parsed.learner.linear_layers()):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    ("body", "mention"),
    [
        (b'{"event_id": "r1", "label": NaN}', "NaN is not a JSON number"),
        (b'{"event_id": "r1", "label": 1e400}', "label"),
        (b"[1]", "data must be a JSON object, got an array"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_rejects_bad_label_bytes(make_spec, label_event, body, mention):
    event = from_kafka(*to_kafka(label_event("r1", "yes")), json_as_bytes=True)
    event._data = body
    [result] = TrainingHandler(make_spec()).handle_batch([event])
    assert isinstance(result, InvalidEventError)
    assert result.reason == "invalid-data"
    assert mention in result.message


def test_block_scores_before_learning(make_spec, feature_event, label_event):
    spec = make_spec()
    handler = TrainingHandler(spec, batch_size=4)
    reference = OnlineLearner.from_spec(spec, 3)
    samples = toy_samples(8)
    x = np.array([values for _, values, _ in samples])
    y = np.array([["no", "yes"].index(label) for _, _, label in samples])
    first_block = reference.predict_many(x[:4])
    reference.learn_many(x[:4], y[:4])
    second_block = reference.predict_many(x[4:])
    expected = np.concatenate([first_block.argmax(axis=1), second_block.argmax(axis=1)]) == y

    handler.handle_batch(interleaved_events(spec, samples, feature_event, label_event))

    assert handler.metrics.total == expected.sum()
    assert handler.learner.samples == 8


def test_rejects_other_feature_set(make_spec, feature_event):
    spec = make_spec()
    handler = TrainingHandler(spec)

    with pytest.raises(InvalidEventError) as caught:
        handler.handle(feature_event(spec, "r1", [1.0, 2.0, 3.0], feature_set="0123456789abcdef"))

    assert caught.value.reason == "feature-mismatch"
    assert "0123456789abcdef" in caught.value.message
    assert spec.fingerprint() in caught.value.message
    assert "same spec file" in caught.value.message


def test_rejects_other_width(make_spec, feature_event):
    spec = make_spec()
    handler = TrainingHandler(spec)

    with pytest.raises(InvalidEventError) as caught:
        handler.handle(feature_event(spec, "r1", [1.0, 2.0]))

    assert caught.value.reason == "feature-mismatch"
    assert "2 values" in caught.value.message
    assert "3 features" in caught.value.message


def test_rejects_unknown_class(make_spec, label_event):
    handler = TrainingHandler(make_spec())

    with pytest.raises(InvalidEventError) as caught:
        handler.handle(label_event("r1", "maybe"))

    assert caught.value.reason == "invalid-label"
    assert "'maybe'" in caught.value.message
    assert "['no', 'yes']" in caught.value.message


def test_rejects_string_numeric_label(make_spec, label_event):
    handler = TrainingHandler(make_spec(kind="linear", classes=None))

    with pytest.raises(InvalidEventError) as caught:
        handler.handle(label_event("r1", "3.5"))

    assert caught.value.reason == "invalid-label"


def test_rejects_unknown_event_type(make_spec):
    handler = TrainingHandler(make_spec())
    event = new_event(type="io.streamml.record.v1", source="test", subject="default", data={"a": 1.0})

    with pytest.raises(InvalidEventError) as caught:
        handler.handle(event)

    assert caught.value.reason == "unknown-type"


def test_batch_reports_each_rejection(make_spec, feature_event, label_event):
    spec = make_spec()
    handler = TrainingHandler(spec)
    events = [
        feature_event(spec, "r1", [1.0, 2.0, 3.0]),
        label_event("r2", "maybe"),
        feature_event(spec, "r3", [1.0]),
        label_event("r1", "yes"),
    ]

    results = handler.handle_batch(events)

    assert results[0] == []
    assert isinstance(results[1], InvalidEventError)
    assert isinstance(results[2], InvalidEventError)
    assert results[3] == []
    assert handler.learner.samples == 1


def test_repeated_events_learned_once(make_spec, feature_event, label_event):
    spec = make_spec()
    handler = TrainingHandler(spec)
    pair = [feature_event(spec, "r1", [1.0, 2.0, 3.0]), label_event("r1", "yes")]

    handler.handle_batch(pair + pair)

    assert handler.learner.samples == 1
    assert handler.counters["duplicates"] == 2
    assert handler.pending == (0, 0)


def test_pending_limit_drops_oldest(make_spec, feature_event, label_event, caplog):
    spec = make_spec(training={"max_pending": 3})
    handler = TrainingHandler(spec)
    events = [
        feature_event(spec, "r1", [1.0, 2.0, 3.0]),
        label_event("r2", "no"),
        feature_event(spec, "r3", [1.0, 2.0, 3.0]),
        label_event("r4", "yes"),
        label_event("r5", "yes"),
    ]

    with caplog.at_level(logging.WARNING, logger="streamml.training.handler"):
        handler.handle_batch(events)
        handler.handle_batch([feature_event(spec, "r4", [1.0, 2.0, 3.0]), label_event("r1", "yes")])

    assert handler.counters["dropped_features"] == 1
    assert handler.counters["dropped_labels"] == 1
    assert handler.learner.samples == 1
    assert handler.pending == (1, 2)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("feature vector of record r1" in message and "max_pending=3" in message for message in warnings)
    assert any("label of record r2" in message for message in warnings)


def check_artifact(artifact: ModelArtifact, spec, version: int) -> None:
    assert artifact.model_name == spec.model_name
    assert artifact.version == version
    assert artifact.feature_set == spec.fingerprint()
    assert artifact.feature_names == ["a", "b", "c"]
    assert artifact.task == "classification"
    assert artifact.classes == ["no", "yes"]
    assert artifact.input_name == "features"
    model_bytes = base64.b64decode(artifact.onnx_base64)
    assert hashlib.sha256(model_bytes).hexdigest() == artifact.sha256
    assert len(model_bytes) == artifact.size_bytes
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"features": np.zeros((2, 3), dtype=np.float32)})
    assert probabilities.shape == (2, 2)
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["model_name"] == spec.model_name
    assert metadata["version"] == str(version)
    assert metadata["feature_set"] == spec.fingerprint()


def test_cadence_every_events(make_spec, feature_event, label_event):
    spec = make_spec(training={"every_events": 40})
    handler = TrainingHandler(spec)
    events = interleaved_events(spec, toy_samples(130), feature_event, label_event)

    results = handler.handle_batch(events)

    published = artifacts(results)
    assert [artifact.version for artifact in published] == [1, 2, 3]
    assert [artifact.metrics.samples for artifact in published] == [40, 80, 120]
    for artifact, version in zip(published, (1, 2, 3)):
        check_artifact(artifact, spec, version)
    # Each version is published with the label event that completed its 40th sample.
    assert [index for index, entry in enumerate(results) if entry] == [79, 159, 239]
    output = results[79][0]
    assert output.topic == "streamml.toy.models"
    assert output.event.get_subject() == spec.model_name
    assert output.event.get_source() == "io.streamml.training"
    assert handler.version == 3


@pytest.mark.parametrize(
    ("kind", "classes", "labels"),
    [
        ("softmax", ("red", "green", "blue"), ["red", "green", "blue"]),
        ("mlp", None, [0.5, -1.5, 2.0]),
        ("linear", None, [3.0, 1.0, -2.0]),
    ],
)
def test_artifact_serves_learner_predictions(make_spec, feature_event, label_event, kind, classes, labels):
    spec = make_spec(kind=kind, classes=classes, training={"every_events": 30})
    handler = TrainingHandler(spec)
    rng = np.random.default_rng(4)
    events = []
    for i in range(30):
        events += [feature_event(spec, f"r{i}", rng.normal(size=3).tolist()), label_event(f"r{i}", labels[i % 3])]

    (artifact,) = artifacts(handler.handle_batch(events))

    assert artifact.task == ("classification" if classes else "regression")
    assert artifact.classes == (list(classes) if classes else None)
    assert artifact.metrics.samples == 30
    if classes:
        assert artifact.metrics.prequential_accuracy is not None
    else:
        assert artifact.metrics.prequential_mae is not None
    session = ort.InferenceSession(base64.b64decode(artifact.onnx_base64), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(5, 3)).astype(np.float32)
    (served,) = session.run(None, {artifact.input_name: x})
    np.testing.assert_allclose(served, handler.learner.predict_many(x), rtol=0, atol=1e-5)


def test_cadence_every_seconds(make_spec, feature_event, label_event):
    spec = make_spec(training={"every_events": None, "every_seconds": 30})
    clock = FakeClock()
    handler = TrainingHandler(spec, clock=clock)

    assert handler.tick(START + timedelta(seconds=60)) == []
    handler.handle_batch(interleaved_events(spec, toy_samples(5), feature_event, label_event))
    assert handler.tick(START + timedelta(seconds=10)) == []
    (first,) = handler.tick(START + timedelta(seconds=31))
    assert handler.tick(START + timedelta(seconds=90)) == []
    handler.handle_batch(interleaved_events(spec, toy_samples(5, seed=1)[:2], feature_event, label_event))
    assert handler.tick(START + timedelta(seconds=50)) == []
    (second,) = handler.tick(START + timedelta(seconds=62))

    versions = [ModelArtifact.model_validate(data_object(output.event)) for output in (first, second)]
    assert [artifact.version for artifact in versions] == [1, 2]
    assert versions[1].created_at == START + timedelta(seconds=62)
    assert versions[1].metrics.samples == 7


def test_initial_model_is_version_zero(make_spec, feature_event, label_event):
    spec = make_spec(training={"every_events": 10})
    handler = TrainingHandler(spec)

    initial = ModelArtifact.model_validate(data_object(handler.initial_model().event))
    later = artifacts(handler.handle_batch(interleaved_events(spec, toy_samples(10), feature_event, label_event)))

    check_artifact(initial, spec, 0)
    assert initial.metrics.samples == 0
    assert [artifact.version for artifact in later] == [1]
    with pytest.raises(RuntimeError, match="already published version 1"):
        handler.initial_model()


def test_large_model_written_to_file(make_spec, tmp_path: Path):
    spec = make_spec(kind="mlp", training={"max_inline_model_bytes": 64})
    handler = TrainingHandler(spec, model_dir=tmp_path / "models")

    artifact = ModelArtifact.model_validate(data_object(handler.initial_model().event))

    assert artifact.onnx_base64 is None
    path = Path(urlparse(artifact.uri).path)
    assert artifact.uri.startswith("file://")
    assert path.parent == (tmp_path / "models").resolve()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
    assert path.stat().st_size == artifact.size_bytes


def test_restore_continues_versions(make_spec, feature_event, label_event):
    spec = make_spec(training={"every_events": 10})
    handler = TrainingHandler(spec)
    handler.handle_batch(interleaved_events(spec, toy_samples(10), feature_event, label_event))
    restarted = TrainingHandler(spec)

    restarted.restore(handler.learner.state_dict(), handler.version)
    published = artifacts(restarted.handle_batch(interleaved_events(spec, toy_samples(10, seed=2), feature_event, label_event)))

    assert [artifact.version for artifact in published] == [2]
    assert restarted.learner.samples == 20


def test_export_failure_waits_for_next_cadence(make_spec, feature_event, label_event, caplog):
    spec = make_spec(training={"every_events": 5})
    handler = TrainingHandler(spec)
    handler.learner.layers[0][1][0] = float("inf")

    with caplog.at_level(logging.ERROR, logger="streamml.training.handler"):
        results = handler.handle_batch(interleaved_events(spec, toy_samples(12), feature_event, label_event))

    assert artifacts(results) == []
    assert handler.counters["export_failures"] == 2
    assert handler.version is None
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "diverged" in errors[0]
