"""Prequential (test-then-train) accuracy on the Elec2 stream, fed through TrainingHandler as events.

Elec2 has 45,312 half-hourly rows of the NSW electricity market. The label is UP or
DOWN, the direction of the NSW price against its moving average over the previous
24 hours. DOWN, the majority class, is 57.5% of the rows. The features are the raw inputs plus the previous two
labels, computed by the features pipeline as the features service computes them.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from streamml.common.records import Record
from streamml.common.spec import PipelineSpec, parse_spec
from streamml.features.pipeline import FeatureExtractor
from streamml.training.handler import TrainingHandler

ELEC2 = Path("/work/shared/reference/data/elec2.csv")
ROWS = 45_312
MAJORITY_ACCURACY = 0.575
CHUNK_EVENTS = 512
INPUTS = ("nswprice", "nswdemand", "vicprice", "vicdemand", "transfer", "period")

pytestmark = pytest.mark.skipif(not ELEC2.exists(), reason=f"the Elec2 data file {ELEC2} is not present")


def elec2_spec(model: dict) -> PipelineSpec:
    return parse_spec(
        {
            "name": "elec2",
            "input": {"fields": [{"name": name, "type": "float"} for name in INPUTS] + [{"name": "day", "type": "int"}]},
            "label": {"kind": "classes", "classes": ["DOWN", "UP"]},
            "label_lags": [1, 2],
            "model": model,
            "training": {"every_events": 10_000},
        }
    )


@pytest.fixture(scope="module")
def elec2_events(feature_event, label_event) -> list:
    """Return each row's feature event followed by its label event, in stream order."""
    spec = elec2_spec({"kind": "logistic"})
    extractor = FeatureExtractor(spec)
    start = datetime(1996, 5, 7, tzinfo=timezone.utc)
    state = None
    events = []
    with ELEC2.open(newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            values = {name: float(row[name]) for name in INPUTS} | {"day": int(row["day"])}
            record = Record(f"elec2-{index}", "NSW", start + timedelta(minutes=30 * index), values, None)
            vector, state = extractor.transform(record, state)
            state = extractor.add_label(state, row["class"])
            events.append(feature_event(spec, record.event_id, vector))
            events.append(label_event(record.event_id, row["class"]))
    assert len(events) == 2 * ROWS
    return events


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ({"kind": "logistic"}, 0.85),
        ({"kind": "mlp", "hidden": [32]}, 0.85),
        ({"kind": "logistic", "optimizer": "newton", "learning_rate": 1.0, "l2": 0.1, "memory": 2000}, 0.86),
    ],
    ids=["logistic", "mlp", "logistic-newton"],
)
def test_elec2_prequential_accuracy(elec2_events, model, minimum):
    # Newton steps are taken on blocks of 64 joined samples, the others on every sample.
    handler = TrainingHandler(elec2_spec(model), batch_size=64 if model.get("optimizer") == "newton" else 1)

    published = []
    for start in range(0, len(elec2_events), CHUNK_EVENTS):
        for entry in handler.handle_batch(elec2_events[start : start + CHUNK_EVENTS]):
            assert isinstance(entry, list), entry
            published.extend(entry)

    metrics = handler.metrics.snapshot()
    print(f"Elec2 {model['kind']}: prequential accuracy {metrics.prequential_accuracy:.4f}, last 1,000 {metrics.recent_accuracy:.4f}")
    assert metrics.samples == ROWS
    assert handler.pending == (0, 0)
    assert len(published) == ROWS // 10_000
    assert metrics.prequential_accuracy > MAJORITY_ACCURACY
    assert metrics.prequential_accuracy >= minimum
