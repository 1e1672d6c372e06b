"""Read the CloudEvents reference vectors from the shared reference folder, outside the repository.

The folder is `STREAMML_REFERENCE_DIR` when set, else `../shared/reference` next to the
repository. Nothing from it is copied into the repository. When it is missing, every
vector-driven test gets one `reference-missing` case that fails with the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Missing:
    """Stands in for the cases of a vector file that could not be read."""

    message: str


def cloudevents_dir() -> Path:
    """Return the `cloudevents` folder of the shared reference data, or raise FileNotFoundError."""
    configured = os.environ.get("STREAMML_REFERENCE_DIR")
    reference = Path(configured) if configured else REPOSITORY / ".." / "shared" / "reference"
    folder = reference.resolve() / "cloudevents"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"CloudEvents reference vectors not found at {folder}; set STREAMML_REFERENCE_DIR "
            "to the shared/reference folder that holds cloudevents/vectors"
        )
    return folder


def params(build: Callable[[Path], list[Any]]) -> list[Any]:
    """Return `build(cloudevents_dir())` as pytest params, or one failing case when the folder is missing."""
    try:
        folder = cloudevents_dir()
    except FileNotFoundError as error:
        return [pytest.param(Missing(str(error)), id="reference-missing")]
    return build(folder)


def given(case: Any) -> Any:
    """Return the case, or fail the test with the reason the reference data is missing."""
    if isinstance(case, Missing):
        pytest.fail(case.message, pytrace=False)
    return case


def read_json(path: Path) -> Any:
    """Parse a JSON vector file."""
    return json.loads(path.read_text(encoding="utf-8"))


# Gherkin feature files ---------------------------------------------------------------------------


@dataclass
class Scenario:
    """One concrete scenario of a `.feature` file, with outline placeholders filled in."""

    name: str
    http_request: str | None = None
    kafka_payload: str | None = None
    kafka_headers: list[tuple[str, str]] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    data_json: str | None = None


def _table_rows(lines: list[str], start: int) -> tuple[list[list[str]], int]:
    rows = []
    index = start
    while index < len(lines) and lines[index].strip().startswith("|"):
        rows.append([cell.strip() for cell in lines[index].strip().strip("|").split("|")])
        index += 1
    return rows, index


def _doc_string(lines: list[str], start: int) -> tuple[str, int]:
    opening = lines[start]
    indent = len(opening) - len(opening.lstrip())
    body = []
    index = start + 1
    while lines[index].strip() != '"""':
        body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index].lstrip())
        index += 1
    return "\n".join(body), index + 1


def parse_feature(text: str) -> list[Scenario]:
    """Parse the scenario steps these conformance features use into concrete scenarios.

    Handles `Scenario` and `Scenario Outline` with `Examples`, doc strings and tables
    for the steps: an HTTP request, a Kafka message with payload, Kafka headers,
    the attributes, and the data as JSON.
    """
    lines = text.lstrip("\ufeff").splitlines()
    templates: list[tuple[Scenario, list[dict[str, str]]]] = []
    current: Scenario | None = None
    index = 0
    while index < len(lines):
        step = lines[index].strip()
        if step.startswith(("Scenario Outline:", "Scenario:")):
            current = Scenario(name=step.split(":", 1)[1].strip())
            templates.append((current, []))
            index += 1
        elif current is None:
            index += 1
        elif step.startswith("Given an HTTP request"):
            current.http_request, index = _doc_string(lines, index + 1)
        elif step.startswith("Given a Kafka message with payload"):
            current.kafka_payload, index = _doc_string(lines, index + 1)
        elif step.startswith("And Kafka headers"):
            rows, index = _table_rows(lines, index + 1)
            current.kafka_headers = [(key, value) for key, value in rows[1:]]
        elif step.startswith("Then the attributes are"):
            rows, index = _table_rows(lines, index + 1)
            current.attributes = dict(rows[1:])
        elif step.startswith("And the data is equal to the following JSON"):
            current.data_json, index = _doc_string(lines, index + 1)
        elif step.startswith("Examples:"):
            rows, index = _table_rows(lines, index + 1)
            templates[-1][1].extend(dict(zip(rows[0], row)) for row in rows[1:])
        else:
            index += 1
    scenarios = []
    for template, examples in templates:
        for example in examples or [{}]:
            scenarios.append(_fill(template, example))
    return scenarios


def _fill(template: Scenario, example: dict[str, str]) -> Scenario:
    def fill(value: str | None) -> str | None:
        if value is None:
            return None
        return re.sub(r"<(\w+)>", lambda match: example.get(match.group(1), match.group(0)), value)

    return Scenario(
        name=fill(template.name) or template.name,
        http_request=fill(template.http_request),
        kafka_payload=fill(template.kafka_payload),
        kafka_headers=[(key, fill(value) or "") for key, value in template.kafka_headers],
        attributes={key: fill(value) or "" for key, value in template.attributes.items()},
        data_json=fill(template.data_json),
    )


def split_http_request(raw: str) -> tuple[dict[str, str], bytes]:
    """Split a raw HTTP/1.1 request into its headers (lower-case names) and body.

    `Host` and `Content-Length` are dropped: the codec gets the body as it arrives.
    """
    head, _, body = raw.partition("\n\n")
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        if name.lower() not in ("host", "content-length"):
            headers[name.strip().lower()] = value.strip()
    return headers, body.encode("utf-8")
