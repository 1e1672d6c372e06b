"""Feature computation from the pipeline spec: raw inputs, per-entity windows and label lags.

The state of one entity is a plain JSON-compatible dict, so it can live in a faust
table with a Kafka changelog, in a dict, or anywhere else that stores JSON.

Window semantics, per entity and in arrival order:
- a sliding window of `size` N covers the entity's last N records, this one included;
- a sliding window of `duration` D covers the records whose event time is in (t - D, t];
- a tumbling window covers the records of the current window so far, this one included;
  count windows restart every N records, duration windows at multiples of D since the epoch.
Lag k of the label is the k-th most recent label known for the entity before this
record, so a record's own label never reaches its own features.
"""

from __future__ import annotations

import math
from typing import Any

from streamml.common.records import Record
from streamml.common.spec import PipelineSpec, WindowSpec

EntityState = dict[str, Any]


def _window_key(field: str, window: WindowSpec) -> str:
    return f"{field}|{window.label}"


def _aggregate(agg: str, values: list[float]) -> float:
    if agg == "count":
        return float(len(values))
    if not values:
        return 0.0
    match agg:
        case "sum":
            return math.fsum(values)
        case "mean":
            return math.fsum(values) / len(values)
        case "min":
            return min(values)
        case "max":
            return max(values)
        case "last":
            return values[-1]
    raise AssertionError(agg)


class FeatureExtractor:
    """Turns records into feature vectors, keeping per-entity window state."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.feature_set = spec.fingerprint()
        self._inputs = [f for f in spec.input.fields if f.is_feature and f.name != spec.label.field]
        self._windows: dict[str, WindowSpec] = {}
        for feature in spec.features:
            self._windows.setdefault(_window_key(feature.field, feature.window), feature.window)
        self._max_lag = max(spec.label_lags, default=0)
        self.feature_names = self._names()
        # What `transform` reads for each input, window and feature, worked out once.
        self._label_classes = (spec.label.classes or ()) if spec.label.kind == "classes" else None
        self._input_plan = [(field.name, field.categories if field.type == "category" else None) for field in self._inputs]
        self._window_plan = [(key, key.split("|", 1)[0], window) for key, window in self._windows.items()]
        self._feature_plan = [(feature.agg, _window_key(feature.field, feature.window)) for feature in spec.features]

    def _names(self) -> list[str]:
        names: list[str] = []
        for field in self._inputs:
            if field.type == "category":
                names.extend(f"{field.name}={category}" for category in field.categories or ())
            else:
                names.append(field.name)
        names.extend(feature.output_name for feature in self.spec.features)
        for lag in self.spec.label_lags:
            if self.spec.label.kind == "classes":
                names.extend(f"label_lag{lag}={label}" for label in self.spec.label.classes or ())
            else:
                names.append(f"label_lag{lag}")
        return names

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def transform(self, record: Record, state: EntityState | None) -> tuple[list[float], EntityState]:
        """Return the feature vector of `record` and the entity state that includes it."""
        state = _copy_state(state)
        vector = self._input_values(record.values)
        timestamp = record.time.timestamp()
        seen = state["seen"]
        windows = state["windows"]
        window_values: dict[str, list[float]] = {}
        for key, field, window in self._window_plan:
            buffer, values = _advance(window, windows.get(key), _number(record.values.get(field)), timestamp, seen)
            windows[key] = buffer
            window_values[key] = values
        vector.extend([_aggregate(agg, window_values[key]) for agg, key in self._feature_plan])
        vector.extend(self._lag_values(state["labels"]))
        state["seen"] = seen + 1
        return vector, state

    def add_label(self, state: EntityState | None, label: str | float) -> EntityState:
        """Return the entity state with `label` appended to its label history."""
        state = _copy_state(state)
        if self._max_lag:
            state["labels"] = (state["labels"] + [label])[-self._max_lag :]
        return state

    def _input_values(self, values: dict[str, Any]) -> list[float]:
        vector: list[float] = []
        for name, categories in self._input_plan:
            value = values.get(name)
            if categories is None:
                vector.append(_number(value))
            else:
                vector += [1.0 if value == category else 0.0 for category in categories]
        return vector

    def _lag_values(self, history: list[Any]) -> list[float]:
        vector: list[float] = []
        classes = self._label_classes
        for lag in self.spec.label_lags:
            known = history[-lag] if lag <= len(history) else None
            if classes is None:
                vector.append(float(known) if known is not None else 0.0)
            else:
                vector += [1.0 if known == name else 0.0 for name in classes]
        return vector


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    return float(value)


def _copy_state(state: EntityState | None) -> EntityState:
    """Return a state whose window map and label list can be changed without changing `state`.

    The window buffers themselves are shared: `_advance` replaces a buffer and never changes one.
    """
    if not state:
        return {"seen": 0, "windows": {}, "labels": []}
    return {
        "seen": int(state.get("seen", 0)),
        "windows": dict(state.get("windows", {})),
        "labels": list(state.get("labels", [])),
    }


def _advance(
    window: WindowSpec, buffer: dict[str, Any] | None, value: float, timestamp: float, seen: int
) -> tuple[dict[str, Any], list[float]]:
    """Return a new buffer with one value added, and the values the window covers; `buffer` is left as it is."""
    buffer = buffer or {}
    if window.kind == "sliding":
        if window.size is not None:
            # A count window needs no times: its values are the last `size`, oldest first.
            previous = buffer.get("v", [])[-window.size + 1 :] if window.size > 1 else []
            values = [*previous, value]
            return {"v": values}, values
        times = [*buffer.get("t", []), timestamp]
        values = [*buffer.get("v", []), value]
        horizon = timestamp - window.duration.total_seconds()
        in_window = [(t, v) for t, v in zip(times, values) if t > horizon]
        times = [t for t, _ in in_window]
        values = [v for _, v in in_window]
        covered = [v for t, v in in_window if t <= timestamp]
        return {"t": times, "v": values}, covered
    if window.size is not None:
        index = seen // window.size
    else:
        index = math.floor(timestamp / window.duration.total_seconds())
    values = list(buffer.get("v", [])) if buffer.get("w") == index else []
    values.append(value)
    return {"w": index, "v": values}, values
