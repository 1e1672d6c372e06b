"""ONNX export: onnxruntime on the exported bytes must match the torch learner for every model kind."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamml.common.spec import ModelSpec
from streamml.training.export import INPUT_NAME, IR_VERSION, OPSET, export_onnx, output_name
from streamml.training.learner import OnlineLearner

N_FEATURES = 6

# (id, model spec fields, n_classes); None classes means a numeric label.
CASES = [
    ("linear", {"kind": "linear"}, None),
    ("logistic", {"kind": "logistic"}, 2),
    ("softmax", {"kind": "softmax"}, 4),
    ("mlp-binary", {"kind": "mlp", "hidden": (16,)}, 2),
    ("mlp-classes", {"kind": "mlp", "hidden": (16, 8), "optimizer": "adam", "learning_rate": 0.01}, 3),
    ("mlp-numeric", {"kind": "mlp", "hidden": (12, 6, 4)}, None),
]


def trained_learner(fields: dict, n_classes: int | None) -> OnlineLearner:
    """Train on unscaled inputs, so that the standardizer and every weight are far from their initial values."""
    rng = np.random.default_rng(11)
    x = rng.normal(loc=np.arange(N_FEATURES) * 10.0, scale=np.arange(1, N_FEATURES + 1), size=(600, N_FEATURES))
    if n_classes is None:
        # Targets of order 1 keep float32 rounding of the output well below the 1e-5 tolerance.
        y = np.tanh(x @ rng.normal(size=N_FEATURES) / 50.0) + 0.5
    else:
        y = (x @ rng.normal(size=N_FEATURES) * 3).astype(np.int64) % n_classes
    learner = OnlineLearner(ModelSpec(**fields), N_FEATURES, n_classes)
    for start in range(0, len(x), 16):
        learner.learn_many(x[start : start + 16], y[start : start + 16])
    return learner


def run_onnx(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {INPUT_NAME: x})
    return output


@pytest.mark.parametrize(("fields", "n_classes"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
@pytest.mark.parametrize("untrained", [False, True], ids=["trained", "untrained"])
def test_onnx_matches_torch_learner(fields, n_classes, untrained):
    learner = OnlineLearner(ModelSpec(**fields), N_FEATURES, n_classes) if untrained else trained_learner(fields, n_classes)
    model_bytes = export_onnx(learner)
    rng = np.random.default_rng(3)

    for batch in (1, 257):
        x = rng.normal(loc=np.arange(N_FEATURES) * 10.0, scale=2.0, size=(batch, N_FEATURES)).astype(np.float32)
        expected = learner.predict_many(x)
        actual = run_onnx(model_bytes, x)

        assert actual.dtype == np.float32
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("fields", "n_classes"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_exported_graph_interface(fields, n_classes):
    learner = trained_learner(fields, n_classes)
    model = onnx.load_from_string(export_onnx(learner, metadata={"model_name": "toy", "version": "3"}))

    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    input_dims = graph_input.type.tensor_type.shape.dim
    output_dims = graph_output.type.tensor_type.shape.dim
    assert graph_input.name == INPUT_NAME
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert input_dims[0].dim_param == "batch"
    assert input_dims[1].dim_value == N_FEATURES
    assert graph_output.name == output_name(learner.task)
    assert graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert output_dims[0].dim_param == "batch"
    if n_classes is None:
        assert graph_output.name == "value"
        assert len(output_dims) == 1
    else:
        assert graph_output.name == "probabilities"
        assert output_dims[1].dim_value == n_classes
    assert [(opset.domain, opset.version) for opset in model.opset_import] == [("", OPSET)]
    assert model.ir_version == IR_VERSION
    assert {prop.key: prop.value for prop in model.metadata_props} == {"model_name": "toy", "version": "3"}
    assert model.graph.node[0].op_type == "Sub"
    assert model.graph.node[1].op_type == "Mul"


def test_export_rejects_diverged_weights():
    learner = trained_learner({"kind": "logistic"}, 2)
    learner.layers[0][0][0, 0] = float("nan")

    with pytest.raises(ValueError, match="diverged"):
        export_onnx(learner)
