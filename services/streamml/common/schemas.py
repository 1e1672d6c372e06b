"""JSON Schemas of every payload, generated from the pydantic models into `schemas/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamml.common.payloads import PAYLOADS, schema_uri
from streamml.common.records import build_record_model, record_schema_uri
from streamml.common.spec import PipelineSpec, load_spec

_PACKAGE = Path(__file__).resolve().parent.parent
_REPOSITORY = _PACKAGE.parent.parent


def _example_specs() -> list[PipelineSpec]:
    paths = [_PACKAGE / "demo" / "phishing.yaml", *sorted((_REPOSITORY / "examples").glob("*.yaml"))]
    return [load_spec(path) for path in paths if path.exists()]


def render_schemas() -> dict[str, dict[str, Any]]:
    """Return every schema document keyed by its path relative to the schemas folder."""
    documents: dict[str, dict[str, Any]] = {}
    for event_type, model in PAYLOADS.items():
        schema = model.model_json_schema()
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_uri(event_type), **schema}
        documents[schema_uri(event_type).rsplit("/", 1)[1]] = schema
    for spec in _example_specs():
        schema = build_record_model(spec).model_json_schema()
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": record_schema_uri(spec), **schema}
        documents[f"pipelines/{spec.name}.record.json"] = schema
    return documents


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    written = []
    for name, document in render_schemas().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_text(document), encoding="utf-8")
        written.append(path)
    return written


def check_schemas(folder: Path) -> list[str]:
    """Return one line per schema file that is missing or differs from the code."""
    drift = []
    for name, document in render_schemas().items():
        path = folder / name
        if not path.exists():
            drift.append(f"{path} is missing: run `streamml schemas --out {folder}`")
        elif path.read_text(encoding="utf-8") != _text(document):
            drift.append(f"{path} differs from the pydantic models: run `streamml schemas --out {folder}`")
    return drift
