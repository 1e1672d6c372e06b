"""All four service handlers in one process, linked by the in-memory bus."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cloudevents.core.v1.event import CloudEvent

from streamml.common.deadletter import dead_letter_output
from streamml.common.errors import InvalidEventError
from streamml.common.events import Output
from streamml.common.handler import EventHandler
from streamml.common.spec import PipelineSpec
from streamml.demo.bus import InMemoryBus
from streamml.features.handler import FeaturesHandler
from streamml.inference.handler import InferenceHandler
from streamml.ingestion.handler import IngestionHandler

logger = logging.getLogger(__name__)


class EmbeddedPipeline:
    """Ingestion, features, training and inference on an in-memory bus.

    The handlers are the same objects the Kafka and HTTP services run; only the
    transport differs. Predictions and dead letters are kept for the caller.
    """

    def __init__(self, spec: PipelineSpec, model_dir: Path | None = None, provider: str = "cpu") -> None:
        from streamml.training.handler import TrainingHandler

        self.spec = spec
        self.bus = InMemoryBus()
        self._model_dir = model_dir or Path(tempfile.mkdtemp(prefix="streamml-models-"))
        self.ingestion = IngestionHandler(spec)
        self.features = FeaturesHandler(spec, {})
        self.training = TrainingHandler(spec, model_dir=self._model_dir)
        self.inference = InferenceHandler(spec, provider=provider)
        self.predictions: list[CloudEvent] = []
        self.dead_letters: list[CloudEvent] = []
        self.model_events: list[CloudEvent] = []

        topic = spec.topic
        self.bus.subscribe(topic("input"), self._adapter(self.ingestion, "ingestion"))
        self.bus.subscribe(topic("raw"), self._adapter(self.features, "features"))
        self.bus.subscribe(topic("features"), self._adapter(self.training, "training"))
        self.bus.subscribe(topic("labels"), self._adapter(self.training, "training"))
        self.bus.subscribe(topic("features"), self._adapter(self.inference, "inference"))
        self.bus.subscribe(topic("models"), self._load_models)
        self.bus.subscribe(topic("predictions"), self._collect(self.predictions))
        self.bus.subscribe(topic("dead_letter"), self._collect(self.dead_letters))
        self.bus.publish([self.training.initial_model()])
        self.bus.run_until_idle()

    def _adapter(self, handler: EventHandler, service: str):
        dead_letter_topic = self.spec.topic("dead_letter")

        def deliver(events: Sequence[CloudEvent]) -> Iterable[Output]:
            outputs: list[Output] = []
            for event, result in zip(events, handler.handle_batch(events)):
                if isinstance(result, InvalidEventError):
                    outputs.append(
                        dead_letter_output(
                            topic=dead_letter_topic,
                            service=service,
                            error=result,
                            value=None,
                            origin_topic=f"memory:{event.get_type()}",
                            event_id=event.get_id(),
                        )
                    )
                else:
                    outputs.extend(result)
            return outputs

        return deliver

    def _load_models(self, events: Sequence[CloudEvent]) -> Iterable[Output]:
        for event in events:
            self.model_events.append(event)
            self.inference.load(event)
        return ()

    @staticmethod
    def _collect(sink: list[CloudEvent]):
        def collect(events: Sequence[CloudEvent]) -> Iterable[Output]:
            sink.extend(events)
            return ()

        return collect

    def feed(self, events: Iterable[CloudEvent]) -> None:
        """Publish input events and run the bus until every topic is drained."""
        self.bus.publish(Output(self.spec.topic("input"), event) for event in events)
        self.bus.run_until_idle()
