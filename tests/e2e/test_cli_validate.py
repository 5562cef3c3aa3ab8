"""`meshops validate` end to end: the installed CLI on real files.

Exit 0 with a summary when valid; exit 1 with `file:line:col: path: message` on stderr,
naming the offending thing, when not; never a traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from factories import (
    identity,
    make_mesh,
    meshops,
    policy,
    proxy,
    test_case,
    to_yaml,
    web_api_mesh,
    where,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def repo_with(tmp_path: Path, text: str | bytes, name: str = "mesh.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return tmp_path


def test_the_example_mesh_is_valid() -> None:
    result = meshops("validate", "-f", REPO / "examples" / "mesh.yaml")
    assert result.returncode == 0, result.stderr
    assert "valid: 5 nodes, 5 identities, 4 policies (12 grants), 7 policy tests passed" in (
        result.stdout
    )
    assert result.stderr == ""


def test_the_summary_counts_in_the_right_number(tmp_path: Path) -> None:
    data = make_mesh(
        nodes=1,
        identities={"api": identity("node-1", proxy=proxy())},
        policies=[policy("self", "api", "api", methods=["GET"], paths=["/x"])],
        tests=[test_case("api", "api", "GET /x", "allow")],
    )
    result = meshops("validate", cwd=repo_with(tmp_path, to_yaml(data)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "mesh.yaml: valid: 1 node, 1 identity, 1 policy (1 grant), 1 policy test passed\n"
    )


def test_a_valid_repo_passes_with_C(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, to_yaml(web_api_mesh()))
    result = meshops("-C", repo, "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{repo / 'mesh.yaml'}: valid: 3 nodes, 4 identities")


def test_valid_json_summary_is_stable(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, to_yaml(web_api_mesh()))
    result = meshops("validate", "--format", "json", cwd=repo)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "format_version": "1.0",
        "valid": True,
        "file": "mesh.yaml",
        "nodes": 3,
        "identities": 4,
        "policies": 3,
        "grants": 5,
        "port_grants": 0,
        "tests_passed": 5,
        "problems": [],
    }


def broken(case: str) -> tuple[str | bytes, str, str, str]:
    """(mesh text, needle where the problem is, path, offending name)."""
    if case == "unknown node":
        data = make_mesh(nodes=2, identities={"api": identity(["node-1", "nod-2"])})
        return to_yaml(data), "nod-2", "identities.api.nodes[1]", "'nod-2'"
    if case == "duplicate key":
        text = to_yaml(make_mesh(nodes=1)) + "nodes: {}\n"
        return text, "nodes: {}", "nodes", "'nodes'"
    if case == "unknown field":
        data = make_mesh()
        data["wireguard"]["keepaliv"] = "25s"
        return to_yaml(data), "keepaliv:", "wireguard.keepaliv", "'keepaliv'"
    if case == "failing policy test":
        data = web_api_mesh()
        data["tests"].append(test_case("db", "api", "GET /v1/x", "allow", name="db-reads-api"))
        return to_yaml(data), "from: db", "tests[5]", "'db-reads-api'"
    if case == "unknown group":
        data = make_mesh(identities=1, policies=[policy("p", "group:ops", "id-1")])
        return to_yaml(data), "from: group:ops", "policies[0].from[0]", "'ops'"
    if case == "lifetime":
        data = make_mesh(identities={"api": identity("node-1", ttl="1000h")})
        return to_yaml(data), "ttl: 1000h", "identities.api.ttl", "1000h"
    if case == "bad recipient":
        data = make_mesh(nodes=1)
        data["nodes"]["node-1"]["recipient"] = "ssh-ed25519 AAAA"
        return to_yaml(data), "recipient:", "nodes.node-1.recipient", "'ssh-ed25519 AAAA'"
    raise AssertionError(case)


CASES = [
    "unknown node",
    "duplicate key",
    "unknown field",
    "failing policy test",
    "unknown group",
    "lifetime",
    "bad recipient",
]


@pytest.mark.parametrize("case", CASES)
def test_invalid_mesh_exits_1_with_location_and_the_offending_name(
    tmp_path: Path, case: str
) -> None:
    text, needle, path, name = broken(case)
    assert isinstance(text, str)
    repo = repo_with(tmp_path, text)
    result = meshops("validate", cwd=repo)
    assert result.returncode == 1
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {where(text, needle)}: {path}: "), result.stderr
    assert name in first
    assert result.stderr.rstrip().endswith("found")


@pytest.mark.parametrize("case", CASES)
def test_invalid_mesh_as_json_lists_located_problems(tmp_path: Path, case: str) -> None:
    text, needle, path, name = broken(case)
    assert isinstance(text, str)
    repo = repo_with(tmp_path, text)
    result = meshops("validate", "--format", "json", cwd=repo)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    line, column = (int(n) for n in where(text, needle).split(":")[1:])
    assert {
        "file": "mesh.yaml",
        "line": line,
        "column": column,
        "path": path,
    }.items() <= report["problems"][0].items()
    assert name in report["problems"][0]["message"]


def test_the_file_is_named_as_the_user_wrote_it(tmp_path: Path) -> None:
    text, needle, _, _ = broken("unknown node")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "prod.yaml").write_text(text)
    result = meshops("validate", "-f", "cfg/prod.yaml", cwd=tmp_path)
    assert result.stderr.startswith(f"error: {where(text, needle, file='cfg/prod.yaml')}: ")


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "version: 1\nmesh: {name: x\n")
    result = meshops("validate", cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith("error: mesh.yaml:3:1: YAML syntax error")


def test_non_utf8_file_is_located(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, b"version: 1\nmesh:\n  name: caf\xe9\n")
    result = meshops("validate", cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith("error: mesh.yaml:3:12: not valid UTF-8 (byte 0xe9)")


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10)]
    repo = repo_with(tmp_path, "\n".join(lines) + "\n")
    start = time.perf_counter()
    result = meshops("validate", cwd=repo)
    assert time.perf_counter() - start < 5
    assert result.returncode == 1
    assert "expands to more than" in result.stderr
    assert result.stderr.startswith("error: mesh.yaml:")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "[" * 10_000 + "]" * 10_000)
    result = meshops("validate", cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith("error: mesh.yaml:1:")


def test_a_twenty_megabyte_file_is_refused(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, b"#" * (20 * 1024 * 1024))
    result = meshops("validate", cwd=repo)
    assert result.returncode == 1
    assert "larger than the limit" in result.stderr


def test_missing_file_and_directory_are_clear_errors(tmp_path: Path) -> None:
    missing = meshops("validate", "-f", "nope.yaml", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.splitlines()[0]) == (
        1,
        "error: nope.yaml: no such file",
    )
    (tmp_path / "dir.yaml").mkdir()
    directory = meshops("validate", "-f", "dir.yaml", cwd=tmp_path)
    assert directory.returncode == 1
    assert "dir.yaml: is a directory" in directory.stderr


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    data = make_mesh(
        nodes=2,
        identities={"api": identity("ghost"), "web": identity("node-1", ttl="9999h")},
        policies=[policy("p", "nobody", "api")],
    )
    repo = repo_with(tmp_path, to_yaml(data))
    result = meshops("validate", cwd=repo)
    assert result.returncode == 1
    assert "3 problems found" in result.stderr
    for fragment in ("'ghost'", "9999h", "'nobody'"):
        assert fragment in result.stderr


def test_l4_policies_and_tests_are_validated_with_located_errors(tmp_path: Path) -> None:
    identities = {
        "api": identity("node-1"),
        "db": identity("node-2", ports=["5432/tcp"]),
    }
    rule = {"name": "api-db", "from": "api", "to": "db", "allow": [{"ports": ["5432/tcp"]}]}
    good = make_mesh(identities=identities, policies=[rule],
                     tests=[test_case("api", "db", "tcp/5432", "allow"),
                            test_case("db", "api", "tcp/5432", "deny")])  # fmt: skip
    result = meshops("-C", repo_with(tmp_path, to_yaml(good)), "validate")
    assert result.returncode == 0, result.stderr
    assert "1 policy (0 grants, 1 port grant), 2 policy tests passed" in result.stdout

    bad = make_mesh(identities=identities,
                    policies=[{**rule, "allow": [{"methods": ["GET"]}]}],
                    tests=[test_case("api", "db", "tcp/5432", "allow")])  # fmt: skip
    text = to_yaml(bad)
    result = meshops("-C", repo_with(tmp_path, text), "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{where(text, 'methods:')}: policies[0].allow[0]: policy 'api-db' allows HTTP " in (
        result.stderr
    )
    assert "which has no proxy" in result.stderr
