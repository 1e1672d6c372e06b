"""Learner checkpoints on a compacted Kafka topic, so a restarted training service resumes learning.

The training service may run as a Knative Service that scales to zero, where no
local disk outlives a pod. It writes the learner state and the samples still waiting
for a partner or a block to the checkpoints topic, keyed by model name, before it
commits its consumer offsets. In push mode, where the sender commits once the service
responds, each response waits for a checkpoint or a journal record that contains the
request. At start it reads the newest checkpoint and the journal after it back, and
consumes from the offsets committed with it, so every sample is learned once across a crash.

Checkpoints are written with `torch.save` and read with `torch.load(weights_only=True)`,
which loads tensors, numbers, strings and containers only, never arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from cloudevents.core.v1.event import CloudEvent

from streamml.common.errors import InvalidEventError, StateError
from streamml.common.events import BATCH, from_http, to_http_batch
from streamml.common.kafka import Emitter, read_compacted
from streamml.common.settings import KafkaSettings
from streamml.training.handler import TrainingHandler

logger = logging.getLogger(__name__)

# Brokers reject records over message.max.bytes (1 MiB by default), so a larger checkpoint is
# written as parts of this size, then a manifest that names them.
PART_BYTES = 512 * 1024


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


class CheckpointError(StateError):
    """A checkpoint's manifest names parts that the checkpoints topic does not contain as written."""


