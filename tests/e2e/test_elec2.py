"""Elec2 through the four services as OS processes over the real Kafka broker."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import PipelineProcesses, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from streamml.demo.runner import ServedAccuracy

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

ELEC2_ROWS = 45_312
RATE = 2_000  # events/s offered to the input topic
IDLE_LIMIT_S = 180


def unique_spec(source: Path, folder: Path, prefix: str) -> Path:
    """Copy a spec under a fresh pipeline name, so its topics and consumer groups are new."""
    document = yaml.safe_load(source.read_text())
    document["name"] = f"{prefix}-{uuid.uuid4().hex[:8]}"
    path = folder / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_elec2_served_accuracy(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "elec2")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    rows = list(replay_csv(elec2_csv, spec))
    assert len(rows) == ELEC2_ROWS
    score = ServedAccuracy({row.event.get_id(): row.label for row in rows}, numeric=False)
    per_id: Counter[str] = Counter()
    predictions = TopicReader(settings, spec.topic("predictions"))
    started = time.monotonic()

    with PipelineProcesses(spec_path, settings, tmp_path / "logs") as services:
        producer = threading.Thread(target=produce_replay, args=(settings, spec.topic("input"), (r.event for r in rows), RATE))
        producer.start()
        idle_since = time.monotonic()
        while len(per_id) < ELEC2_ROWS:
            before = len(per_id)
            for event in predictions.poll(timeout_s=0.5, max_records=5000):
                data = event.get_data()
                per_id[data["event_id"]] += 1
                score.add(data)
            if len(per_id) > before:
                idle_since = time.monotonic()
            assert time.monotonic() - idle_since < IDLE_LIMIT_S, (
                f"no new prediction for {IDLE_LIMIT_S}s after {len(per_id)} of {ELEC2_ROWS}; "
                + "\n".join(f"--- {name}\n{s.log_tail()}" for name, s in services.services.items())
            )
            services.check_alive()
        producer.join()
        duration = time.monotonic() - started
        # Read on for a while: a duplicate prediction would arrive after the last new one.
        settle = time.monotonic() + 5
        while time.monotonic() < settle:
            for event in predictions.poll(timeout_s=0.5, max_records=5000):
                per_id[event.get_data()["event_id"]] += 1
        exit_codes = services.stop()
    predictions.close()

    dead_letters = TopicReader(settings, spec.topic("dead_letter"))
    dead = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        dead.extend(dead_letters.poll(timeout_s=0.5))
    dead_letters.close()

    summary = {
        "events": len(rows),
        "predictions": sum(per_id.values()),
        "prequential_accuracy": round(score.value, 6),
        "model_versions": len(score.versions),
        "duration_s": round(duration, 3),
    }
    if os.environ.get("STREAMML_SUMMARY_DIR"):
        folder = Path(os.environ["STREAMML_SUMMARY_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "elec2-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"elec2 summary: {summary}")

    expected_ids = {row.event.get_id() for row in rows}
    assert set(per_id) == expected_ids
    repeated = {event_id: count for event_id, count in per_id.items() if count != 1}
    assert not repeated, f"{len(repeated)} inputs had more than one prediction, for example {list(repeated.items())[:5]}"
    assert len(score.versions) >= 10, f"only {len(score.versions)} model versions served: {sorted(score.versions)}"
    assert score.value >= 0.80, f"served accuracy {score.value:.4f} is below 0.80 (majority class: 0.575)"
    assert dead == [], f"{len(dead)} dead letters, first: {dead[0].get_data() if dead else None}"
    assert exit_codes == {"ingestion": 0, "features": 0, "training": 0, "inference": 0}
