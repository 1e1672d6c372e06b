"""Throughput and latency of each service, of the whole pipeline, and of bare relays over the same records.

Each measurement gets its own topics and runs its processes in two phases:

1. drain: a backlog of records waits on the input topics before the processes start.
   The rate comes from the outputs' append times, first to last, so start-up is left out.
2. paced: more records arrive at a fixed offered load, and each output's latency is
   its append time minus the append time of the input it descends from.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cloudevents.core.v1.event import CloudEvent

from bench.harness import (
    Collector,
    Stamped,
    create_pipeline_topics,
    create_stamped_topics,
    data_key,
    drain_rate,
    header_id,
    latencies_ms,
    peak_rss_mb,
    percentiles,
    produce,
    record_key,
    unique_name,
)
from bench.relay import parse_summary
from bench.workload import Workload
from streamml.common.process import settle_heap
from streamml.common.settings import KafkaSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.demo.cluster import ServiceProcess

# The topics each service consumes, and the topic whose records are its outputs.
INPUT_ROLES = {"ingestion": ("input",), "features": ("raw",), "training": ("features", "labels"), "inference": ("features",)}
OUTPUT_ROLE = {"ingestion": "raw", "features": "features", "training": "models", "inference": "predictions"}
# Hops from an input event to its prediction: ingestion, features, inference. Training is beside that path.
PREDICTION_HOPS = 3
# Rows the pipeline passes before its backlog: inference serves only once training published a model.
PIPELINE_WARM_UP_ROWS = 200
WAIT_S = 300.0


@dataclass
class Setup:
    settings: KafkaSettings
    workload: Workload
    model: CloudEvent
    folder: Path
    base_spec: dict
    drain_rows: int
    paced_rows: int
    rate: float

    def new_spec(self, label: str) -> tuple[Path, PipelineSpec]:
        """Write the workload's spec under a new name and create its topics, so a measurement has its own topics and groups."""
        document = self.base_spec | {"name": unique_name(f"bench-{label}")}
        path = self.folder / f"{document['name']}.yaml"
        path.write_text(yaml.safe_dump(document))
        spec = load_spec(path)
        create_pipeline_topics(self.settings, spec)
        return path, spec

    def rows(self, roles: Sequence[str], start: int, stop: int) -> list[tuple[str, CloudEvent]]:
        """Return (role, event) for the workload rows [start, stop), in stream order."""
        lists = {"input": self.workload.inputs, "raw": self.workload.raw, "features": self.workload.vectors, "labels": self.workload.labels}
        return [(role, lists[role][index]) for index in range(start, stop) for role in roles]


@dataclass
class Figures:
    rate: float
    latency: dict[str, float]
    rss_mb: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {"events_per_s": round(self.rate, 1), **{key: round(value, 1) for key, value in self.latency.items()},
                "peak_rss_mb": self.rss_mb}


class Processes:
    """Child processes with one stop, and their peak RSS while they are alive."""

    def __init__(self, named: dict[str, ServiceProcess | subprocess.Popen]) -> None:
        self.named = named

    @staticmethod
    def _popen(process: ServiceProcess | subprocess.Popen) -> subprocess.Popen:
        return process.process if isinstance(process, ServiceProcess) else process

    def check(self) -> None:
        for name, process in self.named.items():
            if self._popen(process).poll() is not None:
                tail = process.log_tail() if isinstance(process, ServiceProcess) else ""
                raise RuntimeError(f"{name} exited with {self._popen(process).returncode} during the benchmark\n{tail}")

    def rss(self) -> dict[str, float]:
        return {name: round(peak_rss_mb(self._popen(process).pid), 1) for name, process in self.named.items()}

    def stop(self) -> None:
        for process in self.named.values():
            if isinstance(process, ServiceProcess):
                process.stop()
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Run:
    """One measurement: where the records go, what starts, and how outputs map to inputs."""

    topics: dict[str, str]
    output_topic: str
    start: Callable[[], Processes]
    outputs_per_row: int = 1
    decode: Callable = data_key
    key_of: Callable[[CloudEvent], str] = record_key
    #: Rows sent through the started processes before the backlog, which then counts only the rows after them.
    warm_up_rows: int = 0


