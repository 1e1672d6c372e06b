"""`streamml demo`: replay a dataset through the four services and measure the served accuracy."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streamml.common.errors import KafkaUnreachableError, SpecError
from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.demo.replay import ReplayedRow, replay_csv

logger = logging.getLogger(__name__)


def default_dataset() -> tuple[Path, Path]:
    """Return the CSV and spec of the bundled demo: the Phishing stream that river ships."""
    try:
        from river import datasets
    except ImportError as error:
        raise SpecError(
            "the default demo replays the Phishing dataset shipped with river: "
            "install streamml[demo], or pass --csv FILE --spec FILE"
        ) from error
    spec_path = Path(str(resources.files("streamml.demo") / "phishing.yaml"))
    return Path(datasets.Phishing().path), spec_path


class ServedAccuracy:
    """Counts predictions and compares each with the true label of its input event."""

    def __init__(self, labels: dict[str, Any], numeric: bool) -> None:
        self.labels = labels
        self.numeric = numeric
        self.predicted: dict[str, Any] = {}
        self.versions: set[int] = set()
        self.correct = 0
        self.absolute_error = 0.0
        self.duplicates = 0

    def add(self, prediction: dict[str, Any]) -> None:
        event_id = prediction["event_id"]
        if event_id in self.predicted:
            self.duplicates += 1
            return
        self.predicted[event_id] = prediction["label"]
        self.versions.add(prediction["model_version"])
        truth = self.labels.get(event_id)
        if truth is None:
            return
        if self.numeric:
            self.absolute_error += abs(float(prediction["label"]) - float(truth))
        elif prediction["label"] == truth:
            self.correct += 1

    @property
    def value(self) -> float:
        scored = sum(1 for event_id in self.predicted if self.labels.get(event_id) is not None)
        if not scored:
            return 0.0
        if self.numeric:
            return self.absolute_error / scored
        return self.correct / scored


def _rows(csv_path: Path, spec: PipelineSpec, limit: int | None) -> tuple[list[ReplayedRow], dict[str, Any]]:
    rows = list(replay_csv(csv_path, spec, limit=limit))
    labels = {row.event.get_id(): row.label for row in rows}
    return rows, labels


def _chunks(rows: list[ReplayedRow], size: int) -> Iterator[list[ReplayedRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def run_embedded(spec: PipelineSpec, rows: list[ReplayedRow], score: ServedAccuracy, progress: bool) -> None:
    from streamml.demo.embedded import EmbeddedPipeline

    pipeline = EmbeddedPipeline(spec)
    seen = 0
    with tqdm(total=len(rows), disable=not progress, unit="ev", desc=spec.name) as bar:
        for chunk in _chunks(rows, 50):
            pipeline.feed(row.event for row in chunk)
            for event in pipeline.predictions[seen:]:
                score.add(event.get_data())
            seen = len(pipeline.predictions)
            bar.update(len(chunk))
            bar.set_postfix(accuracy=f"{score.value:.3f}", model=f"v{pipeline.inference.model.version}")
    if pipeline.dead_letters:
        logger.warning("%d events were dead-lettered", len(pipeline.dead_letters))


def check_reachable(settings: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Raise KafkaUnreachableError unless a broker responds at the bootstrap servers."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(settings.client_config()).list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise KafkaUnreachableError(
            f"no Kafka broker responded at {settings.bootstrap_servers} within {timeout_s:.0f}s: start one "
            "(for example `python scripts/kafka_broker.py start --work-dir /tmp/kafka`) or fix --bootstrap-servers"
        ) from error


def unique_run_spec(spec_path: Path) -> Path:
    """Copy a spec under a new pipeline name, so a run over Kafka gets fresh topics, groups and event ids."""
    import uuid

    import yaml

    document = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    document["name"] = f"{document['name']}-{uuid.uuid4().hex[:8]}"[:63]
    path = Path(tempfile.mkdtemp(prefix="streamml-spec-")) / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def run_over_kafka(
    spec: PipelineSpec, spec_path: Path, rows: list[ReplayedRow], score: ServedAccuracy, bootstrap_servers: str, rate: float, progress: bool
) -> None:
    from streamml.demo.cluster import PipelineProcesses, TopicReader, create_topics, produce_replay

    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    check_reachable(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="streamml-demo-"))
    print(f"service logs: {log_dir}")
    create_topics(settings, spec)
    reader = TopicReader(settings, spec.topic("predictions"))
    expected_ids = {row.event.get_id() for row in rows}
    with PipelineProcesses(spec_path.resolve(), settings, log_dir) as services:
        producer = threading.Thread(
            target=produce_replay, args=(settings, spec.topic("input"), (row.event for row in rows), rate), daemon=True
        )
        producer.start()
        idle_since = time.monotonic()
        with tqdm(total=len(rows), disable=not progress, unit="ev", desc=spec.name) as bar:
            while len(expected_ids & score.predicted.keys()) < len(expected_ids):
                before = len(score.predicted)
                for event in reader.poll():
                    data = event.get_data()
                    if data["event_id"] in expected_ids:
                        score.add(data)
                bar.update(len(score.predicted) - before)
                bar.set_postfix(accuracy=f"{score.value:.3f}", versions=len(score.versions))
                if len(score.predicted) > before:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 120:
                    raise RuntimeError(f"no prediction for 120s; service logs are in {log_dir}")
                services.check_alive()
        producer.join()
    reader.close()


def run_demo(
    csv_path: str | None = None,
    spec_path: str | None = None,
    bootstrap_servers: str | None = None,
    summary_json: str | None = None,
    limit: int | None = None,
    rate: float = 0.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay a dataset, embedded or over Kafka, and return (and optionally write) the summary."""
    if csv_path is None:
        csv_file, spec_file = default_dataset()
        if spec_path is not None:
            spec_file = Path(spec_path)
    else:
        csv_file, spec_file = Path(csv_path), Path(spec_path or "")
    if bootstrap_servers:
        # Every run over Kafka gets its own topics: a rerun must not count an earlier run's predictions.
        spec_file = unique_run_spec(spec_file)
    spec = load_spec(spec_file)
    rows, labels = _rows(csv_file, spec, limit)
    score = ServedAccuracy(labels, numeric=spec.label.kind == "numeric")
    started = time.monotonic()
    if bootstrap_servers:
        print(f"pipeline {spec.name}: topics {spec.topic('input')} … {spec.topic('predictions')}")
        run_over_kafka(spec, spec_file, rows, score, bootstrap_servers, rate, progress)
    else:
        run_embedded(spec, rows, score, progress)
    summary = {
        "events": len(rows),
        "predictions": len(score.predicted),
        "prequential_accuracy": round(score.value, 6),
        "model_versions": len(score.versions),
        "duration_s": round(time.monotonic() - started, 3),
    }
    if summary_json:
        Path(summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
