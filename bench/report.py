"""docs/benchmarks.md from the figures of one `python -m bench` run."""

from __future__ import annotations

SERVICES = ("ingestion", "features", "training", "inference")


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _us(entry: dict) -> str:
    return f"{1e6 / entry['events_per_s']:.0f}"


def _bounds(figures: dict) -> list[str]:
    """Explain each service's rate by its parts, with this run's figures."""
    services, relays = figures["services"], figures["relays"]
    inference, relay = services["inference"], relays["inference"]
    relay_us = 1e6 / relay["events_per_s"]
    split = relay.get("time_us_per_record", {})
    blocked = split.get("flush", 0.0) + split.get("commit", 0.0)
    estimate = relay_us / (relay_us + inference["handler_us_per_event"])
    parts = inference.get("handler_parts_us", {})
    features = services["features"]
    faust_us = 1e6 / features["events_per_s"] - features["handler_us_per_event"]
    training, learned = services["training"], figures["learners"]
    pipeline = figures["pipeline"]
    slowest = min(SERVICES, key=lambda service: services[service]["events_per_s"])
    return [
        f"- **Inference and ingestion**: on the inference records the relay takes {relay_us:.0f} µs per record. By its",
        f"  own clock, in the full batches of a backlog, it spends {split.get('cpu', 0.0):.1f} µs of CPU per record (consume,",
        f"  produce, delivery reports). It is blocked on the broker for {blocked:.1f} µs: {split.get('flush', 0.0):.1f} µs in flush,",
        f"  waiting for acknowledgements, and {split.get('commit', 0.0):.1f} µs in the offset commit. The commit does not wait",
        "  for the broker's response. A synchronous one waited about 5 ms per batch on Kafka 4.1. A service runs the",
        "  same delivery rule, so it is blocked as long and adds its handler time: service / relay is about",
        f"  relay / (relay + handler). For inference that estimate is {estimate:.2f}; measured"
        f" {inference['events_per_s'] / relay['events_per_s']:.2f}.",
        "  The handler time is the service's own work per event. Decoding the records (header",
        f"  decoding and attribute checks) took {parts.get('decode', 0.0):.1f} µs per event, the handler (validating the JSON data",
        f"  into the payload model, the model, building the prediction event) {parts.get('handle', 0.0):.1f} µs, and encoding the",
        f"  outputs {parts.get('encode', 0.0):.1f} µs. The model itself takes well under a microsecond per row in a batch.",
        f"  A ratio of 0.7 would need all of that below {relay_us * (1 / 0.7 - 1):.0f} µs per event.",
        f"- **Features**: the handler takes {features['handler_us_per_event']:.0f} µs per event (two output events and",
        f"  the window update). The faust worker adds about {faust_us:.0f} µs: its agent and stream machinery on asyncio,",
        "  the fetches of its consumer thread, which shares the interpreter lock with the handler, and the",
        "  changelog sends of its producer. The outputs go through a confluent-kafka producer instead, which",
        "  took the worker's CPU time from about 348 to 309 µs per record on a backlog of 40,000 records. A",
        "  batch writes each entity's state to the table once, so the changelog gets one record per entity per batch.",
        f"- **End to end**: the pipeline runs at {_rate(pipeline['events_per_s'])} events/s; its slowest stage alone,",
        f"  {slowest}, at {_rate(services[slowest]['events_per_s'])} events/s. Its four processes and the broker share the",
        f"  machine's {figures.get('cpus', 'few')} CPUs, and it writes five records per input (raw, feature vector, label,",
        "  prediction, and the state changelog) where the chain writes three. A 0.5 ratio would need every",
        "  stage at half the chain's rate or more.",
        f"- **Training**: the service learned {_rate(training['events_per_s'])} samples/s, bounded by its handler",
        f"  ({training['handler_us_per_event']:.0f} µs per sample, two CloudEvents to decode and join); the learner",
        f"  alone runs at {_rate(learned['streamml']['samples_per_s'])} samples/s in blocks. Its latency runs from",
        "  the label that completed a version's last block to that version on the models topic: learning the",
        "  block, exporting ONNX and publishing. Samples earlier in a block also wait for the block to fill.",
    ]


def _checkpoints(figures: dict) -> list[str]:
    """Return the section on what a push-mode training response waits for."""
    measured = figures.get("checkpoints")
    if not measured:
        return ["Not measured in this run."]
    return [
        "`bench/checkpoints.py`: push-mode training responds once the checkpoints topic contains the request.",
        "Between checkpoints that is one journal record of the request's events. A checkpoint writes the",
        "learner and every sample waiting for a partner. Median of "
        f"{measured['repeats']} writes each, waiting for the broker's acknowledgement:",
        "",
        _table(
            ["write", "median (ms)"],
            [
                ["journal record of one feature vector", measured["journal_record_ms"]],
                ["checkpoint of the learner alone", measured["checkpoint_alone_ms"]],
                [f"checkpoint with {measured['waiting']:,} vectors waiting for labels", measured["checkpoint_waiting_ms"]],
            ],
        ),
    ]


