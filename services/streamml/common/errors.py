"""Typed errors raised at the service boundaries, each mapped to one outcome.

| error                  | Kafka pull                  | HTTP push |
|------------------------|-----------------------------|-----------|
| `InvalidEventError`    | dead-letter, then commit    | 400       |
| `RetriableError`       | retry with backoff          | 503       |
| `SpecError`            | the service does not start  | n/a       |
| `StateError`           | the service does not start  | n/a       |
"""

from __future__ import annotations


class StreammlError(Exception):
    """Base class of every error that streamml raises on purpose."""


class SpecError(StreammlError):
    """The pipeline spec file is missing, unreadable or invalid."""


class StateError(StreammlError):
    """State that a service restores at start from Kafka is incomplete or damaged, so it does not start."""


class InvalidEventError(StreammlError):
    """An event cannot be processed and never will be: it goes to the dead-letter topic.

    `reason` is a short machine-readable code (for metrics and routing) and the
    message says which value was wrong and how to fix it.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RetriableError(StreammlError):
    """A dependency failed or the service is overloaded: the same event may succeed later."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class KafkaUnreachableError(StreammlError):
    """No broker responded at the configured bootstrap servers."""


class ModelRejectedError(StreammlError):
    """A published model cannot serve this pipeline; the previous model keeps serving."""
