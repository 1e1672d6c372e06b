"""Pytest fixtures that give streamml's tests a real Kafka broker and clients.

Set ``STREAMML_TEST_BOOTSTRAP_SERVERS=host:port`` to test against a broker
that is already running, for example one that CI started with
``scripts/kafka_broker.py start``. Otherwise the session starts its own
broker with ``scripts/kafka_broker.py`` and stops it at the end. A broker
that cannot be reached or started fails the tests that need it, so a
missing broker never turns into skipped tests.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "BOOTSTRAP_SERVERS_ENV",
    "ExternalKafkaBroker",
    "bootstrap_servers",
    "kafka_broker",
    "make_consumer",
    "make_producer",
    "restartable_kafka_broker",
    "topic_factory",
]

logger = logging.getLogger(__name__)

BOOTSTRAP_SERVERS_ENV = "STREAMML_TEST_BOOTSTRAP_SERVERS"
BROKER_START_TIMEOUT_S = 120.0
EXTERNAL_BROKER_WAIT_S = 60.0
TOPIC_READY_TIMEOUT_S = 30.0

_BROKER_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kafka_broker.py"


def _load_broker_script() -> ModuleType:
    """Import ``scripts/kafka_broker.py`` as the module ``kafka_broker``, once per process."""
    loaded = sys.modules.get("kafka_broker")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("kafka_broker", _BROKER_SCRIPT)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the Kafka broker script {_BROKER_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look up their module in sys.modules while the module executes.
    sys.modules["kafka_broker"] = module
    spec.loader.exec_module(module)
    return module


broker_script = _load_broker_script()
KafkaBroker = broker_script.KafkaBroker
KafkaBrokerError = broker_script.KafkaBrokerError


@dataclass(frozen=True)
class ExternalKafkaBroker:
    """Broker started outside the test session, named by ``STREAMML_TEST_BOOTSTRAP_SERVERS``."""

    bootstrap_servers: str


def _wait_for_external_broker(bootstrap: str) -> None:
    deadline = time.monotonic() + EXTERNAL_BROKER_WAIT_S
    while True:
        try:
            broker_script.probe_bootstrap_servers(bootstrap, timeout_s=5.0)
            return
        except KafkaBrokerError as error:
            if time.monotonic() >= deadline:
                raise KafkaBrokerError(f"{error} (waited {EXTERNAL_BROKER_WAIT_S:g} s)") from error
        time.sleep(0.5)


def _start_broker(broker: KafkaBroker) -> None:
    try:
        broker.start(timeout_s=BROKER_START_TIMEOUT_S)
        return
    except (KafkaBrokerError, OSError) as error:
        broker.stop()
        failure = (
            f"cannot start the Kafka test broker in {broker.work_dir}: {error}\n"
            f"Set {BOOTSTRAP_SERVERS_ENV}=host:port to use a broker that is already running."
        )
    # Failing outside the except block keeps the chained traceback out of the report.
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KafkaBroker | ExternalKafkaBroker]:
    """Provide the session's broker: the one in ``STREAMML_TEST_BOOTSTRAP_SERVERS`` or a new one."""
    external = os.environ.get(BOOTSTRAP_SERVERS_ENV, "").strip()
    if external:
        failure = None
        try:
            _wait_for_external_broker(external)
        except (KafkaBrokerError, ValueError) as error:
            failure = (
                f"{BOOTSTRAP_SERVERS_ENV}={external!r} names no reachable Kafka broker: {error}\n"
                f"Start the broker, or unset {BOOTSTRAP_SERVERS_ENV} to let the tests start one."
            )
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        yield ExternalKafkaBroker(external)
        return

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-session"))
    _start_broker(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def restartable_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """Provide a broker owned by one test, which the test may stop and restart.

    The test gets its own broker even when ``STREAMML_TEST_BOOTSTRAP_SERVERS``
    is set, so restarting it never disturbs the session broker.
    """
    broker = KafkaBroker(tmp_path / "kafka")
    _start_broker(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_broker: KafkaBroker | ExternalKafkaBroker) -> str:
    """Provide the session broker's ``bootstrap.servers`` string."""
    return kafka_broker.bootstrap_servers


def _wait_for_topic(admin: AdminClient, topic: str, partitions: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_state = "not listed"
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5.0)
        topic_metadata = metadata.topics.get(topic)
        if topic_metadata is not None and topic_metadata.error is None:
            leaders = [partition.leader for partition in topic_metadata.partitions.values()]
            if len(leaders) == partitions and all(leader >= 0 for leader in leaders):
                return
            last_state = f"{len(leaders)} partitions listed, leaders {leaders}"
        elif topic_metadata is not None:
            last_state = f"error {topic_metadata.error}"
        time.sleep(0.1)
    raise TimeoutError(
        f"topic {topic!r} did not get {partitions} partitions with leaders within "
        f"{timeout_s:g} s (last state: {last_state})"
    )


def _session_bootstrap_servers(request: pytest.FixtureRequest) -> str:
    # Resolved on first use, so a test that passes its own bootstrap.servers
    # to a factory does not start the session broker.
    return request.getfixturevalue("bootstrap_servers")


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Provide ``create_topic(prefix=..., partitions=..., config=..., bootstrap_servers=...)``.

    Each call creates a topic named ``<prefix>-<uuid hex>`` on the session
    broker, or on ``bootstrap_servers`` when given, waits until every
    partition has a leader, and returns the name. Teardown deletes the topics.
    """
    admins: dict[str, AdminClient] = {}
    created: list[tuple[str, str]] = []

    def create_topic(
        prefix: str = "streamml-test",
        partitions: int = 1,
        config: dict[str, str] | None = None,
        bootstrap_servers: str | None = None,
    ) -> str:
        bootstrap = bootstrap_servers or _session_bootstrap_servers(request)
        admin = admins.get(bootstrap)
        if admin is None:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admins[bootstrap] = admin

        name = f"{prefix}-{uuid.uuid4().hex}"
        new_topic = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=config or {}
        )
        futures = admin.create_topics([new_topic], operation_timeout=TOPIC_READY_TIMEOUT_S)
        futures[name].result(timeout=TOPIC_READY_TIMEOUT_S)
        created.append((bootstrap, name))
        _wait_for_topic(admin, name, partitions, TOPIC_READY_TIMEOUT_S)
        return name

    yield create_topic

    for bootstrap, name in created:
        futures = admins[bootstrap].delete_topics(
            [name], operation_timeout=10.0, request_timeout=10.0
        )
        try:
            futures[name].result(timeout=15.0)
        except (KafkaException, TimeoutError) as error:
            # A broker that a test stopped for good cannot delete its topics,
            # and the topics go with that broker's temporary storage.
            logger.warning("Failed to delete test topic %s on %s: %s", name, bootstrap, error)


@pytest.fixture
def make_producer(request: pytest.FixtureRequest) -> Iterator[Callable[..., Producer]]:
    """Provide ``create_producer(config=None)`` for Producers closed at teardown.

    ``config`` entries override the defaults. Without ``bootstrap.servers``
    in ``config`` the producer connects to the session broker.
    """
    producers: list[Producer] = []

    def create_producer(config: dict[str, Any] | None = None) -> Producer:
        settings: dict[str, Any] = dict(config or {})
        if "bootstrap.servers" not in settings:
            settings["bootstrap.servers"] = _session_bootstrap_servers(request)
        producer = Producer(settings)
        producers.append(producer)
        return producer

    yield create_producer

    for producer in producers:
        remaining = producer.flush(10.0)
        if remaining:
            logger.warning("Purging %d undelivered messages from a test producer", remaining)
            producer.purge()
            producer.flush(0)
        producer.close()


@pytest.fixture
def make_consumer(request: pytest.FixtureRequest) -> Iterator[Callable[..., Consumer]]:
    """Provide ``create_consumer(config=None, topics=None)`` for Consumers closed at teardown.

    Each consumer gets a unique ``group.id``, ``auto.offset.reset=earliest``
    and the session broker unless ``config`` overrides them. With ``topics``
    it is also subscribed.
    """
    consumers: list[Consumer] = []

    def create_consumer(
        config: dict[str, Any] | None = None, topics: list[str] | None = None
    ) -> Consumer:
        settings: dict[str, Any] = {
            "group.id": f"streamml-test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
        settings.update(config or {})
        if "bootstrap.servers" not in settings:
            settings["bootstrap.servers"] = _session_bootstrap_servers(request)
        consumer = Consumer(settings)
        consumers.append(consumer)
        if topics:
            consumer.subscribe(topics)
        return consumer

    yield create_consumer

    # confluent-kafka 2.16 accepts close() on a consumer that the test already closed.
    for consumer in consumers:
        consumer.close()
