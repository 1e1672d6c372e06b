"""The features service's handler: raw records in, feature vectors and labels out."""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping

from cloudevents.core.v1.event import CloudEvent

from streamml.common.errors import InvalidEventError
from streamml.common.events import Output, derived_id, new_event
from streamml.common.handler import EventHandler
from streamml.common.payloads import FEATURES_TYPE, LABEL_TYPE, FeatureVector, LabelData
from streamml.common.records import RecordValidator
from streamml.common.spec import PipelineSpec
from streamml.features.pipeline import EntityState, FeatureExtractor

logger = logging.getLogger(__name__)


class FeaturesHandler(EventHandler):
    """Computes one feature vector per record and forwards every known label.

    `store` maps an entity to its state. Any mutable mapping works: a dict in the
    embedded pipeline, a faust table with a Kafka changelog in the features service.
    """

    source = "io.streamml.features"

    def __init__(self, spec: PipelineSpec, store: MutableMapping[str, EntityState]) -> None:
        self.spec = spec
        self.store = store
        self.validator = RecordValidator(spec)
        self.extractor = FeatureExtractor(spec)
        self.features_topic = spec.topic("features")
        self.labels_topic = spec.topic("labels")

    def handle(self, event: CloudEvent) -> list[Output]:
        if event.get_type() == LABEL_TYPE:
            return self._handle_label(event)
        record = self.validator.validate_record(event)
        try:
            vector, state = self.extractor.transform(record, self.store.get(record.entity))
        except OverflowError as error:
            raise InvalidEventError(
                "invalid-data", f"event {record.event_id}: a window aggregate overflowed ({error}); check the input values' scale"
            ) from error
        if not all(map(math.isfinite, vector)):
            raise InvalidEventError(
                "invalid-data", f"event {record.event_id}: a window aggregate is not finite; check the input values' scale"
            )
        outputs = [
            Output(
                self.features_topic,
                new_event(
                    id=derived_id(record.event_id, "features"),
                    type=FEATURES_TYPE,
                    source=self.source,
                    subject=record.entity,
                    time=record.time,
                    data=FeatureVector(
                        event_id=record.event_id,
                        entity=record.entity,
                        event_time=record.time,
                        feature_set=self.extractor.feature_set,
                        values=vector,
                    ),
                ),
            )
        ]
        if record.label is not None:
            state = self.extractor.add_label(state, record.label)
            outputs.append(self._label_output(LabelData(event_id=record.event_id, label=record.label), record.entity, event))
        self.store[record.entity] = state
        return outputs

    def _handle_label(self, event: CloudEvent) -> list[Output]:
        label, entity = self.validator.validate_label(event)
        self.store[entity] = self.extractor.add_label(self.store.get(entity), label.label)
        return [self._label_output(label, entity, event)]

    def _label_output(self, label: LabelData, entity: str, cause: CloudEvent) -> Output:
        return Output(
            self.labels_topic,
            new_event(
                id=derived_id(cause.get_id(), "label"),
                type=LABEL_TYPE,
                source=self.source,
                subject=entity,
                time=cause.get_time(),
                data=label,
            ),
        )
