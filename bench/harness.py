"""Shared parts of the benchmarks: a broker, topics stamped by the broker, paced producers and readers.

Every benchmark topic uses `message.timestamp.type=LogAppendTime`, so both ends of a
latency are the broker's clock at the moment a record became readable.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec
from streamml.demo.cluster import produce_records

REPOSITORY = Path(__file__).resolve().parents[1]
ROLES = ("input", "raw", "features", "labels", "models", "predictions", "dead_letter", "checkpoints")
COMPACTED = ("models", "checkpoints")
BROKER_STAMPED = {"message.timestamp.type": "LogAppendTime"}


class LocalBroker:
    """A broker from scripts/kafka_broker.py, or the one at `bootstrap` when it is given."""

    def __init__(self, bootstrap: str | None) -> None:
        self.bootstrap = bootstrap
        self._broker = None

    def __enter__(self) -> str:
        if self.bootstrap:
            return self.bootstrap
        sys.path.insert(0, str(REPOSITORY / "scripts"))
        from kafka_broker import KafkaBroker

        self._broker = KafkaBroker()
        self.bootstrap = self._broker.start()
        return self.bootstrap

    def __exit__(self, *exc: object) -> None:
        if self._broker is not None:
            self._broker.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_stamped_topics(settings: KafkaSettings, names: Iterable[str], compacted: Sequence[str] = ()) -> None:
    """Create one-partition topics whose records carry the broker's append time."""
    admin = AdminClient(settings.client_config())
    topics = [
        NewTopic(name, num_partitions=1, replication_factor=1,
                 config=BROKER_STAMPED | ({"cleanup.policy": "compact"} if name in compacted else {}))
        for name in names
    ]
    for future in admin.create_topics(topics, request_timeout=30).values():
        future.result(timeout=30)


def create_pipeline_topics(settings: KafkaSettings, spec: PipelineSpec) -> None:
    create_stamped_topics(settings, [spec.topic(role) for role in ROLES], [spec.topic(role) for role in COMPACTED])


def record_key(event: CloudEvent) -> str:
    """Return the id of the input event a record descends from: `data.event_id` where present, else its own id."""
    data = event.get_data()
    if isinstance(data, dict) and isinstance(data.get("event_id"), str):
        return data["event_id"]
    return event.get_id()


@dataclass
class Stamped:
    """One record read back: the input it descends from, the broker append time in ms, its raw parts."""

    key: str
    ms: int
    value: bytes
    headers: list


def produce(
    settings: KafkaSettings, records: Iterable[tuple[str, CloudEvent]], rate: float = 0.0, key_of=record_key
) -> dict[str, int]:
    """Produce (topic, event) pairs, paced at `rate` records/s (0: unpaced).

    Returns the broker append time (ms) of each record by `key_of(event)`. With several records
    per key the latest is kept.
    """
    stamps: dict[str, int] = {}

    def stamp(event: CloudEvent, message) -> None:
        key = key_of(event)
        stamps[key] = max(stamps.get(key, 0), message.timestamp()[1])

    produce_records(settings, records, rate, on_delivered=stamp)
    return stamps


class Collector:
    """Reads a topic from its beginning on a thread and keeps each record's key and append time.

    The thread only keeps the records. Their keys are decoded when `wait_for` returns, so the
    reader takes as little CPU as it can from the processes measured meanwhile.
    """

    def __init__(self, settings: KafkaSettings, topic: str, decode) -> None:
        self.records: list[Stamped] = []
        self._messages: list = []
        self._decode = decode
        self._consumer = Consumer(settings.client_config() | {
            "group.id": unique_name("bench-reader"), "enable.auto.commit": False, "fetch.wait.max.ms": 10,
        })
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(num_messages=1000, timeout=0.1):
                if message.error() is None:
                    self._messages.append(message)

    def wait_for(self, count: int, timeout_s: float, alive=lambda: None) -> list[Stamped]:
        """Block until `count` records arrived; raise TimeoutError with the count seen otherwise."""
        deadline = time.monotonic() + timeout_s
        while len(self._messages) < count:
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._messages)} of {count} records arrived within {timeout_s:.0f}s")
            time.sleep(0.05)
        for message in self._messages[len(self.records):]:
            self.records.append(Stamped(self._decode(message), message.timestamp()[1], message.value(), message.headers()))
        return list(self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def header_id(message) -> str:
    """Return the `ce_id` header of a binary-mode record, without decoding the event."""
    for name, value in message.headers() or ():
        if name == "ce_id":
            return value.decode()
    raise KafkaException(f"record without ce_id at {message.topic()}[{message.partition()}]@{message.offset()}")


def data_key(message) -> str:
    """`data.event_id` of a JSON record, else its `ce_id` header."""
    try:
        data = json.loads(message.value())
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("event_id"), str):
        return data["event_id"]
    return header_id(message)


def drain_rate(records: Sequence[Stamped]) -> float:
    """Records per second between the first and the last append time.

    Records appended in the first millisecond are left out, since their processing
    started before the clock did.
    """
    stamps = sorted(record.ms for record in records)
    if len(stamps) < 2 or stamps[-1] == stamps[0]:
        raise ValueError("too few records, or all appended in one millisecond, to measure a rate")
    later = sum(1 for ms in stamps if ms > stamps[0])
    return later / ((stamps[-1] - stamps[0]) / 1000)


def latencies_ms(inputs: dict[str, int], outputs: Sequence[Stamped]) -> list[float]:
    """Output append time minus input append time, for each output whose input is in `inputs`."""
    return [float(record.ms - inputs[record.key]) for record in outputs if record.key in inputs]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        raise ValueError("no latencies to summarise")
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "mean_ms": statistics.fmean(ordered), "samples": len(ordered)}


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM in /proc, Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line")
