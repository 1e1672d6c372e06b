"""A per-entity state store mirrored to a compacted Kafka changelog topic.

The features service uses it in push mode (HTTP deliveries from a KafkaSource).
It writes the same topic and format as the faust table of pull mode, keys and
values as JSON, so a pipeline can switch modes and keep its windows.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streamml.common.kafka import Emitter, read_compacted
from streamml.common.recent_ids import RecentIds, input_marker
from streamml.common.settings import KafkaSettings

logger = logging.getLogger(__name__)

#: Key of each state written in push mode that lists the inputs the write applies, as [source, id] pairs.
APPLIED = "applied"
_DELETED = object()
MIN_COMPACTION_LAG_MS = 3_600_000


def ensure_compacted_topic(settings: KafkaSettings, topic: str, partitions: int = 1) -> None:
    """Create a compacted topic unless it exists.

    Records stay uncompacted for an hour, so a restart within that time finds every
    recent write and the inputs it names, not only the newest write per key.
    """
    admin = AdminClient(settings.client_config())
    config = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(MIN_COMPACTION_LAG_MS)}
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)])[topic]
    try:
        future.result(timeout=30)
    except KafkaException as error:
        if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise


class ChangelogStore(MutableMapping[str, Any]):
    """A dict of entity state whose writes are staged, then produced to a changelog topic on `commit`.

    Reads see the staged writes. `commit` produces them, each with the inputs it applies,
    waits for the brokers' acknowledgements and only then makes them the committed state.
    `discard` drops them. Loading reads the topic from the beginning, so the newest value per
    entity wins and tombstones delete. It also remembers the newest `recent` inputs named on
    each partition, so that `applied` recognises an input delivered again after a restart.
    """

    # NOTE: writes are partitioned by the JSON-encoded key, while the faust table writes each entity's
    # state to its raw record's partition. Switching modes keeps state only when the raw topic has one partition.
    def __init__(self, settings: KafkaSettings, topic: str, emitter: Emitter, recent: int = 20_000) -> None:
        self.topic = topic
        self._emitter = emitter
        self._data: dict[str, Any] = {}
        self._staged: dict[str, Any] = {}
        # The newest `recent` inputs of each partition, which the topic yields one partition after another.
        newest: dict[int, deque[str]] = {}
        for message in read_compacted(settings, topic, timeout_s=60.0):
            key = json.loads(message.key()) if message.key() else None
            if key is None:
                continue
            if message.value() is None:
                self._data.pop(key, None)
                continue
            value = json.loads(message.value())
            self._data[key] = value
            markers = newest.setdefault(message.partition(), deque(maxlen=recent))
            for pair in value.get(APPLIED, ()) if isinstance(value, dict) else ():
                if isinstance(pair, list) and len(pair) == 2:
                    markers.append(input_marker(*pair))
        self._applied = RecentIds(recent * max(1, len(newest)))
        for markers in newest.values():
            for marker in markers:
                self._applied.add(marker)
        logger.info("loaded state of %d entities and %d recent inputs from %s", len(self._data), len(self._applied), topic)

    def __getitem__(self, key: str) -> Any:
        if key in self._staged:
            value = self._staged[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._staged[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._staged[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        keys = (self._data.keys() | self._staged.keys()) - {key for key, value in self._staged.items() if value is _DELETED}
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def applied(self, source: str, event_id: str) -> bool:
        """Return whether a committed write applied the input with this CloudEvents source and id."""
        return input_marker(source, event_id) in self._applied

    def commit(self, inputs: Sequence[tuple[str, str]] = (), timeout_s: float = 30.0) -> None:
        """Produce the staged writes, each naming `inputs` as (source, id) pairs, and wait for them.

        On a failure the staged writes are dropped, so the caller's retry starts from the
        committed state, and the error is raised.
        """
        staged, self._staged = self._staged, {}
        futures = []
        for key, value in staged.items():
            encoded_key = json.dumps(key).encode()
            if value is _DELETED:
                futures.append(self._emitter.send_raw(self.topic, encoded_key, None))
            else:
                written = {**value, APPLIED: [list(pair) for pair in inputs]}
                futures.append(self._emitter.send_raw(self.topic, encoded_key, json.dumps(written).encode()))
        self._emitter.wait(futures, timeout_s=timeout_s)
        for key, value in staged.items():
            if value is _DELETED:
                self._data.pop(key, None)
            else:
                self._data[key] = value
        for source, event_id in inputs:
            self._applied.add(input_marker(source, event_id))

    def discard(self) -> None:
        """Drop the staged writes."""
        self._staged = {}
