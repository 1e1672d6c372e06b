"""read_compacted stops with StateError, not with part of a topic, when the records stop before the end."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition

from streamml.common import kafka
from streamml.common.errors import StateError
from streamml.common.settings import KafkaSettings


class _Record:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class _StallingConsumer:
    """A consumer of a one-partition topic with offsets 0 to 9 that delivers offsets 0 to 2 and then nothing."""

    def __init__(self, config: dict) -> None:
        self.pending = [_Record(offset) for offset in range(3)]
        self.next_offset = -1001

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions={0: None})})

    def get_watermark_offsets(self, partition, timeout: float) -> tuple[int, int]:
        return 0, 10

    def assign(self, partitions) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[_Record]:
        delivered, self.pending = self.pending, []
        if delivered:
            self.next_offset = delivered[-1].offset() + 1
        return delivered

    def position(self, partitions) -> list[TopicPartition]:
        return [TopicPartition(partition.topic, partition.partition, self.next_offset) for partition in partitions]

    def unassign(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_stalled_read_raises_state_error(monkeypatch):
    monkeypatch.setattr(kafka, "Consumer", _StallingConsumer)
    read = []
    with pytest.raises(StateError, match=r"\[0\] at 3 of 10"):
        for message in kafka.read_compacted(KafkaSettings(bootstrap_servers="127.0.0.1:9"), "state", timeout_s=0.5):
            read.append(message.offset())
    assert read == [0, 1, 2]
