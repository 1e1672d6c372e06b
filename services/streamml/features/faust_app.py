"""Run the features service as a faust-streaming app.

This is the only module in streamml that imports faust. Everything faust does
for the service stays here: the consumer group, the per-entity state table and
its changelog topic, offset commits and the worker's signal handling. The
feature logic is `FeaturesHandler`, which does not import faust, so the
stream processor can be replaced without touching it.

Per record of the raw topic (keyed by entity, so all records of an entity are in one partition):

1. decode the record as a CloudEvent (binary or structured mode);
2. run `FeaturesHandler.handle`, which reads and writes the entity's state through
   `WriteBehind`, a buffer in front of the `entity-state` table;
3. produce the feature vector and the label, or, for an invalid record, a
   dead-letter event that keeps the original key, value and headers. These go
   out through a confluent-kafka producer (`Emitter`), which sends outside the
   event loop. On a backlog of 40,000 Elec2 records that took the worker's CPU
   time from about 348 to 309 µs per record, against faust's own producer;
4. once the broker has acknowledged every event produced for the record's batch
   and for every batch before it, write each entity's newest state of the batch
   to the table, with the partition and offset of the record that produced it.
   faust mirrors every table write to the changelog topic
   `<app id>-entity-state-changelog`, in the partition of the raw record, and
   replays that topic into memory when a worker gets the partition;
5. acknowledge the record to faust. faust commits, per partition, the offset
   below which every record is acknowledged. It first flushes its own producer,
   which writes the changelog, so the outputs and the state of a record are
   written before its offset commits (at-least-once).

A clean stop (SIGTERM or SIGINT) waits for every record in flight, commits,
and repeats nothing. A worker that dies without one replays the records after
its last commit. The table contains a record's effect only once its outputs are
acknowledged, so a replayed record whose entity's state names it or a later
offset is skipped whole, and any other is processed against state without it:
no window counts a record twice. That needs the record key to name the entity,
as ingestion writes it; a record keyed otherwise is processed again.

faust 0.15.3 sometimes drops a record when it seeks a partition back to its
committed offset while records fetched before the seek are still queued. It
notes the missing offsets as a gap, which it commits once a later offset of the
partition is acknowledged. The worker notices the missing offsets before the
next record of the partition, reads those records from the broker itself and
processes them in that record's batch. The worker limits faust's commits to the
oldest record whose outputs are in flight, gap records included, so the gap's
offsets commit only after their outputs are acknowledged (`limit_commits`).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import faust
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Consumer, Message, TopicPartition

from streamml.common.deadletter import dead_letter_output
from streamml.common.errors import InvalidEventError, SpecError
from streamml.common.kafka import Emitter, consumer_config, read_offsets
from streamml.common.logs import event_fields
from streamml.common.metrics import AdapterMetrics
from streamml.common.process import settle_heap
from streamml.common.recent_ids import RecentIds, input_marker
from streamml.common.settings import KafkaSettings
from streamml.common.events import Output, from_kafka, header_event_id
from streamml.common.spec import PipelineSpec, load_spec
from streamml.common.tracing import BatchTrace, Origin, event_tracer
from streamml.features.handler import FeaturesHandler
from streamml.features.lag import PartitionLag

logger = logging.getLogger(__name__)

SERVICE = "features"
STATE_TABLE = "entity-state"
# Key of each table value that names the raw record whose handling wrote it: [partition, offset].
SOURCE = "source"
AGENT_NAME = "features"
STATS_INTERVAL_S = 60.0
# Outputs that may await the brokers' acknowledgement while the worker processes more records,
# an estimated 20 MB of Elec2 outputs. NOTE: no test fills it, because the Kafka tests keep fewer in flight.
MAX_OUTPUTS_IN_FLIGHT = 20_000
# Inputs remembered per raw partition, to skip one that reaches the raw topic again.
RECENT_INPUTS = 20_000
DEFAULT_DATA_DIR = Path(".streamml/features")
_LOGLEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


@dataclass(frozen=True, slots=True)
class FeaturesAppSettings:
    """Deployment settings of the features service; the pipeline spec contains the rest.

    `partitions` must equal the partition count of the raw topic, because the
    state table's changelog is co-partitioned with it. faust raises
    `PartitionsMismatch` on the first state write when the two differ.

    Only `at_least_once` is accepted. faust 0.15.3's `exactly_once` mode runs
    against aiokafka 0.14 and Kafka 4.1, but only the changelog and the input
    offsets go into Kafka transactions. `TransactionManager.send` picks the
    transactional producer by the partition of the destination topic in the
    consumer's cluster metadata, which has no entry for topics the app does not
    consume. Feature, label and dead-letter events therefore go out through the
    plain producer, outside any transaction.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str | None = None
    # Static group membership id of the worker's consumer; None uses the app id.
    group_instance_id: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    partitions: int = 1
    replication_factor: int = 1
    processing_guarantee: str = "at_least_once"
    commit_interval_s: float = 1.0
    producer_linger_s: float = 0.005
    # Maximum records per batch, and the longest wait to fill a batch.
    batch_size: int = 500
    batch_timeout_s: float = 0.02
    loglevel: str = "INFO"
    # Seconds between refreshes of the raw partitions' lag gauges; 0 turns them off.
    lag_interval_s: float = 5.0
    # faust.SASLCredentials or faust.SSLCredentials; None connects in plaintext.
    credentials: Any = None
    # The connection of the producer of outputs, with the same servers and security as faust's.
    # None connects to `bootstrap_servers` in plaintext.
    kafka: KafkaSettings | None = None

    def __post_init__(self) -> None:
        servers = self.broker_urls
        if not servers or any(":" not in server.removeprefix("kafka://") for server in servers):
            raise ValueError(
                f"invalid bootstrap_servers {self.bootstrap_servers!r}: "
                "expected host:port, for example 127.0.0.1:9092 or host1:9092,host2:9092"
            )
        if self.partitions < 1:
            raise ValueError(f"invalid partitions {self.partitions}: set it to the partition count of the raw topic")
        if self.replication_factor < 1:
            raise ValueError(f"invalid replication_factor {self.replication_factor}: set it to 1 or more")
        if self.processing_guarantee != "at_least_once":
            raise ValueError(
                f"unsupported processing_guarantee {self.processing_guarantee!r}: use at_least_once. "
                "faust 0.15.3 sends feature, label and dead-letter events outside its transactions, "
                "so exactly_once would not hold for them"
            )
        if self.commit_interval_s <= 0:
            raise ValueError(f"invalid commit_interval_s {self.commit_interval_s}: set a positive number of seconds")
        if self.batch_size < 1:
            raise ValueError(f"invalid batch_size {self.batch_size}: set 1 or more records")
        if not 0 < self.batch_timeout_s <= 60:
            raise ValueError(f"invalid batch_timeout_s {self.batch_timeout_s}: set it between 0 and 60 seconds")
        if not 0 <= self.producer_linger_s <= 1:
            raise ValueError(f"invalid producer_linger_s {self.producer_linger_s}: set it between 0 and 1 second")
        if self.lag_interval_s < 0:
            raise ValueError(f"invalid lag_interval_s {self.lag_interval_s}: set 0 (off) or a positive number of seconds")
        if self.loglevel.upper() not in _LOGLEVELS:
            raise ValueError(f"invalid loglevel {self.loglevel!r}: use one of {list(_LOGLEVELS)}")

    @property
    def broker_urls(self) -> list[str]:
        return [f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(",") if server.strip()]

    def resolved_app_id(self, spec: PipelineSpec) -> str:
        """Return the faust app id, which is also the Kafka consumer group."""
        return self.app_id or f"streamml-features-{spec.name}"


