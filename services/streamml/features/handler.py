"""The features service's handler: raw records in, feature vectors and labels out."""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping

from cloudevents.core.v1.event import CloudEvent

from streamml.common.cloudevent_rules import clip, format_timestamp
from streamml.common.errors import InvalidEventError
from streamml.common.events import Output, derived_id, json_or_none, new_event
from streamml.common.handler import EventHandler
from streamml.common.payloads import FEATURES_TYPE, LABEL_EVENT_ID_MAX, LABEL_TYPE
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
    # Records and labels are validated from their JSON bytes (see `parse_data`).
    parses_json_data = True

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
        if record.label is not None and len(record.event_id) > LABEL_EVENT_ID_MAX:
            raise InvalidEventError(
                "invalid-data",
                f"event {clip(record.event_id)}: its id has {len(record.event_id)} characters, and label events name "
                f"their record by an id of at most {LABEL_EVENT_ID_MAX}; send records that carry a label with shorter ids",
            )
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
        # The fields of `FeatureVector`, as a dict: the values are floats, all finite.
        data = {
            "event_id": record.event_id,
            "entity": record.entity,
            "event_time": format_timestamp(record.time),
            "feature_set": self.extractor.feature_set,
            "values": vector,
        }
        outputs = [
            Output(
                self.features_topic,
                new_event(
                    id=derived_id(record.event_id, "features"),
                    type=FEATURES_TYPE,
                    source=self.source,
                    subject=record.entity,
                    time=record.time,
                    data=data,
                    encoded=json_or_none(data),
                ),
            )
        ]
        if record.label is not None:
            state = self.extractor.add_label(state, record.label)
            outputs.append(self._label_output(record.event_id, record.label, record.entity, event))
        self.store[record.entity] = state
        return outputs

    def _handle_label(self, event: CloudEvent) -> list[Output]:
        label, entity = self.validator.validate_label(event)
        self.store[entity] = self.extractor.add_label(self.store.get(entity), label.label)
        return [self._label_output(label.event_id, label.label, entity, event)]

    def _label_output(self, event_id: str, label: str | float, entity: str, cause: CloudEvent) -> Output:
        # The fields of `LabelData`, whose numbers are floats.
        data = {"event_id": event_id, "label": label if isinstance(label, str) else float(label)}
        return Output(
            self.labels_topic,
            new_event(
                id=derived_id(cause.get_id(), "label"),
                type=LABEL_TYPE,
                source=self.source,
                subject=entity,
                time=cause.get_time(),
                data=data,
                encoded=json_or_none(data),
            ),
        )
