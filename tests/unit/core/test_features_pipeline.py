from datetime import datetime, timedelta, timezone

import pytest

from streamml.common.records import Record
from streamml.common.spec import parse_spec
from streamml.features.pipeline import FeatureExtractor

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def spec_with(features, label_lags=(), label_kind="classes"):
    label = {"field": "y", "kind": "classes", "classes": ["no", "yes"]}
    fields = [{"name": "x", "type": "float"}, {"name": "y", "type": "category", "categories": ["no", "yes"], "feature": False}]
    model = {"kind": "logistic"}
    if label_kind == "numeric":
        label = {"field": "y", "kind": "numeric"}
        fields[1] = {"name": "y", "type": "float", "feature": False}
        model = {"kind": "linear"}
    return parse_spec(
        {
            "name": "toy",
            "input": {"fields": fields, "entity_key": None},
            "label": label,
            "features": features,
            "label_lags": list(label_lags),
            "model": model,
        }
    )


def run(extractor, values, minutes=None, labels=None):
    state, vectors = None, []
    for index, value in enumerate(values):
        offset = timedelta(minutes=minutes[index] if minutes else index)
        record = Record(f"e{index}", "a", T0 + offset, {"x": value}, None)
        vector, state = extractor.transform(record, state)
        vectors.append(vector)
        if labels:
            state = extractor.add_label(state, labels[index])
    return vectors, state


def test_sliding_count_window_aggregates():
    features = [
        {"field": "x", "agg": agg, "window": {"kind": "sliding", "size": 3}} for agg in ("count", "sum", "mean", "min", "max", "last")
    ]
    extractor = FeatureExtractor(spec_with(features))
    vectors, _ = run(extractor, [1.0, 5.0, 3.0, 2.0])
    assert extractor.feature_names[1:] == [
        "x_count_sliding3", "x_sum_sliding3", "x_mean_sliding3", "x_min_sliding3", "x_max_sliding3", "x_last_sliding3",
    ]
    assert vectors[0] == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert vectors[2] == [3.0, 3.0, 9.0, 3.0, 1.0, 5.0, 3.0]
    assert vectors[3] == [2.0, 3.0, 10.0, pytest.approx(10 / 3), 2.0, 5.0, 2.0]


def test_count_window_reads_older_state():
    extractor = FeatureExtractor(spec_with([{"field": "x", "agg": "mean", "window": {"kind": "sliding", "size": 3}}]))
    _, state = run(extractor, [1.0, 5.0, 3.0])
    assert state["windows"]["x|sliding3"] == {"v": [1.0, 5.0, 3.0]}
    # A state written before count windows dropped their times has a "t" list beside the values.
    older = {**state, "windows": {"x|sliding3": {"t": [0.0, 60.0, 120.0], "v": [1.0, 5.0, 3.0]}}}
    record = Record("e3", "a", T0 + timedelta(minutes=3), {"x": 2.0}, None)
    vector, newer = extractor.transform(record, older)
    assert vector == [2.0, pytest.approx(10 / 3)]
    assert newer["windows"]["x|sliding3"] == {"v": [5.0, 3.0, 2.0]}


def test_tumbling_count_window_restarts():
    extractor = FeatureExtractor(spec_with([{"field": "x", "agg": "sum", "window": {"kind": "tumbling", "size": 2}}]))
    vectors, _ = run(extractor, [1.0, 2.0, 4.0, 8.0, 16.0])
    assert [v[1] for v in vectors] == [1.0, 3.0, 4.0, 12.0, 16.0]


def test_sliding_duration_window_uses_event_time():
    extractor = FeatureExtractor(spec_with([{"field": "x", "agg": "sum", "window": {"kind": "sliding", "duration": "10m"}}]))
    vectors, _ = run(extractor, [1.0, 2.0, 4.0], minutes=[0, 5, 12])
    assert [v[1] for v in vectors] == [1.0, 3.0, 6.0]


