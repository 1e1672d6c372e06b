"""When training checkpoints, and when its offsets may be committed: only when a checkpoint covers every batch handled."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from streamml.training.service import Checkpointer


class _Checkpoints:
    """Records the handler generation of each checkpoint, optionally taking `delay_s` to write one."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.saved: list[int] = []
        self.delay_s = delay_s

    def save(self, handler) -> int:
        generation = handler.generation
        time.sleep(self.delay_s)
        self.saved.append(generation)
        return generation


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _checkpointer(interval_s: float = 5.0, delay_s: float = 0.0):
    handler, checkpoints, clock = SimpleNamespace(generation=0), _Checkpoints(delay_s), _Clock()
    return handler, checkpoints, clock, Checkpointer(handler, checkpoints, interval_s, clock=clock)


def test_pull_checkpoint_interval():
    handler, checkpoints, clock, checkpointer = _checkpointer()
    handler.generation = 1
    checkpointer.after_batch()
    assert checkpoints.saved == [1]
    assert checkpointer.allows_commit()

    clock.now += 1
    handler.generation = 2
    checkpointer.after_batch()
    assert checkpoints.saved == [1]
    assert not checkpointer.allows_commit(), "batch 2 is not in any checkpoint yet"

    clock.now += 4
    handler.generation = 3
    checkpointer.after_batch()
    assert checkpoints.saved == [1, 3]
    assert checkpointer.allows_commit()


def test_pull_idle_writes_nothing():
    handler, checkpoints, clock, checkpointer = _checkpointer(interval_s=0)
    checkpointer.after_batch()
    clock.now += 60
    checkpointer.after_batch()
    assert checkpoints.saved == []
    assert checkpointer.allows_commit()


def test_cadence_checkpoint_misses_next_batch():
    handler, checkpoints, clock, checkpointer = _checkpointer(interval_s=0)
    # A pass without records publishes a version on the time cadence, and it is checkpointed.
    handler.generation = 1
    checkpointer.after_batch()
    # The next batch's records are handled after that checkpoint: no commit until the next one.
    handler.generation = 2
    assert not checkpointer.allows_commit()
    checkpointer.after_batch()
    assert checkpoints.saved == [1, 2]
    assert checkpointer.allows_commit()


def test_drain_writes_held_back_checkpoint():
    handler, checkpoints, clock, checkpointer = _checkpointer()
    handler.generation = 1
    checkpointer.after_batch()
    handler.generation = 2
    checkpointer.after_batch()
    assert checkpoints.saved == [1]
    assert checkpointer.drain() is True
    assert checkpoints.saved == [1, 2]
    # A second drain has nothing to add.
    assert checkpointer.drain() is True
    assert checkpoints.saved == [1, 2]


def test_push_waiting_requests_share_checkpoint():
    handler, checkpoints, clock, checkpointer = _checkpointer(delay_s=0.2)
    handler.generation = 1
    first = threading.Thread(target=checkpointer.cover_handled)
    first.start()
    time.sleep(0.05)
    # Three more requests are handled while the first request's checkpoint is written.
    waiting = []
    for _ in range(3):
        handler.generation += 1
        thread = threading.Thread(target=checkpointer.cover_handled)
        thread.start()
        waiting.append(thread)
    for thread in [first, *waiting]:
        thread.join(timeout=5)
    assert checkpoints.saved == [1, 4], "the three later requests should share one checkpoint"
    assert checkpointer.covered == 4


def test_push_covered_request_writes_nothing():
    handler, checkpoints, clock, checkpointer = _checkpointer()
    handler.generation = 2
    checkpointer.cover_handled()
    checkpointer.cover_handled()
    assert checkpoints.saved == [2]