class KafkaCheckpoints:
    """Saves and restores one model's learner state on a compacted topic.

    A checkpoint up to `PART_BYTES` is one record keyed by the model name. A larger one is
    written as parts keyed `<model>/<checkpoint id>/<index>` (model names contain no slash).
    Once the brokers acknowledged every part, a manifest keyed by the model name names them
    with their total length and SHA-256.
    A part key is never written twice, so compaction cannot replace the parts of the newest
    manifest. Parts that no manifest names any more are deleted with tombstones.

    Between two checkpoints, push mode appends the events it handled to a journal: records
    keyed `<model>/journal/<id>`, each an HTTP batch-mode body. A restore handles the journal
    records that follow the newest checkpoint on the topic again, in their order there. The
    next checkpoint deletes them.
    """

    def __init__(self, settings: KafkaSettings, topic: str, emitter: Emitter, model_name: str) -> None:
        self.settings = settings
        self.topic = topic
        self.emitter = emitter
        self.key = model_name.encode()
        self._part_prefix = self.key + b"/"
        self._journal_prefix = self.key + b"/journal/"
        # Part keys of the newest checkpoint, deleted once a newer checkpoint is acknowledged.
        self._parts: list[bytes] = []
        # Keys of the journal records after the newest checkpoint, deleted by the next one.
        self.journal_keys: list[bytes] = []

    def save(self, handler: TrainingHandler) -> int:
        """Write the learner and join state, wait for the acknowledgement, and return the handler generation it covers."""
        with handler.state_lock:
            generation = handler.generation
            data = encode_checkpoint(handler.version or 0, handler.learner.state_dict(), handler.join_state())
            # The checkpoint contains these events, so the journal does not need them.
            handler.take_journal()
        if len(data) <= PART_BYTES:
            self.emitter.wait([self.emitter.send_raw(self.topic, self.key, data)])
            self._replace_parts([])
            return generation
        checkpoint_id = uuid.uuid4().hex
        keys = self._part_keys(checkpoint_id, -(-len(data) // PART_BYTES))
        self.emitter.wait([
            self.emitter.send_raw(self.topic, key, data[index * PART_BYTES : (index + 1) * PART_BYTES])
            for index, key in enumerate(keys)
        ])
        manifest = {"id": checkpoint_id, "parts": len(keys), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        buffer = io.BytesIO()
        torch.save({"manifest": manifest}, buffer)
        self.emitter.wait([self.emitter.send_raw(self.topic, self.key, buffer.getvalue())])
        logger.debug("wrote a checkpoint of %d bytes in %d parts on %s", len(data), len(keys), self.topic)
        self._replace_parts(keys)
        return generation

    def append(self, events: Sequence[CloudEvent]) -> None:
        """Write events handled after the newest checkpoint as one journal record, and wait for the acknowledgement."""
        key = self._journal_prefix + uuid.uuid4().hex.encode()
        _, body = to_http_batch(events)
        self.emitter.wait([self.emitter.send_raw(self.topic, key, body)])
        self.journal_keys.append(key)

    def restore(self, handler: TrainingHandler, version: int) -> bool:
        """Restore the newest checkpoint; return whether one was restored.

        `version` is the newest version on the models topic. A checkpoint with join state was
        written before its offsets were committed, so one of an older version is still exact:
        the records after it are consumed again, and the next version published is `version + 1`.
        A checkpoint without join state is restored only at `version`.
        Raises CheckpointError when the newest checkpoint's parts are missing or damaged, or a
        journal record after it does not decode.
        """
        newest: bytes | None = None
        newest_offset = -1
        # The newest value and its offset of every part and journal key; both start with the part prefix.
        live: dict[bytes, tuple[int, bytes]] = {}
        for message in read_compacted(self.settings, self.topic):
            key, value = message.key(), message.value()
            if key == self.key:
                newest, newest_offset = value, message.offset()
            elif key is not None and key.startswith(self._part_prefix):
                if value is None:
                    live.pop(key, None)
                else:
                    live[key] = (message.offset(), value)
        journal = {key: found for key, found in live.items() if key.startswith(self._journal_prefix)}
        parts = {key: value for key, (_, value) in live.items() if key not in journal}
        # Journal records before the newest checkpoint are in it.
        later = sorted((offset, key, value) for key, (offset, value) in journal.items() if offset > newest_offset)
        self._delete([key for key, (offset, _) in journal.items() if offset < newest_offset])
        if newest is None:
            self._delete([*parts, *(key for _, key, _ in later)])
            logger.warning("no checkpoint of %s on %s: learning restarts from an untrained model", self.key.decode(), self.topic)
            return False
        saved = decode_checkpoint(newest)
        manifest = saved.get("manifest")
        current: list[bytes] = []
        if manifest is not None:
            current = self._part_keys(manifest["id"], manifest["parts"])
            saved = decode_checkpoint(self._assemble(manifest, current, parts))
        # Parts that the newest checkpoint does not name belong to older checkpoints, or to a
        # checkpoint whose writer crashed before it wrote the manifest.
        named = set(current)
        self._delete([key for key in parts if key not in named])
        self._parts = current
        join_state = saved.get("join")
        usable = saved["version"] <= version if join_state is not None else saved["version"] == version
        if not usable:
            logger.warning(
                "checkpoint on %s is of version %s but the models topic has %d: learning restarts from an untrained model",
                self.topic, saved["version"], version,
            )
            return False
        handler.restore(saved["learner"], saved["version"], join_state, published=version, journal=self._journal_batches(later))
        self.journal_keys = [key for _, key, _ in later]
        return True

    def _journal_batches(self, records: list[tuple[int, bytes, bytes]]) -> Iterator[list[CloudEvent]]:
        for offset, key, value in records:
            try:
                yield from_http({"content-type": BATCH}, value, where=f"journal record {key.decode()} at offset {offset}")
            except InvalidEventError as error:
                raise CheckpointError(
                    f"{error}. The journal on {self.topic} is damaged. To learn again from the start, delete the checkpoint "
                    "record and reset the training consumer group's offsets to the earliest"
                ) from None

    def _part_keys(self, checkpoint_id: str, count: int) -> list[bytes]:
        return [self._part_prefix + f"{checkpoint_id}/{index}".encode() for index in range(count)]

    def _assemble(self, manifest: dict[str, Any], keys: list[bytes], parts: dict[bytes, bytes]) -> bytes:
        missing = [key.decode() for key in keys if key not in parts]
        if missing:
            raise CheckpointError(
                f"the newest checkpoint of {self.key.decode()} on {self.topic} names {len(keys)} parts, and {len(missing)} are "
                f"missing, for example {missing[0]}: the topic lost acknowledged records. To learn again from the start, "
                "delete the checkpoint record and reset the training consumer group's offsets to the earliest"
            )
        data = b"".join(parts[key] for key in keys)
        if len(data) != manifest["bytes"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise CheckpointError(
                f"the newest checkpoint of {self.key.decode()} on {self.topic} has {len(data)} bytes in its parts, which do not "
                f"match its manifest ({manifest['bytes']} bytes, SHA-256 {manifest['sha256']}). To learn again from the start, "
                "delete the checkpoint record and reset the training consumer group's offsets to the earliest"
            )
        return data

    def _replace_parts(self, keys: list[bytes]) -> None:
        """Delete the parts of the previous checkpoint and the journal before the current one, and keep `keys` as its parts."""
        self._delete([*self._parts, *self.journal_keys])
        self._parts = keys
        self.journal_keys = []

    def _delete(self, keys: list[bytes]) -> None:
        for key in keys:
            # Not waited for: a part whose tombstone fails is deleted by the next restore.
            self.emitter.send_raw(self.topic, key, None)
