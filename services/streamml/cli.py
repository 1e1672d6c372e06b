"""The `streamml` command line: run a service, run the demo, replay a CSV, write the JSON Schemas."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamml.common.errors import KafkaUnreachableError, SpecError, StateError

logger = logging.getLogger("streamml")

SERVICES = ("ingestion", "features", "training", "inference")


def _kafka_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from streamml.common.settings import KafkaSettings

    if args.bootstrap_servers:
        return {"kafka": KafkaSettings(bootstrap_servers=args.bootstrap_servers)}
    return {}


def _settings_errors(error: ValidationError, prefix: str = "STREAMML_<SERVICE>_") -> str:
    """Return one line per invalid setting, naming it and the problem but not the value, which may be a secret."""
    lines = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        name = ".".join(str(part) for part in item["loc"]) or "settings"
        message = item["msg"]
        if name == "spec" and item["type"] == "missing":
            message = f"missing: pass --spec PATH or set {prefix}SPEC"
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)


def _run_service(args: argparse.Namespace) -> int:
    from streamml.common import settings as settings_module
    from streamml.common.logs import configure_logging
    from streamml.common.process import stop_on_signals

    overrides: dict[str, Any] = {}
    if args.spec:
        overrides["spec"] = args.spec
    if args.http_port is not None:
        overrides["http_port"] = args.http_port
    if args.mode is not None:
        overrides["mode"] = args.mode
    settings_class = {
        "ingestion": settings_module.IngestionSettings,
        "features": settings_module.FeaturesSettings,
        "training": settings_module.TrainingSettings,
        "inference": settings_module.InferenceSettings,
    }[args.service]
    try:
        settings = settings_class(**(overrides | _kafka_overrides(args)))
    except ValidationError as error:
        # str(error) would show the input values, secrets included.
        nested = {cls.__name__: cls for cls in (settings_module.KafkaSettings, settings_module.TracingSettings)}
        invalid = nested.get(error.title, settings_class)
        prefix = invalid.model_config.get("env_prefix", "")
        print(f"streamml run {args.service}: invalid settings (from flags or {prefix}* variables):\n{_settings_errors(error, prefix)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    logger.info(
        "starting %s: %s", args.service, settings.summary(), extra={"service": args.service, "settings": settings.effective()}
    )
    tracer = _install_tracer(args.service, settings)
    stop = stop_on_signals()
    try:
        return _serve(args.service, settings, stop)
    finally:
        tracer.shutdown()


def _install_tracer(service: str, settings: Any) -> Any:
    """Install the process's event tracer and return it. The OpenTelemetry SDK is imported only with tracing on."""
    from streamml.common.tracing import event_tracer, install_tracer

    if settings.tracing_enabled:
        from streamml.common.otel import build_tracer

        install_tracer(build_tracer(service, settings.otel))
    return event_tracer()


