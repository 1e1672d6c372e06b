"""Fixtures of the training tests: factories of small pipeline specs and of the events training consumes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from streamml.common.events import new_event
from streamml.common.payloads import FEATURES_TYPE, LABEL_TYPE, FeatureVector, LabelData
from streamml.common.spec import PipelineSpec, parse_spec

EVENT_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _build_spec(kind: str = "logistic", classes: tuple[str, ...] | None = ("no", "yes"), **overrides: Any) -> PipelineSpec:
    """Build a spec with inputs a, b and c, a label of `classes` (numeric when None) and model `kind`."""
    document: dict[str, Any] = {
        "name": "toy",
        "input": {"fields": [{"name": name, "type": "float"} for name in ("a", "b", "c")]},
        "label": {"kind": "classes", "classes": list(classes)} if classes else {"kind": "numeric"},
        "model": {"kind": kind, "hidden": [8]},
    }
    for key, value in overrides.items():
        document[key] = {**document.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(document)


def _feature_event(spec: PipelineSpec, record_id: str, values: list[float], feature_set: str | None = None) -> CloudEvent:
    """Build the `io.streamml.features.v1` event of input record `record_id`."""
    vector = FeatureVector(
        event_id=record_id,
        entity="default",
        event_time=EVENT_TIME,
        feature_set=feature_set or spec.fingerprint(),
        values=values,
    )
    return new_event(type=FEATURES_TYPE, source="test.features", subject="default", data=vector, id=f"features-{record_id}")


def _label_event(record_id: str, label: str | float) -> CloudEvent:
    """Build the `io.streamml.label.v1` event that labels input record `record_id`."""
    data = LabelData(event_id=record_id, label=label)
    return new_event(type=LABEL_TYPE, source="test.labels", subject="default", data=data, id=f"label-{record_id}")


@pytest.fixture(scope="session")
def make_spec() -> Callable[..., PipelineSpec]:
    return _build_spec


@pytest.fixture(scope="session")
def feature_event() -> Callable[..., CloudEvent]:
    return _feature_event


@pytest.fixture(scope="session")
def label_event() -> Callable[..., CloudEvent]:
    return _label_event
