"""SIGKILL of the training service in push mode: every sample it responded to is still learned once.

A KafkaSource commits an event's offset when the service responds, so training in push
mode must have the sample in a checkpoint or its journal before the response.
"""

from __future__ import annotations

import re
import signal
import time

import pytest
from confluent_kafka import Producer

from streamml.common.events import to_kafka
from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, create_topics
from streamml.demo.replay import replay_csv
from streamml.features.handler import FeaturesHandler
from tests.e2e.dispatcher import Dispatcher
from tests.e2e.test_elec2 import unique_spec
from tests.http_helpers import free_port, wait_http

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

ROWS = 1500


def test_killed_push_training_loses_nothing(bootstrap_servers, elec2_csv, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "push-training")
    spec = load_spec(spec_path)
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, spec)
    # The feature vectors and labels of the first rows, computed in process by the features handler.
    features = FeaturesHandler(spec, {})
    producer = Producer(settings.client_config())
    records = 0
    for row in replay_csv(elec2_csv, spec, limit=ROWS):
        for output in features.handle(row.event):
            key, value, headers = to_kafka(output.event)
            producer.produce(output.topic, key=key, value=value, headers=headers)
            records += 1
    assert producer.flush(30) == 0
    assert records == 2 * ROWS

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"STREAMML_TRAINING_MODE": "push", "STREAMML_TRAINING_HTTP_PORT": str(port), "STREAMML_TRAINING_MODEL_DIR": str(tmp_path / "models")}
    training = ServiceProcess("training", spec_path, settings, tmp_path / "logs", extra_env=env)
    training.start()
    dispatcher = None
    try:
        wait_http(training, url)
        dispatcher = Dispatcher(bootstrap_servers, [spec.topic("features"), spec.topic("labels")], url + "/", spec.topic("dead_letter")).start()
        # Kill between two versions (every 512 samples): the samples acknowledged since the last
        # version exist only in the learner's memory and on the checkpoints topic.
        deadline = time.monotonic() + 120
        while dispatcher.delivered < 1400 and time.monotonic() < deadline:
            assert dispatcher.failure is None, repr(dispatcher.failure)
            time.sleep(0.05)
        assert dispatcher.delivered >= 1400, training.log_tail()
        training.stop(sig=signal.SIGKILL)
        training.start()
        wait_http(training, url)
        deadline = time.monotonic() + 180
        while dispatcher.delivered < records and time.monotonic() < deadline:
            assert dispatcher.failure is None, repr(dispatcher.failure)
            time.sleep(0.2)
        assert dispatcher.delivered == records, f"{dispatcher.delivered} of {records} records delivered:\n{training.log_tail()}"
        assert dispatcher.dead_lettered == 0
        assert training.stop() == 0, training.log_tail()
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        training.stop()

    log = training.log_path.read_text()
    stopped = re.findall(r"the learner has learned (\d+) samples; (\d+) wait for a full block", log)
    assert stopped, training.log_tail()
    learned, waiting = map(int, stopped[-1])
    assert learned + waiting == ROWS, f"after the restart the learner had {learned} samples and {waiting} waiting, of {ROWS}"
    # The restart logs how many journal events after the newest checkpoint it handled again.
    replayed = re.findall(r"from the checkpoint of version \d+ and (\d+) journal events after it", log)
    assert replayed, training.log_tail()
    journaled = re.findall(r"stopped after (\d+) checkpoints and (\d+) journal records", log)
    assert journaled, training.log_tail()
    print(f"push training: {learned} learned, {waiting} waiting, {dispatcher.retries} retried deliveries, "
          f"{replayed[-1]} journal events handled at the restart; after it {journaled[-1][0]} checkpoints, {journaled[-1][1]} journal records")