def measure(setup: Setup, roles: Sequence[str], run: Run) -> tuple[Figures, list[Stamped]]:
    """Drain a backlog, then offer paced rows; return the figures and every output record.

    Without warm-up rows the backlog waits on the input topics before the processes start.
    With them, the processes first pass the warm-up rows through, and only then is the rest
    of the backlog produced. A stage that waits for another at start-up, as inference waits
    for its first model, then meets no queue that its upstream built up meanwhile.
    """
    def records(rows: list[tuple[str, CloudEvent]]) -> list[tuple[str, CloudEvent]]:
        return [(run.topics[role], event) for role, event in rows]

    warm = run.warm_up_rows
    backlog = setup.rows(roles, 0, setup.drain_rows)
    warm_rows, rest = backlog[: warm * len(roles)], backlog[warm * len(roles):]
    if not warm:
        produce(setup.settings, records(backlog))
    collector = Collector(setup.settings, run.output_topic, run.decode)
    processes = run.start()
    try:
        if warm:
            produce(setup.settings, records(warm_rows))
            collector.wait_for(warm * run.outputs_per_row, WAIT_S, processes.check)
            produce(setup.settings, records(rest))
        drained = collector.wait_for(setup.drain_rows * run.outputs_per_row, WAIT_S, processes.check)
        warm_keys = {run.key_of(event) for _, event in warm_rows}
        rate = drain_rate([record for record in drained if record.key not in warm_keys]) / run.outputs_per_row
        paced = setup.rows(roles, setup.drain_rows, setup.drain_rows + setup.paced_rows)
        stamps = produce(setup.settings, records(paced), rate=setup.rate * len(roles), key_of=run.key_of)
        total = (setup.drain_rows + setup.paced_rows) * run.outputs_per_row
        everything = collector.wait_for(total, WAIT_S, processes.check)
        rss = processes.rss()
    finally:
        processes.stop()
        collector.close()
    return Figures(rate, percentiles(latencies_ms(stamps, everything[len(drained):])), rss), everything


def _env_with_repository() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def start_services(setup: Setup, spec_path: Path, services: Sequence[str]) -> Callable[[], Processes]:
    def start() -> Processes:
        named: dict[str, ServiceProcess | subprocess.Popen] = {}
        for service in services:
            env = {"STREAMML_TRAINING_MODEL_DIR": str(setup.folder / "models")} if service == "training" else {}
            process = ServiceProcess(service, spec_path, setup.settings, setup.folder / spec_path.stem, env)
            process.start()
            named[service] = process
        return Processes(named)
    return start


def start_relays(setup: Setup, hops: Sequence[tuple[Sequence[str], str]], log_dir: Path) -> Callable[[], Processes]:
    def start() -> Processes:
        log_dir.mkdir(parents=True, exist_ok=True)
        named: dict[str, ServiceProcess | subprocess.Popen] = {}
        for index, (sources, target) in enumerate(hops):
            command = [sys.executable, "-m", "bench.relay", "--bootstrap-servers", setup.settings.bootstrap_servers,
                       "--target", target, "--group", unique_name("bench-relay")]
            for source in sources:
                command += ["--source", source]
            with (log_dir / f"relay-{index}.log").open("ab") as log:
                named[f"relay-{index}"] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env_with_repository())
        return Processes(named)
    return start


