"""Bad input never crashes the ingestion service, over HTTP or over Kafka.

The service runs as an OS process on a fresh pipeline over the session's broker, with
HTTP on a free port. Every case in `tests.reliability.corpus` goes to it. Each HTTP case
is followed by a valid neighbour request. The Kafka cases go out as one batch of records,
with a valid neighbour before each. Bad input must get 400 or 413 over HTTP and exactly
one dead-letter record over Kafka, and every neighbour must reach the raw topic.

The tests run in file order: the topic checks after the HTTP tests read what those tests
sent, and the last test checks that the service outlived the whole corpus.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamml.common.deadletter import MAX_ORIGINAL_BYTES
from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.demo.cluster import ServiceProcess, create_topics
from tests.e2e.test_elec2 import unique_spec
from tests.kafka.test_ingestion_service import free_port
from tests.reliability.corpus import (
    BIG_VALUE,
    HTTP_CASES,
    HTTP_REQUESTS,
    KAFKA_CASES,
    KAFKA_RECORDS,
    MAX_BODY_BYTES,
    ROW,
    HttpCase,
    KafkaCase,
    attributes,
    data_text,
    judge,
    kafka_binary,
    named_fields,
    record_data,
    row_json,
    valid_http,
)

pytestmark = pytest.mark.kafka

REASONS = {"invalid-cloudevent", "invalid-data", "invalid-batch", "unknown-type", "invalid-label"}
GENERATED = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
KAFKA_RANDOM_RECORDS = 60
KAFKA_RANDOM_DATA = 50
CONSUME_TIMEOUT_S = 120.0


@dataclass
class Ingestion:
    spec: PipelineSpec
    settings: KafkaSettings
    process: ServiceProcess
    http: httpx.Client

    @property
    def group_id(self) -> str:
        return f"streamml-ingestion-{self.spec.name}"


@dataclass
class Sent:
    """An HTTP request whose response had the expected status."""

    request_id: str
    status: int
    error: str | None
    body: bytes


@dataclass
class Ledger:
    """Record of what the tests sent, and so of what the topics must contain."""

    sent: list[Sent] = field(default_factory=list)
    forwarded: Counter[str] = field(default_factory=Counter)
    withheld: set[str] = field(default_factory=set)
    raw_headers: dict[str, dict[str, bytes]] = field(default_factory=dict)
    delivered: Counter[str] = field(default_factory=Counter)
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}.{next(self.numbers)}"


@contextmanager
def running_ingestion(bootstrap_servers: str, spec_source: Path, folder: Path) -> Iterator[Ingestion]:
    """Start `streamml run ingestion` on a fresh pipeline and wait until it is ready."""
    spec_path = unique_spec(spec_source, folder, "bad-input")
    spec = load_spec(spec_path)
    kafka = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(kafka, spec)
    port = free_port()
    environment = {"STREAMML_INGESTION_HTTP_PORT": str(port), "STREAMML_INGESTION_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    process = ServiceProcess("ingestion", spec_path, kafka, folder, extra_env=environment)
    process.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while not ready(http):
                assert process.alive(), process.log_tail()
                assert time.monotonic() < deadline, f"ingestion never became ready:\n{process.log_tail()}"
                time.sleep(0.2)
            yield Ingestion(spec, kafka, process, http)
    finally:
        process.stop()


def ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def ingestion(bootstrap_servers, elec2_spec_path, tmp_path_factory) -> Iterator[Ingestion]:
    with running_ingestion(bootstrap_servers, elec2_spec_path, tmp_path_factory.mktemp("bad-input")) as service:
        yield service
        assert service.process.stop() == 0, service.process.log_tail()


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


def read_topic(settings: KafkaSettings, topic: str) -> list[Message]:
    """Read partition 0 of `topic` from its start to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bad-input-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        messages: list[Message] = []
        deadline = time.monotonic() + 60
        while high > low and (not messages or messages[-1].offset() < high - 1):
            assert time.monotonic() < deadline, f"read {len(messages)} of {high - low} records of {topic}"
            messages.extend(message for message in consumer.consume(500, timeout=1) if message.error() is None)
        return messages
    finally:
        consumer.close()


def raw_events(ingestion: Ingestion) -> list[tuple[str, dict[str, bytes]]]:
    """Return (event id, headers) of every record on the raw topic, in order."""
    events = []
    for message in read_topic(ingestion.settings, ingestion.spec.topic("raw")):
        headers = dict(message.headers() or [])
        events.append((headers["ce_id"].decode(), headers))
    return events


def dead_letters(ingestion: Ingestion) -> list[dict[str, Any]]:
    return [json.loads(message.value()) for message in read_topic(ingestion.settings, ingestion.spec.topic("dead_letter"))]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# HTTP --------------------------------------------------------------------------------------------


