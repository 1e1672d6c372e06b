"""Prometheus metrics of the four services, served on `GET /metrics`.

Names follow the Prometheus conventions: `streamml_` prefix, base units (`_seconds`),
`_total` on counters, `_info` on gauges that carry their value in labels. docs/observability.md
lists what each one means.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge, Histogram

from streamml import __version__
from streamml.common.events import Output

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_END_TO_END_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe every value, as `histogram.observe` one at a time would, with one increment per bucket.

    prometheus_client has no call for many observations, and one at a time cost about 2%
    of the inference loop's instructions. This adds to the labelled histogram's sum and
    buckets directly, and falls back to `observe` when those attributes are not there.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    if bounds is None or not hasattr(histogram, "_buckets") or not hasattr(histogram, "_sum"):
        for value in values:
            histogram.observe(value)
        return
    if not values:
        return
    histogram._raise_if_not_observable()
    histogram._sum.inc(sum(values))
    # `observe` counts a value in the first bucket whose upper bound is at least the value.
    for index, count in Tally(bisect_left(bounds, value) for value in values).items():
        histogram._buckets[index].inc(count)


BUILD_INFO = Gauge("streamml_build_info", "streamml version of this service process (value 1).", ["service", "version"])
EVENTS_RECEIVED = Counter(
    "streamml_events_received_total",
    "Inputs a service took in: Kafka records consumed, or CloudEvents received over HTTP.",
    ["service", "transport"],
)
EVENTS_EMITTED = Counter(
    "streamml_events_emitted_total", "Events acknowledged by Kafka, per output topic.", ["service", "topic"]
)
DEAD_LETTERS = Counter(
    "streamml_dead_letters_total", "Inputs sent to the dead-letter topic, per reason.", ["service", "reason"]
)
ERRORS = Counter(
    "streamml_errors_total",
    "Failures that are not the input's fault, per reason: delivery, not-ready, consumer, commit, handler.",
    ["service", "reason"],
)
RETRIES = Counter(
    "streamml_retries_total", "Batches or requests that hit a retriable failure.", ["service", "transport"]
)
HTTP_UNAUTHORIZED = Counter(
    "streamml_http_unauthorized_total", "POST / requests rejected for a missing or wrong bearer token.", ["service"]
)
CONSUMER_LAG = Gauge(
    "streamml_consumer_lag_records",
    "Records of an assigned input partition that the service has not processed yet (last offset minus committed offset).",
    ["service", "topic", "partition"],
)
BATCH_SIZE = Histogram(
    "streamml_batch_size", "Events per handled micro-batch.", ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
PROCESSING_SECONDS = Histogram(
    "streamml_batch_processing_seconds", "Time from receiving a batch to the acknowledgement of its outputs.", ["service", "transport"],
    buckets=_LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "streamml_end_to_end_latency_seconds",
    "Time from the first streamml service receiving an input (its streammlingesttime) until this service "
    "finished handling it, its outputs acknowledged by Kafka.",
    ["service"],
    buckets=_END_TO_END_BUCKETS,
)
MODEL_VERSION = Gauge(
    "streamml_model_version", "Model version that inference serves, or that training published last.", ["service", "model"]
)
MODEL_AGE = Gauge(
    "streamml_model_age_seconds", "Seconds since training created the model version in streamml_model_version.", ["service", "model"]
)
MODELS_REJECTED = Counter("streamml_models_rejected_total", "Model events that failed the serving checks.", ["model"])
EXECUTION_PROVIDER = Gauge(
    "streamml_execution_provider_info", "ONNX Runtime execution provider in use (value 1).", ["provider"]
)
PROVIDER_FALLBACKS = Counter(
    "streamml_execution_provider_fallbacks_total", "Sessions that asked for CUDA and run on CPU instead."
)
SERVED_ACCURACY = Gauge(
    "streamml_served_accuracy_ratio",
    "Accuracy of the last published model version on the most recent labelled samples it had not learned (training).",
    ["model"],
)
SERVED_MAE = Gauge(
    "streamml_served_mean_absolute_error",
    "Mean absolute error of the last published model version on the most recent labelled samples (training, regression).",
    ["model"],
)
SERVED_SAMPLES = Counter(
    "streamml_served_scored_samples_total", "Labelled samples scored against the last published model version.", ["model"]
)


def publish_build_info(service: str) -> None:
    BUILD_INFO.labels(service, __version__).set(1)


def set_model(service: str, model: str, version: int, created_at: float) -> None:
    """Record the model version a service serves or published. Its age is computed at each scrape."""
    MODEL_VERSION.labels(service, model).set(version)
    MODEL_AGE.labels(service, model).set_function(lambda: time.time() - created_at)


class AdapterMetrics:
    """The labelled series one adapter (a service and a transport) updates per batch.

    Looking the children up once keeps the per-batch cost to a few increments.
    """

    def __init__(self, service: str, transport: str) -> None:
        self.service = service
        self._received = EVENTS_RECEIVED.labels(service, transport)
        self._batch_size = BATCH_SIZE.labels(service)
        self._processing = PROCESSING_SECONDS.labels(service, transport)
        self._end_to_end = END_TO_END_SECONDS.labels(service)
        self._retries = RETRIES.labels(service, transport)
        self._emitted: dict[str, Counter] = {}

    def batch_done(
        self,
        received: int,
        outputs: Sequence[Output],
        started: float,
        ingested_at: Iterable[float],
        dead_letter_topic: str,
        observe_batch: bool = True,
        acknowledged: tuple[float, float] | None = None,
    ) -> None:
        """Count a batch whose outputs Kafka acknowledged. `started` is a `time.perf_counter()` value.

        `ingested_at` contains the Unix time at which each handled input entered the
        pipeline. Outputs to `dead_letter_topic` count as dead letters by reason.
        `acknowledged` is (`time.perf_counter()`, `time.time()`) when the acknowledgement came,
        for a caller that counts the batch later; by default it is now.
        """
        self._received.inc(received)
        if observe_batch:
            self._batch_size.observe(received)
        self.emitted(outputs, dead_letter_topic)
        finished, now = acknowledged if acknowledged is not None else (time.perf_counter(), time.time())
        self._processing.observe(finished - started)
        observe_all(self._end_to_end, [max(0.0, now - entered) for entered in ingested_at])

    def emitted(self, outputs: Sequence[Output], dead_letter_topic: str) -> None:
        """Count outputs that Kafka acknowledged, and those to `dead_letter_topic` as dead letters by reason."""
        for topic, count in Tally(output.topic for output in outputs).items():
            counter = self._emitted.get(topic)
            if counter is None:
                counter = self._emitted[topic] = EVENTS_EMITTED.labels(self.service, topic)
            counter.inc(count)
            if topic == dead_letter_topic:
                for output in outputs:
                    if output.topic == topic:
                        self.dead_lettered(_dead_letter_reason(output))

    def dead_lettered(self, reason: str) -> None:
        DEAD_LETTERS.labels(self.service, reason).inc()

    def error(self, reason: str) -> None:
        ERRORS.labels(self.service, reason).inc()

    def retried(self) -> None:
        self._retries.inc()


def _dead_letter_reason(output: Output) -> str:
    data = output.event.get_data()
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else "unknown"


def set_partition_lags(service: str, lags: dict[tuple[str, int], int], previous: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Set the lag gauge of each (topic, partition) in `lags` and remove those of `previous` not in it; return the keys set."""
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(service, topic, str(partition)).set(lag)
    for topic, partition in previous - lags.keys():
        try:
            CONSUMER_LAG.remove(service, topic, str(partition))
        except KeyError:
            pass
    return set(lags)
