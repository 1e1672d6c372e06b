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
