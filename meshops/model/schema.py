"""The JSON Schema of mesh.yaml, generated from the pydantic model (one source of truth)."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_ID = "https://meshops.dev/schemas/mesh.v1.schema.json"


def schema() -> dict[str, Any]:
    from meshops.model.mesh import Mesh

    body = Mesh.model_json_schema(by_alias=True, mode="validation")
    body["properties"]["version"] = {"const": 1, "title": "Version"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "meshops mesh.yaml, version 1",
        **body,
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
