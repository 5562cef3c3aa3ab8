"""The mesh.yaml field reference rendered from a JSON Schema (docs/mesh-yaml.md)."""

from __future__ import annotations

from meshops.model.reference import PATTERN_SHOWN, reference_markdown
from meshops.model.schema import schema


def _schema() -> dict[str, object]:
    long_pattern = "^(?:" + "a|" * PATTERN_SHOWN + "b)$"
    return {
        "type": "object",
        "required": ["version"],
        "properties": {
            "version": {"const": 1},
            "nodes": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Node"}},
        },
        "$defs": {
            "Node": {
                "type": "object",
                "description": "one host",
                "required": ["endpoint"],
                "properties": {
                    "endpoint": {
                        "type": "string",
                        "pattern": long_pattern,
                        "$comment": "host:port",
                        "examples": ["192.0.2.1:51820"],
                        "description": "where peers reach it",
                    },
                    "tls": {"enum": ["1.2", "1.3", 1.2, 1.3], "default": "1.3"},
                    "mtu": {"type": "integer", "minimum": 1280, "default": 1420},
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                },
            }
        },
    }


def test_each_section_is_a_table_of_its_fields_with_defaults_and_rules() -> None:
    text = reference_markdown(_schema())
    assert "## `nodes.<name>`\n\none host\n" in text
    assert (
        "| `nodes.<name>.endpoint` | string | required | host:port (e.g. `192.0.2.1:51820`) |"
        in text
    )
    assert "| `nodes.<name>.mtu` | integer | `1420` | ≥ 1280 |" in text
    assert "| `nodes.<name>.tls` | `1.2` \\| `1.3` | `1.3` |" in text  # one of each, escaped
    assert "| `nodes.<name>.note` | string | unset |" in text
    assert "| `nodes` | map of name → section |" in text


def test_no_long_pattern_is_printed_in_place_of_words() -> None:
    text = reference_markdown(schema())
    for line in text.splitlines():
        if line.startswith("| `"):
            rule = line.split(" | ")[3]
            assert "(?:" not in rule, line
            assert "see the JSON Schema" not in rule, line  # every long pattern has words
