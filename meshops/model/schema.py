"""The JSON Schema of mesh.yaml, generated from the pydantic model (one source of truth)."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_ID = "https://meshops.dev/schemas/mesh.v1.schema.json"


def schema() -> dict[str, Any]:
    from meshops.model.mesh import Mesh

    body = Mesh.model_json_schema(by_alias=True, mode="validation")
    body["properties"]["version"] = {
        "const": 1,
        "title": "Version",
        "description": body["properties"]["version"]["description"],
    }
    _key_patterns_as_property_names(body)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "meshops mesh.yaml, version 1",
        **body,
    }


def _key_patterns_as_property_names(node: Any) -> None:
    """pydantic writes a map with checked keys as `patternProperties`, which lets any
    other key through; say it as the loader means it: keys must match, values follow."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1:
            ((pattern, values),) = patterns.items()
            del node["patternProperties"]
            node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
            node["additionalProperties"] = values
        for child in node.values():
            _key_patterns_as_property_names(child)
    elif isinstance(node, list):
        for child in node:
            _key_patterns_as_property_names(child)


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
