"""The buffer between the features handler and faust's state table."""

from __future__ import annotations

from streamml.features.faust_app import WriteBehind


class RecordingTable(dict):
    """A dict that records each write with the event current at the time, as faust's changelog would."""

    def __init__(self) -> None:
        super().__init__()
        self.current = None
        self.writes: list[tuple[str, object, object]] = []

    def __setitem__(self, key, value) -> None:
        self.writes.append((key, value, self.current))
        super().__setitem__(key, value)


def test_flush_writes_each_entity_once():
    table = RecordingTable()
    table["a"] = 0
    table.writes.clear()
    state = WriteBehind(table)
    for event, (key, value) in enumerate([("a", 1), ("b", 2), ("a", 3)]):
        state.event = event
        state[key] = value
        assert state[key] == value
    assert state.get("a") == 3
    assert state.get("missing") is None
    assert sorted(state) == ["a", "b"]
    assert len(state) == 2
    assert table == {"a": 0}

    def make_current(event):
        table.current = event

    state.flush(make_current)
    # One write per entity, each with the event that last changed it.
    assert table.writes == [("a", 3, 2), ("b", 2, 1)]
    assert state.pending == {}
    assert state["a"] == 3