def test_tumbling_duration_window_aligns_to_epoch():
    extractor = FeatureExtractor(spec_with([{"field": "x", "agg": "count", "window": {"kind": "tumbling", "duration": "1h"}}]))
    vectors, _ = run(extractor, [1.0, 1.0, 1.0], minutes=[0, 59, 60])
    assert [v[1] for v in vectors] == [1.0, 2.0, 1.0]


def test_label_lags_exclude_own_label():
    extractor = FeatureExtractor(spec_with([], label_lags=[1, 2]))
    vectors, _ = run(extractor, [0.0, 0.0, 0.0], labels=["yes", "no", "yes"])
    assert extractor.feature_names == ["x", "label_lag1=no", "label_lag1=yes", "label_lag2=no", "label_lag2=yes"]
    assert vectors[0] == [0.0, 0, 0, 0, 0]
    assert vectors[1] == [0.0, 0, 1, 0, 0]
    assert vectors[2] == [0.0, 1, 0, 0, 1]


def test_numeric_label_lag():
    extractor = FeatureExtractor(spec_with([], label_lags=[1], label_kind="numeric"))
    vectors, _ = run(extractor, [0.0, 0.0], labels=[2.5, 1.0])
    assert [v[1] for v in vectors] == [0.0, 2.5]


def test_state_is_json_and_not_mutated():
    import json

    extractor = FeatureExtractor(spec_with([{"field": "x", "agg": "mean", "window": {"kind": "sliding", "size": 2}}], label_lags=[1]))
    _, state = run(extractor, [1.0, 2.0], labels=["no", "yes"])
    frozen = json.dumps(state, sort_keys=True)
    restored = json.loads(frozen)
    vector, _ = extractor.transform(Record("e9", "a", T0, {"x": 4.0}, None), restored)
    assert json.dumps(restored, sort_keys=True) == frozen
    assert vector == [4.0, 3.0, 0.0, 1.0]


def test_overflowing_window_is_invalid_event():
    from streamml.common.errors import InvalidEventError
    from streamml.common.events import new_event
    from streamml.common.payloads import RECORD_TYPE
    from streamml.features.handler import FeaturesHandler

    spec = spec_with([{"field": "x", "agg": "sum", "window": {"kind": "sliding", "size": 3}}])
    store = {}
    handler = FeaturesHandler(spec, store)
    handler.handle(new_event(type=RECORD_TYPE, source="tests", subject="a", data={"x": 1e308}))
    before = dict(store)
    with pytest.raises(InvalidEventError, match="not finite|overflowed"):
        handler.handle(new_event(type=RECORD_TYPE, source="tests", subject="a", data={"x": 1e308}))
    assert store == before


def test_features_rejects_long_labelled_ids():
    from streamml.common.errors import InvalidEventError
    from streamml.common.events import new_event
    from streamml.common.payloads import LABEL_EVENT_ID_MAX, RECORD_TYPE, LabelData
    from streamml.features.handler import FeaturesHandler

    spec = spec_with([{"field": "x", "agg": "sum", "window": {"kind": "sliding", "size": 3}}])
    store = {}
    handler = FeaturesHandler(spec, store)
    longest = "i" * LABEL_EVENT_ID_MAX
    vector, label = handler.handle(new_event(id=longest, type=RECORD_TYPE, source="tests", subject="a", data={"x": 1.0, "y": "yes"}))
    assert LabelData.model_validate(label.event.get_data()).event_id == longest
    before = dict(store)
    with pytest.raises(InvalidEventError, match=f"id has {LABEL_EVENT_ID_MAX + 1} characters"):
        handler.handle(new_event(id=longest + "i", type=RECORD_TYPE, source="tests", subject="a", data={"x": 1.0, "y": "yes"}))
    assert store == before
    # Without a label, no label event has to name the record.
    assert len(handler.handle(new_event(id=longest + "i", type=RECORD_TYPE, source="tests", subject="a", data={"x": 1.0}))) == 1
