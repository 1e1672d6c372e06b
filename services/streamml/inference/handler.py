"""The inference service's handler: feature vectors in, one prediction per vector out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
from cloudevents.core.v1.event import CloudEvent

from streamml.common.cloudevent_rules import RuleError, check_string, format_timestamp
from streamml.common.errors import InvalidEventError, ModelRejectedError, RetriableError
from streamml.common.events import Output, derived_id, json_or_none, new_event, parse_data
from streamml.common.handler import BatchResult, EventHandler
from streamml.common.logs import event_fields
from streamml.common.metrics import EXECUTION_PROVIDER, MODELS_REJECTED, PROVIDER_FALLBACKS, set_model
from streamml.common.payloads import FEATURES_TYPE, MODEL_TYPE, PREDICTION_TYPE, FeatureVector, ModelArtifact
from streamml.common.spec import PipelineSpec
from streamml.features.pipeline import FeatureExtractor
from streamml.inference.dedupe import RecentIds
from streamml.inference.runtime import ServingModel, load_model, select_providers

logger = logging.getLogger(__name__)


class InferenceHandler(EventHandler):
    """Serves the latest model event and predicts micro-batches of feature vectors.

    A new model is loaded and checked beside the serving one, then swapped in by
    one reference assignment, so a batch always runs on exactly one model version.
    """

    source = "io.streamml.inference"
    # Every number of a vector is a FiniteFloat, so NaN, Infinity and numbers that overflow
    # fail the validation from JSON bytes (see `parse_data`).
    parses_json_data = True

    def __init__(
        self, spec: PipelineSpec, provider: str = "auto", intra_op_threads: int = 1, dedupe_window: int = 20_000
    ) -> None:
        self.spec = spec
        self.predictions_topic = spec.topic("predictions")
        extractor = FeatureExtractor(spec)
        self.feature_set = extractor.feature_set
        self.width = extractor.width
        self.providers = select_providers(provider)
        self.intra_op_threads = intra_op_threads
        self.model: ServingModel | None = None
        self.rejected_models = 0
        # Ids of predictions already emitted; a vector whose prediction id is here is a redelivery.
        self.emitted = RecentIds(dedupe_window)
        self.duplicates = 0
        self._load_lock = threading.Lock()

    def ready(self) -> bool:
        return self.model is not None

    def load(self, event: CloudEvent) -> bool:
        """Load a model event; return whether it now serves.

        Older or equal versions are skipped. A model that fails its checks is
        logged and counted, and the previous model keeps serving.
        """
        if event.get_type() != MODEL_TYPE:
            raise InvalidEventError("unknown-type", f"event {event.get_id()}: expected {MODEL_TYPE}, got {event.get_type()!r}")
        artifact = parse_data(event, ModelArtifact)
        if artifact.model_name != self.spec.model_name:
            logger.debug("skipping model %s: this pipeline serves %s", artifact.model_name, self.spec.model_name)
            return False
        with self._load_lock:
            current = self.model
            if current is not None and artifact.version <= current.version:
                logger.info("skipping model %s v%d: v%d is serving", artifact.model_name, artifact.version, current.version)
                return False
            try:
                candidate = load_model(
                    artifact,
                    feature_set=self.feature_set,
                    width=self.width,
                    providers=self.providers,
                    intra_op_threads=self.intra_op_threads,
                )
            except ModelRejectedError as error:
                self.rejected_models += 1
                MODELS_REJECTED.labels(artifact.model_name).inc()
                serving = f"v{current.version} keeps serving" if current else "no model is serving yet"
                logger.error(
                    "rejected model event %s: %s; %s", event.get_id(), error, serving, extra=event_fields(event_id=event.get_id())
                )
                return False
            self.model = candidate
            self._record_serving(candidate)
        logger.info(
            "serving model %s v%d on %s (samples=%d, prequential_accuracy=%s)",
            artifact.model_name,
            artifact.version,
            candidate.provider,
            artifact.metrics.samples,
            artifact.metrics.prequential_accuracy,
        )
        return True

    def _record_serving(self, model: ServingModel) -> None:
        artifact = model.artifact
        set_model("inference", artifact.model_name, artifact.version, artifact.created_at.timestamp())
        EXECUTION_PROVIDER.clear()
        EXECUTION_PROVIDER.labels(model.provider).set(1)
        if self.providers[0] != model.provider:
            PROVIDER_FALLBACKS.inc()
            logger.warning(
                "model %s v%d runs on %s, not on the requested %s: check the CUDA libraries and the GPU of this host",
                artifact.model_name, artifact.version, model.provider, self.providers[0],
            )

    def handle(self, event: CloudEvent) -> list[Output]:
        return self.handle_one_of_batch(event)

    def handle_batch(self, events: Sequence[CloudEvent]) -> BatchResult:
        model = self.model
        if model is None:
            raise RetriableError("no model is loaded yet; retry once the training service has published one", retry_after_s=2.0)
        results: BatchResult = [None] * len(events)  # type: ignore[list-item]
        vectors: list[FeatureVector] = []
        positions: list[int] = []
        prediction_ids: list[str] = []
        for position, event in enumerate(events):
            try:
                vector = self._vector(event)
            except InvalidEventError as error:
                results[position] = error
                continue
            prediction_id = derived_id(vector.event_id, "prediction")
            if prediction_id in self.emitted:
                self.duplicates += 1
                if self.duplicates == 1 or self.duplicates % 1000 == 0:
                    logger.info(
                        "skipped event %s: input %s was already predicted (%d redelivered vectors skipped so far)",
                        event.get_id(), vector.event_id, self.duplicates,
                    )
                results[position] = []
                continue
            self.emitted.add(prediction_id)
            vectors.append(vector)
            positions.append(position)
            prediction_ids.append(prediction_id)
        if vectors:
            # A value beyond float32 becomes an infinity here, and `_predictions` rejects its row.
            with np.errstate(over="ignore"):
                batch = np.asarray([vector.values for vector in vectors], dtype=np.float32)
            predictions = self._predictions(model, vectors, prediction_ids, model.run(batch))
            for position, prediction_id, output in zip(positions, prediction_ids, predictions):
                if isinstance(output, InvalidEventError):
                    self.emitted.discard(prediction_id)
                    results[position] = output
                else:
                    results[position] = [output]
        return results

    def delivery_failed(self, outputs: Sequence[Output]) -> None:
        for output in outputs:
            if output.topic == self.predictions_topic:
                self.emitted.discard(output.event.get_id())

    def _vector(self, event: CloudEvent) -> FeatureVector:
        if event.get_type() != FEATURES_TYPE:
            raise InvalidEventError("unknown-type", f"event {event.get_id()}: expected {FEATURES_TYPE}, got {event.get_type()!r}")
        vector = parse_data(event, FeatureVector)
        if vector.feature_set != self.feature_set:
            raise InvalidEventError(
                "feature-mismatch",
                f"event {event.get_id()}: feature set {vector.feature_set} differs from this pipeline's {self.feature_set}; "
                "run features and inference with the same pipeline spec",
            )
        if len(vector.values) != self.width:
            raise InvalidEventError(
                "feature-mismatch", f"event {event.get_id()}: {len(vector.values)} feature values, expected {self.width}"
            )
        # The entity becomes the prediction's subject, a CloudEvents String, and the input id is
        # hashed into the prediction's id. Checked here, a bad one fails this vector, not the batch.
        for field, value in (("entity", vector.entity), ("event_id", vector.event_id)):
            try:
                check_string(value)
            except RuleError as error:
                raise InvalidEventError("invalid-data", f"event {event.get_id()}: invalid data: {field} {error}") from None
        return vector

    def _predictions(
        self, model: ServingModel, vectors: list[FeatureVector], prediction_ids: list[str], outputs: np.ndarray
    ) -> list[Output | InvalidEventError]:
        """Build one prediction event per vector from the model's output rows.

        The whole output matrix is converted at once: per-row numpy calls cost more
        than the model itself. A row with NaN or an infinity, which JSON cannot carry,
        becomes an error for that vector's dead letter.
        """
        artifact = model.artifact
        finite = np.isfinite(outputs.reshape(len(vectors), -1)).all(axis=1).tolist()
        if artifact.task == "classification":
            classes = artifact.classes or []
            rows = outputs.tolist()
            best = np.argmax(outputs, axis=1).tolist()
            answers = [(classes[index], row[index], row) for row, index in zip(rows, best)]
        else:
            answers = [(value, value, None) for value in np.ravel(outputs).tolist()]
        predictions: list[Output | InvalidEventError] = []
        for vector, prediction_id, (label, score, scores), usable in zip(vectors, prediction_ids, answers, finite):
            if not usable:
                predictions.append(InvalidEventError(
                    "non-finite-prediction",
                    f"event {vector.event_id}: model {artifact.model_name} v{artifact.version} gave {score} for these features; "
                    "a value beyond the float32 range (about 3.4e38) gives that, so send smaller values, or publish a model that stays finite",
                ))
                continue
            # The fields of `Prediction`, as a dict: building and dumping the model cost a tenth of
            # the handler's time per event, and every value here already has its field's type.
            data = {
                "event_id": vector.event_id,
                "entity": vector.entity,
                "event_time": format_timestamp(vector.event_time),
                "model_name": artifact.model_name,
                "model_version": artifact.version,
                "label": label,
                "score": score,
                "scores": scores,
            }
            event = new_event(
                id=prediction_id,
                type=PREDICTION_TYPE,
                source=self.source,
                subject=vector.entity,
                time=vector.event_time,
                data=data,
                encoded=json_or_none(data),
            )
            predictions.append(Output(self.predictions_topic, event))
        return predictions
