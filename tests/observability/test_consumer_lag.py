"""Consumer lag per partition from librdkafka's statistics, against the real broker."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from streamml.common.events import new_event
from streamml.common.handler import EventHandler
from streamml.common.kafka import Emitter, PullRunner, partition_lags
from streamml.common.settings import KafkaSettings
from streamml.demo.cluster import produce_replay

RECORDS = 200


class SlowHandler(EventHandler):
    """Takes 5 ms per event and emits nothing, so a backlog drains over about a second."""

    def handle(self, event):
        time.sleep(0.005)
        return []


def lag(service: str, topic: str, partition: int) -> float | None:
    labels = {"service": service, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("streamml_consumer_lag_records", labels)


@pytest.mark.kafka
def test_lag_per_partition_drains_to_zero(bootstrap_servers, topic_factory):
    topic = topic_factory(prefix="lag", partitions=2)
    dead_letters = topic_factory(prefix="lag-dead")
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    events = [new_event(type="t.v1", source="tests", subject=f"entity-{i % 8}", data={"i": i}) for i in range(RECORDS)]
    produce_replay(settings, topic, events)

    service = f"lag-{uuid.uuid4().hex[:8]}"
    emitter = Emitter(settings)
    runner = PullRunner(
        SlowHandler(), service=service, settings=settings, group_id=service, topics=[topic],
        dead_letter_topic=dead_letters, emitter=emitter, batch_size=10, lag_interval_ms=100,
    )
    stop = threading.Event()
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()

    highest = {0: 0.0, 1: 0.0}
    try:
        deadline = time.monotonic() + 60
        while True:
            current = {partition: lag(service, topic, partition) for partition in (0, 1)}
            for partition, value in current.items():
                if value is not None:
                    highest[partition] = max(highest[partition], value)
            if runner.processed == RECORDS and current == {0: 0.0, 1: 0.0}:
                break
            assert time.monotonic() < deadline, f"lag {current} after {runner.processed} of {RECORDS} records"
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(timeout=30)
        emitter.close()

    assert all(value > 0 for value in highest.values()), f"no backlog seen: {highest}"
    assert sum(highest.values()) <= RECORDS
    assert lag(service, topic, 0) is None, "a stopped runner leaves no lag series behind"


def test_lag_from_statistics_document():
    document = {
        "topics": {
            "raw": {
                "partitions": {
                    "0": {"partition": 0, "desired": True, "consumer_lag": 12, "consumer_lag_stored": 3},
                    "1": {"partition": 1, "desired": True, "consumer_lag": -1, "consumer_lag_stored": 7},
                    "2": {"partition": 2, "desired": False, "consumer_lag": 5},
                    "3": {"partition": 3, "desired": True, "consumer_lag": -1, "consumer_lag_stored": -1},
                    "-1": {"partition": -1, "desired": False, "consumer_lag": -1},
                }
            }
        }
    }
    assert partition_lags(document) == {("raw", 0): 12, ("raw", 1): 7}
    assert partition_lags({}) == {}
