"""The pipeline spec: one YAML file that drives features, training and serving.

A spec declares the input record, the entity key, the event time, the label, the
per-entity feature windows, the model, the training cadence and the topic names.
Every service loads the same file, so the feature vector a model learns from is
computed by the same code that computes it at serving time.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streamml.common.errors import SpecError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def parse_duration(value: Any) -> timedelta:
    """Parse `30s`, `15m`, `24h`, `1d`, `500ms`, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise ValueError(
        f"invalid duration {value!r}: write a number with a unit, for example 500ms, 30s, 15m, 24h or 1d"
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputField(_Strict):
    """One field of the input record."""

    name: str = Field(pattern=_NAME)
    type: Literal["float", "int", "bool", "category", "string", "timestamp"]
    categories: tuple[str, ...] | None = None
    required: bool = True
    feature: bool = Field(
        default=True,
        description="Use the raw value as a model input (numbers as they are, categories one-hot).",
    )

    @model_validator(mode="after")
    def _categories_match_type(self) -> InputField:
        if self.type == "category" and not self.categories:
            raise ValueError(f"field {self.name!r} has type category: list its values under 'categories'")
        if self.type != "category" and self.categories:
            raise ValueError(f"field {self.name!r} lists categories but has type {self.type!r}: set type: category")
        return self

    @property
    def is_feature(self) -> bool:
        return self.feature and self.type in ("float", "int", "bool", "category")


class InputSpec(_Strict):
    """The input record, its entity key and its event time."""

    event_type: str = Field(
        default="io.streamml.record.v1",
        description="CloudEvent `type` of input records.",
    )
    fields: tuple[InputField, ...] = Field(min_length=1)
    entity_key: str | None = Field(
        default=None,
        description="Field that names the entity; events of one entity share state and a partition.",
    )
    default_entity: str = Field(
        default="default",
        min_length=1,
        description="Entity of records that have no entity field (a stream with one entity).",
    )
    event_time: str | None = Field(
        default=None,
        description="Timestamp field that holds the event time; when unset the CloudEvent `time` is used.",
    )

    @model_validator(mode="after")
    def _references_exist(self) -> InputSpec:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"input fields are declared twice: {duplicates}")
        for key in ("entity_key", "event_time"):
            value = getattr(self, key)
            if value is not None and value not in names:
                raise ValueError(f"{key} {value!r} is not an input field; declared fields: {names}")
        if self.event_time is not None and self.field(self.event_time).type != "timestamp":
            raise ValueError(f"event_time field {self.event_time!r} must have type timestamp")
        return self

    def field(self, name: str) -> InputField:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)


class LabelSpec(_Strict):
    """The prediction target.

    A label travels in the input record itself (`field`), or in a later
    `io.streamml.label.v1` event whose data names the original event id.
    """

    field: str | None = Field(default=None, pattern=_NAME)
    kind: Literal["classes", "numeric"]
    classes: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _classes_match_kind(self) -> LabelSpec:
        if self.kind == "classes":
            if not self.classes or len(self.classes) < 2:
                raise ValueError("a label of kind classes needs at least two entries under 'classes'")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"label classes repeat a value: {list(self.classes)}")
        elif self.classes:
            raise ValueError("a numeric label takes no 'classes'; set kind: classes instead")
        return self


class WindowSpec(_Strict):
    """A per-entity window, counted in events (`size`) or in event time (`duration`)."""

    kind: Literal["tumbling", "sliding"]
    size: int | None = Field(default=None, gt=0, le=100_000)
    duration: Duration | None = None

    @model_validator(mode="after")
    def _one_extent(self) -> WindowSpec:
        if (self.size is None) == (self.duration is None):
            raise ValueError("set exactly one of 'size' (events) or 'duration' (event time, for example 24h)")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError(f"window duration must be positive, got {self.duration}")
        return self

    @property
    def label(self) -> str:
        if self.size is not None:
            return f"{self.kind}{self.size}"
        return f"{self.kind}{int(self.duration.total_seconds())}s"


class WindowFeature(_Strict):
    """An aggregate of one numeric input field over a per-entity window."""

    field: str
    agg: Literal["count", "sum", "mean", "min", "max", "last"]
    window: WindowSpec
    name: str | None = Field(default=None, pattern=_NAME)

    @property
    def output_name(self) -> str:
        return self.name or f"{self.field}_{self.agg}_{self.window.label}"


