"""The pull runner's offset commits: asynchronous after each batch, all of them landed once the runner stops."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import REGISTRY

from streamml.common.events import new_event
from streamml.common.handler import EventHandler
from streamml.common.kafka import Emitter, PullRunner
from streamml.common.settings import KafkaSettings
from streamml.demo.cluster import produce_replay

pytestmark = pytest.mark.kafka

RECORDS = 1200


class CountingHandler(EventHandler):
    """A handler that keeps the ids of the events it handles and emits nothing."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    @property
    def handled(self) -> int:
        return len(self.ids)

    def handle(self, event):
        self.ids.append(event.get_id())
        return []


def _runner(settings: KafkaSettings, topic: str, group: str, emitter: Emitter) -> tuple[PullRunner, CountingHandler]:
    handler = CountingHandler()
    runner = PullRunner(
        handler, service="commits", settings=settings, group_id=group, topics=[topic], dead_letter_topic=f"{topic}.dead",
        emitter=emitter, batch_size=100, lag_interval_ms=0,
    )
    return runner, handler


def _committed(settings: KafkaSettings, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group})
    try:
        [partition] = consumer.committed([TopicPartition(topic, 0)], timeout=10.0)
        return partition.offset
    finally:
        consumer.close()


def test_stop_lands_every_commit(bootstrap_servers, topic_factory):
    topic = topic_factory(prefix="commits")
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    produce_replay(settings, topic, [new_event(type="t.v1", source="tests", subject="s", data={"i": i}) for i in range(RECORDS)])
    group = f"commits-{uuid.uuid4().hex[:8]}"
    emitter = Emitter(settings)
    try:
        runner, handler = _runner(settings, topic, group, emitter)
        # The stop comes right after the last batch, whose commit is asynchronous: closing must land it.
        _run_until(runner, handler, RECORDS)
    finally:
        emitter.close()
    assert handler.handled == RECORDS
    assert _committed(settings, group, topic) == RECORDS


def _run_until(runner: PullRunner, handler: CountingHandler, count: int) -> None:
    """Run `runner` on a thread until its handler saw `count` events, then stop it cleanly."""
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        for _ in range(300):
            if handler.handled >= count:
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)


def test_restart_resumes_after_commits(bootstrap_servers, topic_factory):
    topic = topic_factory(prefix="commits-restart")
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    events = [new_event(type="t.v1", source="tests", subject="s", data={"i": i}) for i in range(RECORDS)]
    half = RECORDS // 2
    group = f"commits-{uuid.uuid4().hex[:8]}"
    emitter = Emitter(settings)
    try:
        produce_replay(settings, topic, events[:half])
        first, first_handler = _runner(settings, topic, group, emitter)
        _run_until(first, first_handler, half)
        produce_replay(settings, topic, events[half:])
        second, second_handler = _runner(settings, topic, group, emitter)
        _run_until(second, second_handler, half)
    finally:
        emitter.close()
    assert first_handler.ids == [event.get_id() for event in events[:half]]
    assert second_handler.ids == [event.get_id() for event in events[half:]], "the second runner starts at the first one's last commit"


class BlockingHandler(CountingHandler):
    """A handler that blocks on the first event after `block_after` until `release` is set."""

    def __init__(self, block_after: int) -> None:
        super().__init__()
        self.block_after = block_after
        self.blocked = threading.Event()
        self.release = threading.Event()

    def handle(self, event):
        if self.handled == self.block_after:
            self.blocked.set()
            self.release.wait(60)
        return super().handle(event)


def test_commit_excludes_batch_in_hand(bootstrap_servers, topic_factory):
    """The commit after a batch covers that batch only, never the next one, already consumed but not yet handled."""
    topic = topic_factory(prefix="commits-in-hand")
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    produce_replay(settings, topic, [new_event(type="t.v1", source="tests", subject="s", data={"i": i}) for i in range(300)])
    group = f"commits-{uuid.uuid4().hex[:8]}"
    emitter = Emitter(settings)
    handler = BlockingHandler(block_after=100)
    runner = PullRunner(
        handler, service="commits", settings=settings, group_id=group, topics=[topic], dead_letter_topic=f"{topic}.dead",
        emitter=emitter, batch_size=100, lag_interval_ms=0,
    )
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    try:
        assert handler.blocked.wait(30), "the second batch never reached the handler"
        # The first batch's commit has had time to land, and the second batch stays unhandled meanwhile.
        time.sleep(2.0)
        assert _committed(settings, group, topic) == 100
    finally:
        handler.release.set()
        stop.set()
        thread.join(timeout=60)
        emitter.close()


def _commit_errors(service: str) -> float:
    return REGISTRY.get_sample_value("streamml_errors_total", {"service": service, "reason": "commit"}) or 0.0


def test_failed_commit_is_logged_and_counted(bootstrap_servers, caplog):
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    emitter = Emitter(settings)
    runner, _ = _runner(settings, "commits-unused", f"commits-{uuid.uuid4().hex[:8]}", emitter)
    try:
        before = _commit_errors("commits")
        # confluent-kafka's TopicPartition has a read-only error, so a stand-in carries one.
        failed = SimpleNamespace(topic="commits-unused", partition=0, offset=42, error=KafkaError(KafkaError.NOT_COORDINATOR))
        with caplog.at_level(logging.WARNING, logger="streamml.common.kafka"):
            runner._on_commit(KafkaError(KafkaError._NO_OFFSET), [])
            assert not caplog.records, "nothing consumed since the last commit is not a failure"
            runner._on_commit(None, [failed])
        assert "commits-unused[0]@42" in caplog.text
        assert _commit_errors("commits") == before + 1
    finally:
        runner.consumer.close()
        emitter.close()
