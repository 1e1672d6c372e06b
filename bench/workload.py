"""The benchmark workload: Elec2 rows as the events each service consumes.

The events are made once, in process, by the same handlers the services run, so every
service is measured on records of the size and shape it receives in the pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cloudevents.core.v1.event import CloudEvent

from streamml.common.payloads import FEATURES_TYPE, LABEL_TYPE
from streamml.common.spec import PipelineSpec
from streamml.demo.replay import replay_csv
from streamml.features.handler import FeaturesHandler
from streamml.ingestion.handler import IngestionHandler


@dataclass
class Workload:
    """Events in stream order, one list per topic role, and the true label of each row."""

    spec: PipelineSpec
    inputs: list[CloudEvent]
    raw: list[CloudEvent]
    vectors: list[CloudEvent]
    labels: list[CloudEvent]
    truth: dict[str, str | float]
    seconds: float

    def __len__(self) -> int:
        return len(self.inputs)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Feature matrix and class indices (or values) of the rows, in order."""
        x = np.asarray([vector.get_data()["values"] for vector in self.vectors], dtype=np.float32)
        classes = self.spec.label.classes
        targets = [self.truth[vector.get_data()["event_id"]] for vector in self.vectors]
        if classes:
            return x, np.asarray([classes.index(target) for target in targets], dtype=np.int64)
        return x, np.asarray(targets, dtype=np.float32)


def build(spec: PipelineSpec, csv_path: Path, limit: int | None = None) -> Workload:
    started = time.perf_counter()
    rows = list(replay_csv(csv_path, spec, limit=limit))
    ingestion = IngestionHandler(spec)
    features = FeaturesHandler(spec, {})
    inputs, raw, vectors, labels = [], [], [], []
    for row in rows:
        inputs.append(row.event)
        for normalised in ingestion.handle(row.event):
            raw.append(normalised.event)
            for output in features.handle(normalised.event):
                kind = output.event.get_type()
                if kind == FEATURES_TYPE:
                    vectors.append(output.event)
                elif kind == LABEL_TYPE:
                    labels.append(output.event)
    truth = {row.event.get_id(): row.label for row in rows if row.label is not None}
    return Workload(spec, inputs, raw, vectors, labels, truth, time.perf_counter() - started)
