"""SIGKILL of a service mid-stream: after a restart, every input still gets exactly one prediction."""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections import Counter

import pytest

from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import PipelineProcesses, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from tests.e2e.test_elec2 import unique_spec

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

RATE = 1500


# STREAMML_FAULT_RUNS and STREAMML_FAULT_EVENTS scale this test up; CI runs one kill per service.
RUNS = int(os.environ.get("STREAMML_FAULT_RUNS", "1"))
ROWS = int(os.environ.get("STREAMML_FAULT_EVENTS", "6000"))


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("victim", ["ingestion", "features", "training", "inference"])
def test_sigkill_loses_and_repeats_nothing(victim, run, bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, f"kill-{victim}")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    rows = list(replay_csv(elec2_csv, spec, limit=ROWS))
    expected = {row.event.get_id() for row in rows}
    per_id: Counter[str] = Counter()
    predictions = TopicReader(settings, spec.topic("predictions"))

    def drain(until: float) -> None:
        while time.monotonic() < until:
            for event in predictions.poll(timeout_s=0.3, max_records=5000):
                per_id[event.get_data()["event_id"]] += 1

    with PipelineProcesses(spec_path, settings, tmp_path / "logs") as pipeline:
        producer = threading.Thread(target=produce_replay, args=(settings, spec.topic("input"), (r.event for r in rows), RATE))
        producer.start()
        # Kill at a random point once predictions are flowing, while inputs are still arriving.
        kill_at = int(ROWS * random.Random(f"{victim}-{run}").uniform(0.1, 0.5))
        print(f"killing {victim} after {kill_at} predictions")
        deadline = time.monotonic() + 120
        while len(per_id) < kill_at and time.monotonic() < deadline:
            drain(time.monotonic() + 0.2)
        assert len(per_id) >= kill_at, pipeline.services[victim].log_tail()
        service = pipeline.services[victim]
        service.stop(sig=signal.SIGKILL)
        drain(time.monotonic() + 2)
        restarted_at = service.log_path.stat().st_size
        service.start()
        producer.join()

        deadline = time.monotonic() + 240
        while not expected <= per_id.keys() and time.monotonic() < deadline:
            drain(time.monotonic() + 1)
            pipeline.check_alive()
        if victim == "training":
            # Nothing downstream waits for training, so the stop waits for its new consumer's assignment.
            wait_for_assignment(service, since=restarted_at, timeout_s=120)
        drain(time.monotonic() + 5)
        learned = newest_learned_samples(pipeline.services["training"], final_samples(spec, ROWS))
    predictions.close()

    missing = expected - per_id.keys()
    assert not missing, f"{len(missing)} inputs have no prediction, for example {sorted(missing)[:5]}"
    repeated = {event_id: count for event_id, count in per_id.items() if count > 1}
    assert not repeated, f"{len(repeated)} inputs were predicted more than once, for example {list(repeated.items())[:5]}"
    # Training learned every sample once: its last version counts every full cadence of samples,
    # and at the stop the learner and its part block account for every sample.
    assert learned == final_samples(spec, ROWS), f"the newest model learned {learned} samples"
    stopped = re.findall(r"the learner has learned (\d+) samples; (\d+) wait for a full block", pipeline.services["training"].log_path.read_text())
    assert stopped, pipeline.services["training"].log_tail()
    assert sum(map(int, stopped[-1])) == ROWS, f"at the stop the learner had {stopped[-1][0]} samples and {stopped[-1][1]} waiting"


def final_samples(spec, rows: int) -> int:
    """Samples in the last version published for `rows` joined samples: whole blocks, whole cadences."""
    block = spec.training.batch_size
    per_version = -(-spec.training.every_events // block) * block
    return rows // block * block // per_version * per_version


def wait_for_assignment(service, since: int, timeout_s: float) -> None:
    """Wait until a Kafka pull service logs its partition assignment after byte `since` of its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with service.log_path.open("rb") as log:
            log.seek(since)
            if f"{service.service} assigned [".encode() in log.read():
                return
        time.sleep(0.5)
    raise AssertionError(f"{service.service} was not assigned its partitions within {timeout_s:.0f} s:\n{service.log_tail()}")


def newest_learned_samples(training, expected: int, timeout_s: float = 60.0) -> int:
    """Return the most samples a published version had learned, from the training log, waiting up to `timeout_s` for `expected`.

    The model events carry the prequential metrics, which restart with the process. The log
    line of each published version gives the learner's own count, which a checkpoint restores.
    """
    learned = 0
    deadline = time.monotonic() + timeout_s
    while True:
        found = re.findall(r"published model \S+ version \d+: .*?, (\d+) samples learned", training.log_path.read_text())
        learned = max([learned, *map(int, found)])
        if learned >= expected or time.monotonic() > deadline:
            return learned
        time.sleep(0.5)


def test_redelivered_vectors_predicted_once(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    from streamml.demo.cluster import ServiceProcess
    from streamml.features.handler import FeaturesHandler
    from streamml.training.handler import TrainingHandler

    spec_path = unique_spec(elec2_spec_path, tmp_path, "redeliver")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    features = FeaturesHandler(spec, {})
    vectors = [features.handle(row.event)[0].event for row in replay_csv(elec2_csv, spec, limit=500)]
    produce_replay(settings, spec.topic("models"), [TrainingHandler(spec).initial_model().event])
    inference = ServiceProcess("inference", spec_path, settings, tmp_path)
    predictions = TopicReader(settings, spec.topic("predictions"))
    per_id: Counter[str] = Counter()

    def drain(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for event in predictions.poll(timeout_s=0.3):
                per_id[event.get_data()["event_id"]] += 1

    inference.start()
    produce_replay(settings, spec.topic("features"), vectors)
    produce_replay(settings, spec.topic("features"), vectors[:250])  # redelivered while running
    drain(15)
    assert inference.stop() == 0, inference.log_tail()
    inference.start()
    produce_replay(settings, spec.topic("features"), vectors[250:])  # redelivered after a restart
    drain(15)
    assert inference.stop() == 0, inference.log_tail()
    predictions.close()

    assert len(per_id) == 500
    assert set(per_id.values()) == {1}
    assert "redelivered vectors skipped" in inference.log_path.read_text()
