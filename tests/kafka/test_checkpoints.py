"""Training checkpoints on a real compacted topic: one record, or parts and a manifest when large."""

from __future__ import annotations

import numpy as np
import pytest

from streamml.common.kafka import Emitter, read_compacted
from streamml.common.settings import KafkaSettings
from streamml.training.checkpoints import PART_BYTES, CheckpointError, KafkaCheckpoints
from streamml.training.handler import TrainingHandler
from tests.unit.training.conftest import _build_spec, _feature_event, _label_event

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


def _journaling_handler(records: int) -> tuple[TrainingHandler, list]:
    """Return a handler that keeps a journal, and feature vectors and labels of `records` records.

    Each label comes two records behind its vector.
    """
    spec = _build_spec(training={"every_events": 40, "batch_size": 16})
    handler = TrainingHandler(spec)
    handler.journal = []
    rng = np.random.default_rng(5)
    events = []
    for index in range(records):
        events.append(_feature_event(spec, f"r{index}", rng.random(3).round(4).tolist()))
        if index >= 2:
            events.append(_label_event(f"r{index - 2}", "yes" if index % 3 else "no"))
    return handler, events


def test_journal_after_checkpoint_restores_exactly(store):
    original, events = _journaling_handler(150)
    spec = original.spec
    original.handle_batch(events[:100])
    store.save(original)
    # Two requests after the checkpoint, each written to the journal before its response.
    for batch in (events[100:180], events[180:250]):
        original.handle_batch(batch)
        with original.state_lock:
            store.append(original.take_journal())

    resumed = TrainingHandler(spec)
    restoring = KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL)
    assert restoring.restore(resumed, original.version or 0)
    assert resumed.learner.samples == original.learner.samples
    assert resumed.pending == original.pending
    assert resumed.waiting_in_block == original.waiting_in_block
    assert resumed.version == original.version
    probe = np.random.default_rng(6).random((8, 3)).astype(np.float32)
    np.testing.assert_array_equal(resumed.learner.predict_many(probe), original.learner.predict_many(probe))

    # The next checkpoint deletes the journal that the restore handled.
    assert len(restoring.journal_keys) == 2
    restoring.save(resumed)
    assert list(_live_keys(store)) == [MODEL.encode()]


def test_journal_before_newest_checkpoint_is_not_handled(store):
    original, events = _journaling_handler(60)
    spec = original.spec
    original.handle_batch(events[:50])
    with original.state_lock:
        store.append(original.take_journal())
    stale = list(store.journal_keys)
    # A second writer's checkpoint, which does not know the first one's journal, follows it.
    other = KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL)
    other.save(TrainingHandler(spec))

    resumed = TrainingHandler(spec)
    assert KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL).restore(resumed, 0)
    assert resumed.pending == (0, 0)
    assert resumed.learner.samples == 0
    assert not set(stale) & set(_live_keys(store))


def test_damaged_journal_fails_restore(store):
    spec = _build_spec(training={"every_events": 40, "batch_size": 16})
    store.save(TrainingHandler(spec))
    key = MODEL.encode() + b"/journal/0123456789abcdef"
    store.emitter.wait([store.emitter.send_raw(store.topic, key, b"[{not json")])

    restoring = KafkaCheckpoints(store.settings, store.topic, store.emitter, MODEL)
    with pytest.raises(CheckpointError, match="journal"):
        restoring.restore(TrainingHandler(spec), 0)