def post(
    ingestion: Ingestion, headers: Iterable[tuple[str, str | bytes]], body: bytes, request_id: str, chunked: bool = False
) -> httpx.Response:
    """POST one request on a connection of its own.

    uvicorn closes the connection after an unhandled error in the app, so on a shared
    keep-alive connection one case could fail the request that follows it.
    """
    content: Any = body
    if chunked:
        content = iter([body[start : start + 65536] for start in range(0, len(body), 65536)])
    headers = [*headers, ("x-request-id", request_id), ("connection", "close")]
    return ingestion.http.post("/", headers=headers, content=content)


def post_neighbour(ingestion: Ingestion, ledger: Ledger, event_id: str) -> httpx.Response:
    """Send a valid record after a case, and expect it on the raw topic."""
    response = post(ingestion, valid_http(event_id), row_json(), event_id)
    if response.status_code == 202:
        ledger.sent.append(Sent(event_id, 202, None, row_json()))
        ledger.forwarded[event_id] += 1
    return response


def http_param(case: HttpCase):
    marks = [pytest.mark.xfail(strict=True, reason=f"product bug: {case.bug}")] if case.bug else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [http_param(case) for case in HTTP_CASES])
def test_http(case: HttpCase, ingestion: Ingestion, ledger: Ledger):
    response = post(ingestion, case.headers, case.body, case.name, case.chunked)
    assert response.status_code == case.status, response.text
    if case.status != 202:
        rejection = response.json()
        assert rejection["error"] == case.error
        for mention in case.mentions:
            assert mention in rejection["message"]
    ledger.sent.append(Sent(case.name, case.status, case.error, case.body))
    ledger.forwarded.update(case.forwarded)
    ledger.withheld.update(case.withheld)
    for event_id in case.forwarded:
        ledger.raw_headers[event_id] = dict(case.raw_headers)
    ledger.delivered["http, written"] += 1
    assert post_neighbour(ingestion, ledger, f"{case.name}.neighbour").status_code == 202


@GENERATED
@given(example=HTTP_REQUESTS)
def test_http_random_request(example, ingestion: Ingestion, ledger: Ledger):
    headers, body = example
    request_id = ledger.next_id("http-random-request")
    response = post(ingestion, headers, body, request_id)
    assert response.status_code == 400, response.text
    rejection = response.json()
    assert rejection["error"] in REASONS
    assert rejection["message"]
    ledger.sent.append(Sent(request_id, 400, rejection["error"], body))
    ledger.delivered["http, generated"] += 1
    assert post_neighbour(ingestion, ledger, f"{request_id}.neighbour").status_code == 202


@GENERATED
@given(data=record_data())
def test_http_random_data(data, ingestion: Ingestion, ledger: Ledger):
    verdict = judge(data)
    event_id = ledger.next_id("http-random-data")
    body = data_text(data)
    response = post(ingestion, valid_http(event_id), body, event_id)
    if verdict.accepted:
        assert response.status_code == 202, response.text
        ledger.forwarded[event_id] += 1
    else:
        assert response.status_code == 400, response.text
        rejection = response.json()
        assert rejection["error"] == "invalid-data"
        assert named_fields(rejection["message"]) == set(verdict.named) & set(ROW)
        for name in set(verdict.named) - set(ROW):
            assert name in rejection["message"]
        ledger.withheld.add(event_id)
    ledger.sent.append(Sent(event_id, response.status_code, None if verdict.accepted else "invalid-data", body))
    ledger.delivered["http, generated"] += 1
    assert post_neighbour(ingestion, ledger, f"{event_id}.neighbour").status_code == 202


def test_http_dead_letters(ingestion: Ingestion, ledger: Ledger):
    letters = defaultdict(list)
    for letter in dead_letters(ingestion):
        if letter["http_request_id"] is not None:
            letters[letter["http_request_id"]].append(letter)
    rejected = {sent.request_id: sent for sent in ledger.sent if sent.status == 400}
    assert {request_id: len(letters[request_id]) for request_id in rejected} == dict.fromkeys(rejected, 1)
    assert [sent.request_id for sent in ledger.sent if sent.status != 400 and letters[sent.request_id]] == []
    reasons = {request_id: letters[request_id][0]["reason"] for request_id in rejected}
    assert reasons == {request_id: sent.error for request_id, sent in rejected.items()}
    bodies = {request_id: digest(base64.b64decode(letters[request_id][0]["original_value_base64"])) for request_id in rejected}
    assert bodies == {request_id: digest(sent.body[:MAX_ORIGINAL_BYTES]) for request_id, sent in rejected.items()}
    sizes = {request_id: letters[request_id][0]["original_size"] for request_id in rejected}
    assert sizes == {request_id: len(sent.body) for request_id, sent in rejected.items()}


