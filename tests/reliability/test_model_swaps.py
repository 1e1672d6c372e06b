"""One hundred model swaps while inference serves a stream: no prediction fails or goes missing."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from streamml.common.events import new_event
from streamml.common.payloads import MODEL_TYPE, ModelArtifact
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from streamml.features.handler import FeaturesHandler
from streamml.training.handler import TrainingHandler
from tests.e2e.test_elec2 import unique_spec

pytestmark = pytest.mark.kafka

VECTORS = 5000
SWAPS = 100


def test_hundred_swaps_during_replay(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "swaps")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    features = FeaturesHandler(spec, {})
    vectors = [features.handle(row.event)[0].event for row in replay_csv(elec2_csv, spec, limit=VECTORS)]
    base = ModelArtifact.model_validate(TrainingHandler(spec).initial_model().event.get_data())
    models = [
        new_event(type=MODEL_TYPE, source="tests", subject=spec.model_name, data=base.model_copy(update={"version": version}))
        for version in range(SWAPS + 1)
    ]
    produce_replay(settings, spec.topic("models"), models[:1])
    inference = ServiceProcess("inference", spec_path, settings, tmp_path)
    inference.start()
    predictions = TopicReader(settings, spec.topic("predictions"))
    dead_letters = TopicReader(settings, spec.topic("dead_letter"))
    per_id: Counter[str] = Counter()
    versions: set[int] = set()

    vector_feed = threading.Thread(target=produce_replay, args=(settings, spec.topic("features"), vectors, 500))
    model_feed = threading.Thread(target=produce_replay, args=(settings, spec.topic("models"), models[1:], 12))
    vector_feed.start()
    model_feed.start()
    deadline = time.monotonic() + 180
    while len(per_id) < VECTORS and time.monotonic() < deadline:
        for event in predictions.poll(timeout_s=0.3, max_records=5000):
            per_id[event.get_data()["event_id"]] += 1
            versions.add(event.get_data()["model_version"])
        assert inference.alive(), inference.log_tail()
    vector_feed.join()
    model_feed.join()
    time.sleep(2)
    assert inference.stop() == 0, inference.log_tail()
    rejected = [event for event in dead_letters.poll(timeout_s=2)]
    predictions.close()
    dead_letters.close()

    log = inference.log_path.read_text()
    assert len(per_id) == VECTORS
    assert set(per_id.values()) == {1}
    assert rejected == []
    assert "rejected model" not in log
    assert f"serving model {spec.model_name} v{SWAPS}" in log
    assert len(versions) >= 20, f"predictions came from only {len(versions)} versions"
