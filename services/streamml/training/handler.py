"""The training service's handler: join feature vectors with labels, test then train, publish ONNX.

Feature vectors (`io.streamml.features.v1`) and labels (`io.streamml.label.v1`) are
joined on the input record's CloudEvent id, in whichever order they arrive. Each
joined sample is first predicted by the current model, which updates the
prequential metrics, and only then learned from.

With `batch_size=1` (the default of `training.batch_size`) every sample is one optimizer step. With a larger
`batch_size`, joined samples collect in a block. Each is predicted when it joins,
and the block is learned in one step when it is full, so every sample is still
predicted by a model that has not seen it. Blocks form in join order, so the
model does not depend on how a transport splits the stream into batches. Up to
`batch_size - 1` samples wait for their block, and a publish exports the model without them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from cloudevents.core.v1.event import CloudEvent

from streamml.common.errors import InvalidEventError
from streamml.common.events import Output, new_event, parse_data
from streamml.common.handler import BatchResult, EventHandler
from streamml.common.metrics import set_model
from streamml.common.payloads import (
    FEATURES_TYPE,
    LABEL_TYPE,
    MODEL_TYPE,
    FeatureVector,
    LabelData,
    ModelArtifact,
    ModelMetrics,
)
from streamml.common.spec import PipelineSpec
from streamml.features.pipeline import FeatureExtractor
from streamml.training.export import INPUT_NAME, OPSET, export_onnx
from streamml.training.learner import OnlineLearner
from streamml.training.served import ServedScore, sample_scores

logger = logging.getLogger(__name__)

RECENT_WINDOW = 1000
# Repeated warnings (dropped pending events) are logged on the first occurrence and every this many after.
_WARN_EVERY = 1000


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# Learned record ids kept in a checkpoint, to skip records redelivered after a restart.
CHECKPOINT_LEARNED_IDS = 5000

class PrequentialMetrics:
    """Test-then-train accuracy (classes) or mean absolute error (numbers), overall and recent."""

    def __init__(self, task: str, window: int = RECENT_WINDOW) -> None:
        self.task = task
        self.samples = 0
        self.total = 0.0
        self.recent: deque[float] = deque(maxlen=window)

    def update(self, predictions: np.ndarray, targets: np.ndarray) -> None:
        """Score predictions made before learning: class probabilities or values, against the targets."""
        scores = sample_scores(self.task, predictions, targets)
        self.samples += len(scores)
        self.total += float(scores.sum())
        self.recent.extend(scores.tolist())

    def snapshot(self) -> ModelMetrics:
        if not self.samples:
            return ModelMetrics(samples=0)
        overall = self.total / self.samples
        recent = sum(self.recent) / len(self.recent)
        if self.task == "classification":
            return ModelMetrics(samples=self.samples, prequential_accuracy=overall, recent_accuracy=recent)
        return ModelMetrics(samples=self.samples, prequential_mae=overall, recent_mae=recent)


class TrainingHandler(EventHandler):
    """Learns online from joined features and labels and publishes ONNX model versions.

    Exposes `learner`, `version` (the last published version, None before any) and
    `metrics`, so that a restart can restore them. Versions published by the cadence
    count up from 1; `initial_model` publishes version 0.

    `state_lock` is held while events change the state, so a checkpoint taken from
    another thread under the same lock reads a consistent state. `generation` counts
    those changes: a checkpoint taken at generation g contains every event handled
    before g was reached. When `journal` is a list, every event handled is appended to
    it in order, for the checkpoint journal of push mode.
    """

    source = "io.streamml.training"
    # Feature vectors and labels are validated from their JSON bytes (see `parse_data`).
    parses_json_data = True

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        model_dir: str | Path | None = None,
        batch_size: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        batch_size = spec.training.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.spec = spec
        self.models_topic = spec.topic("models")
        self.extractor = FeatureExtractor(spec)
        self.feature_set = spec.fingerprint()
        self.classes = list(spec.label.classes) if spec.label.kind == "classes" else None
        self._class_index = {name: index for index, name in enumerate(self.classes or ())}
        self.learner = OnlineLearner.from_spec(spec, self.extractor.width)
        self.metrics = PrequentialMetrics(self.learner.task)
        self.served = ServedScore(spec.model_name, self.learner.task, RECENT_WINDOW)
        self.batch_size = batch_size
        self.version: int | None = None
        self.counters = dict.fromkeys(
            ("features", "labels", "learned", "duplicates", "dropped_features", "dropped_labels", "export_failures"), 0
        )
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._clock = clock
        self._last_publish = clock()
        self._since_publish = 0
        self._sequence = 0
        self._pending_features: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        self._pending_labels: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._learned_ids: OrderedDict[str, None] = OrderedDict()
        self._block_x: list[np.ndarray] = []
        self._block_y: list[float] = []
        self._block_scored = 0
        self.state_lock = threading.Lock()
        self.generation = 0
        self.journal: list[CloudEvent] | None = None

    @property
    def waiting_in_block(self) -> int:
        """Joined samples waiting for a full block of `batch_size` before they are learned."""
        return len(self._block_x)

    @property
    def pending(self) -> tuple[int, int]:
        """Feature vectors and labels waiting for their partner."""
        return len(self._pending_features), len(self._pending_labels)

    def join_state(self) -> dict[str, Any]:
        """Return the samples not yet in the learner: records waiting for a partner or for a full block.

        Saved with the learner state, it lets a restarted service consume the records that
        followed the checkpoint again without losing or repeating a sample. The newest learned
        ids come along, up to `CHECKPOINT_LEARNED_IDS`, so a record redelivered after a restart
        is still skipped.
        """
        width = self.extractor.width
        features, labels = self._pending_features, self._pending_labels
        # Columns rather than one entry per record: torch.save writes each array as a storage of its
        # own, which took about 290 bytes per waiting vector of three values.
        return {
            "pending_features": {
                "ids": list(features),
                "orders": [order for order, _ in features.values()],
                "values": np.stack([vector for _, vector in features.values()]) if features else np.empty((0, width), dtype=np.float32),
            },
            "pending_labels": {
                "ids": list(labels),
                "orders": [order for order, _ in labels.values()],
                "targets": [float(target) for _, target in labels.values()],
            },
            "block_x": np.stack(self._block_x) if self._block_x else np.empty((0, width), dtype=np.float32),
            "block_y": [float(target) for target in self._block_y],
            "block_scored": self._block_scored,
            "learned_ids": list(self._learned_ids)[-CHECKPOINT_LEARNED_IDS:],
            "since_publish": self._since_publish,
            "sequence": self._sequence,
        }

    def restore(
        self,
        learner_state: dict[str, Any],
        version: int,
        join_state: dict[str, Any] | None = None,
        published: int | None = None,
        journal: Iterable[Sequence[CloudEvent]] = (),
    ) -> None:
        """Resume learning from a saved `OnlineLearner.state_dict()` of model version `version`.

        `join_state` is a saved `join_state()`; without it, samples that were waiting are not restored.
        `journal` holds the batches of events handled after the checkpoint, which are handled
        again in order; the versions they complete are not returned, because they were published.
        `published` is the newest version on the models topic, which may be newer than the saved
        one when versions followed the checkpoint. The next version is then `published + 1`, so
        the compacted models topic never goes back to an older number.
        The prequential metrics restart from zero, because they are not part of the learner state.
        """
        self.learner.load_state_dict(learner_state)
        self.version = version
        if join_state is not None:
            self._load_join_state(join_state)
        replayed = 0
        for events in journal:
            self.handle_batch(events)
            replayed += len(events)
        self.version = max(self.version or 0, published or 0)
        self.served.published(self.learner, self.version)
        logger.info(
            "restored model %s from the checkpoint of version %d and %d journal events after it: %d learned samples; "
            "the next version is %d",
            self.spec.model_name, version, replayed, self.learner.samples, self.version + 1,
        )

    def take_journal(self) -> list[CloudEvent]:
        """Return the events handled since the last call and start a new journal; call it under `state_lock`."""
        events = self.journal or []
        if self.journal is not None:
            self.journal = []
        return events

    def _load_join_state(self, state: dict[str, Any]) -> None:
        def array(value: Any) -> np.ndarray:
            return value.numpy() if hasattr(value, "numpy") else np.asarray(value, dtype=np.float32)

        features, labels = state["pending_features"], state["pending_labels"]
        if isinstance(features, dict):
            rows = array(features["values"])
            features = zip(features["ids"], features["orders"], rows)
            labels = zip(labels["ids"], labels["orders"], labels["targets"])
        # Otherwise a checkpoint of an earlier release, with one [id, order, value] entry per record.
        self._pending_features = OrderedDict((event_id, (int(order), array(vector))) for event_id, order, vector in features)
        self._pending_labels = OrderedDict((event_id, (int(order), float(target))) for event_id, order, target in labels)
        self._block_x = list(array(state["block_x"]))
        self._block_y = [float(target) for target in state["block_y"]]
        self._block_scored = int(state["block_scored"])
        self._learned_ids = OrderedDict.fromkeys(state["learned_ids"])
        self._since_publish = int(state["since_publish"])
        self._sequence = int(state["sequence"])

    # Events ---------------------------------------------------------------------------------------

    def handle(self, event: CloudEvent) -> list[Output]:
        """Hold or join one event, and raise InvalidEventError when it is rejected."""
        return self.handle_one_of_batch(event)

    def handle_batch(self, events: Sequence[CloudEvent]) -> BatchResult:
        """Hold or join each event in order. Each joined sample is predicted, scored, then learned."""
        results: BatchResult = []
        with self.state_lock:
            for event in events:
                try:
                    results.append(self._accept(event))
                except InvalidEventError as error:
                    results.append(error)
            self._score_block()
            self.generation += 1
            if self.journal is not None:
                self.journal.extend(events)
        return results

    def tick(self, now: datetime) -> list[Output]:
        """Publish a new version when `training.every_seconds` passed and samples were learned since the last."""
        every = self.spec.training.every_seconds
        if every is None or self._since_publish == 0:
            return []
        if (now - self._last_publish).total_seconds() < every:
            return []
        with self.state_lock:
            output = self._publish(now)
            self.generation += 1
        return [output] if output else []

    def _accept(self, event: CloudEvent) -> list[Output]:
        """Hold or join one event, and return the model version that its sample completed, if any."""
        kind = event.get_type()
        if kind == FEATURES_TYPE:
            event_id, vector = self._parse_features(event)
            self.counters["features"] += 1
            if self._is_duplicate(event_id, self._pending_features):
                return []
            label = self._pending_labels.pop(event_id, None)
            if label is None:
                self._hold(self._pending_features, event_id, vector)
                return []
            return self._join(event_id, vector, label[1])
        if kind == LABEL_TYPE:
            event_id, target = self._parse_label(event)
            self.counters["labels"] += 1
            if self._is_duplicate(event_id, self._pending_labels):
                return []
            features = self._pending_features.pop(event_id, None)
            if features is None:
                self._hold(self._pending_labels, event_id, target)
                return []
            return self._join(event_id, features[1], target)
        raise InvalidEventError(
            "unknown-type",
            f"event {event.get_id()}: type {kind!r} is not accepted by training: "
            f"send {FEATURES_TYPE!r} to the features topic or {LABEL_TYPE!r} to the labels topic",
        )

    def _parse_features(self, event: CloudEvent) -> tuple[str, np.ndarray]:
        vector = parse_data(event, FeatureVector)
        if vector.feature_set != self.feature_set:
            raise InvalidEventError(
                "feature-mismatch",
                f"event {event.get_id()}: feature_set {vector.feature_set!r} differs from {self.feature_set!r} "
                f"of pipeline {self.spec.name!r}: run the features and training services with the same spec file",
            )
        if len(vector.values) != self.extractor.width:
            raise InvalidEventError(
                "feature-mismatch",
                f"event {event.get_id()}: feature vector has {len(vector.values)} values but pipeline "
                f"{self.spec.name!r} defines {self.extractor.width} features: "
                "run the features and training services with the same spec file",
            )
        return vector.event_id, np.asarray(vector.values, dtype=np.float64)

    def _parse_label(self, event: CloudEvent) -> tuple[str, float]:
        label = parse_data(event, LabelData)
        if self.classes is not None:
            index = self._class_index.get(label.label) if isinstance(label.label, str) else None
            if index is None:
                raise InvalidEventError(
                    "invalid-label",
                    f"event {event.get_id()}: label {label.label!r} of record {label.event_id} is not one of "
                    f"the classes {self.classes}: send one of them, spelled as in label.classes",
                )
            return label.event_id, float(index)
        if isinstance(label.label, str):
            raise InvalidEventError(
                "invalid-label",
                f"event {event.get_id()}: label {label.label!r} of record {label.event_id} is a string, "
                "but the pipeline's label is numeric: send a JSON number",
            )
        return label.event_id, float(label.label)

    # Join -----------------------------------------------------------------------------------------

    def _is_duplicate(self, event_id: str, pending: OrderedDict) -> bool:
        """Return whether the record is pending already or among the last `max_pending` learned, as after a redelivery."""
        if event_id in self._learned_ids or event_id in pending:
            self.counters["duplicates"] += 1
            logger.debug("ignored a repeated event for record %s", event_id)
            return True
        return False

    def _hold(self, pending: OrderedDict, event_id: str, value: object) -> None:
        self._sequence += 1
        pending[event_id] = (self._sequence, value)
        limit = self.spec.training.max_pending
        while len(self._pending_features) + len(self._pending_labels) > limit:
            self._drop_oldest(limit)

    def _drop_oldest(self, limit: int) -> None:
        features, labels = self._pending_features, self._pending_labels
        oldest_feature = next(iter(features.values()))[0] if features else None
        oldest_label = next(iter(labels.values()))[0] if labels else None
        if oldest_label is None or (oldest_feature is not None and oldest_feature < oldest_label):
            event_id, _ = features.popitem(last=False)
            dropped_kind, partner, counter = "feature vector", "label", "dropped_features"
        else:
            event_id, _ = labels.popitem(last=False)
            dropped_kind, partner, counter = "label", "feature vector", "dropped_labels"
        self.counters[counter] += 1
        dropped = self.counters[counter]
        if dropped == 1 or dropped % _WARN_EVERY == 0:
            logger.warning(
                "dropped the %s of record %s, which waited longest for its %s: %d %ss dropped so far, "
                "pending limit training.max_pending=%d reached. Check that every record gets a label, "
                "or raise the limit",
                dropped_kind, event_id, partner, dropped, dropped_kind, limit,
            )

    def _join(self, event_id: str, vector: np.ndarray, target: float) -> list[Output]:
        self._learned_ids[event_id] = None
        if len(self._learned_ids) > self.spec.training.max_pending:
            self._learned_ids.popitem(last=False)
        self._block_x.append(vector)
        self._block_y.append(target)
        if len(self._block_x) < self.batch_size:
            return []
        return self._learn_block()

    # Test then train ------------------------------------------------------------------------------

    def _score_block(self) -> None:
        """Predict the block's samples that have no prediction yet, with the model that has not learned them."""
        if self._block_scored == len(self._block_x):
            return
        x = np.stack(self._block_x[self._block_scored :])
        targets = np.asarray(self._block_y[self._block_scored :])
        self.metrics.update(self.learner.predict_many(x), targets)
        self.served.update(x, targets)
        self._block_scored = len(self._block_x)

    def _learn_block(self) -> list[Output]:
        self._score_block()
        x = np.stack(self._block_x)
        y = np.asarray(self._block_y)
        if self.learner.task == "classification":
            y = y.astype(np.int64)
        self.learner.learn_many(x, y)
        self._block_x, self._block_y, self._block_scored = [], [], 0
        self.counters["learned"] += len(x)
        self._since_publish += len(x)
        every = self.spec.training.every_events
        if every is None or self._since_publish < every:
            return []
        output = self._publish(self._clock())
        return [output] if output else []

    # Publishing -----------------------------------------------------------------------------------

    def initial_model(self) -> Output:
        """Publish the untrained learner as version 0, so inference can serve before the first version.

        Raises RuntimeError once a version was published: the models topic is compacted
        by model name, so a late version 0 would replace a trained model.
        """
        if self.version:
            raise RuntimeError(
                f"model {self.spec.model_name!r} already published version {self.version}: call initial_model() "
                "only at start, because version 0 would replace that version on the compacted models topic"
            )
        output = self._publish(self._clock(), version=0)
        if output is None:
            raise RuntimeError(f"export of the untrained {self.spec.model.kind} model failed: see the error logged above")
        return output

    def _publish(self, now: datetime, version: int | None = None) -> Output | None:
        """Export the learner as the next version, or log the failure and return None."""
        version = (self.version or 0) + 1 if version is None else version
        try:
            model_bytes = export_onnx(self.learner, metadata=self._onnx_metadata(version), name=self.spec.model_name)
        except ValueError as error:
            # Wait for the next cadence before trying again, instead of failing on every sample.
            self._since_publish = 0
            self._last_publish = now
            self.counters["export_failures"] += 1
            logger.error("did not publish version %d of model %s: %s", version, self.spec.model_name, error)
            return None

        digest = hashlib.sha256(model_bytes).hexdigest()
        inline = len(model_bytes) <= self.spec.training.max_inline_model_bytes
        artifact = ModelArtifact(
            model_name=self.spec.model_name,
            version=version,
            created_at=now,
            feature_set=self.feature_set,
            feature_names=self.extractor.feature_names,
            task=self.learner.task,
            classes=self.classes,
            input_name=INPUT_NAME,
            opset=OPSET,
            metrics=self.metrics.snapshot(),
            sha256=digest,
            size_bytes=len(model_bytes),
            onnx_base64=base64.b64encode(model_bytes).decode("ascii") if inline else None,
            uri=None if inline else self._write_model(model_bytes, version, digest).as_uri(),
        )
        self.version = version
        self._since_publish = 0
        self._last_publish = now
        self.served.published(self.learner, version)
        set_model("training", self.spec.model_name, version, now.timestamp())

        logger.info(
            "published model %s version %d: %d bytes %s, %d samples learned, metrics %s",
            artifact.model_name, version, artifact.size_bytes, "inline" if inline else f"at {artifact.uri}",
            self.learner.samples, artifact.metrics.model_dump(exclude_none=True),
        )
        event = new_event(type=MODEL_TYPE, source=self.source, subject=self.spec.model_name, data=artifact, time=now)
        return Output(self.models_topic, event)

    def _onnx_metadata(self, version: int) -> dict[str, str]:
        """Return the ONNX `metadata_props` that let a reader of the bytes alone check what they serve."""
        metadata = {
            "model_name": self.spec.model_name,
            "version": str(version),
            "feature_set": self.feature_set,
            "feature_names": json.dumps(self.extractor.feature_names),
            "task": self.learner.task,
        }
        if self.classes is not None:
            metadata["classes"] = json.dumps(self.classes)
        return metadata

    def _write_model(self, model_bytes: bytes, version: int, digest: str) -> Path:
        """Write the ONNX file atomically under the model directory and return its absolute path."""
        if self._model_dir is None:
            self._model_dir = Path(tempfile.mkdtemp(prefix="streamml-models-"))
            logger.info("writing models too large to inline under %s (set model_dir to choose the directory)", self._model_dir)
        self._model_dir.mkdir(parents=True, exist_ok=True)
        path = (self._model_dir / f"{self.spec.model_name}-v{version}-{digest[:12]}.onnx").resolve()
        partial = path.with_suffix(".onnx.partial")
        partial.write_bytes(model_bytes)
        os.replace(partial, path)
        return path
