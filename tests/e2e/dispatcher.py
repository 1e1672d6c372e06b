"""A stand-in for the Knative KafkaSource dispatcher, for push-mode tests.

It consumes topics in a consumer group and POSTs each record, in partition
order, to a service as a binary-mode CloudEvent. 2xx commits the offset; 4xx
sends the record to the dead-letter topic and commits; 5xx and connection
errors are retried with exponential backoff, holding back the records behind.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
from confluent_kafka import Consumer, Producer

from streamml.common.events import from_kafka, to_http_binary


class Dispatcher:
    """Delivers records from `topics` to `url` until stopped."""

    def __init__(self, bootstrap_servers: str, topics: list[str], url: str, dead_letter_topic: str, group_id: str | None = None) -> None:
        self.url = url
        self.topics = topics
        self.dead_letter_topic = dead_letter_topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": group_id or f"dispatcher-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self._producer = Producer({"bootstrap.servers": bootstrap_servers})
        self._client = httpx.Client(timeout=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dispatch-{url}", daemon=True)
        self.delivered = 0
        self.retries = 0
        self.dead_lettered = 0
        self.failure: BaseException | None = None

    def start(self) -> Dispatcher:
        self._consumer.subscribe(self.topics)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._consumer.close()
        self._producer.flush(10)
        self._client.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                message = self._consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                self._deliver(message)
                self._consumer.commit(message=message, asynchronous=False)
        except BaseException as error:  # surfaced by the test through `failure`
            self.failure = error

    def _deliver(self, message) -> None:
        event = from_kafka(message.key(), message.value(), message.headers())
        headers, body = to_http_binary(event)
        delay = 0.1
        while not self._stop.is_set():
            try:
                response = self._client.post(self.url, headers=headers, content=body)
            except httpx.TransportError:
                status = None
            else:
                status = response.status_code
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            if status is not None and 400 <= status < 500 and status != 429:
                self._producer.produce(self.dead_letter_topic, value=message.value(), key=message.key(), headers=message.headers())
                self._producer.flush(10)
                self.dead_lettered += 1
                return
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
