"""Served accuracy: the score of the model version that inference serves, on labels that arrive later.

Only training receives labels. At each publish it keeps a copy of the learner as
published, and predicts every labelled sample that joins afterwards with that
copy before the learner learns from it. The rolling mean over the last `window`
samples is exported as `streamml_served_accuracy_ratio` (classification) or
`streamml_served_mean_absolute_error` (regression), labelled by model.

NOTE: inference loads a new version between micro-batches, usually within a
second of the publish, so the copy stands for the served model only from then on.
"""

from __future__ import annotations

import copy
import math
from collections import deque

import numpy as np

from streamml.common.metrics import SERVED_ACCURACY, SERVED_MAE, SERVED_SAMPLES
from streamml.training.learner import OnlineLearner


def sample_scores(task: str, predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Score each prediction: 1.0 or 0.0 for a right or wrong class, else the absolute error."""
    if task == "classification":
        return (predictions.argmax(axis=1) == targets).astype(np.float64)
    return np.abs(predictions.astype(np.float64) - targets)


class ServedScore:
    """Rolling score of the last published model version on samples that joined after its publish."""

    def __init__(self, model_name: str, task: str, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.model_name = model_name
        self.task = task
        self.version: int | None = None
        self.scores: deque[float] = deque(maxlen=window)
        self._published: OnlineLearner | None = None
        self._samples = SERVED_SAMPLES.labels(model_name)
        gauge = SERVED_ACCURACY if task == "classification" else SERVED_MAE
        gauge.labels(model_name).set_function(self.value)

    def published(self, learner: OnlineLearner, version: int) -> None:
        """Score from now on with a copy of `learner`, which was just published as `version`."""
        self._published = copy.deepcopy(learner)
        self.version = version

    def update(self, x: np.ndarray, targets: np.ndarray) -> None:
        """Score samples that the learner has not learned yet. Before the first publish nothing is scored."""
        if self._published is None or not len(x):
            return
        scores = sample_scores(self.task, self._published.predict_many(x), targets)
        self.scores.extend(scores.tolist())
        self._samples.inc(len(scores))

    def value(self) -> float:
        """Return the mean score over the window (accuracy or mean absolute error), or NaN before any sample."""
        if not self.scores:
            return math.nan
        return sum(self.scores) / len(self.scores)
