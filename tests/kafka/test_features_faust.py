"""The faust features worker against the real Kafka broker, run as a separate OS process.

Each test builds a small pipeline on fresh topics, starts
`python -m streamml.features.faust_app`, produces binary-mode CloudEvents to
the raw topic with confluent-kafka and reads what the worker produced.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from cloudevents.core.v1.event import CloudEvent

from streamml.common.events import data_object, from_kafka, new_event, to_kafka
from streamml.common.payloads import DEAD_LETTER_TYPE, FEATURES_TYPE, LABEL_TYPE, RECORD_TYPE
from streamml.common.spec import PipelineSpec, parse_spec

pytestmark = pytest.mark.kafka

RAW_PARTITIONS = 2
# The raw topic is keyed by entity, and the tests pin each entity to its own partition.
ENTITY_PARTITIONS = {"alpha": 0, "beta": 1}
CONSUME_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
QUIET_PERIOD_S = 2.0
# Records of the SIGKILL test: enough that the kill falls between offset commits.
KILL_RECORDS = 6000

KafkaRecord = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


# Pipeline ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    spec: PipelineSpec
    spec_path: Path
    raw: str
    features: str
    labels: str
    dead_letter: str

    @property
    def app_id(self) -> str:
        return f"streamml-features-{self.spec.name}"


def spec_document(name: str, topics: dict[str, str]) -> dict[str, Any]:
    """Return a spec document with a sliding mean over 3 records, a tumbling sum over 2 and label lag 1."""
    return {
        "name": name,
        "input": {
            "fields": [
                {"name": "entity", "type": "string"},
                {"name": "x", "type": "float"},
                {"name": "target", "type": "float", "feature": False, "required": False},
            ],
            "entity_key": "entity",
        },
        "label": {"field": "target", "kind": "numeric"},
        "features": [
            {"field": "x", "agg": "mean", "window": {"kind": "sliding", "size": 3}},
            {"field": "x", "agg": "sum", "window": {"kind": "tumbling", "size": 2}},
        ],
        "label_lags": [1],
        "model": {"kind": "linear"},
        "topics": topics,
    }


@pytest.fixture
def make_pipeline(topic_factory, tmp_path: Path) -> Callable[..., Pipeline]:
    """Provide `create(labels_config=None)`: fresh topics and a spec file that names them."""

    def create(labels_config: dict[str, str] | None = None, raw_partitions: int = RAW_PARTITIONS) -> Pipeline:
        topics = {
            "raw": topic_factory(prefix="features-raw", partitions=raw_partitions),
            "features": topic_factory(prefix="features-out"),
            "labels": topic_factory(prefix="features-labels", config=labels_config),
            "dead_letter": topic_factory(prefix="features-dlq"),
        }
        name = f"faust-{uuid.uuid4().hex[:12]}"
        document = spec_document(name, topics)
        spec_path = tmp_path / f"{name}.yaml"
        spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
        return Pipeline(parse_spec(document), spec_path, **topics)

    return create


# Worker process ----------------------------------------------------------------------------------


class Worker:
    """One `python -m streamml.features.faust_app` process, logging to a file."""

    def __init__(self, pipeline: Pipeline, bootstrap: str, work_dir: Path, label: str, partitions: int) -> None:
        self.log_path = work_dir / f"{label}.log"
        command = [
            sys.executable,
            "-m",
            "streamml.features.faust_app",
            "--spec",
            str(pipeline.spec_path),
            "--bootstrap-servers",
            bootstrap,
            "--partitions",
            str(partitions),
            "--data-dir",
            str(work_dir / label),
            "--commit-interval",
            "0.5",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=work_dir
            )

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """Send SIGTERM and return the exit code."""
        if self.is_running():
            self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker pid {self.process.pid} did not exit within {timeout_s:g} s\n{self.log_tail()}")

    def kill(self) -> None:
        if self.is_running():
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return f"--- {self.log_path} ---\n" + "\n".join(self.log().splitlines()[-lines:])


@pytest.fixture
def start_worker(bootstrap_servers: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Provide `start(pipeline, label, partitions=2)`; teardown kills workers a test left running."""
    workers: list[Worker] = []

    def start(pipeline: Pipeline, label: str, partitions: int = RAW_PARTITIONS) -> Worker:
        worker = Worker(pipeline, bootstrap_servers, tmp_path, label, partitions)
        workers.append(worker)
        return worker

    yield start

    for worker in workers:
        worker.kill()