class FeaturesProcessor:
    """Processor that feeds raw records through `FeaturesHandler` and produces what it returns.

    One instance serves the app's single agent. A record is acknowledged to
    faust only when the broker has acknowledged every event produced for it.
    When the broker rejects one of them, the worker stops with the record's
    offset uncommitted.
    """

    def __init__(
        self,
        app: faust.App,
        spec: PipelineSpec,
        store: faust.Table,
        kafka: KafkaSettings,
        batch_size: int = 500,
        batch_timeout_s: float = 0.02,
    ) -> None:
        self.app = app
        self.kafka = kafka
        self.state = WriteBehind(store)
        self.handler = FeaturesHandler(spec, self.state)
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.dead_letter_topic = spec.topic("dead_letter")
        self.metrics = AdapterMetrics(SERVICE, "kafka")
        self.tracer = event_tracer()
        self._next_offset: dict[tuple[str, int], int] = {}
        self.lag = PartitionLag(SERVICE, spec.topic("raw"), self._next_offset)
        self._in_flight: dict[Origin, asyncio.Future] = {}
        self._skipping: set[tuple[str, int]] = set()
        self.processed = 0
        self.dead_lettered = 0
        self.redelivered = 0
        self.applied_before = 0
        self.repeated = 0
        self.gaps = 0
        self._make_current: Callable[[Any], None] = lambda event: None
        self._gap_reader: GapReader | None = None
        #: Per raw partition, the (source, id) of the newest inputs applied: those before the committed
        #: offset when the worker got the partition, then each input it handles.
        self._recent: dict[tuple[str, int], RecentIds] = {}

    async def process(self, stream: faust.StreamT) -> None:
        """Consume the raw topic in batches until the worker stops; crash the app on an unexpected error.

        Each record of a batch gets one reference more than faust's own. The ack that faust
        gives it after the batch therefore leaves its offset uncommittable, and the ack after
        the broker acknowledged the batch's outputs makes it committable. Then, in batch
        order, each entity's state is written to the table once, which is one changelog
        record per entity instead of one per record.
        """
        self._keep_queue_on_resume(stream)
        limit_commits(self.app.consumer, self.commit_limit)
        # Stream._set_current_event is how faust itself marks the event a table write belongs to.
        self._make_current = stream._set_current_event
        emitter = Emitter(self.kafka)
        settle_heap()
        try:
            await self._process_batches(stream, emitter)
        finally:
            # After a clean stop every output is acknowledged already. After a crash the offsets stay uncommitted.
            emitter.close(timeout_s=5.0)
            if self._gap_reader is not None:
                self._gap_reader.close()
            logger.info("%s stopped after %d records (%d dead-lettered)", SERVICE, self.processed, self.dead_lettered)

    async def _process_batches(self, stream: faust.StreamT, emitter: Emitter) -> None:
        unacknowledged: deque[tuple[asyncio.Future, int]] = deque()
        in_flight = 0
        async for events in stream.take_events(self.batch_size, within=self.batch_timeout_s):
            started = time.perf_counter()
            batch: list[faust.EventT] = []
            origins: list[Origin] = []
            work: list[_Work] = []
            for event in events:
                message = event.message
                origin = Origin(message.topic, message.partition, message.offset)
                if (origin.topic, origin.partition) not in self._recent:
                    try:
                        await self._load_recent(origin)
                    except Exception as error:
                        logger.error(
                            "%s: reading the inputs before this offset failed (%r); stopping the worker. "
                            "Check that the brokers are reachable, then restart it", origin, error,
                        )
                        await self.app.crash(error)
                        return
                missing = self._gap_before(origin)
                gap: list[_Work] = []
                if missing is not None:
                    try:
                        gap = await self._read_gap(event, origin, missing)
                    except Exception as error:
                        logger.error(
                            "%s: reading offsets %d to %d, which faust dropped, failed (%r); stopping the worker",
                            origin, missing[0], missing[1] - 1, error,
                        )
                        await self.app.crash(error)
                        return
                    work.extend(gap)
                    # Gap records count as in flight like the batch's records, so commits stop below them
                    # and a later copy of one waits for its outputs.
                    origins.extend(item.origin for item in gap)
                if self._skip_redelivery(event, origin):
                    continue
                if self._skip_applied(message.key, origin):
                    self._remember(origin, message.key, message.value, message.headers)
                    continue
                message.incref()
                batch.append(event)
                origins.append(origin)
                work.append(_Work(event, origin, message.key, message.value, list(message.headers or ())))
            if not work:
                continue
            try:
                outputs, owners, traces = self._outputs_of(work)
            except Exception as error:
                await self.app.crash(error)
                return
            done = _Done(outputs, owners, traces, started, [], self.state.seal())
            try:
                futures = emitter.send_all(outputs)
            except Exception as error:
                await self.app.crash(error)
                return
            for future in futures:
                # The callback runs on the emitter's delivery thread. The event loop may handle the batch's
                # acknowledgement later, after the next batches, so the latencies use this time.
                future.add_done_callback(done.note_acknowledgement)
            deliveries = [asyncio.wrap_future(future) for future in futures]
            delivered = self._ack_when_delivered(batch, origins, deliveries, done)
            self.processed += len(work)
            if delivered is not None:
                unacknowledged.append((delivered, len(outputs)))
                in_flight += len(outputs)
            # The producer's sends do not wait, so the outputs awaiting the brokers are bounded here,
            # and with them the memory of their records. A failure crashes the app in `_on_delivered`.
            while unacknowledged and (unacknowledged[0][0].done() or in_flight > MAX_OUTPUTS_IN_FLIGHT):
                oldest, count = unacknowledged.popleft()
                await asyncio.wait([oldest])
                in_flight -= count

    def _outputs_of(self, work: list[_Work]) -> tuple[list[Output], list[tuple[Origin, str | None]], list[BatchTrace]]:
        """Handle a batch; return its outputs, the record and event id each output comes from, and the traces."""
        outputs: list[Output] = []
        owners: list[tuple[Origin, str | None]] = []
        traces: list[BatchTrace] = []
        for item in work:
            self.state.event = item.event
            produced, event_id, trace = self._outputs_for(item.key, item.value, item.headers, item.origin)
            outputs.extend(produced)
            owners.extend([(item.origin, event_id)] * len(produced))
            if trace is not None:
                traces.append(trace)
        return outputs, owners, traces

    def _keep_queue_on_resume(self, stream: faust.StreamT) -> None:
        """Stop faust from emptying this agent's queue whenever flow control resumes.

        After table recovery faust resumes the raw partitions, seeks them to the
        committed offsets and then resumes flow control, which empties the
        agent's queue. Records fetched before the seek are queued meanwhile and
        faust has already marked them read, so emptying the queue loses them and
        faust drops their second copies as already read. Kept in the queue, they
        are processed in order. The stream still skips records of an earlier
        consumer generation.
        """
        queue = stream.channel.queue
        managed = self.app.flow_control._queues
        if queue in managed:
            managed.discard(queue)
            logger.debug("agent queue %r is no longer emptied when flow control resumes", queue)

    def commit_limit(self, tp: tuple[str, int]) -> int | None:
        """Return the highest offset of partition `tp` that faust may commit, or None for no limit.

        That is the offset of the oldest record in flight, whose outputs the brokers have
        not acknowledged, or else the offset after the last record this worker took on.
        """
        topic, partition = tp
        pending = [origin.offset for origin in self._in_flight if origin.partition == partition and origin.topic == topic]
        if pending:
            return min(pending)
        return self._next_offset.get((topic, partition))

    async def _load_recent(self, origin: Origin) -> None:
        """Remember the inputs of up to `RECENT_INPUTS` records before the committed offset of `origin`'s partition.

        `origin` is the first record of the partition that this worker gets. The records
        before the committed offset are applied, so a later record with the same CloudEvents
        source and id as one of them is a repeat.
        """
        records: list[Message] = []
        if origin.offset > 0:
            loop = asyncio.get_running_loop()
            committed = await loop.run_in_executor(None, self._committed, origin)
            # Only the records before both the committed offset and the first record faust delivers count as applied.
            end = origin.offset if committed is None else min(committed, origin.offset)
            if self._gap_reader is None:
                self._gap_reader = GapReader(self.kafka)
            start = max(0, end - RECENT_INPUTS)
            records = await loop.run_in_executor(None, self._gap_reader.read, origin.topic, origin.partition, start, end)
        self._recent[(origin.topic, origin.partition)] = RecentIds(RECENT_INPUTS)
        for record in records:
            self._remember(origin, record.key(), record.value(), record.headers())
        logger.info("%s: remembered the inputs of %d records before this offset, to skip repeats", origin, len(records))

    def _committed(self, origin: Origin) -> int | None:
        """Return the worker's committed offset of `origin`'s partition, or None without one."""
        consumer = Consumer(consumer_config(self.kafka, group_id=self.app.conf.id))
        try:
            [position] = consumer.committed([TopicPartition(origin.topic, origin.partition)], timeout=30)
        finally:
            consumer.close()
        return position.offset if position.offset >= 0 else None

    def _remember(self, origin: Origin, key: bytes | None, value: bytes | None, headers: Any) -> None:
        """Note the input of an applied record of `origin`'s partition. A record that is no valid CloudEvent is passed over."""
        try:
            event = from_kafka(key, value, list(headers or ()), json_as_bytes=True)
        except InvalidEventError:
            return
        self._recent[(origin.topic, origin.partition)].add(input_marker(event.get_source(), event.get_id()))

    def _gap_before(self, origin: Origin) -> tuple[int, int] | None:
        """Return the offsets [start, end) of this partition that never reached the agent before this record, if any."""
        expected = self._next_offset.get((origin.topic, origin.partition))
        if expected is not None and origin.offset > expected:
            return expected, origin.offset
        return None

    async def _read_gap(self, event: faust.EventT, origin: Origin, missing: tuple[int, int]) -> list[_Work]:
        """Read the records at the `missing` offsets before `origin` from the broker, to process them before it.

        faust 0.15.3 sometimes drops a record when it seeks a partition back to its committed
        offset while records fetched before the seek are still queued, and it counts the
        offset as a gap to commit. The records come from a consumer outside the group, and
        their state is written with `event`, which is of the same partition.
        """
        start, end = missing
        if self._gap_reader is None:
            self._gap_reader = GapReader(self.kafka)
        records = await asyncio.get_running_loop().run_in_executor(None, self._gap_reader.read, origin.topic, origin.partition, start, end)
        self.gaps += 1
        logger.warning(
            "%s: offsets %d to %d of this partition never reached the worker, because faust dropped them; "
            "read %d records there from the broker to process them now",
            origin, start, end - 1, len(records),
        )
        work = []
        for record in records:
            position = Origin(origin.topic, origin.partition, record.offset())
            if self._skip_applied(record.key(), position):
                self._remember(position, record.key(), record.value(), record.headers())
            else:
                work.append(_Work(event, position, record.key(), record.value(), list(record.headers() or ())))
        return work

    def _skip_redelivery(self, event: faust.EventT, origin: Origin) -> bool:
        """Return whether this worker already processed the record, acking the copy if so.

        faust seeks partitions back to their committed offsets after table
        recovery and after rebalances, while records fetched before the seek
        may already have been processed, so those arrive a second time. Their
        effect is in the table already: counting them again would skew windows.
        """
        partition = (origin.topic, origin.partition)
        next_offset = self._next_offset.get(partition)
        if next_offset is None or origin.offset >= next_offset:
            self._next_offset[partition] = origin.offset + 1
            self._skipping.discard(partition)
            return False
        if partition not in self._skipping:
            self._skipping.add(partition)
            logger.info(
                "%s: faust delivers records of this partition a second time; skipping them up to offset %d, "
                "which this worker already processed",
                origin,
                next_offset - 1,
            )
        self.redelivered += 1
        original = self._in_flight.get(origin)
        if original is not None:
            # faust acks this copy after the batch; the extra reference waits for the original's outputs.
            event.message.incref()
            original.add_done_callback(partial(_ack_if_delivered, event))
        return True

    def _skip_applied(self, key: Any, origin: Origin) -> bool:
        """Return whether the table already contains the effect of this record, as after a crash before its offset commit.

        Such a record's outputs were acknowledged before its state was written, so it is
        skipped whole. The check reads the state of the entity that the record key names,
        because ingestion keys the raw topic by entity. A record keyed otherwise is processed again.
        """
        if not isinstance(key, bytes):
            return False
        try:
            entity = key.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if not self.state.applied(entity, origin.partition, origin.offset):
            return False
        self.applied_before += 1
        if self.applied_before == 1 or self.applied_before % 1000 == 0:
            logger.info(
                "%s: the state table already contains this record, written before the worker restarted; "
                "skipping it (%d such records so far)", origin, self.applied_before,
            )
        return True

    def _outputs_for(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, Any]], origin: Origin
    ) -> tuple[list[Output], str | None, BatchTrace | None]:
        event_id = header_event_id(headers)
        trace = None
        try:
            cloudevent = from_kafka(key, value, headers, where=origin, json_as_bytes=self.handler.parses_json_data)
            event_id = cloudevent.get_id()
            # `_process_batches` loads a partition's recent inputs before any record of it gets here.
            recent = self._recent[(origin.topic, origin.partition)]
            marker = input_marker(cloudevent.get_source(), cloudevent.get_id())
            if marker in recent:
                self._note_repeat(origin, cloudevent)
                return [], event_id, None
            trace = self.tracer.start([cloudevent], [origin])
            outputs = self.handler.handle(cloudevent)
            trace.stamp(0, outputs)
            recent.add(marker)
            return outputs, event_id, trace
        except InvalidEventError as error:
            self.dead_lettered += 1
            letter = dead_letter_output(
                topic=self.dead_letter_topic,
                service=SERVICE,
                error=error,
                value=value,
                key=key,
                headers=headers,
                origin_topic=origin.topic,
                origin_partition=origin.partition,
                origin_offset=origin.offset,
                event_id=event_id,
            )
            if trace is not None:
                trace.reject(0, error, letter)
            return [letter], event_id, trace
        except Exception as error:
            self.metrics.error("handler")
            if trace is not None:
                trace.end(error)
            logger.error(
                "%s event %s: the features handler failed (%r); stopping the worker with the offset "
                "uncommitted. Fix the handler, or move the record off the topic, then restart",
                origin,
                event_id,
                error,
                extra=event_fields(origin.topic, origin.partition, origin.offset, event_id),
            )
            raise

    def _note_repeat(self, origin: Origin, event: CloudEvent) -> None:
        self.repeated += 1
        if self.repeated == 1 or self.repeated % 1000 == 0:
            logger.info(
                "%s event %s from %s: an input with this source and id is already applied; skipping it "
                "(%d repeated inputs skipped so far)",
                origin, event.get_id(), event.get_source(), self.repeated,
                extra=event_fields(origin.topic, origin.partition, origin.offset, event.get_id()),
            )

    def _ack_when_delivered(
        self, batch: list[faust.EventT], origins: list[Origin], deliveries: list[Awaitable[Any]], done: _Done
    ) -> asyncio.Future | None:
        """Acknowledge the batch's records to faust once its outputs are acknowledged.

        Return the future of that, or None when the records are acknowledged at once.
        """
        if not deliveries:
            self._ack(batch, done)
            return None
        delivered = asyncio.gather(*deliveries)
        for origin in origins:
            self._in_flight[origin] = delivered
        delivered.add_done_callback(partial(self._on_delivered, batch, origins, done))
        return delivered

    def _on_delivered(
        self,
        batch: list[faust.EventT],
        origins: list[Origin],
        done: _Done,
        delivered: asyncio.Future,
    ) -> None:
        error = asyncio.CancelledError() if delivered.cancelled() else delivered.exception()
        if error is None:
            for origin in origins:
                self._in_flight.pop(origin, None)
            self._ack(batch, done)
            return
        # The batch's records stay in flight, so no commit passes them before the worker stops.
        for trace in done.traces:
            trace.end(error)
        self.metrics.error("delivery")
        # The batch has one delivery future, whose error names the event the brokers rejected.
        rejected = getattr(error, "event_id", None)
        failed = next((index for index, output in enumerate(done.outputs) if output.event.get_id() == rejected), 0)
        origin, event_id = done.owners[failed]
        logger.error(
            "%s event %s: the broker did not acknowledge its outputs (%r); stopping the worker with the offsets of "
            "its batch of %d records uncommitted, so they are processed again after a restart",
            origin,
            event_id,
            error,
            len(batch),
            extra=event_fields(origin.topic, origin.partition, origin.offset, event_id),
        )
        self.app.loop.create_task(self.app.crash(error))

    def _ack(self, batch: list[faust.EventT], done: _Done) -> None:
        try:
            self.state.write_when_ready(done.states, self._make_current)
        except Exception as error:
            # A done callback's exception would only be logged by asyncio, so the worker stops here.
            logger.error("writing the entity states of a batch of %d records failed (%r); stopping the worker", len(batch), error)
            self.app.loop.create_task(self.app.crash(error))
            return
        for event in batch:
            event.ack()
        ingested: list[float] = []
        for trace in done.traces:
            trace.end()
            ingested.extend(trace.ingested_at)
        acknowledged = done.acknowledged[-1] if done.acknowledged else None
        self.metrics.batch_done(len(batch), done.outputs, done.started, ingested, self.dead_letter_topic, acknowledged=acknowledged)

    async def refresh_lag(self) -> None:
        """Refresh the lag gauges of the raw partitions assigned to this worker."""
        await self.lag.refresh(self.app.consumer)

    async def log_stats(self) -> None:
        """Log the counts of processed, dead-lettered and skipped records, offset gaps and pending outputs."""
        logger.info(
            "features worker: %d records processed, %d dead-lettered, %d second deliveries skipped, "
            "%d skipped as already in the state table, %d repeated inputs skipped, %d offset gaps, "
            "%d records awaiting the broker",
            self.processed,
            self.dead_lettered,
            self.redelivered,
            self.applied_before,
            self.repeated,
            self.gaps,
            len(self._in_flight),
        )


