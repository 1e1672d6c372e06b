"""The benchmark's measurements on a few hundred rows, against the real broker."""

from __future__ import annotations

import pytest
import yaml

from bench import checkpoints, stages
from bench.__main__ import MODEL_NAME, trained_model
from bench.harness import REPOSITORY
from bench.workload import build
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@pytest.fixture(scope="module")
def setup(bootstrap_servers, elec2_csv, tmp_path_factory) -> stages.Setup:
    folder = tmp_path_factory.mktemp("bench")
    base = stages.base_spec(REPOSITORY / "examples" / "elec2.yaml", MODEL_NAME)
    spec_path = folder / "bench.yaml"
    spec_path.write_text(yaml.safe_dump(base | {"name": "bench"}))
    workload = build(load_spec(spec_path), elec2_csv, limit=3000)
    model = trained_model(spec_path, workload, folder)
    return stages.Setup(KafkaSettings(bootstrap_servers=bootstrap_servers), workload, model, folder, base,
                        drain_rows=1100, paced_rows=600, rate=600.0)


def check_figures(figures: dict, paced_rows: int) -> None:
    assert figures["events_per_s"] > 0
    assert figures["samples"] == paced_rows
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"]
    assert all(rss > 10 for rss in figures["peak_rss_mb"].values())


def test_relay_copies_every_record(setup):
    figures = stages.measure_relay(setup, ("features", "labels"))
    check_figures(figures, 2 * setup.paced_rows)
    times = figures["time_us_per_record"]
    assert times["cpu"] > 0
    assert times["flush"] > 0
    assert times["commit"] > 0


def test_warm_up_rows_precede_backlog(setup):
    figures = stages.measure_relay(setup, ("input",), warm_up_rows=100)
    check_figures(figures, setup.paced_rows)


def test_relay_chain_spans_three_hops(setup):
    figures = stages.measure_relay(setup, ("input",), hops=3)
    assert figures["hops"] == 3
    check_figures(figures, setup.paced_rows)


def test_inference_service_predicts_every_vector(setup):
    check_figures(stages.measure_service(setup, "inference"), setup.paced_rows)


def test_training_latency_is_label_to_model(setup):
    figures = stages.measure_training(setup, *setup.new_spec("training"))
    assert figures["events_per_s"] > 0
    assert figures["samples"] >= 1
    assert figures["latency_is"] == "from a label to the model version that learned it"


def test_checkpoint_writes_are_timed(setup):
    timed = checkpoints.measure(setup.settings, setup.workload)
    assert timed["journal_record_ms"] > 0
    assert timed["checkpoint_alone_ms"] > 0
    assert timed["checkpoint_waiting_ms"] > 0
    assert timed["waiting"] == checkpoints.WAITING