class ModelSpec(_Strict):
    """The online model trained by the training service and served through ONNX."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["linear", "logistic", "softmax", "mlp"]
    hidden: tuple[int, ...] = Field(default=(32,), description="Hidden layer widths of an mlp.")
    optimizer: Literal["sgd", "adam", "newton"] = "sgd"
    learning_rate: float = Field(default=0.05, gt=0, le=10)
    l2: float = Field(default=0.0, ge=0)
    memory: int = Field(
        default=5000,
        gt=1,
        description="newton only: how many recent samples the curvature estimate weighs, as 1 / (1 - forgetting factor).",
    )
    seed: int = 0

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(width <= 0 for width in value):
            raise ValueError(f"hidden layer widths must be positive integers, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _newton_needs_one_layer(self) -> ModelSpec:
        if self.optimizer == "newton" and self.kind not in ("linear", "logistic"):
            raise ValueError(
                f"optimizer newton trains linear and logistic models, not {self.kind}: use sgd or adam for {self.kind}"
            )
        if self.optimizer == "newton" and self.l2 <= 0:
            raise ValueError("optimizer newton needs l2 > 0, which damps its steps; 0.001 is a good start")
        return self


class TrainingSpec(_Strict):
    """When the training service exports and publishes a new model version."""

    every_events: int | None = Field(default=1000, gt=0)
    batch_size: int = Field(
        default=1,
        gt=0,
        le=100_000,
        description="Joined samples per learning step; each is still predicted before the step that learns it.",
    )
    every_seconds: float | None = Field(default=None, gt=0)
    max_pending: int = Field(
        default=100_000,
        gt=0,
        description="Feature vectors and labels held while waiting for their partner; the oldest are dropped beyond it.",
    )
    max_inline_model_bytes: int = Field(default=512 * 1024, gt=0)

    @model_validator(mode="after")
    def _has_cadence(self) -> TrainingSpec:
        if self.every_events is None and self.every_seconds is None:
            raise ValueError("set every_events, every_seconds or both, so that models get published")
        return self


class TopicsSpec(_Strict):
    """Kafka topic names. Unset names derive from the pipeline name."""

    input: str | None = None
    raw: str | None = None
    features: str | None = None
    labels: str | None = None
    models: str | None = None
    predictions: str | None = None
    dead_letter: str | None = None
    checkpoints: str | None = None


class ReplaySpec(_Strict):
    """How a CSV file becomes events when rows carry no event time."""

    start_time: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)
    interval: Duration = timedelta(minutes=1)

    @field_validator("start_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class PipelineSpec(_Strict):
    """A whole pipeline, as loaded from YAML."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    input: InputSpec
    label: LabelSpec
    features: tuple[WindowFeature, ...] = ()
    label_lags: tuple[int, ...] = ()
    model: ModelSpec
    training: TrainingSpec = TrainingSpec()
    topics: TopicsSpec = TopicsSpec()
    replay: ReplaySpec = ReplaySpec()

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineSpec:
        names = {f.name: f for f in self.input.fields}
        if self.label.field is not None:
            if self.label.field not in names:
                raise ValueError(f"label.field {self.label.field!r} is not an input field; declared: {list(names)}")
            if names[self.label.field].feature:
                raise ValueError(
                    f"input field {self.label.field!r} is the label: set 'feature: false' on it "
                    "so the model never sees its own target"
                )
        for feature in self.features:
            source = names.get(feature.field)
            if source is None:
                raise ValueError(f"feature {feature.output_name!r} reads field {feature.field!r}, which is not an input field")
            if source.type not in ("float", "int", "bool"):
                raise ValueError(
                    f"feature {feature.output_name!r} aggregates field {feature.field!r} of type {source.type}: "
                    "windows take float, int or bool fields"
                )
        outputs = [f.output_name for f in self.features]
        repeated = sorted({n for n in outputs if outputs.count(n) > 1})
        if repeated:
            raise ValueError(f"feature names repeat: {repeated}; give each a distinct 'name'")
        if any(lag <= 0 for lag in self.label_lags):
            raise ValueError(f"label_lags must be positive integers, got {list(self.label_lags)}")
        kind, label = self.model.kind, self.label
        if kind == "linear" and label.kind != "numeric":
            raise ValueError("model.kind linear needs a numeric label; use logistic, softmax or mlp for classes")
        if kind == "logistic" and (label.kind != "classes" or len(label.classes or ()) != 2):
            raise ValueError("model.kind logistic needs a label with exactly two classes; use softmax for more")
        if kind == "softmax" and label.kind != "classes":
            raise ValueError("model.kind softmax needs a label of kind classes; use linear or mlp for numbers")
        return self

    @property
    def model_name(self) -> str:
        return self.model.name or self.name

    def topic(self, role: str) -> str:
        """Return the topic name for a role: input, raw, features, labels, models, predictions, dead_letter, checkpoints."""
        explicit = getattr(self.topics, role)
        if explicit:
            return explicit
        return f"streamml.{self.name}.{role.replace('_', '-')}"

    def fingerprint(self) -> str:
        """Return a short hash of everything that shapes the feature vector."""
        shape = self.model_dump(mode="json", include={"input", "label", "features", "label_lags"})
        return hashlib.sha256(repr(sorted(_flatten(shape))).encode()).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _flatten(item, f"{prefix}.{key}")]
    if isinstance(value, (list, tuple)):
        return [pair for index, item in enumerate(value) for pair in _flatten(item, f"{prefix}[{index}]")]
    return [(prefix, repr(value))]


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key: check its spelling against the documented keys"
        elif item["type"] not in ("value_error", "missing") and "input" in item:
            message = f"{message} (got {item['input']!r})"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


def parse_spec(document: Any, origin: str = "<spec>") -> PipelineSpec:
    """Validate an already-parsed YAML document; errors name the bad key."""
    if not isinstance(document, dict):
        raise SpecError(f"{origin}: a pipeline spec is a YAML mapping, got {type(document).__name__}")
    try:
        return PipelineSpec.model_validate(document)
    except ValidationError as error:
        raise SpecError(f"{origin} is not a valid pipeline spec:\n{_format_errors(error)}") from error


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise SpecError(f"pipeline spec {path} not found: pass an existing file to --spec or STREAMML_<SERVICE>_SPEC") from error
    except OSError as error:
        raise SpecError(f"cannot read pipeline spec {path}: {error}") from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from error
    return parse_spec(document, origin=str(path))
