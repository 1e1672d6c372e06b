"""An in-memory event bus: the embedded transport of `streamml demo` and of fast unit tests.

Topics are FIFO queues of CloudEvents. `run_until_idle` hands each topic's queued
events to its subscribers in micro-batches until every queue is empty.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence

from cloudevents.core.v1.event import CloudEvent

from streamml.common.events import Output

Subscriber = Callable[[Sequence[CloudEvent]], Iterable[Output]]


class InMemoryBus:
    """Delivers outputs to subscribers within one process, in publication order per topic."""

    def __init__(self, batch_size: int = 256) -> None:
        self.batch_size = batch_size
        self._queues: dict[str, deque[CloudEvent]] = defaultdict(deque)
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)
        self.published: dict[str, int] = defaultdict(int)

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._subscribers[topic].append(subscriber)

    def publish(self, outputs: Iterable[Output]) -> None:
        for output in outputs:
            self.published[output.topic] += 1
            if self._subscribers.get(output.topic):
                self._queues[output.topic].append(output.event)

    def run_until_idle(self) -> None:
        while True:
            busy = [topic for topic, queue in self._queues.items() if queue]
            if not busy:
                return
            for topic in busy:
                queue = self._queues[topic]
                batch = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
                for subscriber in self._subscribers[topic]:
                    self.publish(subscriber(batch))
