"""The Kafka pull adapter: consume a micro-batch, run the handler, produce, then commit.

Offsets are committed only after every output of the batch, dead letters included,
is acknowledged by the brokers, so a crash replays the batch (at-least-once).
Outputs carry deterministic CloudEvent ids, so replays can be deduplicated.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamml.common.deadletter import dead_letter_output
from streamml.common.errors import InvalidEventError, RetriableError, StateError
from streamml.common.events import KafkaHeaders, Output, from_kafka, header_event_id, to_kafka
from streamml.common.handler import EventHandler
from streamml.common.logs import event_fields
from streamml.common.metrics import AdapterMetrics, set_partition_lags
from streamml.common.process import settle_heap
from streamml.common.settings import KafkaSettings
from streamml.common.tracing import BatchTrace, Origin, event_tracer

logger = logging.getLogger(__name__)


def where(message: Message) -> str:
    return str(Origin(message.topic(), message.partition(), message.offset()))


class RecordPosition:
    """A record's position for error messages, written as `topic[partition]@offset` only when an error is raised."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message

    def __str__(self) -> str:
        return where(self.message)


class _Origins(Sequence[Origin]):
    """The origins of a batch's records, each built only when a tracer reads it, so a tracer that records no spans builds none."""

    __slots__ = ("messages",)

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        message = self.messages[index]
        return Origin(message.topic(), message.partition(), message.offset())


def message_fields(message: Message, event_id: str | None = None) -> dict[str, Any]:
    """Return the log fields of one record: topic, partition, offset and, when known, the CloudEvent id."""
    offset = message.offset()
    return event_fields(message.topic(), message.partition(), offset if offset is not None and offset >= 0 else None, event_id)


def describe_batch(messages: Sequence[Message]) -> str:
    """Return the records of a batch as `topic[partition]@first-last`, one range per partition."""
    ranges: dict[tuple[str, int], list[int]] = {}
    for message in messages:
        if message.error() is None:
            bounds = ranges.setdefault((message.topic(), message.partition()), [message.offset(), message.offset()])
            bounds[0] = min(bounds[0], message.offset())
            bounds[1] = max(bounds[1], message.offset())
    return ", ".join(f"{topic}[{partition}]@{first}-{last}" for (topic, partition), (first, last) in ranges.items()) or "no records"


def batch_fields(messages: Sequence[Message]) -> dict[str, Any]:
    """Return the log fields of a batch: the position of its first record and the record count."""
    first = next((message for message in messages if message.error() is None), None)
    fields = message_fields(first) if first is not None else {}
    fields["records"] = len(messages)
    return fields


