"""The training service's commit gate: offsets are committed only right after a checkpoint that contains them."""

from __future__ import annotations

from types import SimpleNamespace

from streamml.training.service import CommitGate


class _Checkpoints:
    def __init__(self) -> None:
        self.saved: list[int] = []

    def save(self, handler) -> None:
        self.saved.append(handler.version)


def test_commit_follows_checkpoint_of_same_batch():
    handler, checkpoints = SimpleNamespace(version=0), _Checkpoints()
    gate = CommitGate(handler, checkpoints)
    gate.batch_started()
    gate.save_if_published()
    assert gate.allows_commit() is False

    gate.batch_started()
    handler.version = 1
    gate.save_if_published()
    assert checkpoints.saved == [1]
    assert gate.allows_commit() is True
    assert gate.allows_commit() is False


def test_time_cadence_checkpoint_does_not_cover_next_batch():
    handler, checkpoints = SimpleNamespace(version=3), _Checkpoints()
    gate = CommitGate(handler, checkpoints)
    # A pass without records publishes version 4 on the time cadence, and nothing is committed.
    gate.batch_started()
    handler.version = 4
    gate.save_if_published()
    assert checkpoints.saved == [4]
    # The next batch's records are not in that checkpoint, so its offsets stay uncommitted.
    gate.batch_started()
    gate.save_if_published()
    assert gate.allows_commit() is False
