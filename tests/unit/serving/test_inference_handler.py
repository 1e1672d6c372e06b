import base64
import hashlib
import json

import numpy as np
import pytest

from streamml.common.errors import InvalidEventError, RetriableError
from streamml.common.events import new_event, to_kafka
from streamml.common.payloads import FEATURES_TYPE, MODEL_TYPE, FeatureVector, ModelArtifact, Prediction
from streamml.inference.handler import InferenceHandler
from streamml.training.handler import TrainingHandler

T = "2024-01-01T00:00:00Z"


@pytest.fixture
def trained(elec2_spec):
    return TrainingHandler(elec2_spec)


def model_event(artifact: ModelArtifact):
    return new_event(type=MODEL_TYPE, source="tests", subject=artifact.model_name, data=artifact)


def features_event(handler, values, event_id="e1", feature_set=None):
    data = FeatureVector(event_id=event_id, entity="NSW", event_time=T, feature_set=feature_set or handler.feature_set, values=values)
    return new_event(type=FEATURES_TYPE, source="tests", subject="NSW", data=data)


def artifact_of(output):
    return ModelArtifact.model_validate(output.event.get_data())


def test_no_model_is_retriable(elec2_spec):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    assert not handler.ready()
    with pytest.raises(RetriableError):
        handler.handle_batch([features_event(handler, [0.0] * handler.width)])


def test_predicts_batch_with_model_version(elec2_spec, trained):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    assert handler.load(trained.initial_model().event)
    events = [features_event(handler, list(np.linspace(0, 1, handler.width)), event_id=f"e{i}") for i in range(5)]
    results = handler.handle_batch(events)
    assert len(results) == 5
    for index, result in enumerate(results):
        [output] = result
        data = output.event.get_data()
        assert output.topic == elec2_spec.topic("predictions")
        assert data["event_id"] == f"e{index}"
        assert data["model_version"] == 0
        assert data["label"] in ("DOWN", "UP")
        assert sum(data["scores"]) == pytest.approx(1.0, abs=1e-5)
        # The handler writes the payload as a dict, so it must still be a valid Prediction, field for field.
        assert Prediction.model_validate(data).model_dump(mode="json") == data


def test_bad_vector_does_not_fail_neighbours(elec2_spec, trained):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    handler.load(trained.initial_model().event)
    good = features_event(handler, [0.0] * handler.width, event_id="good")
    short = features_event(handler, [0.0] * (handler.width - 1), event_id="short")
    other = features_event(handler, [0.0] * handler.width, event_id="other", feature_set="0" * 16)
    results = handler.handle_batch([good, short, other])
    assert isinstance(results[0], list)
    assert isinstance(results[1], InvalidEventError) and results[1].reason == "feature-mismatch"
    assert isinstance(results[2], InvalidEventError) and "feature set" in results[2].message


def vector_bytes_event(handler, body: bytes, event_id="e1"):
    # A features event as the Kafka adapter hands it over: JSON data still as the record's bytes.
    event = features_event(handler, [0.0] * handler.width, event_id=event_id)
    event._data = body
    return event


def test_vectors_are_validated_from_json_bytes(elec2_spec, trained):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    handler.load(trained.initial_model().event)
    assert handler.parses_json_data
    good = features_event(handler, [0.5] * handler.width, event_id="good")
    body = to_kafka(features_event(handler, [0.5] * handler.width, event_id="bytes"))[1]
    as_bytes = vector_bytes_event(handler, body, event_id="bytes")
    overflow = body.replace(b"0.5,", b"1e400,", 1)
    results = handler.handle_batch([
        good,
        as_bytes,
        vector_bytes_event(handler, b"{not json", event_id="broken"),
        vector_bytes_event(handler, b"[1, 2]", event_id="array"),
        vector_bytes_event(handler, overflow, event_id="overflow"),
        vector_bytes_event(handler, overflow.replace(b"1e400", b"NaN"), event_id="nan"),
    ])
    assert results[0][0].event.get_data()["score"] == results[1][0].event.get_data()["score"]
    errors = results[2:]
    assert all(isinstance(error, InvalidEventError) and error.reason == "invalid-data" for error in errors)
    # Data that fails is decoded as the codec decodes it, so the errors are those of decoding.
    assert "is declared application/json but it is not valid JSON (Expecting property name" in errors[0].message
    assert "data must be a JSON object, got an array" in errors[1].message
    assert "too large" in errors[2].message
    assert "NaN is not a JSON number" in errors[3].message


def test_bad_entity_or_id_dead_lettered(elec2_spec, trained):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    handler.load(trained.initial_model().event)
    control = features_event(handler, [0.0] * handler.width, event_id="control")
    control._data = dict(control.get_data(), entity="NSW\n")
    surrogate = features_event(handler, [0.0] * handler.width, event_id="a\ud800")
    fine = features_event(handler, [0.0] * handler.width, event_id="fine")
    results = handler.handle_batch([control, surrogate, fine])
    assert isinstance(results[0], InvalidEventError)
    assert results[0].reason == "invalid-data"
    assert "entity contains U+000A at index 3" in results[0].message
    assert isinstance(results[1], InvalidEventError)
    assert "event_id contains U+D800 at index 1" in results[1].message
    assert len(results[2]) == 1


def test_non_finite_prediction_is_dead_lettered(elec2_spec, trained):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    handler.load(trained.initial_model().event)
    # Finite in JSON, but beyond float32: the model input becomes an infinity and its scores NaN.
    huge = features_event(handler, [1e39] * handler.width, event_id="huge")
    fine = features_event(handler, [0.0] * handler.width, event_id="fine")
    results = handler.handle_batch([huge, fine])
    assert isinstance(results[0], InvalidEventError) and results[0].reason == "non-finite-prediction"
    assert results[0].message.startswith("event huge: model")
    assert "float32" in results[0].message
    [output] = results[1]
    assert to_kafka(output.event)[1] == json.dumps(output.event.get_data(), separators=(",", ":")).encode()
    # The rejected vector left no trace in the redelivery filter, so a corrected replay is served.
    [replayed] = handler.handle_batch([features_event(handler, [0.0] * handler.width, event_id="huge")])
    assert len(replayed) == 1


def test_older_versions_are_skipped(elec2_spec, trained):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    first = trained.initial_model()
    newer = artifact_of(first).model_copy(update={"version": 3})
    assert handler.load(model_event(newer))
    assert not handler.load(first.event)
    assert handler.model.version == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_name": "x"}, "input named 'x'"),
        ({"feature_names": ["a"]}, "lists 1 features"),
        ({"feature_set": "f" * 16}, "feature set"),
        ({"sha256": "0" * 64}, "sha256"),
        ({"onnx_base64": base64.b64encode(b"not onnx").decode(), "sha256": hashlib.sha256(b"not onnx").hexdigest()}, "cannot load"),
        ({"onnx_base64": None, "uri": "s3://bucket/model.onnx"}, "not supported"),
    ],
)
def test_bad_model_keeps_previous(elec2_spec, trained, change, message, caplog):
    handler = InferenceHandler(elec2_spec, provider="cpu")
    handler.load(trained.initial_model().event)
    broken = artifact_of(trained.initial_model()).model_copy(update={"version": 7, **change})
    assert not handler.load(model_event(broken))
    assert handler.model.version == 0
    assert handler.rejected_models == 1
    assert message in caplog.text


def test_inference_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, streamml.inference.service, streamml.inference.handler; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
