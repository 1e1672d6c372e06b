"""The loop every service process runs: Kafka pull, HTTP push, or both, until SIGTERM."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from streamml.common.events import Output
from streamml.common.handler import EventHandler
from streamml.common.http import build_http_app
from streamml.common.kafka import Emitter, PullRunner, wait_for_topics
from streamml.common.metrics import publish_build_info
from streamml.common.process import HttpServer, settle_heap
from streamml.common.settings import ServiceSettings
from streamml.common.spec import PipelineSpec

logger = logging.getLogger(__name__)


@dataclass
class ServiceParts:
    """The handler and hooks that one service plugs into the shared loop."""

    service: str
    handler: EventHandler
    input_topics: Sequence[str]
    reply_topic: str | None = None
    before_batch: Callable[[], None] | None = None
    on_outputs: Callable[[list[Output]], None] | None = None
    after_handle: Callable[[], None] | None = None
    # Push mode: called when a request fails after its events were handled.
    after_failure: Callable[[], None] | None = None
    # Push mode: one request at a time, from handling to its reply.
    serial_requests: bool = False
    is_ready: Callable[[], bool] | None = None
    ready_wait_s: float = 0.0
    on_assign: Callable[[list[TopicPartition]], None] | None = None
    # Pull mode: called after each batch's outputs are acknowledged; offsets are committed only when it returns True.
    commit_gate: Callable[[], bool] | None = None
    # Called once at a clean stop, after the last batch or request. In pull mode the offsets are
    # committed when it returns True.
    on_drain: Callable[[], bool] | None = None
    # Pull mode, for a service that runs one process per pipeline: the consumer is a static group
    # member named by the group id. A restarted process then gets the partitions at once, not
    # after the broker expires the killed process's session, and a second process fences the first.
    single_instance: bool = False


def wait_for_kafka(emitter: Emitter, settings: ServiceSettings, stop: threading.Event) -> None:
    """Block until the brokers respond, logging a warning every 30 seconds while they do not."""
    warned = 0.0
    while not stop.is_set() and not emitter.connected():
        now = time.monotonic()
        if now - warned >= 30:
            logger.warning(
                "Kafka at %s is not reachable; retrying. Check --bootstrap-servers or STREAMML_KAFKA_BOOTSTRAP_SERVERS",
                settings.kafka.bootstrap_servers,
            )
            warned = now
        stop.wait(1.0)


def run_service(parts: ServiceParts, settings: ServiceSettings, spec: PipelineSpec, emitter: Emitter, stop: threading.Event) -> None:
    """Serve until `stop` is set, then drain.

    Draining finishes the micro-batch or the HTTP requests in flight, waits for
    their outputs to be acknowledged, commits the offsets and flushes the producer.
    """
    publish_build_info(parts.service)
    wait_for_kafka(emitter, settings, stop)
    if settings.mode == "pull":
        wait_for_topics(settings.kafka, parts.input_topics, stop, settings.spec)
    if stop.is_set():
        emitter.close()
        return
    port = settings.effective_http_port
    server = None
    if port is not None:
        app = build_http_app(
            parts.handler,
            service=parts.service,
            emitter=emitter,
            dead_letter_topic=spec.topic("dead_letter"),
            max_body_bytes=settings.max_body_bytes,
            reply_topic=parts.reply_topic,
            is_ready=parts.is_ready,
            ready_wait_s=parts.ready_wait_s,
            after_handle=parts.after_handle,
            after_failure=parts.after_failure,
            serial=parts.serial_requests,
            max_inflight=settings.max_inflight_requests,
            bearer_token=settings.http_bearer_token,
        )
        server = HttpServer(app, settings.http_host, port)
        server.start()
        logger.info("%s listening on http://%s:%d/ in %s mode", parts.service, settings.http_host, port, settings.mode)
    try:
        if settings.mode == "pull":
            group_id = settings.group_id or f"streamml-{parts.service}-{spec.name}"
            runner = PullRunner(
                parts.handler,
                service=parts.service,
                settings=settings.kafka,
                group_id=group_id,
                group_instance_id=settings.group_instance_id or (group_id if parts.single_instance else None),
                topics=parts.input_topics,
                dead_letter_topic=spec.topic("dead_letter"),
                emitter=emitter,
                batch_size=settings.batch_size,
                batch_timeout_s=settings.batch_timeout_ms / 1000,
                before_batch=parts.before_batch,
                on_outputs=parts.on_outputs,
                on_assign=parts.on_assign,
                commit_gate=parts.commit_gate,
                on_drain=parts.on_drain,
                lag_interval_ms=settings.consumer_lag_interval_ms,
            )
            runner.run(stop)
        else:
            settle_heap()
            # The first call comes before any wait: it loads inference's first model, on which readiness waits.
            while not stop.is_set():
                if parts.before_batch is not None:
                    parts.before_batch()
                stop.wait(0.2)
            if server is not None:
                server.stop()
                server = None
            if parts.on_drain is not None:
                parts.on_drain()
    finally:
        if server is not None:
            server.stop()
        emitter.close()
        logger.info("%s stopped", parts.service)