def measure_relay(setup: Setup, roles: Sequence[str], hops: int = 1, warm_up_rows: int = 0) -> dict[str, object]:
    """Bare relays over the same records as a service (one hop) or the prediction path (chained)."""
    _, spec = setup.new_spec(f"relay{hops}")
    targets = [f"{spec.topic('input')}.relay-{index}" for index in range(hops)]
    create_stamped_topics(setup.settings, targets)
    sources = [[spec.topic(role) for role in roles], *[[target] for target in targets[:-1]]]
    run = Run(
        topics={role: spec.topic(role) for role in roles},
        output_topic=targets[-1],
        start=start_relays(setup, list(zip(sources, targets)), setup.folder / spec.name),
        outputs_per_row=len(roles),
        decode=header_id,
        key_of=lambda event: event.get_id(),
        warm_up_rows=warm_up_rows,
    )
    figures, _ = measure(setup, roles, run)
    return figures.as_dict() | {"hops": hops, "time_us_per_record": relay_times(setup.folder / spec.name, hops)}


def relay_times(log_dir: Path, hops: int) -> dict[str, object]:
    """Return the relays' CPU and blocked microseconds per record, summed over the hops.

    The figures come from full batches. A hop that met none, such as a later hop of a
    short chain, contributes all its batches instead, and `batches` names those hops.
    """
    totals = {"cpu": 0.0, "flush": 0.0, "commit": 0.0}
    partial = []
    for index in range(hops):
        times = parse_summary((log_dir / f"relay-{index}.log").read_text(errors="replace"))
        if times is None or not times.records:
            raise RuntimeError(f"relay {index} reported no batches; see {log_dir / f'relay-{index}.log'}")
        if times.batches != "full":
            partial.append(index)
        totals["cpu"] += times.cpu_s / times.records * 1e6
        totals["flush"] += times.flush_s / times.records * 1e6
        totals["commit"] += times.commit_s / times.records * 1e6
    figures: dict[str, object] = {name: round(value, 1) for name, value in totals.items()}
    if partial:
        figures["batches"] = f"all batches of relays {partial}, which met no full batch"
    return figures


def measure_service(setup: Setup, service: str) -> dict[str, object]:
    """Measure one service as an OS process in pull mode."""
    spec_path, spec = setup.new_spec(service)
    if service == "training":
        return measure_training(setup, spec_path, spec)
    if service == "inference":
        produce(setup.settings, [(spec.topic("models"), setup.model)])
    roles = INPUT_ROLES[service]
    run = Run({role: spec.topic(role) for role in roles}, spec.topic(OUTPUT_ROLE[service]), start_services(setup, spec_path, [service]))
    figures, _ = measure(setup, roles, run)
    return figures.as_dict()


def _model_samples(message) -> str:
    return str(json.loads(message.value())["metrics"]["samples"])


