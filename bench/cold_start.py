"""Cold start of each service: process launch to ready, and to its first output event.

Each service is measured against its floor: a process that starts the same
interpreter, imports the same service module and connects to the broker, then exits.

    python -m bench.cold_start --bootstrap-servers 127.0.0.1:9092 [--repeat 3] [--json PATH]

Without --bootstrap-servers it starts a local broker with scripts/kafka_broker.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from confluent_kafka import Consumer, TopicPartition

from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.demo.cluster import create_topics, produce_replay
from streamml.demo.replay import replay_csv
from streamml.features.handler import FeaturesHandler

REPOSITORY = Path(__file__).resolve().parents[1]
SERVICES = ("ingestion", "features", "training", "inference")
# The role of the topic whose first record marks each service's first output.
OUTPUT_ROLE = {"ingestion": "raw", "features": "features", "training": "models", "inference": "predictions"}
# The modules a service imports before it can do anything; the floor process imports the same.
FLOOR_IMPORTS = {
    "ingestion": "streamml.ingestion.service",
    "features": "streamml.features.service, streamml.features.faust_app",
    "training": "streamml.training.service",
    "inference": "streamml.inference.service, onnxruntime",
}
FLOOR_CODE = (
    "import sys, {modules}; from confluent_kafka import Producer; "
    "Producer({{'bootstrap.servers': sys.argv[1]}}).list_topics(timeout=10)"
)


def fresh_spec(folder: Path, source: Path, name: str) -> tuple[Path, PipelineSpec]:
    document = yaml.safe_load(source.read_text())
    document["name"] = name
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, load_spec(path)


def seed_inputs(settings: KafkaSettings, spec: PipelineSpec, csv_path: Path, service: str) -> None:
    """Put one record on the service's input topics (and, for inference, a model on the models topic)."""
    row = next(iter(replay_csv(csv_path, spec, limit=1)))
    if service == "ingestion":
        produce_replay(settings, spec.topic("input"), [row.event])
        return
    from streamml.ingestion.handler import IngestionHandler

    [raw] = IngestionHandler(spec).handle(row.event)
    if service == "features":
        produce_replay(settings, spec.topic("raw"), [raw.event])
        return
    outputs = FeaturesHandler(spec, {}).handle(raw.event)
    produce_replay(settings, spec.topic("features"), [outputs[0].event])
    if service == "inference":
        from streamml.training.handler import TrainingHandler

        produce_replay(settings, spec.topic("models"), [TrainingHandler(spec).initial_model().event])


def first_record_ms(settings: KafkaSettings, topic: str, timeout_s: float = 120.0) -> float | None:
    """Return the broker timestamp (ms since the epoch) of the topic's first record."""
    consumer = Consumer(settings.client_config() | {"group.id": f"bench-{time.time_ns()}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return float(message.timestamp()[1])
        return None
    finally:
        consumer.close()


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.time()
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready within {timeout_s}s")


def launch(service: str, spec_path: Path, settings: KafkaSettings, mode: str, port: int, log: Path) -> subprocess.Popen:
    prefix = f"STREAMML_{service.upper()}"
    env = os.environ | {f"{prefix}_MODE": mode, f"{prefix}_HTTP_PORT": str(port), f"{prefix}_MODEL_DIR": str(log.parent)}
    if service != "training":
        env.pop(f"{prefix}_MODEL_DIR")
    command = [sys.executable, "-m", "streamml", "run", service, "--spec", str(spec_path), "--bootstrap-servers", settings.bootstrap_servers]
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure_once(service: str, settings: KafkaSettings, csv_path: Path, spec_source: Path, folder: Path, port: int) -> dict[str, float]:
    result: dict[str, float] = {}
    # Readiness: push mode, so every service serves /readyz (the faust worker has no HTTP in pull mode).
    spec_path, spec = fresh_spec(folder, spec_source, f"cold-{service}-{time.time_ns() % 10**9}")
    create_topics(settings, spec)
    if service == "inference":
        seed_inputs(settings, spec, csv_path, service)
    started = time.time()
    process = launch(service, spec_path, settings, "push", port, folder / f"{spec.name}.log")
    try:
        result["ready_s"] = wait_ready(f"http://127.0.0.1:{port}/readyz", process) - started
    finally:
        stop(process)
    # First output: pull mode with one record already waiting on the input topic.
    spec_path, spec = fresh_spec(folder, spec_source, f"cold-{service}-{time.time_ns() % 10**9}")
    create_topics(settings, spec)
    seed_inputs(settings, spec, csv_path, service)
    started = time.time()
    process = launch(service, spec_path, settings, "pull", port, folder / f"{spec.name}.log")
    try:
        stamp = first_record_ms(settings, spec.topic(OUTPUT_ROLE[service]))
        if stamp is None:
            raise RuntimeError(f"{service} produced no output; see {folder}")
        result["first_output_s"] = stamp / 1000 - started
    finally:
        stop(process)
    started = time.time()
    subprocess.run([sys.executable, "-c", FLOOR_CODE.format(modules=FLOOR_IMPORTS[service]), settings.bootstrap_servers], check=True)
    result["floor_s"] = time.time() - started
    return result


def run(settings: KafkaSettings, csv_path: Path, repeat: int) -> dict[str, dict[str, float]]:
    folder = Path(tempfile.mkdtemp(prefix="streamml-cold-"))
    spec_source = REPOSITORY / "examples" / "elec2.yaml"
    port = 18_000 + os.getpid() % 1000
    figures: dict[str, dict[str, float]] = {}
    for service in SERVICES:
        runs = [measure_once(service, settings, csv_path, spec_source, folder, port) for _ in range(repeat)]
        summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        summary["first_output_vs_floor"] = summary["first_output_s"] / summary["floor_s"]
        summary["ready_vs_floor"] = summary["ready_s"] / summary["floor_s"]
        figures[service] = {key: round(value, 3) for key, value in summary.items()}
        print(service, figures[service], flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", help="A running broker; default: start one with scripts/kafka_broker.py.")
    parser.add_argument("--csv", default=str(REPOSITORY.parent / "shared" / "reference" / "data" / "elec2.csv"))
    parser.add_argument("--repeat", type=int, default=3, help="Launches per service and mode; the median is reported (default: 3).")
    parser.add_argument("--json", help="Write the figures here.")
    args = parser.parse_args(argv)
    from bench.harness import LocalBroker

    with LocalBroker(args.bootstrap_servers) as bootstrap:
        figures = run(KafkaSettings(bootstrap_servers=bootstrap), Path(args.csv), args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
