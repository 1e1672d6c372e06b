"""The HTTP push adapter: CloudEvents in over `POST /`, for direct clients and Knative KafkaSources.

- `POST /` takes binary, structured or batch mode. The reply comes only after every
  output is acknowledged by Kafka: 202 with no body, or, for services that reply,
  200 with the output event in the request's content mode (a JSON array for a batch).
- A bad event gets 400 and a dead-letter record; it is not worth retrying.
- A handler that cannot serve yet or a Kafka failure gets 503 with `Retry-After`.
- With a bearer token set, `POST /` without `Authorization: Bearer <token>` gets 401;
  the probes and `/metrics` stay open.
- `GET /healthz` is liveness; `GET /readyz` is readiness.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from collections.abc import Callable

from cloudevents.core.v1.event import CloudEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamml.common.deadletter import dead_letter_output
from streamml.common.errors import InvalidEventError, RetriableError
from streamml.common.events import BATCH, STRUCTURED, Output, from_http, to_http_binary, to_http_structured, to_structured_json
from streamml.common.handler import EventHandler
from streamml.common.kafka import Emitter
from streamml.common.logs import event_fields
from streamml.common.metrics import HTTP_UNAUTHORIZED, RETRIES, AdapterMetrics
from streamml.common.tracing import BatchTrace, event_tracer

logger = logging.getLogger(__name__)


def _request_id(request: Request) -> str:
    return request.headers.get("x-request-id") or request.headers.get("ce-id") or str(uuid.uuid4())


def build_http_app(
    handler: EventHandler,
    *,
    service: str,
    emitter: Emitter,
    dead_letter_topic: str,
    max_body_bytes: int = 1024 * 1024,
    reply_topic: str | None = None,
    is_ready: Callable[[], bool] | None = None,
    delivery_timeout_s: float = 30.0,
    ready_wait_s: float = 0.0,
    after_handle: Callable[[], None] | None = None,
    after_failure: Callable[[], None] | None = None,
    serial: bool = False,
    max_inflight: int = 64,
    bearer_token: SecretStr | None = None,
) -> Starlette:
    """Build the ASGI app of one service.

    Handler calls are serialised by a lock, because handlers keep state; only
    the waits for Kafka acknowledgements overlap. `after_handle` runs after the
    outputs are acknowledged and before the reply (the features service commits
    its state there). `after_failure` runs under the lock when a request fails
    after its events were handled, so a handler can drop what it staged. With
    `serial`, requests are handled, delivered and finished one at a time, for a
    handler whose state must not include a request that may still fail. A request
    that arrives before the handler is ready waits up to `ready_wait_s`, then gets 503.

    With `reply_topic` set, the outputs for that topic are also returned in the
    response body (inference returns its prediction for the CloudEvent it received).

    With `bearer_token` set, `POST /` returns 401 unless the request carries
    `Authorization: Bearer <token>`; such a request is counted, not dead-lettered.
    """

    def dead_letter(error: InvalidEventError, body: bytes, headers: dict[str, str], request_id: str) -> None:
        output = dead_letter_output(
            topic=dead_letter_topic,
            service=service,
            error=error,
            value=body,
            headers=[(name, value.encode("utf-8", errors="replace")) for name, value in headers.items()],
            http_request_id=request_id,
            event_id=headers.get("ce-id"),
        )
        emitter.wait(emitter.send_all([output]), timeout_s=delivery_timeout_s)

    lock = threading.Lock()
    request_lock = threading.Lock() if serial else contextlib.nullcontext()
    metrics = AdapterMetrics(service, "http")
    tracer = event_tracer()
    inflight = threading.BoundedSemaphore(max_inflight)
    last_tick = [0.0]
    expected_token = bearer_token.get_secret_value().encode("utf-8") if bearer_token is not None else None

    def unauthorized(request: Request, request_id: str) -> Response | None:
        if expected_token is None:
            return None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            # Starlette decodes header bytes as latin-1, so encoding back yields the bytes sent.
            if hmac.compare_digest(credentials.encode("latin-1"), expected_token):
                return None
            message = "invalid bearer token: send the token configured for this service"
            challenge = 'Bearer error="invalid_token"'
        else:
            message = "missing 'Authorization: Bearer <token>' header: send the token configured for this service"
            challenge = "Bearer"
        HTTP_UNAUTHORIZED.labels(service).inc()
        response = _error(401, "unauthorized", message, request_id)
        response.headers["www-authenticate"] = challenge
        return response

    def wait_until_ready() -> None:
        deadline = time.monotonic() + ready_wait_s
        while not handler.ready():
            if time.monotonic() >= deadline:
                metrics.error("not-ready")
                raise RetriableError(f"{service} is not ready yet (waited {ready_wait_s:.0f}s); retry later", retry_after_s=2.0)
            time.sleep(0.05)

    def failed() -> None:
        if after_failure is not None:
            with lock:
                after_failure()

    def process(events: list[CloudEvent]) -> list[Output]:
        started = time.perf_counter()
        received_at = datetime.now(timezone.utc)
        wait_until_ready()
        with request_lock:
            trace = tracer.start(events, received_at=received_at, restamp=handler.restamps_ingest_time)
            try:
                outputs = deliver(events, trace)
                if after_handle is not None:
                    try:
                        after_handle()
                    except Exception:
                        failed()
                        raise
            except Exception as error:
                trace.end(error)
                raise
            trace.end()
        metrics.batch_done(len(events), outputs, started, trace.ingested_at, dead_letter_topic)
        return outputs

    def deliver(events: list[CloudEvent], trace: BatchTrace) -> list[Output]:
        """Handle the events, produce their outputs and wait for the brokers to acknowledge them."""
        try:
            with lock:
                results = handler.handle_batch(events)
                for index, result in enumerate(results):
                    if isinstance(result, InvalidEventError):
                        # A batch is all or nothing: nothing is produced and the client fixes the bad event.
                        raise result
                    trace.stamp(index, result)
                outputs = [output for result in results for output in result]
                now = time.monotonic()
                if now - last_tick[0] >= 1.0:
                    last_tick[0] = now
                    outputs.extend(handler.tick(datetime.now(timezone.utc)))
                futures = emitter.send_all(outputs)
        except Exception:
            failed()
            raise
        try:
            emitter.wait(futures, timeout_s=delivery_timeout_s)
        except Exception as error:
            if isinstance(error, RetriableError):
                metrics.error("delivery")
                with lock:
                    handler.delivery_failed(outputs)
            failed()
            raise
        return outputs

    async def receive(request: Request) -> Response:
        request_id = _request_id(request)
        rejection = unauthorized(request, request_id)
        if rejection is not None:
            return rejection
        if not inflight.acquire(blocking=False):
            RETRIES.labels(service, "http").inc()
            response = _error(429, "overloaded", f"{service} is serving {max_inflight} requests already; retry later", request_id)
            response.headers["retry-after"] = "1"
            return response
        try:
            return await _receive(request, request_id)
        finally:
            inflight.release()

    async def _receive(request: Request, request_id: str) -> Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        names = [name.decode("latin-1").lower() for name, _ in request.headers.raw]
        repeated = sorted({name for name in names if name.startswith("ce-") and names.count(name) > 1})
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, "body-too-large", f"body of {declared} bytes is over the limit of {max_body_bytes}; split it into smaller batches", request_id)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_body_bytes:
                return _error(413, "body-too-large", f"body is over the limit of {max_body_bytes} bytes; split it into smaller batches", request_id)
        try:
            if repeated:
                raise InvalidEventError(
                    "invalid-cloudevent",
                    f"HTTP request {request_id}: headers {repeated} appear more than once; send each attribute once",
                )
            events = from_http(headers, bytes(body), where=f"HTTP request {request_id}")
            if not events:
                # The batch format allows an empty array, but a delivery of nothing is a client bug.
                raise InvalidEventError("invalid-batch", f"HTTP request {request_id}: the batch is empty; send at least one event")
            outputs = await run_in_threadpool(process, events)
        except InvalidEventError as error:
            try:
                await run_in_threadpool(dead_letter, error, bytes(body), headers, request_id)
            except RetriableError as retriable:
                return _unavailable(retriable, request_id, service)
            metrics.dead_lettered(error.reason)
            return _error(400, error.reason, error.message, request_id, headers.get("ce-id"))
        except RetriableError as error:
            return _unavailable(error, request_id, service)
        if reply_topic is None:
            return Response(status_code=202, headers={"x-request-id": request_id})
        replies = [output.event for output in outputs if output.topic == reply_topic]
        return _reply(replies, headers.get("content-type", ""), request_id)

    def ready() -> bool:
        return handler.ready() and (is_ready() if is_ready is not None else True)

    return Starlette(routes=[Route("/", receive, methods=["POST"]), *_probe_routes(ready)])


def build_health_app(is_ready: Callable[[], bool]) -> Starlette:
    """Build an app with only the probes and /metrics, for a worker that takes no HTTP deliveries."""
    return Starlette(routes=_probe_routes(is_ready))


def _probe_routes(is_ready: Callable[[], bool]) -> list[Route]:
    """Return the liveness, readiness and Prometheus routes."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        ready = is_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _reply(events: list[CloudEvent], request_content_type: str, request_id: str) -> Response:
    content_type = request_content_type.split(";")[0].strip().lower()
    if content_type == BATCH or len(events) != 1:
        body = json.dumps([to_structured_json(event) for event in events]).encode()
        return Response(body, status_code=200, media_type=BATCH, headers={"x-request-id": request_id})
    if content_type == STRUCTURED:
        headers, body = to_http_structured(events[0])
    else:
        headers, body = to_http_binary(events[0])
    headers["x-request-id"] = request_id
    return Response(body, status_code=200, headers=headers)


def _error(status: int, reason: str, message: str, request_id: str, event_id: str | None = None) -> Response:
    logger.warning(
        "HTTP request %s rejected with %d: %s", request_id, status, message,
        extra=event_fields(event_id=event_id, http_request_id=request_id, status=status),
    )
    return JSONResponse({"error": reason, "message": message, "request_id": request_id}, status_code=status)


def _unavailable(error: RetriableError, request_id: str, service: str) -> Response:
    RETRIES.labels(service, "http").inc()
    logger.warning("HTTP request %s returned 503: %s", request_id, error)
    response = _error(503, "unavailable", str(error), request_id)
    response.headers["retry-after"] = str(max(1, round(error.retry_after_s)))
    return response
