"""Consumer lag of the faust worker's raw partitions, exported as `streamml_consumer_lag_records`.

librdkafka's statistics serve the other services; the faust worker consumes with
aiokafka, which has none. Here the lag of a partition is its last offset, which
faust requests from the brokers, minus the next offset the worker will process. For
a partition that has delivered no record to the worker yet, the consumer's fetch
position is used instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from streamml.common.metrics import set_partition_lags

logger = logging.getLogger(__name__)

_TIMEOUT_S = 10.0


class PartitionLag:
    """Lag gauges of one topic's assigned partitions, refreshed from a faust consumer."""

    def __init__(self, service: str, topic: str, next_offsets: Mapping[tuple[str, int], int]) -> None:
        self.service = service
        self.topic = topic
        self._next_offsets = next_offsets
        self._partitions: set[tuple[str, int]] = set()

    async def refresh(self, consumer: Any) -> None:
        """Set the gauge of every assigned partition of the topic and drop those no longer assigned."""
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == self.topic]
            ends = await asyncio.wait_for(consumer.highwaters(*assigned), _TIMEOUT_S) if assigned else {}
            lags: dict[tuple[str, int], int] = {}
            for tp in assigned:
                position = self._next_offsets.get((tp.topic, tp.partition))
                if position is None:
                    position = await asyncio.wait_for(consumer.position(tp), _TIMEOUT_S)
                end = ends.get(tp)
                if end is not None and position is not None:
                    lags[(tp.topic, tp.partition)] = max(0, end - position)
        except Exception as error:  # faust raises ConsumerNotStarted before the start and aiokafka's errors after
            logger.debug("consumer lag of %s not refreshed: %r", self.topic, error)
            return
        self._partitions = set_partition_lags(self.service, lags, self._partitions)

    def clear(self) -> None:
        self._partitions = set_partition_lags(self.service, {}, self._partitions)