class _Work(NamedTuple):
    """A record to process, with the faust event whose partition its state write goes to."""

    event: faust.EventT
    origin: Origin
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, Any]]


class GapReader:
    """Reads a range of offsets of one partition with a confluent-kafka consumer outside any consumer group."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 30.0) -> None:
        self._consumer = Consumer(consumer_config(kafka, group_id="streamml-features-gaps"))
        self.timeout_s = timeout_s

    def read(self, topic: str, partition: int, start: int, end: int) -> list[Message]:
        """Return the records at offsets [start, end); offsets without a record, such as transaction markers, are skipped."""
        return list(read_offsets(self._consumer, topic, {partition: (start, end)}, self.timeout_s))

    def close(self) -> None:
        self._consumer.close()


class _Done(NamedTuple):
    """Batch state that the delivery callback finishes: the outputs and the record each comes from, the traces and the processing start time."""

    outputs: list[Output]
    owners: list[tuple[Origin, str | None]]
    traces: list[BatchTrace]
    started: float
    #: (`time.perf_counter()`, `time.time()`) when the brokers acknowledged the outputs, once they have.
    acknowledged: list[tuple[float, float]]
    #: The entity states of the batch, written to the table once the outputs are acknowledged.
    states: _SealedStates

    def note_acknowledgement(self, future: Future) -> None:
        self.acknowledged.append((time.perf_counter(), time.time()))


class WriteBehind(MutableMapping):
    """The entity-state table behind the states that are not written to it yet.

    faust sends a changelog record for every write to a table, so a batch that updates
    one entity many times would otherwise send its whole state once per record. The
    handler's writes collect in `pending`. `seal` ends a batch, and `write_when_ready`
    writes each entity's newest state of a sealed batch once the brokers acknowledged
    the outputs of that batch and of every batch before it. The table therefore never
    contains the effect of a record whose outputs a crash could still lose.

    Each state is written with `source`: the partition and offset of the record that
    produced it, which `applied` reads after a restart. faust puts a changelog record in
    the partition of the event being processed, so each buffered state keeps the event
    that wrote it, and the write makes that event current again.
    """

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.pending: dict[str, tuple[Any, Any]] = {}
        #: The newest state of each entity among the sealed batches not written yet.
        self.unwritten: dict[str, Any] = {}
        self._sealed: deque[_SealedStates] = deque()
        #: The faust event whose record the handler is processing.
        self.event: Any = None

    def __getitem__(self, key: str) -> Any:
        found = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return found

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self.pending[key][0]
        except KeyError:
            pass
        try:
            return self.unwritten[key]
        except KeyError:
            return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = (value, self.event)

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"deleting the state of entity {key!r} is not supported; the features handler only replaces it")

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.keys() | self.unwritten.keys() | self.pending.keys())

    def __len__(self) -> int:
        return len(self.table.keys() | self.unwritten.keys() | self.pending.keys())

    def seal(self) -> _SealedStates:
        """End the current batch and return its states, which `write_when_ready` writes later."""
        sealed = _SealedStates(self.pending)
        self.pending = {}
        for key, (value, _) in sealed.states.items():
            self.unwritten[key] = value
        self._sealed.append(sealed)
        return sealed

    def write_when_ready(self, sealed: _SealedStates, make_current: Callable[[Any], None]) -> None:
        """Note that the outputs of `sealed` are acknowledged, then write every sealed batch, oldest first, up to the first that is not."""
        sealed.ready = True
        while self._sealed and self._sealed[0].ready:
            for key, (value, event) in self._sealed.popleft().states.items():
                make_current(event)
                message = event.message
                self.table[key] = {**value, SOURCE: [message.partition, message.offset]}
                if self.unwritten.get(key) is value:
                    del self.unwritten[key]

    def applied(self, key: str, partition: int, offset: int) -> bool:
        """Return whether the table contains the effect of the record at `offset` of `partition`, whose key is `key`.

        Records are processed and written in offset order, so the state of the record's
        entity, written by a later record of the same partition, contains it too. A state
        of this worker that is not written yet is newer than the table's, and such a record
        is not a replay, so this returns False then.
        """
        if key in self.pending or key in self.unwritten:
            return False
        state = self.table.get(key)
        source = state.get(SOURCE) if isinstance(state, dict) else None
        return isinstance(source, list) and len(source) == 2 and source[0] == partition and source[1] >= offset


class _SealedStates:
    """The states of one batch, by entity, with the event that wrote each, and whether its outputs are acknowledged."""

    __slots__ = ("states", "ready")

    def __init__(self, states: dict[str, tuple[Any, Any]]) -> None:
        self.states = states
        self.ready = False


_MISSING = object()


def limit_commits(consumer: Any, limit: Callable[[Any], int | None]) -> None:
    """Make a faust consumer commit no offset of a partition `tp` beyond `limit(tp)`.

    faust counts the offsets that it read past without delivering them, a gap, as
    acknowledged once a later offset of the partition is. It also commits past an
    unacknowledged record at the committed offset once the next record is acknowledged.
    The worker processes gap records itself, so their outputs may still be in flight
    then. The acknowledged offsets that the limit defers go back to faust's list, and
    a later commit takes them.
    """
    new_offset = consumer._new_offset

    def limited(tp: Any) -> int | None:
        offset = new_offset(tp)
        bound = limit(tp)
        if offset is None or bound is None or offset <= bound:
            return offset
        deferred = range(bound, offset)
        acked = consumer._acked[tp]
        acked.extend(deferred)
        acked.sort()
        consumer._acked_index[tp].update(deferred)
        return bound

    consumer._new_offset = limited


def _ack_if_delivered(event: faust.EventT, original: asyncio.Future) -> None:
    if not original.cancelled() and original.exception() is None:
        event.ack()


def broker_credentials(kafka: KafkaSettings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Translate the shared Kafka security settings into faust's credentials."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=kafka.ssl_ca_location)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password is not None else None
    return faust.SASLCredentials(
        username=kafka.sasl_username, password=password, ssl_context=context, mechanism=kafka.sasl_mechanism or "PLAIN"
    )


def build_app(spec: PipelineSpec, settings: FeaturesAppSettings) -> faust.App:
    """Build the faust app of the features service for one pipeline.

    The app creates only its changelog topic. The raw, features, labels and
    dead-letter topics belong to the pipeline: faust never declares them.
    """
    app_id = settings.resolved_app_id(spec)
    app = faust.App(
        app_id,
        broker=settings.broker_urls,
        store="memory://",
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=settings.producer_linger_s,
        stream_wait_empty=True,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        web_enabled=False,
        autodiscover=False,
        broker_credentials=settings.credentials,
        key_serializer="raw",
        value_serializer="raw",
        # One worker per pipeline: as a static group member it takes the partitions over at once
        # after a restart, instead of after the broker expires the killed worker's session.
        consumer_group_instance_id=settings.group_instance_id or app_id,
    )
    # key_type=str and value_type=None make faust serialize keys and values as JSON.
    table = app.Table(
        STATE_TABLE,
        default=None,
        key_type=str,
        value_type=None,
        partitions=settings.partitions,
        help="Per-entity feature state: window buffers and label history.",
    )
    raw = app.topic(spec.topic("raw"), key_serializer="raw", value_serializer="raw", internal=False)
    kafka = settings.kafka or KafkaSettings(
        bootstrap_servers=",".join(url.removeprefix("kafka://") for url in settings.broker_urls)
    )
    processor = FeaturesProcessor(app, spec, table, kafka, settings.batch_size, settings.batch_timeout_s)
    app.agent(raw, name=AGENT_NAME)(processor.process)
    app.timer(STATS_INTERVAL_S, name="features-stats")(processor.log_stats)
    if settings.lag_interval_s > 0:
        app.timer(settings.lag_interval_s, name="features-lag")(processor.refresh_lag)
    logger.info(
        "features app %s: %s -> %s and %s, dead letters to %s, state table %s (%d partitions)",
        app_id,
        spec.topic("raw"),
        spec.topic("features"),
        spec.topic("labels"),
        spec.topic("dead_letter"),
        STATE_TABLE,
        settings.partitions,
    )
    return app


def run_features(spec: PipelineSpec, settings: FeaturesAppSettings) -> int:
    """Run the features service in a faust worker until SIGTERM or SIGINT; return the exit code.

    On either signal the worker stops fetching, waits until every record in
    flight is processed and its outputs acknowledged, commits the offsets and
    flushes the changelog, then returns 0. A crash returns 1. Logging that the
    caller configured is kept; otherwise faust sets it up at `settings.loglevel`.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(spec, settings)
    worker = faust.Worker(
        app,
        loglevel=settings.loglevel.upper(),
        quiet=True,
        redirect_stdouts=False,
        override_logging=not logging.getLogger().handlers,
    )
    # The startup spinner writes terminal escape codes into logs that are not a terminal.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code is None:
            return 0
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m streamml.features.faust_app",
        description="Run the streamml features service (a faust worker) for one pipeline spec.",
    )
    parser.add_argument("--spec", required=True, type=Path, help="pipeline spec YAML file")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--app-id", help="faust app id and consumer group (default: streamml-features-<spec name>)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="faust data directory")
    parser.add_argument("--partitions", type=int, default=1, help="partition count of the raw topic (default: 1)")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="seconds between offset commits")
    parser.add_argument("--loglevel", default="INFO", help="log level (default: INFO)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the features service from the command line; return the exit code."""
    args = _parse_args(argv)
    try:
        spec = load_spec(args.spec)
        settings = FeaturesAppSettings(
            bootstrap_servers=args.bootstrap_servers,
            app_id=args.app_id,
            data_dir=args.data_dir,
            partitions=args.partitions,
            commit_interval_s=args.commit_interval,
            loglevel=args.loglevel,
        )
    except (SpecError, ValueError) as error:
        print(f"streamml features: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.loglevel.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_features(spec, settings)


if __name__ == "__main__":
    sys.exit(main())