def measure_training(setup: Setup, spec_path: Path, spec: PipelineSpec) -> dict[str, object]:
    """Training publishes one model per cadence, so its rate and latency come from the model events.

    The rate is learned samples per second between the first and the last model of the drain.
    A model's latency is its append time minus that of the label that completed its last sample.
    """
    roles = INPUT_ROLES["training"]

    def versions(rows: int) -> int:
        """Version 0, then one per cadence; learning happens in whole blocks, and a cadence is checked after each."""
        block = spec.training.batch_size
        per_version = -(-(spec.training.every_events or 1) // block) * block
        return 1 + (rows // block * block) // per_version

    produce(setup.settings, [(spec.topic(role), event) for role, event in setup.rows(roles, 0, setup.drain_rows)])
    collector = Collector(setup.settings, spec.topic("models"), _model_samples)
    processes = start_services(setup, spec_path, ["training"])()
    try:
        drained = collector.wait_for(versions(setup.drain_rows), WAIT_S, processes.check)
        learned = sorted((int(record.key), record.ms) for record in drained if int(record.key) > 0)
        if len(learned) < 2:
            raise ValueError(f"{setup.drain_rows} drain rows gave {len(learned)} model versions; a rate needs two or more")
        rate = (learned[-1][0] - learned[0][0]) / ((learned[-1][1] - learned[0][1]) / 1000)
        paced = setup.rows(roles, setup.drain_rows, setup.drain_rows + setup.paced_rows)
        stamps = produce(setup.settings, [(spec.topic(role), event) for role, event in paced], rate=2 * setup.rate)
        everything = collector.wait_for(versions(setup.drain_rows + setup.paced_rows), WAIT_S, processes.check)
        rss = processes.rss()
    finally:
        processes.stop()
        collector.close()
    row_ids = [vector.get_data()["event_id"] for vector in setup.workload.vectors]
    latencies = [
        float(record.ms - stamps[row_ids[int(record.key) - 1]])
        for record in everything[len(drained):]
        if int(record.key) > setup.drain_rows
    ]
    figures = Figures(rate, percentiles(latencies), rss).as_dict()
    return figures | {"latency_is": "from a label to the model version that learned it"}


def measure_pipeline(setup: Setup) -> dict[str, object]:
    """Measure the four services as OS processes: input events in, predictions out, and the served accuracy."""
    spec_path, spec = setup.new_spec("e2e")
    run = Run({"input": spec.topic("input")}, spec.topic("predictions"),
              start_services(setup, spec_path, ["ingestion", "features", "training", "inference"]),
              warm_up_rows=PIPELINE_WARM_UP_ROWS)
    figures, outputs = measure(setup, ("input",), run)
    correct = sum(setup.workload.truth[record.key] == json.loads(record.value)["label"] for record in outputs)
    return figures.as_dict() | {
        "predictions": len(outputs), "served_accuracy": round(correct / len(outputs), 4), "warm_up_rows": PIPELINE_WARM_UP_ROWS,
    }


def base_spec(source: Path, model_name: str) -> dict:
    """Return the spec document every measurement copies: the source spec with a fixed model name."""
    document = yaml.safe_load(source.read_text())
    document.setdefault("model", {})["name"] = model_name
    document.pop("topics", None)
    return document


def handler_cost_us(setup: Setup, service: str, rows: int = 5000) -> dict[str, float]:
    """Return the CPU time per row, in microseconds, of a service's work without Kafka, in total and by part.

    The rows' records are decoded from their Kafka form ("decode"), handled in batches of 500
    ("handle") and their outputs encoded again ("encode"): what a service does per record
    beyond what the relay does.
    """
    from streamml.common.events import from_kafka, to_kafka
    from streamml.features.handler import FeaturesHandler
    from streamml.inference.handler import InferenceHandler
    from streamml.ingestion.handler import IngestionHandler
    from streamml.training.handler import TrainingHandler

    _, spec = setup.new_spec(f"cost-{service}")
    if service == "inference":
        handler = InferenceHandler(spec, provider="cpu", dedupe_window=rows + 1)
        handler.load(setup.model)
    elif service == "training":
        handler = TrainingHandler(spec, model_dir=setup.folder / "models")
    elif service == "features":
        handler = FeaturesHandler(spec, {})
    else:
        handler = IngestionHandler(spec)
    records = [to_kafka(event) for _, event in setup.rows(INPUT_ROLES[service], 0, rows)]
    parts = dict.fromkeys(("decode", "handle", "encode"), 0.0)
    # The collector is set up as in a service's loop, because full collections would otherwise
    # traverse the whole workload in this process. The settings are restored afterwards.
    thresholds = gc.get_threshold()
    settle_heap()
    try:
        for start in range(0, len(records), 500):
            batch = records[start : start + 500]
            started = time.process_time()
            events = [from_kafka(key, value, headers, json_as_bytes=handler.parses_json_data) for key, value, headers in batch]
            decoded = time.process_time()
            results = handler.handle_batch(events)
            handled = time.process_time()
            for result in results:
                for output in result:
                    to_kafka(output.event)
            parts["decode"] += decoded - started
            parts["handle"] += handled - decoded
            parts["encode"] += time.process_time() - handled
        per_row = {name: round(seconds / rows * 1e6, 1) for name, seconds in parts.items()}
        return {"total": round(sum(parts.values()) / rows * 1e6, 1), **per_row}
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
