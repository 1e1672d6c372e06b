"""The inference service process: feature vectors and model events in, predictions out."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamml.common.errors import InvalidEventError
from streamml.common.events import from_kafka
from streamml.common.kafka import Emitter, consumer_config, message_fields, where
from streamml.common.runner import ServiceParts, run_service
from streamml.common.settings import InferenceSettings, KafkaSettings
from streamml.common.spec import load_spec
from streamml.inference.dedupe import load_recent_ids
from streamml.inference.handler import InferenceHandler

logger = logging.getLogger(__name__)

SERVICE = "inference"
# Seconds a poll waits for a model event while no model serves yet.
FIRST_MODEL_WAIT_S = 0.2


class ModelFeed:
    """Follows the models topic from its beginning, outside any consumer group.

    Every replica reads every model event; at start the newest version wins, and
    later events are loaded between micro-batches.
    """

    def __init__(self, settings: KafkaSettings, topic: str, handler: InferenceHandler) -> None:
        self.topic = topic
        self.handler = handler
        self._consumer = Consumer(consumer_config(settings, group_id=f"streamml-model-feed-{uuid.uuid4()}"))
        self._assigned = False

    def _assign(self) -> bool:
        metadata = self._consumer.list_topics(self.topic, timeout=5.0)
        described = metadata.topics.get(self.topic)
        if described is None or described.error is not None or not described.partitions:
            return False
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in described.partitions])
        self._assigned = True
        return True

    def poll(self, timeout_s: float = 0.0) -> None:
        """Load the newest model among the events waiting on the topic."""
        if not self._assigned and not self._assign():
            time.sleep(timeout_s)
            return
        if self.handler.ready():
            messages = self._consumer.consume(num_messages=100, timeout=timeout_s)
        else:
            # Until a model serves, return as soon as the first model event arrives: `consume`
            # waits out its timeout for a full batch, and the callers poll only every 0.2 s.
            first = self._consumer.poll(max(timeout_s, FIRST_MODEL_WAIT_S))
            messages = [] if first is None else [first, *self._consumer.consume(num_messages=99, timeout=0)]
        newest = {}
        for message in messages:
            if message.error() is not None:
                logger.warning("models topic error at %s: %s", where(message), message.error(), extra=message_fields(message))
                continue
            try:
                event = from_kafka(message.key(), message.value(), message.headers(), where=where(message))
            except InvalidEventError as error:
                logger.error("skipping %s on the models topic: %s", where(message), error, extra=message_fields(message))
                continue
            newest[message.key()] = (message, event)
        for message, event in newest.values():
            try:
                self.handler.load(event)
            except InvalidEventError as error:
                logger.error(
                    "skipping model event %s at %s: %s", event.get_id(), where(message), error,
                    extra=message_fields(message, event.get_id()),
                )

    def close(self) -> None:
        self._consumer.close()


def run_inference(settings: InferenceSettings, stop: threading.Event) -> None:
    """Run until `stop` is set, then drain."""
    spec = load_spec(settings.spec)
    handler = InferenceHandler(
        spec, provider=settings.provider, intra_op_threads=settings.intra_op_threads, dedupe_window=settings.dedupe_window
    )
    logger.info("inference execution providers: %s", handler.providers)
    emitter = Emitter(settings.kafka)
    feed = ModelFeed(settings.kafka, spec.topic("models"), handler)

    def reload_emitted(partitions: object = None) -> None:
        count = load_recent_ids(settings.kafka, spec.topic("predictions"), handler.emitted)
        logger.info("loaded %d recent prediction ids from %s to skip redelivered inputs", count, spec.topic("predictions"))

    reload_emitted()
    parts = ServiceParts(
        service=SERVICE,
        handler=handler,
        input_topics=[spec.topic("features")],
        reply_topic=spec.topic("predictions"),
        before_batch=feed.poll,
        ready_wait_s=settings.model_wait_s,
        is_ready=emitter.connected,
        on_assign=reload_emitted,
    )
    try:
        run_service(parts, settings, spec, emitter, stop)
    finally:
        feed.close()
