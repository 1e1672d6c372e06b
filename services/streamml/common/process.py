"""Process plumbing shared by the service entry points: signals and the HTTP server thread."""

from __future__ import annotations

import logging
import signal
import threading

import uvicorn

logger = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """Return an event that SIGTERM or SIGINT sets; a second signal exits at once."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        logger.info("received %s: draining and stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


class HttpServer:
    """Runs an ASGI app with uvicorn in a background thread."""

    def __init__(self, app: object, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=10)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
