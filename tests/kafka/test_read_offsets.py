"""Reading offset ranges on the real broker, where a transaction leaves offsets that hold no record.

A transactional producer writes a commit or abort marker after its records, so a topic's
end offset can lie past its last record. The faust worker writes its changelog that way
with `processing_guarantee=exactly_once`.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition

from streamml.common.kafka import read_compacted
from streamml.common.recent_ids import RecentIds
from streamml.common.settings import KafkaSettings
from streamml.features.faust_app import GapReader
from streamml.inference.dedupe import load_recent_ids

pytestmark = pytest.mark.kafka

TIMEOUT_S = 5.0


def _transactional(make_producer, make_consumer, topic: str, committed: int, aborted: int = 0) -> None:
    """Write `committed` records in a committed transaction, then `aborted` in an aborted one.

    Return once the topic's end offset, as a read_committed consumer gets it, is past the last
    marker. The coordinator writes the markers after the transaction's end returns, and until
    then that end offset stops before the transaction.
    """
    producer = make_producer({"transactional.id": f"{topic}-writer"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for index in range(committed):
        producer.produce(topic, key=b"k", value=f"{index}".encode(), headers=[("ce_id", f"id-{index}".encode())])
    producer.commit_transaction(30)
    if aborted:
        producer.begin_transaction()
        for index in range(aborted):
            producer.produce(topic, key=b"k", value=b"aborted", headers=[("ce_id", b"aborted")])
        producer.flush(30)
        producer.abort_transaction(30)
    end = committed + 1 + (aborted + 1 if aborted else 0)
    consumer = make_consumer()
    deadline = time.monotonic() + 30
    while consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1] < end:
        assert time.monotonic() < deadline, f"the end of {topic} did not reach offset {end} within 30 s"
        time.sleep(0.05)


def test_compacted_read_ends_at_marker(bootstrap_servers, topic_factory, make_producer, make_consumer):
    topic = topic_factory(prefix="read-marker")
    _transactional(make_producer, make_consumer, topic, committed=5)
    started = time.monotonic()
    values = [message.value() for message in read_compacted(KafkaSettings(bootstrap_servers=bootstrap_servers), topic, timeout_s=TIMEOUT_S)]
    assert values == [b"0", b"1", b"2", b"3", b"4"]
    assert time.monotonic() - started < TIMEOUT_S


def test_compacted_read_skips_aborted(bootstrap_servers, topic_factory, make_producer, make_consumer):
    topic = topic_factory(prefix="read-aborted")
    _transactional(make_producer, make_consumer, topic, committed=3, aborted=2)
    values = [message.value() for message in read_compacted(KafkaSettings(bootstrap_servers=bootstrap_servers), topic, timeout_s=TIMEOUT_S)]
    assert values == [b"0", b"1", b"2"]


def test_recent_ids_end_at_marker(bootstrap_servers, topic_factory, make_producer, make_consumer):
    topic = topic_factory(prefix="ids-marker")
    _transactional(make_producer, make_consumer, topic, committed=4)
    ids = RecentIds(10)
    started = time.monotonic()
    assert load_recent_ids(KafkaSettings(bootstrap_servers=bootstrap_servers), topic, ids, timeout_s=TIMEOUT_S) == 4
    assert time.monotonic() - started < TIMEOUT_S
    assert "id-3" in ids


def test_gap_reader_ends_at_marker(bootstrap_servers, topic_factory, make_producer, make_consumer):
    topic = topic_factory(prefix="gap-marker")
    _transactional(make_producer, make_consumer, topic, committed=3)
    reader = GapReader(KafkaSettings(bootstrap_servers=bootstrap_servers), timeout_s=TIMEOUT_S)
    try:
        # Offsets 1 to 3: two records and the commit marker.
        assert [record.offset() for record in reader.read(topic, 0, 1, 4)] == [1, 2]
    finally:
        reader.close()
