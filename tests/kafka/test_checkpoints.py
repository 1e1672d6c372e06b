"""Training checkpoints on a real compacted topic: one record, or parts and a manifest when large."""

from __future__ import annotations

import numpy as np
import pytest

from streamml.common.kafka import Emitter, read_compacted
from streamml.common.settings import KafkaSettings
from streamml.training.checkpoints import PART_BYTES, CheckpointError, KafkaCheckpoints
from streamml.training.handler import TrainingHandler
from tests.unit.training.conftest import _build_spec, _feature_event

pytestmark = pytest.mark.kafka

MODEL = "checkpointed"
BARRIER = b"barrier"


@pytest.fixture
def store(bootstrap_servers, topic_factory):
    topic = topic_factory(prefix="checkpoints", config={"cleanup.policy": "compact"})
    emitter = Emitter(KafkaSettings(bootstrap_servers=bootstrap_servers))
    yield KafkaCheckpoints(KafkaSettings(bootstrap_servers=bootstrap_servers), topic, emitter, MODEL)
    emitter.close()


def _handler_waiting_for_labels(vectors: int) -> TrainingHandler:
    """Return a handler holding `vectors` feature vectors whose labels have not arrived."""
    spec = _build_spec(training={"every_events": 40, "batch_size": 16})
    handler = TrainingHandler(spec)
    rng = np.random.default_rng(3)
    handler.handle_batch([_feature_event(spec, f"r{index}", rng.random(3).tolist()) for index in range(vectors)])
    handler.version = 7
    return handler


def _live_keys(store: KafkaCheckpoints) -> dict[bytes, bytes]:
    """Return each key's newest value on the topic, without the keys whose newest record is a tombstone.

    The tombstones that `save` and `restore` send are not waited for. A record sent after them
    by the same producer to the one partition is acknowledged only after them, so it is waited for first.
    """
    store.emitter.wait([store.emitter.send_raw(store.topic, BARRIER, b"")])
    newest: dict[bytes, bytes | None] = {}
    for message in read_compacted(store.settings, store.topic):
        newest[message.key()] = message.value()
    return {key: value for key, value in newest.items() if value is not None and key != BARRIER}


def test_large_checkpoint_round_trip_in_parts(store):
    handler = _handler_waiting_for_labels(40_000)
    store.save(handler)
    live = _live_keys(store)
    parts = [key for key in live if key.startswith(MODEL.encode() + b"/")]
    assert len(parts) >= 2
    assert all(len(live[key]) <= PART_BYTES for key in parts)

    resumed = TrainingHandler(handler.spec)
    assert KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL).restore(resumed, 7)
    assert resumed.version == 7
    assert resumed.pending == handler.pending == (40_000, 0)


def test_new_checkpoint_deletes_old_parts(store):
    store.save(_handler_waiting_for_labels(40_000))
    first = {key for key in _live_keys(store) if key != MODEL.encode()}
    store.save(_handler_waiting_for_labels(30_000))
    second = {key for key in _live_keys(store) if key != MODEL.encode()}
    assert first
    assert second
    assert not first & second

    store.save(_handler_waiting_for_labels(10))
    assert list(_live_keys(store)) == [MODEL.encode()]


def test_restore_deletes_parts_without_manifest(store):
    handler = _handler_waiting_for_labels(30_000)
    store.save(handler)
    named = {key for key in _live_keys(store) if key != MODEL.encode()}
    # Parts of a checkpoint whose writer crashed before its manifest.
    orphan = MODEL.encode() + b"/0123456789abcdef/0"
    store.emitter.wait([store.emitter.send_raw(store.topic, orphan, b"part")])

    resumed = TrainingHandler(handler.spec)
    restoring = KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL)
    assert restoring.restore(resumed, 7)
    live = set(_live_keys(store))
    assert orphan not in live
    assert named <= live
    assert resumed.pending == (30_000, 0)


def test_missing_part_fails_restore(store):
    handler = _handler_waiting_for_labels(30_000)
    store.save(handler)
    part = next(key for key in _live_keys(store) if key != MODEL.encode())
    store.emitter.wait([store.emitter.send_raw(store.topic, part, None)])

    restoring = KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL)
    with pytest.raises(CheckpointError, match="missing"):
        restoring.restore(TrainingHandler(handler.spec), 7)


def test_damaged_part_fails_restore(store):
    handler = _handler_waiting_for_labels(30_000)
    store.save(handler)
    part = next(key for key in _live_keys(store) if key != MODEL.encode())
    store.emitter.wait([store.emitter.send_raw(store.topic, part, b"not the part that was written")])

    restoring = KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL)
    with pytest.raises(CheckpointError, match="do not match its manifest"):
        restoring.restore(TrainingHandler(handler.spec), 7)