def test_http_forwarded(ingestion: Ingestion, ledger: Ledger):
    events = raw_events(ingestion)
    counts = Counter(event_id for event_id, _ in events)
    assert {event_id: counts[event_id] for event_id in ledger.forwarded} == dict(ledger.forwarded)
    assert sorted(event_id for event_id in ledger.withheld if counts[event_id]) == []
    seen = {
        event_id: {name: headers.get(name) for name in ledger.raw_headers[event_id]}
        for event_id, headers in events
        if event_id in ledger.raw_headers
    }
    assert seen == ledger.raw_headers


# Kafka -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomRecord:
    """A generated record, which is never a valid event and so must be dead-lettered."""

    name: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass
class KafkaRun:
    """Offsets of the input records by name, and what the service produced from them."""

    topic: str
    offsets: dict[str, int]
    letters: dict[int, list[dict[str, Any]]]
    raw: list[tuple[str, dict[str, bytes]]]
    expected_raw: list[str]
    random_records: list[RandomRecord]
    random_data: list[KafkaCase]

    def letters_of(self, name: str) -> list[dict[str, Any]]:
        return self.letters.get(self.offsets[name], [])


def drawn(strategy: st.SearchStrategy, count: int) -> list:
    """Return `count` examples of a strategy, for cases that go out in one batch."""
    examples = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def keep(example):
        examples.append(example)

    keep()
    return examples


def random_data_case(number: int, data: dict[str, Any]) -> KafkaCase:
    """Return a binary record of drawn data, with the outcome that `judge` predicts."""
    event_id = f"kafka-random-data.{number}"
    verdict = judge(data)
    return KafkaCase(
        name=event_id,
        description="Drawn data, judged against the elec2 spec.",
        key=b"NSW",
        value=data_text(data),
        headers=kafka_binary(attributes(event_id)),
        reason=None if verdict.accepted else "invalid-data",
        mentions=verdict.named,
        forwarded=(event_id,) if verdict.accepted else (),
        withheld=() if verdict.accepted else (event_id,),
    )


