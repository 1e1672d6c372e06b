from pathlib import Path

import pytest
import yaml

from streamml.common.errors import SpecError
from streamml.common.spec import load_spec, parse_duration, parse_spec

REPOSITORY = Path(__file__).resolve().parents[3]


def minimal(**changes):
    document = {
        "name": "toy",
        "input": {"fields": [{"name": "x", "type": "float"}, {"name": "y", "type": "category", "categories": ["a", "b"], "feature": False}]},
        "label": {"field": "y", "kind": "classes", "classes": ["a", "b"]},
        "model": {"kind": "logistic"},
    }
    document.update(changes)
    return document


def test_example_specs_load():
    for path in [REPOSITORY / "examples" / "elec2.yaml", REPOSITORY / "services" / "streamml" / "demo" / "phishing.yaml"]:
        spec = load_spec(path)
        assert spec.topic("input") == f"streamml.{spec.name}.input"
        assert len(spec.fingerprint()) == 16


def test_unknown_key_is_named():
    with pytest.raises(SpecError) as error:
        parse_spec(minimal(modle={"kind": "logistic"}))
    assert "modle: unknown key" in str(error.value)


def test_bad_nested_value_names_path():
    document = minimal(features=[{"field": "x", "agg": "mean", "window": {"kind": "sliding", "size": -3}}])
    with pytest.raises(SpecError) as error:
        parse_spec(document)
    assert "features.0.window.size" in str(error.value)
    assert "-3" in str(error.value)


def test_window_needs_one_extent():
    document = minimal(features=[{"field": "x", "agg": "mean", "window": {"kind": "sliding", "size": 3, "duration": "1h"}}])
    with pytest.raises(SpecError, match="exactly one of 'size'"):
        parse_spec(document)


def test_label_must_not_be_feature():
    document = minimal()
    document["input"]["fields"][1]["feature"] = True
    with pytest.raises(SpecError, match="feature: false"):
        parse_spec(document)


def test_model_kind_matches_label():
    with pytest.raises(SpecError, match="linear needs a numeric label"):
        parse_spec(minimal(model={"kind": "linear"}))


def test_feature_of_unknown_field():
    document = minimal(features=[{"field": "z", "agg": "sum", "window": {"kind": "tumbling", "size": 2}}])
    with pytest.raises(SpecError, match="'z', which is not an input field"):
        parse_spec(document)


def test_missing_file_says_how(tmp_path):
    with pytest.raises(SpecError, match="pass an existing file to --spec"):
        load_spec(tmp_path / "absent.yaml")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("15m", 900), ("24h", 86400), ("1d", 86400), (2.5, 2.5)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_parse_duration_rejects_words():
    with pytest.raises(ValueError, match="for example 500ms"):
        parse_duration("a while")


def test_fingerprint_changes_with_features():
    base = parse_spec(minimal())
    more = parse_spec(minimal(label_lags=[1]))
    assert base.fingerprint() != more.fingerprint()
    assert base.fingerprint() == parse_spec(yaml.safe_load(yaml.safe_dump(minimal()))).fingerprint()
