"""The throughput limit of one hop: a bare confluent-kafka relay.

It consumes a batch, produces a copy of each record (key, value and headers) to the
target topic, waits for the acknowledgements and commits the offsets without waiting
for the commit's response. That is the services' delivery rule with their client
settings, but with no CloudEvents decoding and no handler.

    python -m bench.relay --bootstrap-servers HOST:PORT --source IN [--source IN2] --target OUT --group G

It runs until SIGTERM or SIGINT, then prints one JSON line about its full batches, those of
a backlog: their records, CPU seconds, and the seconds blocked in flush (waiting for
acknowledgements) and in the commit call. A relay that never met a full
batch, such as a later hop of a short chain, reports all its batches instead.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from dataclasses import asdict, dataclass

from confluent_kafka import Consumer, Producer

from streamml.common.kafka import consumed_positions, consumer_config
from streamml.common.settings import KafkaSettings


@dataclass
class RelayTimes:
    """The time a relay spent on its batches: records, CPU seconds, and seconds blocked on the brokers."""

    records: int = 0
    cpu_s: float = 0.0
    flush_s: float = 0.0
    commit_s: float = 0.0
    #: Which batches these are: "full" (those of a backlog) or "all".
    batches: str = "full"

    def add(self, records: int, cpu_s: float, flush_s: float, commit_s: float) -> None:
        self.records += records
        self.cpu_s += cpu_s
        self.flush_s += flush_s
        self.commit_s += commit_s

    def summary(self) -> str:
        """Return the times as one JSON line, which `parse_summary` reads back."""
        return json.dumps({"relay_times": asdict(self)})


def parse_summary(text: str) -> RelayTimes | None:
    """Return the times in a relay's output, or None when it printed none."""
    for line in reversed(text.splitlines()):
        if line.startswith('{"relay_times"'):
            return RelayTimes(**json.loads(line)["relay_times"])
    return None


def relay(
    settings: KafkaSettings,
    sources: list[str],
    target: str,
    group: str,
    stop: threading.Event,
    batch_size: int = 500,
    times: RelayTimes | None = None,
    every: RelayTimes | None = None,
) -> int:
    """Relay until `stop` is set and return the records copied. `times` gets the full batches, `every` all of them."""
    consumer = Consumer(consumer_config(settings, group))
    producer = Producer(settings.client_config() | {
        "enable.idempotence": True, "acks": "all", "linger.ms": 1, "compression.type": "lz4", "partitioner": "murmur2_random",
    })
    consumer.subscribe(sources)
    times = times if times is not None else RelayTimes()
    every = every if every is not None else RelayTimes(batches="all")
    relayed = 0
    try:
        while not stop.is_set():
            cpu_started = time.process_time()
            messages = consumer.consume(num_messages=batch_size, timeout=0.02)
            copied = 0
            for message in messages:
                if message.error() is not None:
                    continue
                while True:
                    try:
                        producer.produce(target, value=message.value(), key=message.key(), headers=message.headers())
                        break
                    except BufferError:
                        producer.poll(0.05)
                copied += 1
            if not copied:
                continue
            flushing = time.perf_counter()
            if producer.flush(30):
                raise RuntimeError(f"records to {target} were not acknowledged within 30s")
            committing = time.perf_counter()
            # The services' commit: the positions read now, sent without waiting for the response.
            consumer.commit(offsets=consumed_positions(consumer), asynchronous=True)
            relayed += copied
            spent = (copied, time.process_time() - cpu_started, committing - flushing, time.perf_counter() - committing)
            every.add(*spent)
            if len(messages) == batch_size:
                # Full batches: those of a backlog, which the throughput figures measure.
                times.add(*spent)
    finally:
        consumer.close()
    return relayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--source", action="append", required=True, help="A topic to consume; repeat for several.")
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    times, every = RelayTimes(), RelayTimes(batches="all")
    relay(KafkaSettings(bootstrap_servers=args.bootstrap_servers), args.source, args.target, args.group, stop, times=times, every=every)
    print((times if times.records else every).summary(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