# Kafka helpers -----------------------------------------------------------------------------------


def _record(event_id: str, entity: str, x: float, label: float | None = None, **extra: Any) -> KafkaRecord:
    data: dict[str, Any] = {"entity": entity, "x": x, **extra}
    if label is not None:
        data["target"] = label
    event = new_event(type=RECORD_TYPE, source="tests/features", subject=entity, data=data, id=event_id)
    return to_kafka(event)


def _late_label(event_id: str, entity: str, of: str, label: float) -> KafkaRecord:
    event = new_event(
        type=LABEL_TYPE, source="tests/features", subject=entity, data={"event_id": of, "label": label}, id=event_id
    )
    return to_kafka(event)


def _produce(producer: Producer, topic: str, records: Sequence[KafkaRecord]) -> list[tuple[int, int]]:
    """Produce records in order, each to its entity's partition, and return the (partition, offset) of each."""
    positions: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(index: int, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(f"record {index}: {error}")
        else:
            positions[index] = (message.partition(), message.offset())

    for index, (key, value, headers) in enumerate(records):
        producer.produce(
            topic,
            value,
            key=key,
            headers=headers,
            partition=ENTITY_PARTITIONS.get((key or b"").decode(), 0),
            on_delivery=lambda e, m, i=index: on_delivery(i, e, m),
        )
    assert producer.flush(CONSUME_TIMEOUT_S) == 0, "records were not delivered to the raw topic"
    assert errors == []
    return [positions[index] for index in range(len(records))]


@dataclass(frozen=True)
class Received:
    """A consumed record and the CloudEvent decoded from it."""

    message: Message
    event: CloudEvent

    @property
    def data(self) -> dict[str, Any]:
        return data_object(self.event)


def _consume(consumer: Consumer, count: int, worker: Worker) -> list[Received]:
    """Poll until `count` records arrive; fail with the worker's log if they do not."""
    received: list[Received] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    while len(received) < count:
        if time.monotonic() > deadline or not worker.is_running():
            pytest.fail(
                f"received {len(received)} of {count} records in {CONSUME_TIMEOUT_S:g} s "
                f"(worker running: {worker.is_running()})\n{worker.log_tail()}"
            )
        message = consumer.poll(0.5)
        if message is not None:
            received.append(_decode(message))
    return received


def _drain(consumer: Consumer) -> list[Received]:
    """Return every record that arrives until none has for QUIET_PERIOD_S."""
    received: list[Received] = []
    while (message := consumer.poll(QUIET_PERIOD_S)) is not None:
        received.append(_decode(message))
    return received


def _decode(message: Message) -> Received:
    assert message.error() is None, f"consumer error: {message.error()}"
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    return Received(message, from_kafka(message.key(), message.value(), message.headers(), where=where))


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """Return the group's committed offset of each partition (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while True:
            try:
                offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10.0)
                return [tp.offset for tp in offsets]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def _by_topic(received: Sequence[Received], topic: str) -> list[Received]:
    return [item for item in received if item.message.topic() == topic]


def _feature_values(received: Sequence[Received]) -> dict[str, list[float]]:
    return {item.data["event_id"]: item.data["values"] for item in received}


# A reference, written independently of streamml.features.pipeline ------------------------------


def expected_vectors(records: Sequence[tuple[str, str, float, float | None]]) -> dict[str, list[float]]:
    """Return [x, mean of the last 3 x, sum of x in the current pair, previous label] per record id."""
    xs: dict[str, list[float]] = {}
    labels: dict[str, list[float]] = {}
    vectors = {}
    for event_id, entity, x, label in records:
        history = xs.setdefault(entity, [])
        history.append(x)
        count = len(history)
        last3 = history[-3:]
        pair = history[(count - 1) // 2 * 2 :]
        known = labels.setdefault(entity, [])
        vectors[event_id] = [x, sum(last3) / len(last3), sum(pair), known[-1] if known else 0.0]
        if label is not None:
            known.append(label)
    return vectors


# Tests -------------------------------------------------------------------------------------------


def test_worker_emits_features_labels_dead_letters(make_pipeline, start_worker, make_producer, make_consumer, bootstrap_servers):
    pipeline = make_pipeline()
    producer = make_producer({"acks": "all"})
    consumer = make_consumer(topics=[pipeline.features, pipeline.labels, pipeline.dead_letter])
    junk_headers = [("origin", b"tests")]
    records = [
        _record("a1", "alpha", 1.0),
        _record("b1", "beta", 10.0, label=2.0),
        _record("a2", "alpha", 2.0, label=0.5),
        _record("b2", "beta", 20.0),
        _record("a3", "alpha", 3.0),
        _record("bad-1", "alpha", 99.0, colour="red"),
        (b"alpha", b"not a cloudevent", junk_headers),
        _record("b3", "beta", 30.0, label=4.0),
        _record("a4", "alpha", 4.0, label=1.5),
        _record("a5", "alpha", 5.0),
        _record("b4", "beta", 40.0),
        _record("a6", "alpha", 6.0),
        _late_label("late-1", "alpha", of="a5", label=9.0),
    ]
    positions = _produce(producer, pipeline.raw, records)

    worker = start_worker(pipeline, "worker")
    received = _consume(consumer, 10 + 5 + 2, worker)
    received += _drain(consumer)

    features = _by_topic(received, pipeline.features)
    assert [item.event.get_type() for item in features] == [FEATURES_TYPE] * 10
    assert _feature_values(features) == {
        "a1": [1.0, 1.0, 1.0, 0.0],
        "a2": [2.0, 1.5, 3.0, 0.0],
        "a3": [3.0, 2.0, 3.0, 0.5],
        "a4": [4.0, 3.0, 7.0, 0.5],
        "a5": [5.0, 4.0, 5.0, 1.5],
        "a6": [6.0, 5.0, 11.0, 1.5],
        "b1": [10.0, 10.0, 10.0, 0.0],
        "b2": [20.0, 15.0, 30.0, 2.0],
        "b3": [30.0, 20.0, 30.0, 2.0],
        "b4": [40.0, 30.0, 70.0, 4.0],
    }
    for entity, ids in (("alpha", ["a1", "a2", "a3", "a4", "a5", "a6"]), ("beta", ["b1", "b2", "b3", "b4"])):
        of_entity = [item for item in features if item.event.get_subject() == entity]
        assert [item.data["event_id"] for item in of_entity] == ids
        assert {item.message.key() for item in of_entity} == {entity.encode()}
        assert {item.data["feature_set"] for item in of_entity} == {pipeline.spec.fingerprint()}

    labels = _by_topic(received, pipeline.labels)
    assert {item.event.get_type() for item in labels} == {LABEL_TYPE}
    assert {item.data["event_id"]: item.data["label"] for item in labels} == {
        "b1": 2.0,
        "a2": 0.5,
        "b3": 4.0,
        "a4": 1.5,
        "a5": 9.0,
    }
    assert len(labels) == 5

    dead_letters = _by_topic(received, pipeline.dead_letter)
    assert len(dead_letters) == 2
    letters = {item.data["origin_offset"]: item for item in dead_letters}
    bad_partition, bad_offset = positions[5]
    junk_partition, junk_offset = positions[6]
    assert sorted(letters) == sorted([bad_offset, junk_offset])
    bad = letters[bad_offset]
    assert bad.event.get_type() == DEAD_LETTER_TYPE
    assert bad.data["reason"] == "invalid-data"
    assert "colour" in bad.data["message"]
    assert bad.data["service"] == "features"
    assert bad.data["event_id"] == "bad-1"
    assert bad.data["origin_topic"] == pipeline.raw
    assert bad.data["origin_partition"] == bad_partition
    assert base64.b64decode(bad.data["original_value_base64"]) == records[5][1]
    assert base64.b64decode(bad.data["original_key_base64"]) == b"alpha"
    assert bad.data["original_headers"]["ce_id"] == "bad-1"
    junk = letters[junk_offset]
    assert junk.data["reason"] == "invalid-cloudevent"
    assert junk.data["event_id"] is None
    assert junk.data["origin_topic"] == pipeline.raw
    assert junk.data["origin_partition"] == junk_partition
    assert base64.b64decode(junk.data["original_value_base64"]) == b"not a cloudevent"
    assert junk.data["original_headers"] == {"origin": "tests"}

    assert worker.stop() == 0, worker.log_tail()
    assert f"features stopped after {len(positions)} records (2 dead-lettered)" in worker.log(), worker.log_tail()
    ends = [max(offset + 1 for part, offset in positions if part == partition) for partition in range(RAW_PARTITIONS)]
    assert _committed(bootstrap_servers, pipeline.app_id, pipeline.raw, RAW_PARTITIONS) == ends


def test_restart_keeps_window_state(make_pipeline, start_worker, make_producer, make_consumer, bootstrap_servers):
    pipeline = make_pipeline()
    producer = make_producer({"acks": "all"})
    consumer = make_consumer(topics=[pipeline.features])
    plan = [
        (f"r{index}", ("alpha", "beta")[index % 2], float(index), float(index) / 2 if index % 3 == 0 else None)
        for index in range(80)
    ]
    expected = expected_vectors(plan)
    records = [_record(event_id, entity, x, label) for event_id, entity, x, label in plan]

    _produce(producer, pipeline.raw, records[:40])
    first = start_worker(pipeline, "first")
    before = _consume(consumer, 10, first)
    assert first.stop() == 0, first.log_tail()
    before += _drain(consumer)
    committed = _committed(bootstrap_servers, pipeline.app_id, pipeline.raw, RAW_PARTITIONS)
    assert sum(max(offset, 0) for offset in committed) == len(before), (
        f"committed offsets {committed} do not match the {len(before)} feature vectors produced before the stop"
    )

    # Records waiting at startup are fetched while faust recovers the table from its changelog.
    _produce(producer, pipeline.raw, records[40:])
    second = start_worker(pipeline, "second")
    after = _consume(consumer, 80 - len(before), second)
    after += _drain(consumer)
    assert second.stop() == 0, second.log_tail()

    ids = [item.data["event_id"] for item in before + after]
    assert sorted(ids) == sorted(expected), "every record yields exactly one feature vector"
    assert _feature_values(before + after) == expected
    assert "Done reading from changelog topics" in second.log(), second.log_tail()


def test_repeated_input_counts_once(make_pipeline, start_worker, make_producer, make_consumer, bootstrap_servers):
    """An input that reaches the raw topic again, at a later offset, is skipped, also by a restarted worker."""
    pipeline = make_pipeline()
    producer = make_producer({"acks": "all"})
    consumer = make_consumer(topics=[pipeline.features])
    plan = [(f"r{index}", "alpha", float(index), None) for index in range(12)]
    expected = expected_vectors(plan)
    records = {event_id: _record(event_id, entity, x, label) for event_id, entity, x, label in plan}

    # r3 again among the first records, as a replaying ingestion process writes it.
    _produce(producer, pipeline.raw, [records[f"r{index}"] for index in range(6)] + [records["r3"]])
    first = start_worker(pipeline, "first")
    before = _consume(consumer, 6, first)
    assert first.stop() == 0, first.log_tail()
    before += _drain(consumer)

    # r5 again after the restart: its first copy lies before the committed offset.
    _produce(producer, pipeline.raw, [records["r5"]] + [records[f"r{index}"] for index in range(6, 12)])
    second = start_worker(pipeline, "second")
    after = _consume(consumer, 6, second)
    after += _drain(consumer)
    assert second.stop() == 0, second.log_tail()

    ids = [item.data["event_id"] for item in before + after]
    assert ids == [f"r{index}" for index in range(12)]
    assert _feature_values(before + after) == expected
    assert "event r3 from tests/features: an input with this source and id is already applied" in first.log()
    assert "event r5 from tests/features: an input with this source and id is already applied" in second.log()


def test_rejected_output_blocks_offset_commit(make_pipeline, start_worker, make_producer, make_consumer, bootstrap_servers):
    pipeline = make_pipeline(labels_config={"max.message.bytes": "200"}, raw_partitions=1)
    producer = make_producer({"acks": "all"})
    consumer = make_consumer(topics=[pipeline.features])
    records = [_record("ok-1", "alpha", 1.0), _record("big-label", "alpha", 2.0, label=1.0), _record("ok-2", "alpha", 3.0)]
    positions = _produce(producer, pipeline.raw, records)

    worker = start_worker(pipeline, "worker", partitions=1)
    exit_code = worker.wait()

    assert exit_code != 0, worker.log_tail()
    log = worker.log()
    assert f"{pipeline.raw}[0]@{positions[1][1]} event big-label: the broker did not acknowledge" in log, worker.log_tail()
    (committed,) = _committed(bootstrap_servers, pipeline.app_id, pipeline.raw, 1)
    assert committed <= positions[1][1], f"offset {committed} committed past the record whose label was refused"
    assert "ok-1" in {item.data["event_id"] for item in _drain(consumer)}


def test_sigkill_keeps_windows_exact(make_pipeline, start_worker, make_producer, make_consumer, bootstrap_servers):
    """A worker killed mid-stream does not count the records it replays twice in their windows."""
    pipeline = make_pipeline()
    producer = make_producer({"acks": "all", "linger.ms": 5})
    consumer = make_consumer(topics=[pipeline.features])
    plan = [
        (f"k{index}", ("alpha", "beta")[index % 2], float(index % 17), float(index % 5) if index % 3 == 0 else None)
        for index in range(KILL_RECORDS)
    ]
    expected = expected_vectors(plan)
    _produce(producer, pipeline.raw, [_record(event_id, entity, x, label) for event_id, entity, x, label in plan])

    first = start_worker(pipeline, "first")
    received = _consume(consumer, KILL_RECORDS // 3, first)
    first.kill()
    second = start_worker(pipeline, "second")
    seen = {item.data["event_id"] for item in received}
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    while len(seen) < KILL_RECORDS and time.monotonic() < deadline and second.is_running():
        message = consumer.poll(0.5)
        if message is not None:
            received.append(_decode(message))
            seen.add(received[-1].data["event_id"])
    received += _drain(consumer)
    seen.update(item.data["event_id"] for item in received)
    assert second.stop() == 0, second.log_tail()

    assert seen == set(expected), f"{len(set(expected) - seen)} records have no feature vector: {sorted(set(expected) - seen)[:10]}\n{second.log_tail()}"
    wrong = [(item.data["event_id"], item.data["values"], expected[item.data["event_id"]])
             for item in received if item.data["values"] != expected[item.data["event_id"]]]
    assert not wrong, f"{len(wrong)} of {len(received)} vectors differ from the reference, for example {wrong[:3]}"
    print(f"sigkill: {len(received)} vectors for {KILL_RECORDS} records")
