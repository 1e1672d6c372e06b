"""The broker stops and restarts mid-stream: the services reconnect and no input is lost or repeated."""

from __future__ import annotations

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

ROWS = 4000


def test_broker_restart_mid_stream(restartable_kafka_broker, elec2_csv, elec2_spec_path, tmp_path):
    broker = restartable_kafka_broker
    spec_path = unique_spec(elec2_spec_path, tmp_path, "broker")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    create_topics(settings, spec)
    rows = list(replay_csv(elec2_csv, spec, limit=ROWS))
    expected = {row.event.get_id() for row in rows}
    per_id: Counter[str] = Counter()

    with PipelineProcesses(spec_path, settings, tmp_path / "logs") as pipeline:
        predictions = TopicReader(settings, spec.topic("predictions"))

        def drain(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                for event in predictions.poll(timeout_s=0.3, max_records=5000):
                    per_id[event.get_data()["event_id"]] += 1

        produce_replay(settings, spec.topic("input"), (row.event for row in rows[: ROWS // 2]), 1000)
        deadline = time.monotonic() + 120
        while len(per_id) < ROWS // 4 and time.monotonic() < deadline:
            drain(0.5)
        assert len(per_id) >= ROWS // 4, pipeline.services["inference"].log_tail()

        broker.stop()
        time.sleep(5)
        broker.restart()
        producer = threading.Thread(target=produce_replay, args=(settings, spec.topic("input"), (r.event for r in rows[ROWS // 2 :]), 1000))
        producer.start()

        deadline = time.monotonic() + 300
        while not expected <= per_id.keys() and time.monotonic() < deadline:
            drain(1)
            pipeline.check_alive()
        producer.join()
        drain(5)
        predictions.close()
        exit_codes = pipeline.stop()

    missing = expected - per_id.keys()
    assert not missing, f"{len(missing)} inputs have no prediction, for example {sorted(missing)[:5]}"
    repeated = {event_id: count for event_id, count in per_id.items() if count > 1}
    assert not repeated, f"{len(repeated)} inputs were predicted more than once, for example {list(repeated.items())[:5]}"
    assert exit_codes == {"ingestion": 0, "features": 0, "training": 0, "inference": 0}
