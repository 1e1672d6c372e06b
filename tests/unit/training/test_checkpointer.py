"""When training checkpoints, and when its offsets may be committed: only when a checkpoint covers every batch handled."""

from __future__ import annotations

import threading
import time
from streamml.training.service import Checkpointer


class _Handler:
    """The parts of TrainingHandler that the checkpointer reads: a generation and, optionally, a journal."""

    def __init__(self, journal: bool) -> None:
        self.generation = 0
        self.state_lock = threading.Lock()
        self.journal: list[str] | None = [] if journal else None

    def handle(self, *events: str) -> None:
        self.generation += 1
        if self.journal is not None:
            self.journal.extend(events)

    def take_journal(self) -> list[str]:
        events = self.journal or []
        if self.journal is not None:
            self.journal = []
        return events


class _Checkpoints:
    """Records the handler generation of each checkpoint and the events of each journal record.

    Writing a checkpoint takes `delay_s`.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.saved: list[int] = []
        self.appended: list[list[str]] = []
        self.journal_keys: list[int] = []
        self.delay_s = delay_s

    def save(self, handler) -> int:
        with handler.state_lock:
            generation = handler.generation
            handler.take_journal()
        time.sleep(self.delay_s)
        self.saved.append(generation)
        self.journal_keys = []
        return generation

    def append(self, events: list[str]) -> None:
        self.appended.append(events)
        self.journal_keys.append(len(self.appended))


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _checkpointer(interval_s: float = 5.0, delay_s: float = 0.0, journal: bool = False):
    handler, checkpoints, clock = _Handler(journal), _Checkpoints(delay_s), _Clock()
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


def test_push_journal_between_checkpoints():
    handler, checkpoints, clock, checkpointer = _checkpointer(journal=True)
    handler.handle("a")
    checkpointer.cover_handled()
    assert checkpoints.saved == [1], "the first request finds no checkpoint, so it writes one"

    handler.handle("b", "c")
    checkpointer.cover_handled()
    handler.handle("d")
    checkpointer.cover_handled()
    assert checkpoints.appended == [["b", "c"], ["d"]]
    assert checkpoints.saved == [1]

    clock.now += 5
    handler.handle("e")
    checkpointer.cover_handled()
    assert checkpoints.saved == [1, 4]
    assert checkpoints.appended == [["b", "c"], ["d"]]


def test_push_drain_checkpoints_the_journal():
    handler, checkpoints, clock, checkpointer = _checkpointer(journal=True)
    handler.handle("a")
    checkpointer.cover_handled()
    handler.handle("b")
    checkpointer.cover_handled()
    assert checkpoints.journal_keys == [1]
    checkpointer.drain()
    assert checkpoints.saved == [1, 2]
    assert checkpoints.journal_keys == []
