"""Mesh factories shared by every test: small functions that build mesh.yaml data.

    from factories import make_mesh, mesh_yaml, node, identity, policy, locate

    data = make_mesh(nodes=3, identities={"api": identity(["node-1"])})
    text = mesh_yaml(nodes=2)                 # the same, rendered as YAML text
    line, col = locate(text, "node-2:")       # where a needle sits, for located errors

Recipients are REAL public keys (age X25519 from pyrage, SSH from `ssh-keygen`),
generated once per test session and cached; their private halves live only in a
temporary directory that is removed at once, so nothing secret reaches the repo.
Use `age_identity_pair()` when a test must also unseal.
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

Data = dict[str, Any]

KEY_POOL = 8  # distinct keys per kind; large meshes reuse them round-robin


# -- real public keys ------------------------------------------------------------


@cache
def _age_pairs() -> tuple[tuple[str, str], ...]:
    import pyrage

    pairs = []
    for _ in range(KEY_POOL):
        ident = pyrage.x25519.Identity.generate()
        pairs.append((str(ident), str(ident.to_public())))
    return tuple(pairs)


def age_recipient(i: int = 0) -> str:
    """A real age X25519 recipient (`age1...`)."""
    return _age_pairs()[i % KEY_POOL][1]


def age_identity_pair(i: int = 0) -> tuple[str, str]:
    """(AGE-SECRET-KEY-1..., age1...) for tests that seal and unseal. Keep it out of git."""
    return _age_pairs()[i % KEY_POOL]


@cache
def _ssh_keys(kind: str) -> tuple[str, ...]:
    count = KEY_POOL if kind == "ed25519" else 2  # RSA keys are slow to make
    bits = ["-b", "2048"] if kind == "rsa" else []
    keys = []
    with tempfile.TemporaryDirectory(prefix="meshops-test-keys-") as tmp:
        for n in range(count):
            path = Path(tmp) / f"key{n}"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", f"test{n}", "-f", path],
                check=True,
                capture_output=True,
            )
            keys.append(path.with_suffix(".pub").read_text().strip())
    return tuple(keys)


def ssh_recipient(i: int = 0, *, kind: str = "ed25519", comment: bool = False) -> str:
    """A real SSH public key line (`ssh-ed25519 AAAA...`), optionally with its comment."""
    keys = _ssh_keys(kind)
    text = keys[i % len(keys)]
    return text if comment else " ".join(text.split()[:2])


# -- building blocks ---------------------------------------------------------------


def node_name(i: int) -> str:
    return f"node-{i}"


def endpoint(i: int) -> str:
    """A unique documentation-range endpoint for node `i` (any i >= 1)."""
    host = ("192.0.2", "198.51.100")[(i - 1) // 250 % 2]
    return f"{host}.{(i - 1) % 250 + 1}:{51820 + (i - 1) // 500}"


def node(i: int = 1, **fields: Any) -> Data:
    """One node's mapping; the recipient alternates SSH ed25519 and age keys."""
    recipient = ssh_recipient(i) if i % 2 else age_recipient(i)
    return {"endpoint": endpoint(i), "recipient": recipient, **fields}


def identity(nodes: list[str] | str, **fields: Any) -> Data:
    return {"nodes": [nodes] if isinstance(nodes, str) else list(nodes), **fields}


def proxy(kind: str = "caddy", listen: int = 8443, **fields: Any) -> Data:
    return {"kind": kind, "listen": listen, "upstream": "127.0.0.1:8080", **fields}


def policy(
    name: str,
    from_: list[str] | str,
    to: list[str] | str,
    *,
    methods: list[str] | None = None,
    paths: list[str] | None = None,
) -> Data:
    rule: Data = {}
    if methods is not None:
        rule["methods"] = methods
    if paths is not None:
        rule["paths"] = paths
    return {"name": name, "from": from_, "to": to, "allow": [rule]}


def test_case(frm: str, to: str, request: str, expect: str, **fields: Any) -> Data:
    """One `tests:` entry (named test_case so pytest does not collect it)."""
    return {"from": frm, "to": to, "request": request, "expect": expect, **fields}


test_case.__test__ = False  # type: ignore[attr-defined]


