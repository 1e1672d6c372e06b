"""A bounded set of recent event ids, the memory of the services that skip redelivered inputs."""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """The newest `capacity` ids, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def discard(self, event_id: str) -> None:
        self._ids.pop(event_id, None)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def input_marker(source: str, event_id: str) -> str:
    """Return the key of an input in a set of recent ids: its CloudEvents source and id."""
    # A CloudEvents String contains no control characters, so a newline separates the two.
    return f"{source}\n{event_id}"
