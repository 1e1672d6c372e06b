"""The training service: online learning from joined features and labels, published as ONNX."""

from streamml.training.export import INPUT_NAME, OPSET, export_onnx, output_name
from streamml.training.handler import PrequentialMetrics, TrainingHandler
from streamml.training.learner import OnlineLearner, RunningStandardizer

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OnlineLearner",
    "PrequentialMetrics",
    "RunningStandardizer",
    "TrainingHandler",
    "export_onnx",
    "output_name",
]
