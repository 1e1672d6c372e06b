"""The transport-free core of every service: a handler from CloudEvents to CloudEvents.

Adapters (Kafka pull, HTTP push, the in-memory bus) feed events to a handler and
deliver what it returns. A handler never sees a topic, a socket or an offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cloudevents.core.v1.event import CloudEvent

from streamml.common.errors import InvalidEventError
from streamml.common.events import Output

# One entry per input event: its outputs, or the reason it goes to the dead-letter topic.
BatchResult = list["list[Output] | InvalidEventError"]


class EventHandler:
    """Base class of the four service handlers.

    Subclasses implement `handle`; `handle_batch` may be overridden to process a
    micro-batch at once (inference does). `tick` runs time-based work, such as a
    training cadence in seconds, and is called by adapters about once a second.
    """

    #: CloudEvent `source` of everything this handler emits.
    source: str = "io.streamml"
    #: Whether adapters stamp this service's receive time as the outputs' ingest time even when the
    #: input carries one. True for the pipeline's entry point, so clients cannot set it.
    restamps_ingest_time: bool = False
    #: Whether the handler reads JSON data that is still bytes, which it validates itself in one step.
    #: Adapters may then skip parsing it, and a handler that sets this still accepts parsed data.
    parses_json_data: bool = False

    def handle(self, event: CloudEvent) -> list[Output]:
        raise NotImplementedError

    def handle_batch(self, events: Sequence[CloudEvent]) -> BatchResult:
        results: BatchResult = []
        for event in events:
            try:
                results.append(self.handle(event))
            except InvalidEventError as error:
                results.append(error)
        return results

    def handle_one_of_batch(self, event: CloudEvent) -> list[Output]:
        """Run `handle_batch` on one event and raise its InvalidEventError, for handlers that work in batches."""
        result = self.handle_batch([event])[0]
        if isinstance(result, InvalidEventError):
            raise result
        return result

    def tick(self, now: datetime) -> list[Output]:
        return []

    def delivery_failed(self, outputs: Sequence[Output]) -> None:
        """Undo what the handler recorded about `outputs`, which the brokers did not acknowledge.

        The adapter hands the same inputs to the handler again afterwards.
        """

    def ready(self) -> bool:
        """Return whether the handler can serve requests (inference: a model is loaded)."""
        return True
