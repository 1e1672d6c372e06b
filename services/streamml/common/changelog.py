"""A per-entity state store mirrored to a compacted Kafka changelog topic.

The features service uses it in push mode (HTTP deliveries from a KafkaSource).
It writes the same topic and format as the faust table of pull mode, keys and
values as JSON, so a pipeline can switch modes and keep its windows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, MutableMapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient, NewTopic

from streamml.common.kafka import Emitter, read_compacted
from streamml.common.settings import KafkaSettings

logger = logging.getLogger(__name__)


def ensure_compacted_topic(settings: KafkaSettings, topic: str, partitions: int = 1) -> None:
    """Create a compacted topic unless it exists."""
    admin = AdminClient(settings.client_config())
    future = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config={"cleanup.policy": "compact"})]
    )[topic]
    try:
        future.result(timeout=30)
    except KafkaException as error:
        if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise


class ChangelogStore(MutableMapping[str, Any]):
    """A dict of entity state whose every write is produced to a changelog topic.

    Loading reads the topic from the beginning, so the newest value per entity
    wins and tombstones delete. `flush` blocks until the brokers acknowledged
    every write made so far; callers flush before they acknowledge the input.
    """

    # NOTE: writes are partitioned by the JSON-encoded key, while the faust table writes each entity's
    # state to its raw record's partition. Switching modes keeps state only when the raw topic has one partition.
    def __init__(self, settings: KafkaSettings, topic: str, emitter: Emitter) -> None:
        self.topic = topic
        self._emitter = emitter
        self._data: dict[str, Any] = {}
        self._pending: list[Future[Message]] = []
        for message in read_compacted(settings, topic, timeout_s=60.0):
            key = json.loads(message.key()) if message.key() else None
            if key is None:
                continue
            if message.value() is None:
                self._data.pop(key, None)
            else:
                self._data[key] = json.loads(message.value())
        logger.info("loaded state of %d entities from %s", len(self._data), topic)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._pending.append(self._emitter.send_raw(self.topic, json.dumps(key).encode(), json.dumps(value).encode()))

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._pending.append(self._emitter.send_raw(self.topic, json.dumps(key).encode(), None))

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def flush(self, timeout_s: float = 30.0) -> None:
        pending, self._pending = self._pending, []
        self._emitter.wait(pending, timeout_s=timeout_s)
