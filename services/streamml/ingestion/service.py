"""The ingestion service process: the input topic and `POST /` in, the raw topic out."""

from __future__ import annotations

import logging
import threading

from streamml.common.http import build_http_app
from streamml.common.kafka import Emitter, PullRunner
from streamml.common.process import HttpServer
from streamml.common.settings import IngestionSettings
from streamml.common.spec import load_spec
from streamml.ingestion.handler import IngestionHandler

logger = logging.getLogger(__name__)

SERVICE = "ingestion"


def run_ingestion(settings: IngestionSettings, stop: threading.Event) -> None:
    """Run until `stop` is set, then drain: finish the batch, flush and commit."""
    spec = load_spec(settings.spec)
    handler = IngestionHandler(spec)
    emitter = Emitter(settings.kafka)
    server = None
    if settings.http_port is not None:
        app = build_http_app(
            handler,
            service=SERVICE,
            emitter=emitter,
            dead_letter_topic=spec.topic("dead_letter"),
            max_body_bytes=settings.max_body_bytes,
            is_ready=emitter.connected,
        )
        server = HttpServer(app, settings.http_host, settings.http_port)
        server.start()
        logger.info("ingestion listening on http://%s:%d/", settings.http_host, settings.http_port)
    runner = PullRunner(
        handler,
        service=SERVICE,
        settings=settings.kafka,
        group_id=settings.group_id or f"streamml-{SERVICE}-{spec.name}",
        topics=[spec.topic("input")],
        dead_letter_topic=spec.topic("dead_letter"),
        emitter=emitter,
        batch_size=settings.batch_size,
        batch_timeout_s=settings.batch_timeout_ms / 1000,
    )
    try:
        runner.run(stop)
    finally:
        if server is not None:
            server.stop()
        emitter.close()
