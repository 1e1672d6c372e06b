"""Payloads (CloudEvent `data`) of every event type that streamml emits, as pydantic models.

The JSON Schemas in `schemas/` are generated from these models by
`streamml schemas`; a test fails when the files drift from the code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr

SCHEMA_BASE = "https://streamml.io/schemas"

RECORD_TYPE = "io.streamml.record.v1"
LABEL_TYPE = "io.streamml.label.v1"
FEATURES_TYPE = "io.streamml.features.v1"
MODEL_TYPE = "io.streamml.model.v1"
PREDICTION_TYPE = "io.streamml.prediction.v1"
DEAD_LETTER_TYPE = "io.streamml.deadletter.v1"

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Maximum length of the record id in a label event.
LABEL_EVENT_ID_MAX = 256


class LabelData(Payload):
    """The true label of an earlier record, named by that record's CloudEvent id."""

    event_id: StrictStr = Field(min_length=1, max_length=LABEL_EVENT_ID_MAX)
    label: StrictStr | FiniteFloat


class FeatureVector(Payload):
    """The model inputs computed for one record, in the order of the model's feature names."""

    event_id: str = Field(description="CloudEvent id of the input record.")
    entity: str
    event_time: AwareDatetime
    feature_set: str = Field(description="Fingerprint of the pipeline spec that shaped the vector.")
    values: list[FiniteFloat]


class Prediction(Payload):
    """One served prediction; `event_id` links it to the input record."""

    event_id: str
    entity: str
    event_time: AwareDatetime
    model_name: str
    model_version: int = Field(ge=0)
    label: str | float = Field(description="Predicted class, or the predicted value of a numeric label.")
    score: float = Field(description="Probability of the predicted class, or the predicted value.")
    scores: list[float] | None = Field(default=None, description="Probability of each class, in the spec's class order.")


class ModelMetrics(Payload):
    """Test-then-train metrics of the learner up to this version."""

    samples: int = Field(ge=0, description="Labelled samples learned from so far.")
    prequential_accuracy: float | None = None
    recent_accuracy: float | None = Field(default=None, description="Accuracy over the last 1,000 samples.")
    prequential_mae: float | None = None
    recent_mae: float | None = None


class ModelArtifact(Payload):
    """A published model version. The ONNX bytes travel inline or behind a URI."""

    model_name: str
    version: int = Field(ge=0)
    created_at: AwareDatetime
    feature_set: str
    feature_names: list[str]
    task: Literal["classification", "regression"]
    classes: list[str] | None = None
    input_name: str
    opset: int
    metrics: ModelMetrics
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)
    onnx_base64: str | None = None
    uri: str | None = Field(default=None, description="file:// location of the ONNX file when it is too big to inline.")


class DeadLetter(Payload):
    """A rejected input, kept whole with the reason and where it came from."""

    reason: str = Field(description="Short code, for example invalid-data or unknown-type.")
    message: str
    service: str
    failed_at: datetime
    origin_topic: str | None = None
    origin_partition: int | None = None
    origin_offset: int | None = None
    http_request_id: str | None = None
    event_id: str | None = Field(default=None, description="CloudEvent id of the input, when it could be read.")
    original_key_base64: str | None = None
    original_headers: dict[str, str] = Field(default_factory=dict, description="Header values, decoded as UTF-8 with replacement.")
    original_value_base64: str = Field(default="", description="The rejected bytes, cut to the first 256 KiB when longer.")
    original_size: int = Field(default=0, ge=0, description="Length of the rejected value in bytes, before any cut.")


PAYLOADS: dict[str, type[Payload]] = {
    LABEL_TYPE: LabelData,
    FEATURES_TYPE: FeatureVector,
    MODEL_TYPE: ModelArtifact,
    PREDICTION_TYPE: Prediction,
    DEAD_LETTER_TYPE: DeadLetter,
}


def schema_uri(event_type: str) -> str:
    """Return the `dataschema` URI of an event type, for example .../features.v1.json."""
    short = event_type.removeprefix("io.streamml.")
    return f"{SCHEMA_BASE}/{short}.json"
