import json

from streamml.demo.runner import run_demo


def test_demo_on_bundled_dataset(tmp_path):
    path = tmp_path / "summary.json"
    summary = run_demo(summary_json=str(path), progress=False)
    assert json.loads(path.read_text()) == summary
    assert set(summary) == {"events", "predictions", "prequential_accuracy", "model_versions", "duration_s"}
    assert summary["events"] == 1250
    assert summary["predictions"] == 1250
    assert summary["model_versions"] >= 10
    assert summary["prequential_accuracy"] > 0.8


def test_demo_on_elec2_prefix(elec2_csv, elec2_spec_path):
    summary = run_demo(csv_path=str(elec2_csv), spec_path=str(elec2_spec_path), limit=6000, progress=False)
    assert summary["predictions"] == 6000
    # Version 0, then one per 512 samples; the version after the last sample serves no prediction.
    assert summary["model_versions"] == 12
    assert summary["prequential_accuracy"] > 0.7
