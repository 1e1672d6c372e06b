"""The features service process: a faust worker in pull mode, an HTTP endpoint in push mode."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from cloudevents.core.v1.event import CloudEvent

from streamml.common.changelog import ChangelogStore, ensure_compacted_topic
from streamml.common.http import build_health_app
from streamml.common.errors import SpecError
from streamml.common.events import Output
from streamml.common.handler import EventHandler
from streamml.common.kafka import Emitter, topic_partitions, wait_for_topics
from streamml.common.logs import event_fields
from streamml.common.metrics import publish_build_info
from streamml.common.process import HttpServer
from streamml.common.runner import ServiceParts, run_service
from streamml.common.settings import FeaturesSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.features.handler import FeaturesHandler

logger = logging.getLogger(__name__)

SERVICE = "features"


def state_topic(spec: PipelineSpec, app_id: str | None = None) -> str:
    """Return the changelog topic of the entity state, shared by the faust table and push mode."""
    return f"{app_id or f'streamml-features-{spec.name}'}-entity-state-changelog"


def run_features(settings: FeaturesSettings, stop: threading.Event) -> int:
    """Run until SIGTERM or SIGINT, then drain."""
    spec = load_spec(settings.spec)
    if settings.mode == "push":
        run_push(settings, spec, stop)
        return 0
    from streamml.features.faust_app import FeaturesAppSettings, broker_credentials

    # faust ignores a source topic that is missing at start, so wait for it here.
    wait_for_topics(settings.kafka, [spec.topic("raw")], stop, settings.spec)
    if stop.is_set():
        return 0
    partitions = topic_partitions(settings.kafka, spec.topic("raw")) or settings.partitions
    if partitions != settings.partitions:
        if "partitions" in settings.model_fields_set:
            raise SpecError(
                f"STREAMML_FEATURES_PARTITIONS is {settings.partitions} but {spec.topic('raw')} has {partitions} partitions: "
                "unset it, or set it to the raw topic's partition count"
            )
        logger.info("the raw topic %s has %d partitions; the state table follows", spec.topic("raw"), partitions)
    from streamml.features.faust_app import run_features as run_worker

    app_settings = FeaturesAppSettings(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        app_id=settings.group_id,
        group_instance_id=settings.group_instance_id,
        data_dir=settings.data_dir,
        partitions=partitions,
        processing_guarantee=settings.processing_guarantee,
        loglevel=settings.log_level,
        lag_interval_s=settings.consumer_lag_interval_ms / 1000,
        batch_size=settings.batch_size,
        batch_timeout_s=max(settings.batch_timeout_ms, 1) / 1000,
        credentials=broker_credentials(settings.kafka),
        kafka=settings.kafka,
    )
    publish_build_info(SERVICE)
    server = None
    if settings.effective_http_port is not None:
        # The faust worker takes no HTTP deliveries; the port serves the probes and /metrics.
        server = HttpServer(build_health_app(lambda: True), settings.http_host, settings.effective_http_port)
        server.start()
    try:
        # faust installs its own SIGTERM and SIGINT handlers and drains on them.
        return run_worker(spec, app_settings)
    finally:
        if server is not None:
            server.stop()


class PushDeliveries(EventHandler):
    """The features handler behind HTTP deliveries, which may repeat an input.

    A KafkaSource delivers an input again when it gets no 2xx response, also when the
    input's state was already committed. Each request's state is committed after its
    outputs are acknowledged, with the (source, id) of the inputs it applies, and an
    input that a committed state applied is skipped whole.
    """

    source = FeaturesHandler.source
    parses_json_data = FeaturesHandler.parses_json_data

    def __init__(self, handler: FeaturesHandler, store: ChangelogStore) -> None:
        self.handler = handler
        self.store = store
        self.skipped = 0
        self._inputs: list[tuple[str, str]] = []

    def handle(self, event: CloudEvent) -> list[Output]:
        key = (event.get_source(), event.get_id())
        if self.store.applied(*key) or key in self._inputs:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 1000 == 0:
                logger.info(
                    "skipped event %s from %s: its state is already committed (%d repeated inputs skipped so far)",
                    key[1], key[0], self.skipped, extra=event_fields(event_id=key[1]),
                )
            return []
        outputs = self.handler.handle(event)
        self._inputs.append(key)
        return outputs

    def tick(self, now: datetime) -> list[Output]:
        return self.handler.tick(now)

    def commit(self) -> None:
        """Commit the state of the request, naming its inputs, once its outputs are acknowledged."""
        inputs, self._inputs = self._inputs, []
        self.store.commit(inputs)

    def discard(self) -> None:
        """Drop the state of a request that failed, so that its retry starts from the committed state."""
        self._inputs = []
        self.store.discard()


def run_push(settings: FeaturesSettings, spec: PipelineSpec, stop: threading.Event) -> None:
    """Serve `POST /` with entity state in a Kafka-changelog store (run it as one replica)."""
    emitter = Emitter(settings.kafka)
    topic = state_topic(spec, settings.group_id)
    ensure_compacted_topic(settings.kafka, topic, partitions=settings.partitions)
    store = ChangelogStore(settings.kafka, topic, emitter)
    handler = PushDeliveries(FeaturesHandler(spec, store), store)
    parts = ServiceParts(
        service=SERVICE,
        handler=handler,
        input_topics=[spec.topic("raw")],
        after_handle=handler.commit,
        after_failure=handler.discard,
        # A request's windows include every earlier request, so none may start before the one before it is committed.
        serial_requests=True,
        is_ready=emitter.connected,
    )
    run_service(parts, settings, spec, emitter, stop)
