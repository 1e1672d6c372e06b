"""The four services as OS processes over Kafka, with a paced producer and a topic reader.

Used by `streamml demo --bootstrap-servers` and by the end-to-end tests.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Consumer, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamml.common.errors import InvalidEventError
from streamml.common.events import from_kafka, to_kafka
from streamml.common.kafka import consumer_config, where
from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec

logger = logging.getLogger(__name__)

SERVICES = ("ingestion", "features", "training", "inference")
CHECKPOINT_SEGMENT_BYTES = 64 * 1024 * 1024


def create_topics(
    settings: KafkaSettings, spec: PipelineSpec, partitions: int = 1, replication_factor: int = 1, timeout_s: float = 30.0
) -> list[str]:
    """Create the pipeline's topics and return the names created; existing topics are left as they are.

    The models and checkpoints topics are compacted and have one partition, so every reader sees
    every version in order.
    """
    admin = AdminClient(settings.client_config())
    roles = ("input", "raw", "features", "labels", "models", "predictions", "dead_letter", "checkpoints")
    compacted = ("models", "checkpoints")
    new_topics = []
    for role in roles:
        config = {"cleanup.policy": "compact"} if role in compacted else {}
        if role == "checkpoints":
            # Compaction never touches the active segment, which rolls at 1 GiB by default, and a
            # restart reads the whole topic: smaller segments let superseded checkpoints go sooner.
            config["segment.bytes"] = str(CHECKPOINT_SEGMENT_BYTES)
        count = 1 if role in compacted else partitions
        new_topics.append(NewTopic(spec.topic(role), num_partitions=count, replication_factor=replication_factor, config=config))
    created = []
    for topic, future in admin.create_topics(new_topics, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(topic)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return created


class ServiceProcess:
    """One `streamml run SERVICE` child process with its log file."""

    def __init__(self, service: str, spec_path: Path, settings: KafkaSettings, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.service = service
        self.spec_path = spec_path
        self.settings = settings
        self.log_path = log_dir / f"{service}.log"
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = os.environ | self.extra_env | {"PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "streamml", "run", self.service, "--spec", str(self.spec_path), "--bootstrap-servers", self.settings.bootstrap_servers]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        logger.info("started %s (pid %d), log %s", self.service, self.process.pid, self.log_path)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.error("%s did not stop within %.0fs after %s; killing it", self.service, timeout_s, signal.Signals(sig).name)
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class PipelineProcesses:
    """The four services as child processes; a context manager that stops them all."""

    def __init__(self, spec_path: Path, settings: KafkaSettings, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.services = {name: ServiceProcess(name, spec_path, settings, log_dir, extra_env) for name in SERVICES}

    def __enter__(self) -> PipelineProcesses:
        for service in self.services.values():
            service.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict[str, int | None]:
        return {name: service.stop() for name, service in self.services.items()}

    def check_alive(self) -> None:
        """Raise RuntimeError with the log tail of any service that has exited."""
        for name, service in self.services.items():
            if not service.alive():
                raise RuntimeError(f"service {name} exited with {service.process.returncode if service.process else None}:\n{service.log_tail()}")


def produce_replay(settings: KafkaSettings, topic: str, events: Iterable[CloudEvent], rate: float = 0.0) -> int:
    """Produce events to `topic` in binary mode, paced at `rate` events/s (0: unpaced); return the count."""
    return produce_records(settings, ((topic, event) for event in events), rate)


def produce_records(
    settings: KafkaSettings,
    records: Iterable[tuple[str, CloudEvent]],
    rate: float = 0.0,
    on_delivered: Callable[[CloudEvent, Message], None] | None = None,
) -> int:
    """Produce (topic, event) pairs in binary mode, paced at `rate` records/s (0: unpaced); return the count.

    `on_delivered` is called with each event and its acknowledged record. Raises RuntimeError
    unless the brokers acknowledged every record.
    """
    producer = Producer(
        settings.client_config() | {"linger.ms": 5, "enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}
    )
    failures: list[str] = []

    def delivery_report(event: CloudEvent):
        def on_delivery(error, message) -> None:
            if error is not None:
                failures.append(str(error))
            elif on_delivered is not None:
                on_delivered(event, message)
        return on_delivery

    started = time.monotonic()
    count = 0
    for topic, event in records:
        if rate > 0:
            delay = started + count / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        key, value, headers = to_kafka(event)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivery_report(event))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{remaining} of {count} records were not acknowledged; first failure: {failures[:1]}")
    return count


class TopicReader:
    """Reads a topic from its beginning as CloudEvents, outside any consumer group."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(consumer_config(settings, group_id=f"streamml-reader-{uuid.uuid4()}"))
        self._consumer.subscribe([topic])

    def poll(self, timeout_s: float = 0.5, max_records: int = 1000) -> Iterator[CloudEvent]:
        for message in self._consumer.consume(num_messages=max_records, timeout=timeout_s):
            if message.error() is not None:
                continue
            try:
                yield from_kafka(message.key(), message.value(), message.headers(), where=where(message))
            except InvalidEventError as error:
                logger.error("unreadable record on %s: %s", where(message), error)

    def close(self) -> None:
        self._consumer.close()
