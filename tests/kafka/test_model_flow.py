"""Training and inference as OS processes: model versions on the compacted topic, loaded at start and swapped live."""

from __future__ import annotations

import re
import time

import pytest

from streamml.common.events import new_event
from streamml.common.payloads import MODEL_TYPE, ModelArtifact
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from streamml.features.handler import FeaturesHandler
from tests.e2e.test_elec2 import unique_spec

pytestmark = pytest.mark.kafka


def ids(events) -> set[str]:
    return {event.get_data()["event_id"] for event in events}


def wait_for(reader: TopicReader, predicate, timeout_s: float = 90.0, service: ServiceProcess | None = None) -> list:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.extend(reader.poll(timeout_s=0.5))
        if predicate(seen):
            return seen
        if service is not None:
            assert service.alive(), service.log_tail()
    raise AssertionError(f"timed out after {timeout_s}s with {len(seen)} events" + (f"\n{service.log_tail()}" if service else ""))


def test_models_published_loaded_and_swapped(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "models")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)

    # Feature vectors and labels computed in-process by the same handler the features service runs.
    features = FeaturesHandler(spec, {})
    by_topic: dict[str, list] = {spec.topic("features"): [], spec.topic("labels"): []}
    for row in replay_csv(elec2_csv, spec, limit=5000):
        for output in features.handle(row.event):
            by_topic[output.topic].append(output.event)

    training = ServiceProcess("training", spec_path, settings, tmp_path, extra_env={"STREAMML_TRAINING_MODEL_DIR": str(tmp_path / "models")})
    training.start()
    models = TopicReader(settings, spec.topic("models"))
    inference = ServiceProcess("inference", spec_path, settings, tmp_path)
    try:
        produce_replay(settings, spec.topic("labels"), by_topic[spec.topic("labels")][:4000])
        produce_replay(settings, spec.topic("features"), by_topic[spec.topic("features")][:4000])
        # Samples are learned in whole blocks, and a version is published once a cadence of them is learned.
        block = spec.training.batch_size
        per_version = -(-spec.training.every_events // block) * block
        newest = 4000 // block * block // per_version
        published = wait_for(models, lambda seen: len(seen) >= newest + 1, service=training)
        versions = [ModelArtifact.model_validate(event.get_data()).version for event in published]
        assert versions[:3] == [0, 1, 2]
        assert all(event.get_subject() == spec.model_name for event in published)
        assert training.stop() == 0, training.log_tail()

        # A restarted training service resumes from the checkpoint of the newest version.
        training.start()
        deadline = time.monotonic() + 60
        while "restored model" not in training.log_path.read_text() and time.monotonic() < deadline:
            assert training.alive(), training.log_tail()
            time.sleep(0.3)
        # The clean stop checkpointed every record handled, which may include blocks after the newest version.
        restored = re.search(
            rf"restored model {spec.model_name} from the checkpoint of version {newest} and 0 journal events after it: "
            rf"(\d+) learned samples; the next version is {newest + 1}",
            training.log_path.read_text(),
        )
        assert restored is not None, training.log_tail()
        assert newest * per_version <= int(restored.group(1)) <= 4000
        assert training.stop() == 0, training.log_tail()

        inference.start()
        predictions = TopicReader(settings, spec.topic("predictions"))
        # The inference group is new, so it predicts the 4,000 earlier vectors too.
        first = ids(by_topic[spec.topic("features")][:4100])
        produce_replay(settings, spec.topic("features"), by_topic[spec.topic("features")][4000:4100])
        served = wait_for(predictions, lambda seen: first <= ids(seen), service=inference)
        assert {event.get_data()["model_version"] for event in served} == {newest}

        # A model whose graph does not fit is rejected; the newest trained version keeps serving.
        good = ModelArtifact.model_validate(published[2].get_data())
        broken = good.model_copy(update={"version": 9, "input_name": "wrong"})
        produce_replay(settings, spec.topic("models"), [new_event(type=MODEL_TYPE, source="tests", subject=spec.model_name, data=broken)])
        swapped = good.model_copy(update={"version": 10})
        produce_replay(settings, spec.topic("models"), [new_event(type=MODEL_TYPE, source="tests", subject=spec.model_name, data=swapped)])
        time.sleep(2)
        produce_replay(settings, spec.topic("features"), by_topic[spec.topic("features")][4100:4200])
        second = ids(by_topic[spec.topic("features")][4100:4200])
        later = wait_for(predictions, lambda seen: second <= ids(seen), service=inference)
        assert {event.get_data()["model_version"] for event in later} == {10}
        assert inference.stop() == 0
        log = inference.log_path.read_text()
        assert "rejected model event" in log
        assert "v9" in log
        predictions.close()
    finally:
        models.close()
        training.stop()
        inference.stop()
