"""`meshops graph` end to end: the installed CLI on a mesh file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from factories import to_yaml, web_api_mesh

pytestmark = pytest.mark.e2e
MESHOPS = os.environ.get("MESHOPS_BIN", "meshops")


def _graph(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MESHOPS, "-f", str(path), "graph", *args], capture_output=True, text=True, timeout=60
    )


def test_graph_prints_mermaid_by_default_and_dot_on_request(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(to_yaml(web_api_mesh()))
    mermaid = _graph(mesh)
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert 'id_web -->|"GET /v1/*"| id_api' in mermaid.stdout
    assert mermaid.stdout == _graph(mesh).stdout  # deterministic
    dot = _graph(mesh, "--format", "dot")
    assert dot.returncode == 0
    assert '"web" -> "api" [label="GET /v1/*"];' in dot.stdout


def test_graph_of_an_invalid_mesh_is_a_located_error(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(to_yaml(web_api_mesh()).replace("to: api", "to: apii", 1))
    proc = _graph(mesh)
    assert proc.returncode == 1
    assert "unknown identity 'apii'" in proc.stderr and "Traceback" not in proc.stderr


def test_examples_mesh_graph_renders_with_graphviz_when_available(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "mesh.yaml"
    dot = _graph(example, "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    if not any((Path(p) / "dot").exists() for p in os.environ.get("PATH", "").split(":")):
        pytest.skip("graphviz `dot` is not installed")
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.stdout, capture_output=True, text=True)
    assert svg.returncode == 0 and "<svg" in svg.stdout