def _instructions(figures: dict) -> list[str]:
    """Describe the instruction count of the inference loop, or how to get one when this run has none."""
    counted = figures.get("instructions_per_event")
    if counted is None:
        return ["Not counted in this run: `python -m bench --instructions` (or `python -m bench.instructions`) counts them",
                "where valgrind is installed."]
    return [
        "`python -m bench.instructions` counts under valgrind the instructions that the inference service's",
        "pull loop executes per Elec2 feature vector: decoding the Kafka records, the handler, tracing,",
        "metrics and encoding the outputs, without the Kafka client. It varies less than the rates above,",
        "which move by up to a third between runs, but it is not exact: six counts of the same loop code",
        "on 2026-12-05 gave 200,658 to 244,578. Compare two versions of the code with several counts of each.",
        "",
        _table(["loop", "instructions per event"], [["inference", f"{counted['inference_loop']:,}"]]),
    ]


def render(figures: dict) -> str:
    services, relays = figures["services"], figures["relays"]
    pipeline, chain = figures["pipeline"], figures["relay_chain"]
    learned, served = figures["learners"], figures["served"]
    rate = figures["rate"]
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench`; do not edit by hand. Every figure below comes from one run,",
        "measured side by side on one machine, so the ratios are worth more than the absolute rates:",
        "the machines these runs share are noisy.",
        "",
        f"- Command: `{figures['command']}` (a local Kafka 4.1.2 broker, KRaft, one node, started by `scripts/kafka_broker.py`)",
        f"- Machine: {figures['machine']}",
        f"- Date: {figures['date']}; the run took {figures['duration_s']:.0f} s",
        "",
        *(["**A quick run**: its figures come from fewer rows and are not comparable to the targets.", ""]
          if figures["mode"] == "quick" else []),
        "## Targets",
        "",
        "- `inference_vs_relay`: the inference service's events/s over the one-hop relay's on the same records.",
        "- `e2e_vs_relay`: the pipeline's events/s over the chained relays'.",
        "- `training_vs_river`: the training learner's samples/s (blocks, in one process) over River's",
        "  `LogisticRegression` on the same feature vectors; the training service's own rate is further down.",
        "- `accuracy_minus_river_lr`: served accuracy of the four handlers on the embedded bus minus River",
        "  `LogisticRegression`'s prequential accuracy on the same rows.",
        "- `inference_rss_mb`: the inference process's peak RSS; `cold_start_vs_floor`: the largest ready / floor.",
        "",
        _table(["ratio", "value", "target", "met"],
               [[name, entry["value"], entry["target"], "yes" if entry["met"] else "**no**"] for name, entry in figures["targets"].items()]),
        "",
        "## Each service against a bare relay",
        "",
        "Every service runs as an OS process in pull mode (`streamml run SERVICE`) on records made from",
        "Elec2 by the same handlers, so the message sizes are those of the pipeline. The relay",
        "(`bench/relay.py`) consumes the same records and produces a copy of each, with the services'",
        "delivery rule: a batch of up to 500 records, produce, wait for every acknowledgement, then",
        "commit without waiting for the commit's response. It decodes nothing, so it is the limit of",
        "a Python consume-produce hop on this broker.",
        "",
        "- **events/s**: a backlog waits on the input topic before the process starts; the rate runs from the",
        "  first output's broker append time to the last, so start-up is left out.",
        f"- **p50 / p99**: {rate:,.0f} rows/s offered afterwards; each output's append time minus its input's",
        "  append time (all benchmark topics use `LogAppendTime`). For training, from the label that",
        "  completed a model version to that version; a version is published every `training.every_events` samples.",
        "- **peak RSS**: `VmHWM` of the process at the end of the run.",
        "",
        _table(
            ["service", "events/s", "relay events/s", "service / relay", "p50 (ms)", "p99 (ms)", "relay p50 / p99 (ms)",
             "µs per event: service / relay / handler", "peak RSS (MB)"],
            [[service, _rate(services[service]["events_per_s"]), _rate(relays[service]["events_per_s"]),
              f"{services[service]['events_per_s'] / relays[service]['events_per_s']:.2f}",
              services[service]["p50_ms"], services[service]["p99_ms"],
              f"{relays[service]['p50_ms']} / {relays[service]['p99_ms']}",
              f"{_us(services[service])} / {_us(relays[service])} / {services[service]['handler_us_per_event']:.0f}",
              services[service]["peak_rss_mb"][service]] for service in SERVICES],
        ),
        "",
        "Training consumes two records per sample (a feature vector and a label); its rows are samples, and",
        "its relay copies both records. The **handler** time is the CPU time per event of the service's own",
        "work measured in one process without Kafka: decoding the records as CloudEvents, the handler, and",
        "encoding its outputs. It is what a service does beyond the relay's work.",
        "",
        "### What bounds each service",
        "",
        *_bounds(figures),
        "",
        "## End to end",
        "",
        f"Input events into the four services, predictions out; against {chain['hops']} relays chained over",
        "the same hops (input, raw, features, predictions). The services first pass the first",
        f"{pipeline.get('warm_up_rows', 0)} rows, so that inference serves a model, and the rest of the backlog arrives then;",
        "the rate counts the rows after those. The served accuracy counts each prediction with the model",
        "version that made it.",
        "",
        _table(
            ["", "events/s", "p50 (ms)", "p99 (ms)", "served accuracy"],
            [["pipeline", _rate(pipeline["events_per_s"]), pipeline["p50_ms"], pipeline["p99_ms"], pipeline["served_accuracy"]],
             [f"relay chain ({chain['hops']} hops)", _rate(chain["events_per_s"]), chain["p50_ms"], chain["p99_ms"], ""]],
        ),
        "",
        "Peak RSS in the pipeline run (MB): "
        + ", ".join(f"{name} {value}" for name, value in pipeline["peak_rss_mb"].items()) + ".",
        "",
        "## Training against River",
        "",
        f"The first {figures['accuracy_rows']:,} Elec2 rows as feature vectors from `examples/elec2.yaml`,",
        "test-then-train in one process. River learns one sample at a time; streamml's learner learns",
        "blocks of `training.batch_size` samples, each predicted by the model from before its block.",
        "The handler row runs the training service's handler on the CloudEvents themselves (parsing,",
        "joining each vector with its label, learning, ONNX export on the cadence).",
        "",
        _table(
            ["learner", "samples/s", "prequential accuracy"],
            [["streamml (newton, blocks)", _rate(learned["streamml"]["samples_per_s"]), learned["streamml"]["accuracy"]],
             ["streamml training handler", _rate(learned["streamml_handler"]["samples_per_s"]), ""],
             ["River StandardScaler \\| LogisticRegression", _rate(learned["river_logistic_regression"]["samples_per_s"]),
              learned["river_logistic_regression"]["accuracy"]],
             ["River ARFClassifier", _rate(learned["river_arf"]["samples_per_s"]), learned["river_arf"]["accuracy"]]],
        ),
        "",
        f"Served accuracy of the four handlers on the embedded bus over the same rows: {served['accuracy']}",
        f"({served['model_versions']} model versions served, {_rate(served['events_per_s'])} events/s). It is lower",
        "than the learner's prequential accuracy because inference serves the last published version.",
        "",
        "## Cold start",
        "",
        "`bench/cold_start.py`: **ready** is launch to `GET /readyz` = 200 in push mode (inference also needs",
        "its model); **first output** is launch, in pull mode with one record waiting, to the first output",
        "record; the **floor** is a process that imports the same modules, connects to the broker and exits.",
        "",
        _table(
            ["service", "ready (s)", "first output (s)", "floor (s)", "ready / floor", "first output / floor"],
            [[service, entry["ready_s"], entry["first_output_s"], entry["floor_s"], entry["ready_vs_floor"], entry["first_output_vs_floor"]]
             for service, entry in figures["cold_start"].items()],
        ),
        "",
        "`cold_start_vs_floor` is the largest ready / floor. Training's floor is almost all `import torch`",
        "(the CUDA build from PyPI); the inference service imports no torch, and its readiness includes",
        "loading its first model. The features service's first output in pull mode waits for the faust",
        "worker to join its consumer group and replay the state table's changelog before the agent",
        "starts; in push mode, where no faust worker runs, it is ready as fast as the others.",
        "",
        "## Training checkpoints",
        "",
        *_checkpoints(figures),
        "",
        "## Instructions per event",
        "",
        *_instructions(figures),
        "",
        "## GPU",
        "",
        "`python -m bench.gpu` times the inference handler and the ONNX Runtime session on the CUDA and",
        "CPU providers at batch sizes 1, 256 and 4096, and fails unless the session really runs on",
        "`CUDAExecutionProvider`. Its figures are not part of this report; run it where a GPU is present.",
        "",
    ]
    return "\n".join(parts)
