"""The training service process: feature vectors and labels in, model versions out."""

from __future__ import annotations

import logging
import threading

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


class CommitGate:
    """Gate that checkpoints each new version and allows an offset commit only right after a checkpoint.

    The pull runner consumes a batch, handles it, waits for the outputs, and then calls
    `save_if_published` and `allows_commit`. A checkpoint contains every record handled before
    it, so the commit that follows covers nothing it lacks. A version published on the time
    cadence comes from a pass without records, and the next batch is not in its checkpoint,
    so a new batch closes the window that such a checkpoint opened.
    """

    def __init__(self, handler: TrainingHandler, checkpoints: KafkaCheckpoints) -> None:
        self.handler = handler
        self.checkpoints = checkpoints
        self.saved = handler.version
        self.checkpoint_covers_batch = False

    def batch_started(self) -> None:
        self.checkpoint_covers_batch = False

    def save_if_published(self) -> None:
        """Checkpoint the learner once a new version is acknowledged on the models topic."""
        if self.handler.version != self.saved:
            self.checkpoints.save(self.handler)
            self.saved = self.handler.version
            self.checkpoint_covers_batch = True

    def allows_commit(self) -> bool:
        allowed, self.checkpoint_covers_batch = self.checkpoint_covers_batch, False
        return allowed


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

    gate = CommitGate(handler, checkpoints)

    parts = ServiceParts(
        service=SERVICE,
        handler=handler,
        input_topics=[spec.topic("features"), spec.topic("labels")],
        before_batch=gate.batch_started,
        on_outputs=lambda outputs: gate.save_if_published(),
        commit_gate=gate.allows_commit,
        after_handle=gate.save_if_published,
        is_ready=emitter.connected,
        single_instance=True,
    )
    run_service(parts, settings, spec, emitter, stop)
    features, labels = handler.pending
    logger.info(
        "training stopped: the learner has learned %d samples; %d wait for a full block, %d vectors and %d labels for their partner",
        handler.learner.samples, handler.waiting_in_block, features, labels,
    )
