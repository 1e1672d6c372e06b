"""Instructions per event of a pull loop's Python work, counted by valgrind: a figure that noise moves less.

On the shared machines of these benchmarks, wall and CPU times varied by up to a third
between runs, more than most single changes to the code. The count varies too, though
less: six counts of the same loop code gave 200,658 to 244,578 instructions per event,
so compare two versions with several counts of each. This counts the instructions
that the inference service's pull loop executes per Elec2 feature vector: decoding the
Kafka records, the handler, tracing, metrics and encoding the outputs. The Kafka client
is left out, because the records come from memory and the outputs are encoded but not
sent. The loop runs twice under callgrind, on 1,000 and on 3,000 records, and the
difference per record is reported, so start-up is left out. It needs valgrind and takes
about four minutes.

    python -m bench.instructions [--csv PATH]

Compare two versions of the code by running it in each checkout.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

SHORT, LONG = 1000, 3000
WARM_UP = 500
BATCH = 500


def build_fixture(csv_path: Path, folder: Path) -> Path:
    """Write the spec, the Kafka records of the feature vectors and a trained model event to `folder`."""
    from bench import stages
    from bench.__main__ import MODEL_NAME, REPOSITORY, trained_model
    from bench.workload import build
    from streamml.common.events import to_kafka
    from streamml.common.spec import load_spec

    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(stages.base_spec(REPOSITORY / "examples" / "elec2.yaml", MODEL_NAME) | {"name": "instructions"}))
    workload = build(load_spec(spec_path), csv_path, limit=max(LONG + WARM_UP, 2000))
    fixture = folder / "fixture.pickle"
    records = [to_kafka(event) for event in workload.vectors[: LONG + WARM_UP]]
    fixture.write_bytes(pickle.dumps({"spec": str(spec_path), "records": records, "model": to_kafka(trained_model(spec_path, workload, folder))}))
    return fixture


class _Record:
    """The parts of a confluent-kafka Message that the pull loop reads."""

    __slots__ = ("_key", "_value", "_headers", "_offset")

    def __init__(self, key: bytes | None, value: bytes, headers: list, offset: int) -> None:
        self._key, self._value, self._headers, self._offset = key, value, headers, offset

    def error(self) -> None:
        return None

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list:
        return self._headers

    def topic(self) -> str:
        return "instructions.features"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class _EncodingEmitter:
    """An emitter that encodes each batch's outputs as the real one does, and sends nothing."""

    def send_all(self, outputs: list) -> list:
        from streamml.common.events import to_kafka

        self.last = [to_kafka(output.event) for output in outputs]
        return []

    def wait(self, futures: list, timeout_s: float = 30.0) -> None:
        pass


def run_loop(fixture: Path, events: int) -> None:
    """Run the inference pull loop's Python work over the first `events` records of the fixture."""
    from streamml.common.events import from_kafka
    from streamml.common.kafka import PullRunner
    from streamml.common.process import settle_heap
    from streamml.common.settings import KafkaSettings
    from streamml.common.spec import load_spec
    from streamml.inference.handler import InferenceHandler

    loaded = pickle.loads(fixture.read_bytes())
    handler = InferenceHandler(load_spec(loaded["spec"]), provider="cpu", dedupe_window=2 * (LONG + WARM_UP))
    handler.load(from_kafka(*loaded["model"]))
    runner = PullRunner(handler, service="inference", settings=KafkaSettings(bootstrap_servers="127.0.0.1:9"), group_id="instructions",
                        topics=["instructions.features"], dead_letter_topic="instructions.dead-letter",
                        emitter=_EncodingEmitter(), lag_interval_ms=0)  # type: ignore[arg-type]
    # The records come from memory, so the consumer is closed at once and its threads stop before the count.
    runner.consumer.close()
    runner._commit = lambda messages: None  # type: ignore[method-assign]
    records = [_Record(key, value, list(headers), offset) for offset, (key, value, headers) in enumerate(loaded["records"])]
    # The same first batch in both counts fills the codec's caches.
    runner._process(records[LONG : LONG + WARM_UP])
    settle_heap()
    for start in range(0, events, BATCH):
        runner._process(records[start : start + BATCH])


def count_instructions(fixture: Path, events: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, "-m", "bench.instructions", "--run", str(fixture), "--events", str(events)]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONHASHSEED": "0"}, check=False)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(found.group(1))


VALGRIND_MISSING = "valgrind is not installed; install it (for example `apt-get install valgrind`) to count instructions"


def measure(csv_path: Path) -> int:
    """Return the instructions per event of the inference pull loop, from two counts under callgrind."""
    with tempfile.TemporaryDirectory(prefix="streamml-instructions-") as folder:
        fixture = build_fixture(csv_path, Path(folder))
        short, long = count_instructions(fixture, SHORT), count_instructions(fixture, LONG)
    return round((long - short) / (LONG - SHORT))


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import default_csv

    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(default_csv()), help="The Elec2 CSV (default: the reference data folder).")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=LONG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_loop(Path(args.run), args.events)
        return 0
    if shutil.which("valgrind") is None:
        print(VALGRIND_MISSING, file=sys.stderr)
        return 2
    print(f"inference pull loop: {measure(Path(args.csv)):,} instructions per event (Python work, no Kafka client)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
