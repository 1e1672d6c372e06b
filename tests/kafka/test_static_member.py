"""A pull runner with a group.instance.id: a second process with the same id fences the first one off."""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import KafkaException

from streamml.common.events import new_event
from streamml.common.handler import EventHandler
from streamml.common.kafka import Emitter, PullRunner
from streamml.common.settings import KafkaSettings
from streamml.demo.cluster import produce_replay

pytestmark = pytest.mark.kafka


class CountingHandler(EventHandler):
    """Counts the events it handles and emits nothing."""

    def __init__(self) -> None:
        self.handled = 0

    def handle(self, event):
        self.handled += 1
        return []


def _runner(settings: KafkaSettings, topic: str, dead_letters: str, group: str, emitter: Emitter) -> tuple[PullRunner, CountingHandler]:
    handler = CountingHandler()
    runner = PullRunner(
        handler, service="static", settings=settings, group_id=group, topics=[topic], dead_letter_topic=dead_letters,
        emitter=emitter, lag_interval_ms=0, group_instance_id=group,
    )
    return runner, handler


def test_second_static_member_fences_first(bootstrap_servers, topic_factory):
    topic = topic_factory(prefix="static")
    dead_letters = topic_factory(prefix="static-dead")
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    produce_replay(settings, topic, [new_event(type="t.v1", source="tests", subject="s", data={"i": i}) for i in range(10)])
    group = f"static-{uuid.uuid4().hex[:8]}"
    emitter = Emitter(settings)
    first, first_handler = _runner(settings, topic, dead_letters, group, emitter)
    second, _ = _runner(settings, topic, dead_letters, group, emitter)
    failures: list[BaseException] = []
    stop_first, stop_second = threading.Event(), threading.Event()

    def run_first() -> None:
        try:
            first.run(stop_first)
        except KafkaException as error:
            failures.append(error)

    thread = threading.Thread(target=run_first)
    second_thread = threading.Thread(target=second.run, args=(stop_second,))
    thread.start()
    try:
        for _ in range(150):
            if first_handler.handled == 10:
                break
            stop_first.wait(0.1)
        assert first_handler.handled == 10

        second_thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert failures
        assert "fenced" in str(failures[0]).lower()
    finally:
        stop_first.set()
        stop_second.set()
        thread.join(timeout=30)
        if second_thread.ident is not None:
            second_thread.join(timeout=30)
        emitter.close()
