"""STREAMML_<SERVICE>_GROUP_INSTANCE_ID: a killed pull-mode service's replacement takes its partitions over at once."""

from __future__ import annotations

import signal
import time

import pytest

from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.demo.cluster import ServiceProcess, create_topics
from tests.e2e.test_elec2 import unique_spec
from tests.reliability.test_kill_restart import wait_for_assignment

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

# librdkafka's default session.timeout.ms is 45 s: a dynamic member's replacement waits that long.
SESSION_TIMEOUT_S = 45


def test_restart_with_instance_id_is_assigned_at_once(bootstrap_servers, elec2_spec_path, tmp_path):
    spec_path = unique_spec(elec2_spec_path, tmp_path, "static")
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    create_topics(settings, load_spec(spec_path))
    service = ServiceProcess(
        "ingestion", spec_path, settings, tmp_path / "logs", {"STREAMML_INGESTION_GROUP_INSTANCE_ID": "ingestion-0"}
    )
    service.start()
    try:
        wait_for_assignment(service, since=0, timeout_s=60)
        service.stop(sig=signal.SIGKILL)
        restarted_at = service.log_path.stat().st_size
        started = time.monotonic()
        service.start()
        wait_for_assignment(service, since=restarted_at, timeout_s=60)
        assigned_after_s = time.monotonic() - started
    finally:
        service.stop()
    assert assigned_after_s < SESSION_TIMEOUT_S - 15, service.log_tail()
