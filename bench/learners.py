"""The training learner against River on the same feature vectors: speed and accuracy.

Both sides learn test-then-train: each sample is predicted before it is learned. River
learns one sample at a time. streamml learns in blocks of `training.batch_size`, and every
sample of a block is predicted by the model from before the block.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.workload import Workload
from streamml.common.spec import PipelineSpec


def _river_rows(x: np.ndarray) -> list[dict[str, float]]:
    names = [f"x{index}" for index in range(x.shape[1])]
    return [dict(zip(names, row.tolist())) for row in x]


def river_prequential(model, rows: list[dict[str, float]], y: np.ndarray) -> tuple[float, float]:
    """Return (accuracy, samples/s) of River's predict_one then learn_one over the rows."""
    correct = 0
    started = time.perf_counter()
    for row, target in zip(rows, y.tolist()):
        correct += model.predict_one(row) == target
        model.learn_one(row, target)
    return correct / len(rows), len(rows) / (time.perf_counter() - started)


def streamml_prequential(spec: PipelineSpec, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (accuracy, samples/s) of the training learner, in blocks of `training.batch_size`."""
    import torch

    from streamml.training.learner import OnlineLearner

    torch.set_num_threads(1)
    learner = OnlineLearner.from_spec(spec, x.shape[1])
    block = spec.training.batch_size
    correct = 0
    started = time.perf_counter()
    for start in range(0, len(x), block):
        rows, targets = x[start : start + block], y[start : start + block]
        correct += int((learner.predict_many(rows).argmax(axis=1) == targets).sum())
        learner.learn_many(rows, targets)
    return correct / len(x), len(x) / (time.perf_counter() - started)


def handler_rate(spec: PipelineSpec, workload: Workload, folder: Path) -> float:
    """Return samples/s through the training service's handler: CloudEvents in, joins, learning, ONNX exports."""
    import torch

    from streamml.training.handler import TrainingHandler

    torch.set_num_threads(1)
    handler = TrainingHandler(spec, model_dir=folder)
    events = [event for pair in zip(workload.vectors, workload.labels) for event in pair]
    started = time.perf_counter()
    for start in range(0, len(events), 500):
        handler.handle_batch(events[start : start + 500])
    return len(workload.vectors) / (time.perf_counter() - started)


def compare(spec: PipelineSpec, workload: Workload, folder: Path, rows: int) -> dict[str, dict[str, float]]:
    """Return the speed and prequential accuracy of streamml's learner, River's LogisticRegression and ARFClassifier."""
    from river import forest, linear_model, preprocessing

    x, y = workload.arrays()
    x, y = x[:rows], y[:rows]
    river_rows = _river_rows(x)
    figures: dict[str, dict[str, float]] = {}
    # A first pass on a few rows pays torch's one-time costs (kernel selection, the first LAPACK call).
    streamml_prequential(spec, x[:2000], y[:2000])
    accuracy, rate = streamml_prequential(spec, x, y)
    figures["streamml"] = {"accuracy": accuracy, "samples_per_s": rate}
    # River's linear models expect scaled inputs; the scaler is part of its documented pipeline.
    accuracy, rate = river_prequential(preprocessing.StandardScaler() | linear_model.LogisticRegression(), river_rows, y)
    figures["river_logistic_regression"] = {"accuracy": accuracy, "samples_per_s": rate}
    accuracy, rate = river_prequential(forest.ARFClassifier(seed=42), river_rows, y)
    figures["river_arf"] = {"accuracy": accuracy, "samples_per_s": rate}
    figures["streamml_handler"] = {"samples_per_s": handler_rate(spec, workload, folder)}
    return {name: {key: round(value, 4 if key == "accuracy" else 1) for key, value in entry.items()} for name, entry in figures.items()}


def served_accuracy(csv_path: Path, spec_path: Path, rows: int) -> dict[str, float]:
    """Return the served accuracy of the four handlers on the embedded bus: each prediction by the model serving then."""
    from streamml.demo.runner import run_demo

    summary = run_demo(csv_path=str(csv_path), spec_path=str(spec_path), limit=rows, progress=False)
    return {"accuracy": round(summary["prequential_accuracy"], 4), "model_versions": summary["model_versions"],
            "events_per_s": round(summary["events"] / summary["duration_s"], 1)}