def partition_lags(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    """Return the lag of each assigned partition in a librdkafka statistics document.

    The lag is `consumer_lag`: the partition's last offset minus the committed
    offset. Before the first commit librdkafka reports -1 there, so
    `consumer_lag_stored`, from the offset of the last record consumed, is used instead.
    """
    lags: dict[tuple[str, int], int] = {}
    for topic, described in stats.get("topics", {}).items():
        for partition in described.get("partitions", {}).values():
            number = partition.get("partition", -1)
            if number < 0 or not partition.get("desired", False):
                continue
            lag = partition.get("consumer_lag", -1)
            if lag < 0:
                lag = partition.get("consumer_lag_stored", -1)
            if lag >= 0:
                lags[(topic, number)] = lag
    return lags


class DeliveryError(RetriableError):
    """The brokers did not acknowledge a produced record. `event_id` is its CloudEvent id when known."""

    def __init__(self, message: str, retry_after_s: float = 1.0, event_id: str | None = None) -> None:
        super().__init__(message, retry_after_s)
        self.event_id = event_id


class Emitter:
    """A confluent-kafka producer whose sends return futures resolved on acknowledgement.

    A background thread serves delivery callbacks, so HTTP handlers can wait on
    their own records while the pull loop flushes its batches.
    """

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        config = settings.client_config() | {
            "enable.idempotence": True,
            "acks": "all",
            # `wait` does not flush (see there), so the last records of a batch wait this long before
            # they are sent. In the benchmarks 1 ms cost less CPU than 0 and waited less than librdkafka's 5 ms default.
            "linger.ms": 1,
            "compression.type": "lz4",
            # The Java client's partitioner, so keys land where Kafka Streams, faust and Knative put them.
            "partitioner": "murmur2_random",
        }
        config.update(overrides)
        self._producer = Producer(config)
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._serve_callbacks, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _serve_callbacks(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    def send(self, output: Output) -> Future[Message]:
        key, value, headers = to_kafka(output.event)
        return self._produce(output.topic, key, value, headers)

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> Future[Message]:
        """Produce a record that is not a CloudEvent, such as a state changelog entry."""
        return self._produce(topic, key, value, None)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, headers: KafkaHeaders | None) -> Future[Message]:
        future: Future[Message] = Future()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                future.set_exception(DeliveryError(f"delivery to {topic} failed: {error}"))
            else:
                future.set_result(message)

        self._enqueue(topic, key, value, headers, on_delivery)
        return future

    def _enqueue(self, topic: str, key: bytes | None, value: bytes | None, headers: KafkaHeaders | None, on_delivery) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:
                # The local queue is full: wait for acknowledgements to free space.
                self._producer.poll(0.05)

    def send_all(self, outputs: Sequence[Output]) -> list[Future[None]]:
        """Produce every output; the one future returned resolves once all are acknowledged.

        One callback shared by the batch replaces a future per record, which cost a few
        microseconds per record in a profile of the ingestion service.
        """
        if not outputs:
            return []
        future: Future[None] = Future()
        pending = [len(outputs)]
        lock = threading.Lock()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            with lock:
                if future.done():
                    return
                if error is not None:
                    event_id = _rejected_event_id(outputs, message)
                    future.set_exception(DeliveryError(f"delivery to {message.topic()} failed: {error}", event_id=event_id))
                    return
                pending[0] -= 1
                if pending[0] == 0:
                    future.set_result(None)

        for output in outputs:
            key, value, headers = to_kafka(output.event)
            self._enqueue(output.topic, key, value, headers, on_delivery)
        return [future]

    def wait(self, futures: Sequence[Future], timeout_s: float = 30.0) -> None:
        """Block until every future is acknowledged; raise DeliveryError on the first failure.

        The callback thread resolves the futures. `Producer.flush` is not called here because
        it serves the same delivery reports: when the callback thread served them first, flush
        kept waiting for its next internal poll, about 20 µs per record in batches of 500.
        """
        deadline = time.monotonic() + timeout_s
        for future in futures:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                future.result(timeout=remaining)
            except TimeoutError as error:
                raise DeliveryError(f"no acknowledgement from the brokers within {timeout_s:.0f}s") from error

    def connected(self) -> bool:
        try:
            self._producer.list_topics(timeout=2.0)
        except KafkaException:
            return False
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            logger.error("%d records were not acknowledged before shutdown", remaining)
        self._closing.set()
        self._poller.join(timeout=1.0)


def _rejected_event_id(outputs: Sequence[Output], message: Message) -> str | None:
    """Return the CloudEvent id of the output whose topic, key and value a failed delivery report names.

    confluent-kafka's delivery reports carry no headers, so the outputs are encoded again to find
    the record: only for a failure, so a batch that succeeds pays nothing for it.
    """
    for output in outputs:
        if output.topic == message.topic():
            key, value, _ = to_kafka(output.event)
            if key == message.key() and value == message.value():
                return output.event.get_id()
    return None


def consumed_positions(consumer: Consumer) -> list[TopicPartition]:
    """Return the position of each assigned partition that records were consumed from: the offset after the last one.

    A partition with nothing consumed since its assignment has a negative position and is left out.
    """
    return [partition for partition in consumer.position(consumer.assignment()) if partition.offset >= 0]


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    config = settings.client_config() | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.partition.eof": False,
    }
    config.update(overrides)
    return config


