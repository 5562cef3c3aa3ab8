"""The JSON Schema carries the loader's field-level rules: what the loader accepts, the
schema accepts; where a rule can be said in a pattern, what one refuses the other
refuses too (issue 14). Editors and `check-jsonschema` users get the loader's rules."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from factories import age_recipient, ssh_recipient, to_yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_text_rules import rich_mesh

from meshops.errors import ValidationFailed
from meshops.model import types
from meshops.model.durations import DURATION_BODY, PERCENT_BODY
from meshops.model.loader import format_path, parse_yaml, pydantic_problems

REPO = Path(__file__).resolve().parents[3]
PathKey = tuple[str | int, ...]


@cache
def validator() -> Any:
    schema = json.loads((REPO / "schemas" / "mesh.v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors_at(data: Any, path: PathKey) -> list[str]:
    """Schema errors at `path` or, for a refused map key, at its map."""
    found = []
    errors = list(validator().iter_errors(data))
    while errors:  # an optional section (anyOf: [object, null]) holds its errors inside
        error = errors.pop()
        errors += error.context or []
        at = tuple(error.absolute_path)
        key_refused = at == path[:-1] and f"{path[-1]!r} does not match" in error.message
        if at == path or key_refused:
            found.append(error.message)
    return found


def loader_errors_at(data: Any, path: PathKey) -> list[str]:
    """Field-level refusals by the loader (the YAML front door, then the model), at
    `path`; semantic checks (references, overlaps) are not field-level."""
    from pydantic import ValidationError

    from meshops.model.mesh import Mesh

    shown = format_path(path)
    try:
        doc = parse_yaml(to_yaml(data), "mesh.yaml")
    except ValidationFailed as exc:
        return [str(p) for p in exc.problems if p.path == shown]
    try:
        Mesh.model_validate(doc.data)
    except ValidationError as exc:
        return [str(p) for p in pydantic_problems(doc, exc, Mesh) if p.path == shown]
    return []


def put(data: dict[str, Any], path: PathKey, value: Any) -> tuple[dict[str, Any], PathKey]:
    """A copy with `value` at `path`; a path ending in None renames that map key."""
    data = copy.deepcopy(data)
    parent: Any = data
    if path[-1] is None:
        for part in path[:-2]:
            parent = parent[part]
        parent[value] = parent.pop(path[-2])
        return data, (*path[:-2], value)
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data, path


# Fields whose whole rule is a pattern: loader and schema agree both ways.
EXACT: list[PathKey] = [
    ("mesh", "name"),
    ("mesh", "domain"),
    ("mesh", "trust_domain"),
    ("nodes", "node-1", None),
    ("identities", "web", None),
    ("groups", "frontends", None),
    ("identities", "web", "nodes", 0),
    ("identities", "web", "dns", 0),
    ("nodes", "node-1", "dns", 0),
    ("nodes", "node-1", "labels", "role"),
    ("nodes", "node-1", "labels", "role", None),
    ("groups", "frontends", 0),
    ("policies", 0, "name"),
    ("policies", 0, "to"),
    ("policies", 0, "allow", 0, "paths", 0),
    ("policies", 0, "allow", 0, "methods", 0),
    ("tests", 0, "name"),
    ("tests", 0, "from"),
    ("tests", 0, "request"),
    ("tests", 5, "request"),
    ("identities", "db", "ports", 0),
    ("policies", 3, "allow", 0, "ports", 0),
    ("wireguard", "interface"),
    ("identities", "web", "proxy", "config"),
    ("identities", "web", "outputs", "dir"),
    ("identities", "web", "proxy", "reload", 0),
    ("identities", "web", "on_renew", 0, 0),
]
# Fields with a value check beyond the pattern (a checksum, an address, a limit): the
# schema states the shape, so whatever the loader accepts, the schema accepts.
SHAPE_ONLY: list[PathKey] = [
    ("nodes", "node-1", "endpoint"),
    ("identities", "web", "proxy", "upstream"),
    ("nodes", "node-1", "recipient"),
    ("ca", "recipients", 0),
    ("nodes", "node-1", "ips", 0),
    ("wireguard", "network"),
    ("wireguard", "network6"),
    ("certs", "ttl"),
    ("certs", "renew_before"),
    ("wireguard", "keepalive"),
]

# text that probes the rules: the characters they turn on, plus anything at all
PROBE_CHARS = "aZ09-._:/*%@ []`<>!#\"'\\;?{}\n\t\x1b\x85\u00e9\u0131\u212a"
probe_text = st.one_of(
    st.text(alphabet=st.sampled_from(PROBE_CHARS), max_size=20),
    st.text(max_size=12),
    st.sampled_from(
        ["GET /v1", "get /x ", "/etc/ssl", "/a/../b", "*", "group:web", "1.3", "fd42::/64"]
    ),
)


def _printable_or_control(text: str) -> bool:
    """The schema cannot name Unicode categories; the loader also refuses every
    non-printable character outside the C0/C1 controls (U+2028, U+FEFF, ...)."""
    return all(c.isprintable() or ord(c) < 0xA0 for c in text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(EXACT), text=probe_text)
def test_loader_and_schema_agree_on_every_patterned_field(path: PathKey, text: str) -> None:
    data, at = put(rich_mesh(), path, text)
    loader = loader_errors_at(data, at)
    schema = schema_errors_at(data, at)
    if not _printable_or_control(text):
        assert loader, (path, text)
        return
    assert bool(loader) == bool(schema), (path, text, loader, schema)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(SHAPE_ONLY), text=probe_text)
def test_what_the_loader_accepts_the_schema_accepts(path: PathKey, text: str) -> None:
    data, at = put(rich_mesh(), path, text)
    if not loader_errors_at(data, at):
        assert schema_errors_at(data, at) == [], (path, text)


def generated(rule: types.TextRule) -> st.SearchStrategy[str]:
    return st.from_regex(rule.regex, fullmatch=True)


VALUES: dict[PathKey, st.SearchStrategy[Any]] = {
    ("mesh", "name"): generated(types.NAME),
    ("mesh", "domain"): generated(types.HOSTNAME),
    ("identities", "web", "dns", 0): generated(types.DNS_SAN),
    ("nodes", "node-1", "endpoint"): st.one_of(
        generated(types.HOSTNAME)
        .filter(lambda h: not h.replace(".", "").isdigit())  # an IPv4 address mistyped
        .map(lambda h: f"{h}:51820"),
        st.ip_addresses(v=4).map(lambda a: f"{a}:1"),
        st.ip_addresses(v=6).map(lambda a: f"[{a}]:65535"),
    ),
    ("nodes", "node-1", "recipient"): st.sampled_from(
        [age_recipient(1), ssh_recipient(1), ssh_recipient(2, comment=True)]
    ),
    ("nodes", "node-1", "ips", 0): st.ip_addresses().map(str),
    ("nodes", "node-1", "labels", "role", None): generated(types.LABEL_KEY),
    ("nodes", "node-1", "labels", "role"): generated(types.LABEL_VALUE),
    ("policies", 0, "name"): generated(types.POLICY_NAME),
    ("policies", 0, "allow", 0, "paths", 0): generated(types.PATH_PATTERN).filter(
        lambda p: p.isprintable()
    ),
    ("policies", 0, "allow", 0, "methods", 0): generated(types.METHOD),
    ("tests", 0, "name"): generated(types.TEST_NAME),
    ("identities", "web", "proxy", "config"): generated(types.ABSOLUTE_FILE).filter(
        str.isprintable
    ),
    ("certs", "ttl"): st.from_regex(DURATION_BODY, fullmatch=True).filter(lambda t: len(t) < 8),
    ("certs", "renew_before"): st.from_regex(PERCENT_BODY, fullmatch=True),
    ("wireguard", "mtu"): st.integers(1280, 9000),
    ("wireguard", "port"): st.integers(1, 65535),
    ("mtls", "min_tls"): st.sampled_from(["1.2", "1.3", 1.2, 1.3]),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_valid_values_pass_the_loader_and_the_schema(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(sorted(VALUES, key=str)))
    value = data.draw(VALUES[path])
    changed, at = put(rich_mesh(), path, value)
    assert loader_errors_at(changed, at) == [], (path, value)
    assert [e.message for e in validator().iter_errors(changed)] == [], (path, value)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("wireguard", "port"), "51820"),
        (("wireguard", "port"), True),
        (("identities", "web", "outputs", "p12"), "yes"),
        (("nodes", "node-1", "address"), 167772171),
        (("mtls", "min_tls"), 1.1),
        (("policies", 0, "allow", 0, "methods", 0), "optıons"),
        (("wireguard", "network"), "10.42.0.0/255.255.0.0"),
        (("certs", "renew_before"), "1e1%"),
        (("certs", "ttl"), " 48h"),
    ],
)
def test_loose_forms_the_schema_refuses_are_refused_by_the_loader(
    path: PathKey, value: Any
) -> None:
    changed, at = put(rich_mesh(), path, value)
    assert schema_errors_at(changed, at)
    assert loader_errors_at(changed, at)


def test_map_keys_are_checked_by_property_names() -> None:
    schema = json.loads((REPO / "schemas" / "mesh.v1.schema.json").read_text())
    for field in ("nodes", "identities", "groups"):
        body = schema["properties"][field]
        assert body["propertyNames"]["pattern"] == types.NAME.schema_pattern
        assert "patternProperties" not in body


def test_every_field_has_a_description() -> None:
    schema = json.loads((REPO / "schemas" / "mesh.v1.schema.json").read_text())
    missing = []
    for where, body in [("", schema), *schema["$defs"].items()]:
        for name, field in body.get("properties", {}).items():
            if not field.get("description"):
                missing.append(f"{where}.{name}")
    assert missing == []
