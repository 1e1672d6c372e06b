"""Offset commits of the faust features worker: no commit passes a record whose outputs are in flight."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from streamml.common.events import new_event, to_kafka
from streamml.common.payloads import RECORD_TYPE
from streamml.common.settings import KafkaSettings
from streamml.common.spec import parse_spec
from streamml.features import faust_app
from streamml.features.faust_app import SOURCE, FeaturesProcessor, limit_commits
from tests.kafka.test_features_faust import spec_document

RAW = "commits-raw"


def _consumer(name: str) -> Any:
    # The consumer object is built without connecting, so faust's own offset bookkeeping runs here.
    app = faust.App(name, broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False, autodiscover=False)
    return app.consumer


def _acknowledge(consumer: Any, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)


def test_gap_waits_for_limit():
    consumer = _consumer("commit-limit-gap")
    tp = TP(RAW, 0)
    limit = {"offset": 3}
    limit_commits(consumer, lambda partition: limit["offset"])
    # faust read past offsets 3 and 4 without delivering them: a gap, which it counts as acknowledged.
    _acknowledge(consumer, tp, [0, 1, 2, 5])
    consumer._gap[tp].addi(3, 5)

    assert consumer._filter_committable_offsets([tp]) == {tp: 3}
    consumer._committed_offset[tp] = 3

    limit["offset"] = 6
    assert consumer._filter_committable_offsets([tp]) == {tp: 6}


def test_record_in_flight_stops_commit():
    consumer = _consumer("commit-limit-flight")
    tp = TP(RAW, 0)
    limit_commits(consumer, lambda partition: 10)
    consumer._committed_offset[tp] = 10
    # Offset 10 is in flight and 11 is acknowledged. faust alone would commit 12 here.
    _acknowledge(consumer, tp, [11])

    assert consumer._filter_committable_offsets([tp]) == {}


def test_no_limit_keeps_faust_offset():
    consumer = _consumer("commit-limit-none")
    tp = TP(RAW, 1)
    limit_commits(consumer, lambda partition: None)
    _acknowledge(consumer, tp, [0, 1])

    assert consumer._filter_committable_offsets([tp]) == {tp: 2}


# The processor between faust and the handler ------------------------------------------------------


TOPICS = {"raw": RAW, "features": "commits-features", "labels": "commits-labels", "dead_letter": "commits-dlq"}
SPEC = parse_spec(spec_document("commits", TOPICS))


def _raw(offset: int, entity: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    event = new_event(type=RECORD_TYPE, source="tests/commits", subject=entity, data={"entity": entity, "x": float(offset)}, id=f"r{offset}")
    key, value, headers = to_kafka(event)
    return entity.encode(), value, headers


class FakeMessage:
    """The parts of a faust message the processor reads, with faust's reference count."""

    def __init__(self, offset: int, entity: str) -> None:
        self.topic, self.partition, self.offset = RAW, 0, offset
        self.key, self.value, self.headers = _raw(offset, entity)
        self.refcount = 1

    def incref(self) -> None:
        self.refcount += 1


class FakeEvent:
    def __init__(self, offset: int, entity: str) -> None:
        self.message = FakeMessage(offset, entity)

    def ack(self) -> None:
        self.message.refcount -= 1

    @property
    def acknowledged(self) -> bool:
        return self.message.refcount == 0


class FakeStream:
    """A stream of the given batches that acknowledges each event after the agent's step, as faust does."""

    def __init__(self, batches: list[list[FakeEvent]]) -> None:
        self.batches = batches

    async def take_events(self, max_: int, within: float):
        for batch in self.batches:
            yield batch
            for event in batch:
                event.ack()


class HoldingEmitter:
    """An emitter whose outputs are acknowledged at once until `hold` is set, after which they wait for the test."""

    def __init__(self) -> None:
        self.hold = False
        self.held: list[Future] = []

    def send_all(self, outputs: list[Any]) -> list[Future]:
        futures = [Future() for _ in outputs]
        for future in futures:
            if self.hold:
                self.held.append(future)
            else:
                future.set_result(None)
        return futures


class GapRecord:
    def __init__(self, offset: int, entity: str) -> None:
        self._offset = offset
        self._key, self._value, self._headers = _raw(offset, entity)

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


class FakeGapReader:
    """A gap reader that returns records of entity beta at the requested offsets."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.reads: list[tuple[str, int, int, int]] = []

    def read(self, topic: str, partition: int, start: int, end: int) -> list[GapRecord]:
        self.reads.append((topic, partition, start, end))
        return [GapRecord(offset, "beta") for offset in range(start, end)]

    def close(self) -> None:
        pass


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_gap_record_in_flight_holds_commit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(faust_app, "GapReader", FakeGapReader)
    # The record at offset 2 was applied before a restart, so it is skipped and faust acknowledges it at once.
    table: dict[str, Any] = {"alpha": {"seen": 1, "windows": {}, "labels": [], SOURCE: [0, 2]}}
    processor = FeaturesProcessor(SimpleNamespace(), SPEC, table, KafkaSettings(bootstrap_servers="127.0.0.1:9"))
    first, after_gap = FakeEvent(0, "beta"), FakeEvent(2, "alpha")
    emitter = HoldingEmitter()

    async def scenario() -> None:
        stream = FakeStream([[first]])
        await processor._process_batches(stream, emitter)
        await _settle()
        assert first.acknowledged
        assert processor.commit_limit(TP(RAW, 0)) == 1

        emitter.hold = True
        await processor._process_batches(FakeStream([[after_gap]]), emitter)
        await _settle()
        assert processor._gap_reader.reads == [(RAW, 0, 1, 2)]
        assert after_gap.acknowledged, "the skipped record is acknowledged at once"
        assert emitter.held, "the gap record's outputs are in flight"
        assert processor.commit_limit(TP(RAW, 0)) == 1

        for future in emitter.held:
            future.set_result(None)
        await _settle()
        assert processor.commit_limit(TP(RAW, 0)) == 3
        assert table["beta"][SOURCE] == [0, 2]

    asyncio.run(scenario())
