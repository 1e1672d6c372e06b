"""The training service process: feature vectors and labels in, model versions out."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from streamml.common.errors import InvalidEventError
from streamml.common.events import from_kafka, parse_data
from streamml.common.kafka import Emitter, message_fields, read_compacted, where
from streamml.common.runner import ServiceParts, run_service
from streamml.common.payloads import ModelArtifact
from streamml.common.settings import TrainingSettings
from streamml.common.spec import PipelineSpec, load_spec
from streamml.training.checkpoints import KafkaCheckpoints
from streamml.training.handler import TrainingHandler

logger = logging.getLogger(__name__)

SERVICE = "training"


def latest_published_version(settings: TrainingSettings, spec: PipelineSpec) -> int | None:
    """Return the newest version of this pipeline's model on the models topic, or None."""
    newest = None
    for message in read_compacted(settings.kafka, spec.topic("models")):
        try:
            event = from_kafka(message.key(), message.value(), message.headers(), where=where(message))
            artifact = parse_data(event, ModelArtifact)
        except InvalidEventError as error:
            logger.warning("skipping %s on the models topic: %s", where(message), error, extra=message_fields(message))
            continue
        if artifact.model_name == spec.model_name and (newest is None or artifact.version > newest):
            newest = artifact.version
    return newest


class Checkpointer:
    """Policy for when training writes a checkpoint, and whether the offsets consumed so far may be committed.

    A checkpoint taken at handler generation g contains every record handled before it
    (see `TrainingHandler.generation`). Pull mode writes one once a batch's outputs are
    acknowledged, when records were handled since the last one and `interval_s` has
    passed, and commits the consumer offsets only when the newest checkpoint covers
    every batch handled. A crash therefore replays at most about `interval_s` of records.

    Push mode responds to a request only once the checkpoints topic contains it, because
    the sender commits its offset on the response. When the handler keeps a journal, the
    events go there as one small record, and a full checkpoint is written at most every
    `interval_s`; without one, every request waits for a full checkpoint. Requests that
    wait meanwhile share the next write.
    """

    def __init__(
        self, handler: TrainingHandler, checkpoints: KafkaCheckpoints, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.handler = handler
        self.checkpoints = checkpoints
        self.interval_s = interval_s
        self.covered = handler.generation
        self.saved = 0
        self.journaled = 0
        self._clock = clock
        self._last_saved = -math.inf
        self._lock = threading.Lock()

    def after_batch(self) -> None:
        """Pull mode: write a checkpoint when records were handled since the last one and the interval has passed."""
        with self._lock:
            if self.handler.generation != self.covered and self._due():
                self._save()

    def allows_commit(self) -> bool:
        """Pull mode: return whether the newest checkpoint covers every batch handled."""
        return self.covered == self.handler.generation

    def checkpoint(self) -> None:
        """Write a checkpoint now when the newest one lacks handled records or journal records follow it."""
        with self._lock:
            if self.handler.generation != self.covered or self.checkpoints.journal_keys:
                self._save()

    def drain(self) -> bool:
        """At a clean stop: write a checkpoint of what the last one lacks, and return whether the offsets may be committed."""
        self.checkpoint()
        return self.allows_commit()

    def cover_handled(self) -> None:
        """Push mode: return once the checkpoints topic contains every request handled before this call."""
        target = self.handler.generation
        with self._lock:
            if self.covered >= target:
                return
            if self.handler.journal is None or self._due():
                self._save()
            else:
                self._append()

    def _due(self) -> bool:
        return self._clock() - self._last_saved >= self.interval_s

    def _save(self) -> None:
        self.covered = self.checkpoints.save(self.handler)
        self.saved += 1
        self._last_saved = self._clock()

    def _append(self) -> None:
        with self.handler.state_lock:
            events = self.handler.take_journal()
            generation = self.handler.generation
        if events:
            self.checkpoints.append(events)
            self.journaled += 1
        self.covered = generation


def run_training(settings: TrainingSettings, stop: threading.Event) -> None:
    """Run until `stop` is set, then drain: finish the batch, flush and commit."""
    import torch

    torch.set_num_threads(settings.torch_threads)
    spec = load_spec(settings.spec)
    handler = TrainingHandler(spec, model_dir=settings.model_dir)
    emitter = Emitter(settings.kafka)
    checkpoints = KafkaCheckpoints(settings.kafka, spec.topic("checkpoints"), emitter, spec.model_name)
    published = latest_published_version(settings, spec)
    if published is None:
        emitter.wait(emitter.send_all([handler.initial_model()]))
        logger.info("published the untrained model %s as version 0", spec.model_name)
    elif not checkpoints.restore(handler, published):
        handler.version = published

    checkpointer = Checkpointer(handler, checkpoints, settings.checkpoint_interval_s)
    # When the restore handled journal records, a checkpoint of the state they rebuilt replaces
    # them, so the next restore does not handle them again.
    checkpointer.checkpoint()
    if settings.mode == "push":
        handler.journal = []
    parts = ServiceParts(
        service=SERVICE,
        handler=handler,
        input_topics=[spec.topic("features"), spec.topic("labels")],
        on_outputs=lambda outputs: checkpointer.after_batch(),
        commit_gate=checkpointer.allows_commit,
        on_drain=checkpointer.drain,
        after_handle=checkpointer.cover_handled,
        is_ready=emitter.connected,
        single_instance=True,
    )
    run_service(parts, settings, spec, emitter, stop)
    features, labels = handler.pending
    logger.info(
        "training stopped after %d checkpoints and %d journal records: the learner has learned %d samples; "
        "%d wait for a full block, %d vectors and %d labels for their partner",
        checkpointer.saved, checkpointer.journaled, handler.learner.samples, handler.waiting_in_block, features, labels,
    )
