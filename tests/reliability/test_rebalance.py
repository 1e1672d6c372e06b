"""Two instances of a service in one consumer group, the second joining mid-stream: nothing lost.

Inference also repeats nothing: it skips vectors whose prediction it already emitted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from streamml.common.events import new_event
from streamml.common.payloads import FEATURES_TYPE, FeatureVector
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from streamml.features.pipeline import FeatureExtractor
from streamml.training.handler import TrainingHandler
from tests.e2e.test_elec2 import unique_spec

pytestmark = pytest.mark.kafka

VECTORS = 6000
ENTITIES = 16


def join_mid_stream(first: ServiceProcess, second: ServiceProcess, reader: TopicReader, key, feed: threading.Thread, total: int) -> Counter:
    """Run `first`, start `second` once a quarter of `total` ids arrived, and count each id read until all did.

    Both instances are stopped with SIGTERM and must exit 0.
    """
    per_id: Counter[str] = Counter()

    def drain(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for event in reader.poll(timeout_s=0.3, max_records=5000):
                per_id[key(event)] += 1

    first.start()
    feed.start()
    deadline = time.monotonic() + 90
    while len(per_id) < total // 4 and time.monotonic() < deadline:
        drain(0.5)
    assert len(per_id) >= total // 4, first.log_tail()
    second.start()
    feed.join()
    deadline = time.monotonic() + 120
    while len(per_id) < total and time.monotonic() < deadline:
        drain(1)
        assert first.alive(), first.log_tail()
        assert second.alive(), second.log_tail()
    drain(3)
    reader.close()
    assert first.stop() == 0, first.log_tail()
    assert second.stop() == 0, second.log_tail()
    return per_id


def test_second_instance_joins_mid_stream(bootstrap_servers, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "rebalance")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec, partitions=4)
    extractor = FeatureExtractor(spec)
    vectors = [
        new_event(
            type=FEATURES_TYPE,
            source="tests",
            subject=f"entity-{index % ENTITIES}",
            data=FeatureVector(
                event_id=f"v-{index}",
                entity=f"entity-{index % ENTITIES}",
                event_time="2024-01-01T00:00:00Z",
                feature_set=extractor.feature_set,
                values=[0.1] * extractor.width,
            ),
        )
        for index in range(VECTORS)
    ]
    produce_replay(settings, spec.topic("models"), [TrainingHandler(spec).initial_model().event])
    first = ServiceProcess("inference", spec_path, settings, tmp_path / "first")
    second = ServiceProcess("inference", spec_path, settings, tmp_path / "second")
    predictions = TopicReader(settings, spec.topic("predictions"))
    feed = threading.Thread(target=produce_replay, args=(settings, spec.topic("features"), vectors, 400))
    per_id = join_mid_stream(first, second, predictions, lambda event: event.get_data()["event_id"], feed, VECTORS)

    assert len(per_id) == VECTORS
    repeated = {event_id: count for event_id, count in per_id.items() if count > 1}
    assert not repeated, f"{len(repeated)} vectors were predicted more than once, for example {list(repeated.items())[:5]}"
    assert "assigned" in second.log_path.read_text(), "the second instance never got a partition"


def test_second_ingestion_instance_loses_nothing(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "rebalance-ingestion")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec, partitions=4)
    # The same records under 16 subjects, so the input topic's four partitions all carry records.
    inputs = []
    for index, row in enumerate(replay_csv(elec2_csv, spec, limit=VECTORS)):
        attributes = row.event.get_attributes()
        inputs.append(new_event(
            id=row.event.get_id(), type=attributes["type"], source=attributes["source"],
            subject=f"entity-{index % ENTITIES}", time=attributes["time"], data=row.event.get_data(),
        ))
    first = ServiceProcess("ingestion", spec_path, settings, tmp_path / "first")
    second = ServiceProcess("ingestion", spec_path, settings, tmp_path / "second")
    raw = TopicReader(settings, spec.topic("raw"))
    feed = threading.Thread(target=produce_replay, args=(settings, spec.topic("input"), inputs, 400))
    per_id = join_mid_stream(first, second, raw, lambda event: event.get_id(), feed, VECTORS)

    assert set(per_id) == {event.get_id() for event in inputs}
    # At-least-once: a batch in flight when its partition moves may reach the raw topic twice;
    # the inference service drops the repeated prediction.
    repeated = sum(count - 1 for count in per_id.values())
    print(f"ingestion rebalance: {len(per_id)} inputs on the raw topic, {repeated} repeated records")
    assert "assigned" in second.log_path.read_text(), "the second instance never got a partition"
