"""Shared fixtures: the reference data folder, example specs, and the real Kafka broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.kafka_fixtures import *  # noqa: F403  (fixtures: kafka_broker, bootstrap_servers, topic_factory, …)

REPOSITORY = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """Return the shared reference data folder (STREAMML_REFERENCE_DIR, else ../shared/reference)."""
    configured = os.environ.get("STREAMML_REFERENCE_DIR")
    folder = Path(configured) if configured else REPOSITORY.parent / "shared" / "reference"
    if not folder.is_dir():
        pytest.fail(f"reference data folder {folder} not found: set STREAMML_REFERENCE_DIR to the shared/reference folder")
    return folder


@pytest.fixture(scope="session")
def elec2_csv() -> Path:
    path = reference_dir() / "data" / "elec2.csv"
    if not path.is_file():
        pytest.fail(f"Elec2 data {path} not found: set STREAMML_REFERENCE_DIR to the shared/reference folder")
    return path


@pytest.fixture(scope="session")
def elec2_spec_path() -> Path:
    return REPOSITORY / "examples" / "elec2.yaml"


@pytest.fixture(scope="session")
def elec2_spec(elec2_spec_path):
    from streamml.common.spec import load_spec

    return load_spec(elec2_spec_path)
