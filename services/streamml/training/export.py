"""ONNX export of an `OnlineLearner`, built node by node with `onnx.helper`.

The graph computes exactly what `OnlineLearner.predict_many` computes:

    features -> Sub(mean) -> Mul(1 / std) -> [Gemm -> Relu]* -> Gemm
             -> Sigmoid and [1 - p, p]   (logistic)      -> probabilities [batch, n_classes]
             -> Softmax                  (other classes) -> probabilities [batch, n_classes]
             -> Div(target scale) -> Add(target mean) -> Squeeze (numbers) -> value [batch]

Building the graph directly takes about a millisecond, where the `torch.onnx`
exporters trace the model and take far longer. The inference service loads the
bytes with onnxruntime alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamml.training.learner import OnlineLearner, Task

#: ONNX opset of every exported model. Softmax takes `axis` with per-row semantics from 13 on.
OPSET = 17
#: IR version 8 is the one that onnx 1.12, the release that introduced opset 17, writes (`onnx.helper.VERSION_TABLE`).
IR_VERSION = 8
INPUT_NAME = "features"
PROBABILITIES = "probabilities"
VALUE = "value"
BATCH_AXIS = "batch"
PRODUCER = "streamml"


def output_name(task: Task) -> str:
    """Return the graph output name for a task: `probabilities` or `value`."""
    return PROBABILITIES if task == "classification" else VALUE


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}_{op.lower()}", **attributes))
        return output


def export_onnx(learner: OnlineLearner, *, metadata: Mapping[str, str] | None = None, name: str = "streamml") -> bytes:
    """Serialize the learner's current standardizer and weights as a checked ONNX model.

    `metadata` becomes the model's `metadata_props`. Raises ValueError when a weight
    is NaN or infinite, which happens when training diverged.
    """
    layers = learner.linear_layers()
    for index, (weight, bias) in enumerate(layers):
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ValueError(
                f"layer {index} of the {learner.model.kind} model contains NaN or infinite weights after "
                f"{learner.samples} samples, so training diverged: lower model.learning_rate or raise model.l2"
            )

    graph = _GraphBuilder()
    standardizer = learner.standardizer
    hidden = graph.node("Sub", [INPUT_NAME, graph.constant("input_mean", standardizer.mean32.copy())], "centered")
    hidden = graph.node("Mul", [hidden, graph.constant("input_scale", standardizer.scale32.copy())], "standardized")
    last = len(layers) - 1
    for index, (weight, bias) in enumerate(layers):
        inputs = [hidden, graph.constant(f"layer{index}_weight", weight), graph.constant(f"layer{index}_bias", bias)]
        hidden = graph.node("Gemm", inputs, f"layer{index}_output", transB=1)
        if index != last:
            hidden = graph.node("Relu", [hidden], f"layer{index}_relu")

    task = learner.task
    if task == "regression":
        target = learner.target_standardizer
        assert target is not None
        value = graph.node("Div", [hidden, graph.constant("target_scale", target.scale32.copy())], "unscaled")
        value = graph.node("Add", [value, graph.constant("target_mean", target.mean32.copy())], "shifted")
        graph.node("Squeeze", [value, graph.constant("squeeze_axes", np.array([1], dtype=np.int64))], VALUE)
        output_shape: list[str | int] = [BATCH_AXIS]
    elif learner.model.kind == "logistic":
        probability = graph.node("Sigmoid", [hidden], "positive_probability")
        one = graph.constant("one", np.ones(1, dtype=np.float32))
        complement = graph.node("Sub", [one, probability], "negative_probability")
        graph.node("Concat", [complement, probability], PROBABILITIES, axis=1)
        output_shape = [BATCH_AXIS, 2]
    else:
        graph.node("Softmax", [hidden], PROBABILITIES, axis=1)
        output_shape = [BATCH_AXIS, learner.n_classes or 0]

    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_AXIS, learner.n_features])],
            [helper.make_tensor_value_info(output_name(task), TensorProto.FLOAT, output_shape)],
            initializer=graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
    )
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
