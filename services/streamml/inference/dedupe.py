"""Duplicate suppression for predictions, with the predictions topic as its durable state.

Every prediction's CloudEvent id derives from its input event's id. A feature
vector delivered twice would therefore produce a prediction whose id is already
on the predictions topic, and the inference handler skips it. Such repeats come
from a features worker replaying after a crash, or from this service replaying
its own uncommitted batch.
At start and after each partition assignment the service reloads the ids from
the tail of the predictions topic, reading only the `ce_id` header of each record.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, TopicPartition

from streamml.common.kafka import consumer_config, read_offsets
from streamml.common.recent_ids import RecentIds
from streamml.common.settings import KafkaSettings

logger = logging.getLogger(__name__)


def load_recent_ids(settings: KafkaSettings, topic: str, ids: RecentIds, timeout_s: float = 30.0) -> int:
    """Add the `ce_id` of up to `ids.capacity` newest records of each partition of `topic`; return the count read."""
    consumer = Consumer(consumer_config(settings, group_id=f"streamml-dedupe-{time.time_ns()}"))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            return 0
        ranges = {}
        for partition in described.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            ranges[partition] = (max(low, high - ids.capacity), high)
        read = 0
        try:
            for message in read_offsets(consumer, topic, ranges, timeout_s):
                for name, value in message.headers() or ():
                    if name == "ce_id" and value is not None:
                        ids.add(value.decode("utf-8", errors="replace"))
                        break
                read += 1
        except TimeoutError as error:
            logger.warning("read only part of %s (%s); a replayed input may be predicted twice", topic, error)
        return read
    finally:
        consumer.close()
