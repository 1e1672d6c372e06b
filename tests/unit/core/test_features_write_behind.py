"""The buffer between the features handler and faust's state table."""

from __future__ import annotations

from types import SimpleNamespace

from streamml.features.faust_app import SOURCE, WriteBehind


class RecordingTable(dict):
    """A dict that records each write with the event current at the time, as faust's changelog would."""

    def __init__(self) -> None:
        super().__init__()
        self.current = None
        self.writes: list[tuple[str, object, object]] = []

    def __setitem__(self, key, value) -> None:
        self.writes.append((key, value, self.current))
        super().__setitem__(key, value)


def _event(offset: int, partition: int = 0) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(partition=partition, offset=offset))


def _write(state: WriteBehind, event, key: str, value: int) -> None:
    state.event = event
    state[key] = {"v": value}


def test_sealed_batch_writes_each_entity_once():
    table = RecordingTable()
    table["a"] = {"v": 0}
    table.writes.clear()
    state = WriteBehind(table)
    events = [_event(offset) for offset in range(3)]
    for event, (key, value) in zip(events, [("a", 1), ("b", 2), ("a", 3)]):
        _write(state, event, key, value)
        assert state[key] == {"v": value}
    assert state.get("missing") is None
    assert sorted(state) == ["a", "b"]
    assert len(state) == 2

    sealed = state.seal()
    assert state.pending == {}
    assert state["a"] == {"v": 3}
    assert table == {"a": {"v": 0}}, "nothing is written before the outputs are acknowledged"

    def make_current(event):
        table.current = event

    state.write_when_ready(sealed, make_current)
    # One write per entity, each with the event that last changed it and that event's position.
    assert table.writes == [("a", {"v": 3, SOURCE: [0, 2]}, events[2]), ("b", {"v": 2, SOURCE: [0, 1]}, events[1])]
    assert state.unwritten == {}


def test_batches_are_written_in_order():
    table = RecordingTable()
    state = WriteBehind(table)
    _write(state, _event(0), "a", 1)
    first = state.seal()
    _write(state, _event(1), "a", 2)
    second = state.seal()

    state.write_when_ready(second, lambda event: None)
    assert table.writes == [], "the second batch waits for the first"
    assert state["a"] == {"v": 2}

    state.write_when_ready(first, lambda event: None)
    assert [value["v"] for _, value, _ in table.writes] == [1, 2]
    assert table["a"] == {"v": 2, SOURCE: [0, 1]}
    assert state.unwritten == {}


def test_applied_reads_the_written_source():
    table = RecordingTable()
    state = WriteBehind(table)
    _write(state, _event(7, partition=1), "a", 1)
    state.write_when_ready(state.seal(), lambda event: None)

    assert state.applied("a", 1, 7)
    assert state.applied("a", 1, 3)
    assert not state.applied("a", 1, 8)
    assert not state.applied("a", 0, 3), "an offset of another partition says nothing"
    assert not state.applied("b", 1, 3)

    # A newer state of this worker, not written yet, means the record is not a replay.
    _write(state, _event(8, partition=1), "a", 2)
    assert not state.applied("a", 1, 3)
