"""`meshops schema`: generated from the model, equal to the committed copy, and usable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import make_mesh, meshops, web_api_mesh

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "schemas" / "mesh.v1.schema.json"


def schema_output() -> dict[str, Any]:
    result = meshops("schema")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_schema_output_equals_the_committed_copy() -> None:
    result = meshops("schema")
    assert result.returncode == 0
    assert result.stdout == COMMITTED.read_text(), (
        "schemas/mesh.v1.schema.json is stale: run `meshops schema > schemas/mesh.v1.schema.json`"
    )


def test_schema_is_draft_2020_12_with_an_id_and_no_unknown_fields() -> None:
    schema = schema_output()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("mesh.v1.schema.json")
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"version", "mesh"}
    assert schema["properties"]["version"]["const"] == 1
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name


def test_schema_is_the_same_from_the_library() -> None:
    from meshops.model.schema import schema_text

    assert schema_text() == COMMITTED.read_text()


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    "source",
    ["examples/mesh.yaml", "factories:web_api_mesh", "factories:make_mesh"],
)
def test_valid_meshes_pass_the_json_schema(validator: Any, source: str) -> None:
    if source == "factories:web_api_mesh":
        data = web_api_mesh()
    elif source == "factories:make_mesh":
        data = make_mesh(nodes=3, identities=2)
    else:
        data = yaml.safe_load((REPO / source).read_text())
    errors = [e.message for e in validator.iter_errors(data)]
    assert errors == []


def test_the_json_schema_refuses_unknown_fields_and_bad_enums(validator: Any) -> None:
    data = make_mesh()
    data["wireguard"]["keepaliv"] = "25s"
    data["mtls"] = {"mode": "strictt"}
    messages = " ".join(e.message for e in validator.iter_errors(data))
    assert "keepaliv" in messages
    assert "strictt" in messages


def test_the_field_reference_in_docs_is_rendered_from_the_schema() -> None:
    result = meshops("schema", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "docs" / "mesh-yaml.md").read_text(), (
        "docs/mesh-yaml.md is stale: run `meshops schema --format markdown > docs/mesh-yaml.md`"
    )


def test_the_field_reference_names_every_field_of_the_schema() -> None:
    text = meshops("schema", "--format", "markdown").stdout
    schema = schema_output()
    for name, definition in schema["$defs"].items():
        for field in definition.get("properties", {}):
            assert f".{field}`" in text or f"`{field}`" in text, f"{name}.{field}"