def produce(ingestion: Ingestion, records: list[tuple[str, bytes | None, bytes | None, Any]]) -> dict[str, int]:
    """Produce (name, key, value, headers) records in order, and return the offset of each name."""
    producer = Producer(
        {"bootstrap.servers": ingestion.settings.bootstrap_servers, "acks": "all", "enable.idempotence": True, "linger.ms": 20}
    )
    offsets: dict[str, int] = {}
    failures: list[str] = []

    def delivered(error, message, name):
        if error is not None:
            failures.append(f"{name}: {error}")
        else:
            offsets[name] = message.offset()

    for name, key, value, headers in records:
        producer.produce(
            ingestion.spec.topic("input"),
            key=key,
            value=value,
            headers=list(headers),
            on_delivery=lambda error, message, name=name: delivered(error, message, name),
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    return offsets


def wait_until_consumed(ingestion: Ingestion, end: int) -> None:
    """Wait until the service has committed every input offset before `end`.

    The service commits only after every output is acknowledged, so after this the raw
    and dead-letter topics contain everything that the records produced.
    """
    consumer = Consumer({"bootstrap.servers": ingestion.settings.bootstrap_servers, "group.id": ingestion.group_id})
    try:
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while True:
            [committed] = consumer.committed([TopicPartition(ingestion.spec.topic("input"), 0)], timeout=10)
            if committed.offset >= end:
                return
            if not ingestion.process.alive():
                pytest.fail(f"ingestion exited with {ingestion.process.process.returncode}:\n{ingestion.process.log_tail()}")
            assert time.monotonic() < deadline, f"ingestion committed {committed.offset} of {end} offsets"
            time.sleep(0.2)
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def kafka_run(ingestion: Ingestion, ledger: Ledger) -> KafkaRun:
    """Produce every Kafka case, each after a valid neighbour, then read what came out."""
    random_records = [
        RandomRecord(f"kafka-random-record.{number}", key, value, headers)
        for number, (key, value, headers) in enumerate(drawn(KAFKA_RECORDS, KAFKA_RANDOM_RECORDS))
    ]
    random_data = [random_data_case(number, data) for number, data in enumerate(drawn(record_data(), KAFKA_RANDOM_DATA))]
    cases = [*KAFKA_CASES, *random_records, *random_data]
    records = []
    expected_raw = []
    for number, case in enumerate(cases):
        neighbour = f"kafka-neighbour.{number}"
        records.append((neighbour, b"NSW", row_json(), kafka_binary(attributes(neighbour))))
        records.append((case.name, case.key, case.value, case.headers))
        expected_raw.append(neighbour)
        if isinstance(case, KafkaCase):
            expected_raw.extend(case.forwarded)
    offsets = produce(ingestion, records)
    ledger.delivered["kafka, written"] += len(KAFKA_CASES)
    ledger.delivered["kafka, generated"] += len(random_records) + len(random_data)
    wait_until_consumed(ingestion, max(offsets.values()) + 1)

    topic = ingestion.spec.topic("input")
    letters = defaultdict(list)
    for letter in dead_letters(ingestion):
        if letter["origin_topic"] == topic:
            letters[letter["origin_offset"]].append(letter)
    raw = [(event_id, headers) for event_id, headers in raw_events(ingestion) if not event_id.startswith("http")]
    return KafkaRun(topic, offsets, dict(letters), raw, expected_raw, random_records, random_data)


def check_kafka_case(case: KafkaCase, run: KafkaRun) -> None:
    """Check one case: a forwarded record carries the expected headers, a bad one has one dead letter."""
    letters = run.letters_of(case.name)
    if case.reason is None:
        assert letters == [], case.name
        for event_id, headers in run.raw:
            if event_id in case.forwarded:
                assert {name: headers.get(name) for name, _ in case.raw_headers} == dict(case.raw_headers), case.name
        return
    assert len(letters) == 1, case.name
    [letter] = letters
    assert letter["reason"] == case.reason, case.name
    for mention in case.mentions:
        assert mention in letter["message"], case.name
    assert letter["origin_partition"] == 0, case.name
    assert base64.b64decode(letter["original_value_base64"]) == (case.value or b"")[:MAX_ORIGINAL_BYTES], case.name
    assert letter["original_size"] == len(case.value or b""), case.name
    key = None if case.key is None else base64.b64encode(case.key).decode()
    assert letter["original_key_base64"] == key, case.name
    assert [event_id for event_id, _ in run.raw if event_id in case.withheld] == [], case.name


@pytest.mark.parametrize("case", KAFKA_CASES, ids=[case.name for case in KAFKA_CASES])
def test_kafka(case: KafkaCase, kafka_run: KafkaRun):
    check_kafka_case(case, kafka_run)


def test_kafka_random_data(kafka_run: KafkaRun):
    for case in kafka_run.random_data:
        check_kafka_case(case, kafka_run)
        for letter in kafka_run.letters_of(case.name):
            assert named_fields(letter["message"]) == set(case.mentions) & set(ROW), case.name


def test_kafka_random_records(kafka_run: KafkaRun):
    for record in kafka_run.random_records:
        letters = kafka_run.letters_of(record.name)
        assert len(letters) == 1, record
        assert letters[0]["reason"] in REASONS, record
        assert letters[0]["message"], record
        assert base64.b64decode(letters[0]["original_value_base64"]) == (record.value or b"")[:MAX_ORIGINAL_BYTES], record
        assert letters[0]["original_size"] == len(record.value or b""), record


def test_kafka_forwarded_in_order(kafka_run: KafkaRun):
    assert [event_id for event_id, _ in kafka_run.raw] == kafka_run.expected_raw


def test_kafka_letters_only_for_bad_records(kafka_run: KafkaRun):
    neighbours = {offset for name, offset in kafka_run.offsets.items() if name.startswith("kafka-neighbour.")}
    assert sorted(neighbours & set(kafka_run.letters)) == []


def test_kafka_value_near_broker_limit(bootstrap_servers, elec2_spec_path, tmp_path):
    """A 900,000-byte record with an unknown field is dead-lettered, and its neighbours flow."""
    with running_ingestion(bootstrap_servers, elec2_spec_path, tmp_path) as service:
        records = [
            ("before", b"NSW", row_json(), kafka_binary(attributes("kafka-big.before"))),
            ("big", b"NSW", BIG_VALUE, kafka_binary(attributes("kafka-big.big"))),
            ("after", b"NSW", row_json(), kafka_binary(attributes("kafka-big.after"))),
        ]
        offsets = produce(service, records)
        wait_until_consumed(service, offsets["after"] + 1)
        letters = dead_letters(service)
        assert [letter["origin_offset"] for letter in letters] == [offsets["big"]]
        assert "attachment: unknown field" in letters[0]["message"]
        assert [event_id for event_id, _ in raw_events(service)] == ["kafka-big.before", "kafka-big.after"]


# Afterwards --------------------------------------------------------------------------------------


def test_service_survived(ingestion: Ingestion, ledger: Ledger):
    assert ingestion.process.alive(), ingestion.process.log_tail()
    health = ingestion.http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "alive"}
    assert sum(ledger.delivered.values()) >= 200, ledger.delivered
