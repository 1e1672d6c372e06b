"""Learner checkpoints on a compacted Kafka topic, so a restarted training service resumes learning.

The training service may run as a Knative Service that scales to zero, where no
local disk outlives a pod. After each published model version it writes the
learner state and the samples still waiting for a partner or a block to the
checkpoints topic, keyed by model name, and only then commits its consumer offsets.
At start it reads the newest checkpoint back and consumes from those offsets, so
every sample is learned once across a crash.

Checkpoints are written with `torch.save` and read with `torch.load(weights_only=True)`,
which loads tensors, numbers, strings and containers only, never arbitrary objects.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import torch

from streamml.common.kafka import Emitter, read_compacted
from streamml.common.settings import KafkaSettings
from streamml.training.handler import TrainingHandler

logger = logging.getLogger(__name__)

# Brokers reject records over message.max.bytes (1 MiB by default); larger states are not checkpointed.
MAX_CHECKPOINT_BYTES = 900 * 1024


def _to_tensors(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {key: _to_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_tensors(item) for item in value]
    return value


def encode_checkpoint(version: int, learner_state: dict[str, Any], join_state: dict[str, Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    document = {"version": version, "learner": _to_tensors(learner_state)}
    if join_state is not None:
        document["join"] = _to_tensors(join_state)
    torch.save(document, buffer)
    return buffer.getvalue()


def decode_checkpoint(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), weights_only=True)


class KafkaCheckpoints:
    """Saves and restores one model's learner state on a compacted topic."""

    def __init__(self, settings: KafkaSettings, topic: str, emitter: Emitter, model_name: str) -> None:
        self.settings = settings
        self.topic = topic
        self.emitter = emitter
        self.key = model_name.encode()

    def save(self, handler: TrainingHandler) -> bool:
        """Write the learner and join state of the version just published, wait for the acknowledgement, and return whether it was written."""
        data = encode_checkpoint(handler.version or 0, handler.learner.state_dict(), handler.join_state())
        if len(data) > MAX_CHECKPOINT_BYTES:
            logger.warning(
                "checkpoint of %d bytes is over %d, so it is not saved and the offsets stay uncommitted until a "
                "checkpoint is: a restart consumes again from the last one. Raise max.message.bytes of %s and "
                "MAX_CHECKPOINT_BYTES to keep it",
                len(data), MAX_CHECKPOINT_BYTES, self.topic,
            )
            return False
        self.emitter.wait([self.emitter.send_raw(self.topic, self.key, data)])
        return True

    def restore(self, handler: TrainingHandler, version: int) -> bool:
        """Restore the newest checkpoint; return whether one was restored.

        `version` is the newest version on the models topic. A checkpoint with join state was
        written before its offsets were committed, so one of an older version is still exact:
        the records after it are consumed again and the versions after it published again with
        the same numbers. A checkpoint without join state is restored only at `version`.
        """
        newest = None
        for message in read_compacted(self.settings, self.topic):
            if message.key() == self.key:
                newest = message.value()
        if newest is None:
            logger.warning("no checkpoint of %s on %s: learning restarts from an untrained model", self.key.decode(), self.topic)
            return False
        saved = decode_checkpoint(newest)
        join_state = saved.get("join")
        usable = saved["version"] <= version if join_state is not None else saved["version"] == version
        if not usable:
            logger.warning(
                "checkpoint on %s is of version %s but the models topic has %d: learning restarts from an untrained model",
                self.topic, saved["version"], version,
            )
            return False
        handler.restore(saved["learner"], saved["version"], join_state)
        return True
