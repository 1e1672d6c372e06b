"""Process plumbing shared by the service entry points: signals, the collector and the HTTP server thread."""

from __future__ import annotations

import gc
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


# Allocations between two collections of the youngest generation (CPython's default is 700).
# A micro-batch allocates tens of thousands of short-lived containers, which reference counting
# frees. Collecting every 700 of them cost about 6% of the inference loop's instructions, as
# counted by `python -m bench.instructions`.
YOUNG_COLLECTION_THRESHOLD = 20_000


def settle_heap() -> None:
    """Prepare the collector for the event loop, once start-up is over.

    What the process built so far (modules, the model, the settings) lives as long as
    it, so it moves out of the collector's generations and no full collection traverses
    it again. Young collections then run after 20,000 allocations instead of 700, and
    each older generation after 20 collections of the one below.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 20, 20)


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
