"""The features service process: a faust worker in pull mode, an HTTP endpoint in push mode."""

from __future__ import annotations

import threading

from streamml.common.changelog import ChangelogStore, ensure_compacted_topic
from streamml.common.http import build_health_app
from streamml.common.kafka import Emitter
from streamml.common.process import HttpServer
from streamml.common.runner import ServiceParts, run_service
from streamml.common.settings import FeaturesSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.features.handler import FeaturesHandler

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
    from streamml.features.faust_app import run_features as run_worker

    app_settings = FeaturesAppSettings(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        app_id=settings.group_id,
        data_dir=settings.data_dir,
        partitions=settings.partitions,
        processing_guarantee=settings.processing_guarantee,
        loglevel=settings.log_level,
        credentials=broker_credentials(settings.kafka),
    )
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


def run_push(settings: FeaturesSettings, spec: PipelineSpec, stop: threading.Event) -> None:
    """Serve `POST /` with entity state in a Kafka-changelog store (run it as one replica)."""
    emitter = Emitter(settings.kafka)
    topic = state_topic(spec, settings.group_id)
    ensure_compacted_topic(settings.kafka, topic, partitions=settings.partitions)
    store = ChangelogStore(settings.kafka, topic, emitter)
    parts = ServiceParts(
        service=SERVICE,
        handler=FeaturesHandler(spec, store),
        input_topics=[spec.topic("raw")],
        after_handle=store.flush,
        is_ready=emitter.connected,
    )
    run_service(parts, settings, spec, emitter, stop)