def make_mesh(
    nodes: int | dict[str, Data] = 3,
    identities: dict[str, Data] | int | None = None,
    *,
    groups: dict[str, list[str]] | None = None,
    policies: list[Data] | None = None,
    tests: list[Data] | None = None,
    name: str = "test",
    **sections: Any,
) -> Data:
    """A valid mesh as plain data.

    `nodes=N` makes node-1..node-N; `identities=N` makes id-1..id-N, id-k on node-k
    (round robin). Any other top-level section (ca=, certs=, wireguard=, mtls=,
    secrets=) is merged over the defaults, so `certs={"ttl": "1h"}` changes one field.
    """
    node_map = (
        {node_name(i): node(i) for i in range(1, nodes + 1)} if isinstance(nodes, int) else nodes
    )
    if isinstance(identities, int):
        names = list(node_map) or ["node-1"]
        identities = {
            f"id-{k}": identity(names[(k - 1) % len(names)]) for k in range(1, identities + 1)
        }
    data: Data = {
        "version": 1,
        "mesh": {
            "name": name,
            "trust_domain": f"{name}.internal",
            "domain": f"mesh.{name}.internal",
        },
        "ca": {
            "key_type": "ecdsa-p256",
            "root_ttl": "87600h",
            "node_ca_ttl": "720h",
            "recipients": [age_recipient(0)],
        },
        "certs": {"key_type": "ecdsa-p256", "ttl": "48h", "renew_before": "33%"},
        "wireguard": {"interface": "wg-mesh", "port": 51820, "network": "10.42.0.0/16"},
        "nodes": node_map,
        "identities": dict(identities or {}),
        "groups": dict(groups or {}),
        "policies": list(policies or []),
        "tests": list(tests or []),
    }
    for section, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **value}
        else:
            data[section] = value
    return copy.deepcopy(data)


class _IndentedDumper(yaml.SafeDumper):
    """Indent list items under their key, as people write mesh.yaml."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a value used twice is written twice, as a person would


def to_yaml(data: Data) -> str:
    """Block-style YAML, keys in insertion order: one value per line, easy to locate."""
    return yaml.dump(
        data, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False, width=1000
    )


def mesh_yaml(*args: Any, **kwargs: Any) -> str:
    """`make_mesh(...)` rendered as YAML text."""
    return to_yaml(make_mesh(*args, **kwargs))


def web_api_mesh() -> Data:
    """A small realistic mesh: web and admin (group frontends) call api; api calls db."""
    return make_mesh(
        nodes=3,
        identities={
            "web": identity("node-1", proxy=proxy("caddy", 8443)),
            "admin": identity("node-1", ttl="24h"),
            "api": identity(["node-2"], proxy=proxy("envoy", 9443)),
            "db": identity("node-3", proxy=proxy("nginx", 7443)),
        },
        groups={"frontends": ["web", "admin"]},
        policies=[
            policy(
                "frontends-read-api", ["group:frontends"], "api", methods=["GET"], paths=["/v1/*"]
            ),
            policy(
                "admin-writes-api", ["admin"], "api", methods=["POST", "DELETE"], paths=["/v1/*"]
            ),
            policy("api-uses-db", ["api"], "db", methods=["*"], paths=["/query"]),
        ],
        tests=[
            test_case("web", "api", "GET /v1/users", "allow"),
            test_case("web", "api", "DELETE /v1/users", "deny"),
            test_case("admin", "api", "DELETE /v1/users/7", "allow"),
            test_case("api", "db", "POST /query", "allow"),
            test_case("web", "db", "GET /query", "deny"),
        ],
    )


# -- locating text -------------------------------------------------------------------


def locate(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the `occurrence`-th `needle` in `text`."""
    pos = -1
    for _ in range(occurrence):
        pos = text.index(needle, pos + 1)
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def where(text: str, needle: str, occurrence: int = 1, file: str = "mesh.yaml") -> str:
    """`mesh.yaml:LINE:COL` of a needle, the prefix a located error must carry."""
    line, column = locate(text, needle, occurrence)
    return f"{file}:{line}:{column}"


# -- asserting located problems ------------------------------------------------------


def expect_problem(
    text: str, needle: str, *fragments: str, occurrence: int = 1, file: str = "mesh.yaml"
) -> Any:
    """Load `text`, expect ValidationFailed with a problem located exactly at `needle`
    whose rendered line contains every fragment; return that Problem."""
    import pytest

    from meshops.errors import ValidationFailed
    from meshops.model import load_text

    with pytest.raises(ValidationFailed) as caught:
        load_text(text, file)
    at = where(text, needle, occurrence, file)
    lines = [str(p) for p in caught.value.problems]
    for problem, line in zip(caught.value.problems, lines, strict=True):
        if str(problem.location) == at and all(f in line for f in fragments):
            assert line.startswith(f"{at}: ")
            assert f"{at}: " in str(caught.value)
            return problem
    raise AssertionError(f"no problem at {at} containing {fragments}; got:\n" + "\n".join(lines))


# -- running the installed CLI -------------------------------------------------------


def meshops(
    *args: str | Path,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `meshops` console script; never accept a traceback on stderr."""
    import os
    import shutil

    exe = shutil.which("meshops")
    assert exe, "the meshops console script is not installed (pip install -e .)"
    full_env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "NO_COLOR": "1", **(env or {})}
    result = subprocess.run(
        [exe, *map(str, args)],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if "--debug" not in args:
        assert "Traceback" not in result.stderr, result.stderr
        assert "Traceback" not in result.stdout, result.stdout
    return result
