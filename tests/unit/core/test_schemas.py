from pathlib import Path

from streamml.common.schemas import check_schemas, render_schemas

REPOSITORY = Path(__file__).resolve().parents[3]


def test_schema_files_match_models():
    drift = check_schemas(REPOSITORY / "schemas")
    assert drift == [], "\n".join(drift)


def test_every_schema_has_an_id():
    for name, document in render_schemas().items():
        assert document["$id"].endswith(name.rsplit("/", 1)[-1])
