"""The throughput limit of one hop: a bare confluent-kafka relay.

It consumes a batch, produces a copy of each record (key, value and headers) to the
target topic, waits for the acknowledgements and commits the offsets. That is the
services' delivery rule with their client settings, but with no CloudEvents decoding
and no handler.

    python -m bench.relay --bootstrap-servers HOST:PORT --source IN [--source IN2] --target OUT --group G

It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading

from confluent_kafka import Consumer, Producer

from streamml.common.kafka import consumer_config
from streamml.common.settings import KafkaSettings


def relay(settings: KafkaSettings, sources: list[str], target: str, group: str, stop: threading.Event, batch_size: int = 500) -> int:
    consumer = Consumer(consumer_config(settings, group))
    producer = Producer(settings.client_config() | {
        "enable.idempotence": True, "acks": "all", "linger.ms": 5, "compression.type": "lz4", "partitioner": "murmur2_random",
    })
    consumer.subscribe(sources)
    relayed = 0
    try:
        while not stop.is_set():
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
            if producer.flush(30):
                raise RuntimeError(f"records to {target} were not acknowledged within 30s")
            consumer.commit(asynchronous=False)
            relayed += copied
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
    relay(KafkaSettings(bootstrap_servers=args.bootstrap_servers), args.source, args.target, args.group, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
