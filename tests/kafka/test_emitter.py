"""The Emitter against the real test broker: a batch's future, and the event named when the broker rejects one."""

from __future__ import annotations

import base64
import os

import pytest

from streamml.common.events import Output, new_event
from streamml.common.kafka import DeliveryError, Emitter
from streamml.common.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def _output(topic: str, event_id: str, size: int) -> Output:
    # Random text, which the producer's lz4 compression cannot shrink below the topic's limit.
    text = base64.b64encode(os.urandom(size)).decode()
    return Output(topic, new_event(id=event_id, type="io.streamml.test.v1", source="/tests", subject="s", data={"text": text}))


def test_batch_future_names_rejected_event(bootstrap_servers, topic_factory):
    # The broker rejects a whole record batch, so the record that fits goes to another topic.
    small = topic_factory(prefix="emitter-small", config={"max.message.bytes": "400"})
    other = topic_factory(prefix="emitter-other")
    emitter = Emitter(KafkaSettings(bootstrap_servers=bootstrap_servers))
    try:
        emitter.wait(emitter.send_all([_output(small, "fits-1", 10), _output(other, "fits-2", 2000)]))
        with pytest.raises(DeliveryError) as raised:
            emitter.wait(emitter.send_all([_output(other, "fits-3", 10), _output(small, "too-big", 2000)]))
    finally:
        emitter.close()
    assert raised.value.event_id == "too-big"
    assert small in str(raised.value)
