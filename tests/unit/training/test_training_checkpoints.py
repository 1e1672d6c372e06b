import pickle

import numpy as np
import pytest

from streamml.training.checkpoints import decode_checkpoint, encode_checkpoint
from streamml.training.handler import TrainingHandler


def test_checkpoint_round_trip(elec2_spec):
    trained = TrainingHandler(elec2_spec)
    width = trained.learner.n_features
    rng = np.random.default_rng(0)
    for step in range(50):
        trained.learner.learn_one(rng.random(width), step % 2)
    saved = decode_checkpoint(encode_checkpoint(4, trained.learner.state_dict()))
    resumed = TrainingHandler(elec2_spec)
    resumed.restore(saved["learner"], saved["version"])
    probe = rng.random((8, width)).astype(np.float32)
    assert resumed.version == 4
    assert resumed.learner.samples == 50
    np.testing.assert_allclose(resumed.learner.predict_many(probe), trained.learner.predict_many(probe))


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_rejects_arbitrary_objects():
    with pytest.raises(pickle.UnpicklingError):
        decode_checkpoint(pickle.dumps({"version": 1, "learner": Payload()}))


def test_join_state_resumes_exactly(make_spec, feature_event, label_event):
    """A handler restored from a checkpoint with join state learns the rest of the stream as the original does."""
    spec = make_spec(training={"every_events": 40, "batch_size": 16})
    rng = np.random.default_rng(1)
    events = []
    for index in range(200):
        values = rng.random(3).round(4).tolist()
        events.append(feature_event(spec, f"r{index}", values))
        # Labels run 5 records behind their vectors, so some vectors wait for a partner at any time.
        if index >= 5:
            events.append(label_event(f"r{index - 5}", "yes" if index % 3 else "no"))
    original = TrainingHandler(spec)
    original.handle_batch(events[:150])
    saved = decode_checkpoint(encode_checkpoint(original.version or 0, original.learner.state_dict(), original.join_state()))
    resumed = TrainingHandler(spec)
    resumed.restore(saved["learner"], saved["version"], saved["join"])

    assert resumed.pending == original.pending
    assert resumed.pending != (0, 0)
    original.handle_batch(events[150:])
    resumed.handle_batch(events[150:])
    probe = rng.random((8, 3)).astype(np.float32)
    assert resumed.learner.samples == original.learner.samples
    assert resumed.version == original.version
    np.testing.assert_array_equal(resumed.learner.predict_many(probe), original.learner.predict_many(probe))


class _RecordingEmitter:
    def __init__(self) -> None:
        self.sent = []

    def send_raw(self, topic, key, value):
        self.sent.append((topic, key, value))
        return None

    def wait(self, futures, timeout_s=30.0):
        pass


def test_oversized_checkpoint_is_not_saved(elec2_spec, monkeypatch):
    # The service commits offsets only after a checkpoint that `save` reports as written.
    from streamml.common.settings import KafkaSettings
    from streamml.training import checkpoints

    emitter = _RecordingEmitter()
    store = checkpoints.KafkaCheckpoints(KafkaSettings(bootstrap_servers="127.0.0.1:9"), "checkpoints", emitter, "model")
    handler = TrainingHandler(elec2_spec)
    assert store.save(handler) is True
    assert len(emitter.sent) == 1
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", 10)
    assert store.save(handler) is False
    assert len(emitter.sent) == 1