def _serve(service: str, settings: Any, stop: Any) -> int:
    if service == "ingestion":
        from streamml.ingestion.service import run_ingestion

        run_ingestion(settings, stop)
    elif service == "features":
        from streamml.features.service import run_features

        return run_features(settings, stop)
    elif service == "training":
        from streamml.training.service import run_training

        run_training(settings, stop)
    else:
        from streamml.inference.service import run_inference

        run_inference(settings, stop)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streamml.common.logs import configure_logging
    from streamml.demo.runner import run_demo

    configure_logging("WARNING" if not args.verbose else "INFO")
    summary = run_demo(
        csv_path=args.csv,
        spec_path=args.spec,
        bootstrap_servers=args.bootstrap_servers,
        summary_json=args.summary_json,
        limit=args.limit,
        rate=args.rate,
        progress=not args.no_progress,
    )
    print(
        f"{summary['events']} events, {summary['predictions']} predictions, "
        f"served accuracy {summary['prequential_accuracy']:.4f}, "
        f"{summary['model_versions']} model versions served, {summary['duration_s']:.1f}s"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from streamml.common.logs import configure_logging
    from streamml.common.settings import KafkaSettings
    from streamml.common.spec import load_spec
    from streamml.demo.cluster import produce_replay
    from streamml.demo.replay import replay_csv

    configure_logging("INFO")
    spec = load_spec(args.spec)
    settings = KafkaSettings(bootstrap_servers=args.bootstrap_servers) if args.bootstrap_servers else KafkaSettings()
    rows = replay_csv(args.csv, spec, limit=args.limit)
    count = produce_replay(settings, spec.topic("input"), (row.event for row in rows), rate=args.rate)
    print(f"produced {count} events to {spec.topic('input')}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    from streamml.common.logs import configure_logging
    from streamml.common.settings import KafkaSettings
    from streamml.common.spec import load_spec
    from streamml.demo.cluster import create_topics

    configure_logging("INFO" if args.action == "create" else "WARNING")
    spec = load_spec(args.spec)
    settings = KafkaSettings(bootstrap_servers=args.bootstrap_servers) if args.bootstrap_servers else KafkaSettings()
    if args.action == "tail":
        return _tail(settings, spec.topic(args.role), args.max_events)
    from streamml.demo.runner import check_reachable

    check_reachable(settings)
    created = create_topics(settings, spec, partitions=args.partitions, replication_factor=args.replication_factor)
    for topic in created:
        print(f"created {topic}")
    if not created:
        print(f"the topics of pipeline {spec.name} exist already")
    return 0


def _tail(settings: Any, topic: str, max_events: int) -> int:
    """Print a topic's events from its beginning as structured-mode JSON, one per line."""
    import json

    from streamml.common.events import to_structured_json
    from streamml.demo.cluster import TopicReader

    reader = TopicReader(settings, topic)
    printed = 0
    try:
        while max_events == 0 or printed < max_events:
            for event in reader.poll(timeout_s=0.5):
                print(json.dumps(to_structured_json(event)), flush=True)
                printed += 1
                if printed == max_events:
                    break
    finally:
        reader.close()
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from streamml.common.schemas import check_schemas, write_schemas

    if args.check:
        drift = check_schemas(Path(args.out))
        for line in drift:
            print(line, file=sys.stderr)
        return 1 if drift else 0
    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamml", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="Run one service as a process over Kafka.")
    run.add_argument("service", choices=SERVICES)
    run.add_argument("--spec", help="Pipeline spec YAML (or STREAMML_<SERVICE>_SPEC).")
    run.add_argument("--bootstrap-servers", help="Kafka brokers, host:port (or STREAMML_KAFKA_BOOTSTRAP_SERVERS).")
    run.add_argument("--http-port", type=int, help="Serve POST / on this port (or STREAMML_<SERVICE>_HTTP_PORT).")
    run.add_argument("--mode", choices=("pull", "push"), help="pull: consume Kafka; push: HTTP only, for Knative (or STREAMML_<SERVICE>_MODE).")
    run.set_defaults(func=_run_service)

    topics = commands.add_parser("topics", help="Create the pipeline's topics, or print one topic's events.")
    topics.add_argument("action", choices=("create", "tail"), help="create: make the topics; tail: print one topic's events.")
    topics.add_argument("--spec", required=True)
    topics.add_argument("--bootstrap-servers", help="Kafka brokers, host:port (or STREAMML_KAFKA_BOOTSTRAP_SERVERS).")
    topics.add_argument("--partitions", type=int, default=1, help="Partitions of each topic but the models topic (default: 1).")
    topics.add_argument("--replication-factor", type=int, default=1, help="Replicas of each partition (default: 1).")
    topics.add_argument("--role", default="predictions", help="With tail: input, raw, features, labels, models, predictions or dead_letter.")
    topics.add_argument("--max-events", type=int, default=0, help="With tail: stop after N events; 0 follows the topic until Ctrl-C.")
    topics.set_defaults(func=_topics)

    demo = commands.add_parser("demo", help="Replay a dataset through all four services and report the served accuracy.")
    demo.add_argument("--csv", help="CSV file to replay (default: the Phishing dataset shipped with river).")
    demo.add_argument("--spec", help="Pipeline spec of the CSV (required with --csv).")
    demo.add_argument("--bootstrap-servers", help="Run the services as processes over this Kafka instead of in memory.")
    demo.add_argument("--summary-json", help="Write events, predictions, prequential_accuracy, model_versions and duration_s here.")
    demo.add_argument("--limit", type=int, help="Replay only the first N rows.")
    demo.add_argument("--rate", type=float, default=0.0, help="Events per second produced to Kafka; 0 is as fast as possible.")
    demo.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    demo.add_argument("--verbose", action="store_true", help="Log at INFO.")
    demo.set_defaults(func=_demo)

    replay = commands.add_parser("replay", help="Produce a CSV file to the input topic as CloudEvents.")
    replay.add_argument("--csv", required=True)
    replay.add_argument("--spec", required=True)
    replay.add_argument("--bootstrap-servers")
    replay.add_argument("--limit", type=int)
    replay.add_argument("--rate", type=float, default=0.0, help="Events per second; 0 is as fast as possible.")
    replay.set_defaults(func=_replay)

    schemas = commands.add_parser("schemas", help="Write the JSON Schemas of every payload, or check them.")
    schemas.add_argument("--out", default="schemas", help="Folder of the schema files (default: schemas).")
    schemas.add_argument("--check", action="store_true", help="Exit 1 when the files differ from the code.")
    schemas.set_defaults(func=_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("demo", "replay"):
        if args.csv and not args.spec:
            print("streamml: --csv needs --spec, the pipeline spec that types the CSV columns", file=sys.stderr)
            return 2
        if args.spec and not args.csv:
            print("streamml: --spec needs --csv, the dataset that the spec describes", file=sys.stderr)
            return 2
        if args.csv and not Path(args.csv).is_file():
            print(f"streamml: CSV file {args.csv} not found: pass an existing file to --csv", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except SpecError as error:
        print(f"streamml: {error}", file=sys.stderr)
        return 2
    except (KafkaUnreachableError, StateError) as error:
        print(f"streamml: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
