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


def test_restore_continues_published_numbers(make_spec, feature_event, label_event):
    """Versions published after the checkpoint are not published again: the next number follows the newest."""
    spec = make_spec(training={"every_events": 20, "batch_size": 1})
    events = []
    for index in range(100):
        events.append(feature_event(spec, f"r{index}", [0.1 * (index % 7), 0.5, 1.0]))
        events.append(label_event(f"r{index}", "yes" if index % 2 else "no"))
    original = TrainingHandler(spec)
    original.handle_batch(events[:60])
    saved = decode_checkpoint(encode_checkpoint(original.version or 0, original.learner.state_dict(), original.join_state()))
    assert saved["version"] == 1
    # Versions 2 and 3 were published, then the process died before its next checkpoint.
    resumed = TrainingHandler(spec)
    resumed.restore(saved["learner"], saved["version"], saved["join"], published=3)
    assert resumed.version == 3
    outputs = [output for result in resumed.handle_batch(events[60:]) for output in result]
    versions = [output.event.get_data()["version"] for output in outputs]
    assert versions == [4, 5, 6, 7]
    assert resumed.learner.samples == 100


def test_join_state_of_earlier_release_restores(make_spec, feature_event, label_event):
    """Checkpoints written before the columnar join state kept one [id, order, value] entry per record."""
    spec = make_spec(training={"every_events": 40, "batch_size": 16})
    original = TrainingHandler(spec)
    original.handle_batch([feature_event(spec, "r1", [0.1, 0.2, 0.3]), label_event("r2", "yes")])
    state = original.join_state()
    features, labels = state["pending_features"], state["pending_labels"]
    state["pending_features"] = [list(entry) for entry in zip(features["ids"], features["orders"], features["values"])]
    state["pending_labels"] = [list(entry) for entry in zip(labels["ids"], labels["orders"], labels["targets"])]
    saved = decode_checkpoint(encode_checkpoint(original.version or 0, original.learner.state_dict(), state))
    resumed = TrainingHandler(spec)
    resumed.restore(saved["learner"], saved["version"], saved["join"])

    assert resumed.pending == (1, 1)
    assert resumed.join_state()["pending_labels"] == original.join_state()["pending_labels"]
    np.testing.assert_array_equal(resumed.join_state()["pending_features"]["values"], features["values"])