class PullRunner:
    """Runs a handler over Kafka topics in micro-batches until `stop` is set."""

    def __init__(
        self,
        handler: EventHandler,
        *,
        service: str,
        settings: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        dead_letter_topic: str,
        emitter: Emitter,
        batch_size: int = 500,
        batch_timeout_s: float = 0.02,
        before_batch: Callable[[], None] | None = None,
        on_outputs: Callable[[list[Output]], None] | None = None,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        commit_gate: Callable[[], bool] | None = None,
        on_drain: Callable[[], bool] | None = None,
        lag_interval_ms: int = 5000,
        group_instance_id: str | None = None,
    ) -> None:
        self.handler = handler
        self.service = service
        self.topics = list(topics)
        self.dead_letter_topic = dead_letter_topic
        self.emitter = emitter
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.before_batch = before_batch
        self.on_outputs = on_outputs
        self.on_assign = on_assign
        self.commit_gate = commit_gate
        self.on_drain = on_drain
        self.metrics = AdapterMetrics(service, "kafka")
        self.tracer = event_tracer()
        overrides: dict[str, Any] = {}
        if lag_interval_ms > 0:
            # librdkafka calls stats_cb from consume(), on this runner's thread.
            overrides = {"statistics.interval.ms": lag_interval_ms, "stats_cb": self._on_statistics}
        if group_instance_id is not None:
            overrides["group.instance.id"] = group_instance_id
        # Reports the outcome of each asynchronous commit, from consume() on this runner's thread.
        overrides["on_commit"] = self._on_commit
        self.consumer = Consumer(consumer_config(settings, group_id, **overrides))
        self._lag_partitions: set[tuple[str, int]] = set()
        self.processed = 0
        self.dead_lettered = 0
        self._last_tick = 0.0
        self._last_not_ready_log = 0.0

    def run(self, stop: threading.Event) -> None:
        # Inference joins its group only once a model serves, so no record waits on a retry.
        while not stop.is_set() and not self.handler.ready():
            if self.before_batch is not None:
                self.before_batch()
            self._wait_until_ready(stop)
        settle_heap()
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        logger.info("%s consuming %s", self.service, ", ".join(self.topics))
        try:
            while not stop.is_set():
                if self.before_batch is not None:
                    self.before_batch()
                messages = self.consumer.consume(num_messages=self.batch_size, timeout=self.batch_timeout_s)
                self._process(messages)
            if self.on_drain is not None and self.on_drain():
                self._commit_at_stop()
        finally:
            self.consumer.close()
            self._lag_partitions = set_partition_lags(self.service, {}, self._lag_partitions)
            logger.info("%s stopped after %d records (%d dead-lettered)", self.service, self.processed, self.dead_lettered)

    def _wait_until_ready(self, stop: threading.Event) -> None:
        now = time.monotonic()
        if now - self._last_not_ready_log > 10:
            logger.info("%s is not ready yet; waiting before consuming %s", self.service, ", ".join(self.topics))
            self._last_not_ready_log = now
        stop.wait(0.2)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        logger.info("%s assigned %s", self.service, [f"{p.topic}[{p.partition}]" for p in partitions])
        if self.on_assign is not None:
            self.on_assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.debug("revoked %s", [f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_statistics(self, document: str) -> None:
        try:
            lags = partition_lags(json.loads(document))
        except (ValueError, TypeError, AttributeError) as error:
            logger.debug("%s: unreadable librdkafka statistics: %s", self.service, error)
            return
        self._lag_partitions = set_partition_lags(self.service, lags, self._lag_partitions)

    def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        outputs, decoded, decoded_messages = self._decode(messages)
        trace: BatchTrace | None = None
        if decoded:
            trace = self.tracer.start(decoded, _Origins(decoded_messages), restamp=self.handler.restamps_ingest_time)
            try:
                results = self.handler.handle_batch(decoded)
            except RetriableError as error:
                trace.end(error)
                self.metrics.error("not-ready")
                self.metrics.retried()
                logger.warning(
                    "%s; retrying %s in %.1fs", error, describe_batch(messages), error.retry_after_s, extra=batch_fields(messages)
                )
                self._rewind(messages)
                time.sleep(error.retry_after_s)
                return
            for index, (message, event, result) in enumerate(zip(decoded_messages, decoded, results)):
                if isinstance(result, InvalidEventError):
                    letter = self._dead_letter(message, result, event.get_id())
                    trace.reject(index, result, letter)
                    outputs.append(letter)
                else:
                    trace.stamp(index, result)
                    outputs.extend(result)

        now = time.monotonic()
        if now - self._last_tick >= 1.0:
            self._last_tick = now
            outputs.extend(self.handler.tick(datetime.now(timezone.utc)))
        if not messages and not outputs:
            return

        try:
            self.emitter.wait(self.emitter.send_all(outputs))
        except RetriableError as error:
            if trace is not None:
                trace.end(error)
            self.metrics.error("delivery")
            self.metrics.retried()
            logger.error(
                "%s; rewinding %d records (%s) to retry", error, len(messages), describe_batch(messages), extra=batch_fields(messages)
            )
            self.handler.delivery_failed(outputs)
            self._rewind(messages)
            time.sleep(error.retry_after_s)
            return
        if trace is not None:
            trace.end()
        if self.on_outputs is not None:
            self.on_outputs(outputs)
        if messages:
            if self.commit_gate is None or self.commit_gate():
                self._commit(messages)
            self.metrics.batch_done(
                len(messages), outputs, started, trace.ingested_at if trace is not None else (), self.dead_letter_topic
            )
        else:
            # Outputs of `tick` alone, such as a model version that training publishes on its time cadence.
            self.metrics.emitted(outputs, self.dead_letter_topic)
        self.processed += len(messages)

    def _decode(self, messages: list[Message]) -> tuple[list[Output], list[CloudEvent], list[Message]]:
        """Decode records into events; undecodable records become dead-letter outputs."""
        dead_letters: list[Output] = []
        events: list[CloudEvent] = []
        sources: list[Message] = []
        json_as_bytes = self.handler.parses_json_data
        for message in messages:
            error = message.error()
            if error is not None:
                # librdkafka reports a fatal error, such as a static member fenced by another
                # process with its group.instance.id, as a message with code _FATAL.
                if error.fatal() or error.code() == KafkaError._FATAL:
                    raise KafkaException(error)
                self.metrics.error("consumer")
                logger.warning("%s: consumer error at %s: %s", self.service, where(message), error, extra=message_fields(message))
                continue
            try:
                event = from_kafka(
                    message.key(), message.value(), message.headers(), where=RecordPosition(message), json_as_bytes=json_as_bytes
                )
            except InvalidEventError as invalid:
                dead_letters.append(self._dead_letter(message, invalid, header_event_id(message.headers())))
                continue
            events.append(event)
            sources.append(message)
        return dead_letters, events, sources

    def _commit(self, messages: list[Message]) -> None:
        """Commit the position of each assigned partition without waiting for the broker's response.

        The outputs are acknowledged, so the commit only has to land before a restart to spare
        a replay. Waiting for it took about 5 ms per batch on Kafka 4.1, whose group coordinator
        delays each commit by up to `group.coordinator.append.linger.ms` (5 ms by default).
        The offsets are read here: given none, librdkafka reads them when it sends the request,
        by which time the next batch may have been consumed but not handled. librdkafka sends
        the commits in order, reports each to `_on_commit`, and waits for those in flight when
        the consumer closes.
        """
        try:
            positions = consumed_positions(self.consumer)
            if positions:
                self.consumer.commit(offsets=positions, asynchronous=True)
        except KafkaException as error:
            self._commit_failed(error.args[0], describe_batch(messages), batch_fields(messages))

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is None:
            failed = [partition for partition in partitions if partition.error is not None]
            if not failed:
                return
            error = failed[0].error
        # _NO_OFFSET: nothing was consumed since the offsets of the last commit.
        if error.code() != KafkaError._NO_OFFSET:
            offsets = ", ".join(str(Origin(p.topic, p.partition, p.offset)) for p in partitions)
            self._commit_failed(error, offsets or "no partitions")

    def _commit_failed(self, error: KafkaError, offsets: str, fields: dict[str, Any] | None = None) -> None:
        # The outputs are acknowledged, so a lost commit only means a replay after a crash,
        # and the next batch's commit covers these offsets too (for example after NOT_COORDINATOR).
        self.metrics.error("commit")
        logger.warning("%s: offset commit of %s failed, the next batch retries it: %s", self.service, offsets, error, extra=fields)

    def _commit_at_stop(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as error:
            # _NO_OFFSET: the last batch's commit already covered every record consumed.
            if error.args[0].code() != KafkaError._NO_OFFSET:
                self.metrics.error("commit")
                logger.warning("%s: offset commit at stop failed, so the records since the last commit are consumed again: %s",
                               self.service, error)

    def _dead_letter(self, message: Message, error: InvalidEventError, event_id: str | None) -> Output:
        self.dead_lettered += 1
        return dead_letter_output(
            topic=self.dead_letter_topic,
            service=self.service,
            error=error,
            value=message.value(),
            key=message.key(),
            headers=message.headers(),
            origin_topic=message.topic(),
            origin_partition=message.partition(),
            origin_offset=message.offset(),
            event_id=event_id,
        )

    def _rewind(self, messages: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                key = (message.topic(), message.partition())
                first[key] = min(first.get(key, message.offset()), message.offset())
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))


def topic_partitions(settings: KafkaSettings, topic: str, timeout_s: float = 10.0) -> int | None:
    """Return the partition count of `topic`, or None when it does not exist."""
    from confluent_kafka.admin import AdminClient

    # Asking for all topics: a metadata request that names a topic makes the broker auto-create it.
    metadata = AdminClient(settings.client_config()).list_topics(timeout=timeout_s)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        return None
    return len(described.partitions)


def wait_for_topics(settings: KafkaSettings, topics: Sequence[str], stop: threading.Event, spec_path: object = "SPEC") -> None:
    """Block until every topic exists, warning every 30 seconds with the command that creates them."""
    warned = 0.0
    while not stop.is_set():
        missing = [topic for topic in topics if topic_partitions(settings, topic) is None]
        if not missing:
            return
        now = time.monotonic()
        if now - warned >= 30:
            logger.warning(
                "waiting for topics %s, which do not exist: create them with `streamml topics create --spec %s`",
                ", ".join(missing), spec_path,
            )
            warned = now
        stop.wait(1.0)


def read_offsets(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float) -> Iterator[Message]:
    """Yield the records at offsets [start, end) of each partition in `ranges`, then unassign the consumer.

    A range ends when the consumer's position reaches its end, so offsets that hold no record
    for this reader, such as transaction markers and aborted records, end it too. Raises
    TimeoutError when no partition moves on for `timeout_s`.
    """
    ends = {partition: end for partition, (start, end) in ranges.items() if end > start}
    if not ends:
        return
    reached = {partition: ranges[partition][0] for partition in ends}
    consumer.assign([TopicPartition(topic, partition, reached[partition]) for partition in ends])
    try:
        deadline = time.monotonic() + timeout_s
        while ends:
            for message in consumer.consume(num_messages=500, timeout=0.2):
                error = message.error()
                if error is not None:
                    # librdkafka retries what is not fatal, and the deadline bounds the wait.
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                if message.offset() < ends.get(message.partition(), -1):
                    yield message
            positions = consumer.position([TopicPartition(topic, partition) for partition in ends])
            for position in positions:
                if position.offset > reached[position.partition]:
                    reached[position.partition] = position.offset
                    deadline = time.monotonic() + timeout_s
                if position.offset >= ends[position.partition]:
                    del ends[position.partition]
            if ends and time.monotonic() > deadline:
                behind = ", ".join(f"[{partition}] at {reached[partition]} of {end}" for partition, end in sorted(ends.items()))
                raise TimeoutError(f"reading {topic} timed out: no progress for {timeout_s:.0f} s with partitions {behind}")
    finally:
        consumer.unassign()


def read_compacted(settings: KafkaSettings, topic: str, timeout_s: float = 10.0) -> Iterator[Message]:
    """Yield a topic's records from the beginning to its end at the call, outside any consumer group.

    Raises StateError when the reading makes no progress for `timeout_s` before the end is
    reached, so a caller never rebuilds its state from part of the topic.
    """
    consumer = Consumer(consumer_config(settings, group_id="streamml-reader", **{"enable.auto.offset.store": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            return
        ranges = {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            for partition in described.partitions
        }
        try:
            yield from read_offsets(consumer, topic, ranges, timeout_s)
        except TimeoutError as error:
            raise StateError(
                f"{error}; check that the brokers are reachable and serve this topic, then start again"
            ) from error
    finally:
        consumer.close()
