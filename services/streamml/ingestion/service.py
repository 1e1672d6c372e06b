"""The ingestion service process: the input topic and `POST /` in, the raw topic out."""

from __future__ import annotations

import threading

from streamml.common.kafka import Emitter
from streamml.common.runner import ServiceParts, run_service
from streamml.common.settings import IngestionSettings
from streamml.common.spec import load_spec
from streamml.ingestion.handler import IngestionHandler

SERVICE = "ingestion"


def run_ingestion(settings: IngestionSettings, stop: threading.Event) -> None:
    """Run until `stop` is set, then drain."""
    spec = load_spec(settings.spec)
    emitter = Emitter(settings.kafka)
    parts = ServiceParts(
        service=SERVICE,
        handler=IngestionHandler(spec),
        input_topics=[spec.topic("input")],
        is_ready=emitter.connected,
    )
    run_service(parts, settings, spec, emitter, stop)
