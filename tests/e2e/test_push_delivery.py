"""The four services in push mode, fed over HTTP the way Knative KafkaSources feed them."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, TopicReader, create_topics, produce_replay
from streamml.demo.replay import replay_csv
from tests.e2e.dispatcher import Dispatcher
from tests.e2e.test_elec2 import unique_spec
from tests.http_helpers import free_port, wait_http

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

ROWS = 3000


def test_push_chain_survives_restarts(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "push")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    inputs = {
        "ingestion": [spec.topic("input")],
        "features": [spec.topic("raw")],
        "training": [spec.topic("features"), spec.topic("labels")],
        "inference": [spec.topic("features")],
    }
    services, urls = {}, {}
    for name in ("training", "inference", "features", "ingestion"):
        port = free_port()
        prefix = f"STREAMML_{name.upper()}"
        env = {f"{prefix}_MODE": "push", f"{prefix}_HTTP_PORT": str(port)}
        if name == "training":
            env["STREAMML_TRAINING_MODEL_DIR"] = str(tmp_path / "models")
        services[name] = ServiceProcess(name, spec_path, settings, tmp_path / "logs", extra_env=env)
        urls[name] = f"http://127.0.0.1:{port}"
        services[name].start()
    dispatchers = []
    try:
        for name, service in services.items():
            wait_http(service, urls[name])
        for name, topics in inputs.items():
            dispatchers.append(Dispatcher(bootstrap_servers, topics, urls[name] + "/", spec.topic("dead_letter"), group_id=f"{spec.name}-{name}").start())

        rows = list(replay_csv(elec2_csv, spec, limit=ROWS))
        produce_replay(settings, spec.topic("input"), (row.event for row in rows[:1000]), rate=1000)

        # Kill the stateful features service without warning, then restart it on the same port.
        services["features"].stop(sig=signal.SIGKILL)
        produce_replay(settings, spec.topic("input"), (row.event for row in rows[1000:2000]), rate=1000)
        services["features"].start()
        wait_http(services["features"], urls["features"])

        # Stop inference cleanly mid-stream, then restart it.
        assert services["inference"].stop() == 0, services["inference"].log_tail()
        produce_replay(settings, spec.topic("input"), (row.event for row in rows[2000:]), rate=1000)
        services["inference"].start()
        wait_http(services["inference"], urls["inference"])

        predictions = TopicReader(settings, spec.topic("predictions"))
        per_id: Counter[str] = Counter()
        expected = {row.event.get_id() for row in rows}
        deadline = time.monotonic() + 180
        while not expected <= per_id.keys() and time.monotonic() < deadline:
            for event in predictions.poll(timeout_s=0.5):
                per_id[event.get_data()["event_id"]] += 1
            for dispatcher in dispatchers:
                assert dispatcher.failure is None, repr(dispatcher.failure)
        predictions.close()
        missing = expected - per_id.keys()
        assert not missing, f"{len(missing)} inputs have no prediction, for example {sorted(missing)[:5]}"
        assert all(d.dead_lettered == 0 for d in dispatchers), [(d.url, d.dead_lettered) for d in dispatchers]
        assert any(d.retries > 0 for d in dispatchers), "the restarts should have made a dispatcher retry"
        duplicates = sum(count - 1 for count in per_id.values())
        print(f"push chain: {len(per_id)} inputs predicted, {duplicates} redelivered predictions, retries {[d.retries for d in dispatchers]}")
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()
        for service in services.values():
            service.stop()
