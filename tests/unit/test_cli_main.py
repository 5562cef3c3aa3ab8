"""The installed `meshops` script: version, help, global options, exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import mesh_yaml, meshops

import meshops as package


def test_version_prints_name_and_version() -> None:
    result = meshops("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"meshops {package.__version__}\n",
        "",
    )


def test_version_after_global_options_goes_through_the_parser() -> None:
    result = meshops("-C", "/nonexistent", "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"meshops {package.__version__}"


def test_help_lists_every_command_and_the_exit_codes() -> None:
    result = meshops("--help")
    assert result.returncode == 0
    for command in ("init", "validate", "schema", "plan", "apply", "show", "status", "review"):
        assert command in result.stdout
    for option in ("-C REPO_DIR", "--file", "--node", "--root", "--identity", "--debug"):
        assert option in result.stdout
    assert "Exit codes" in result.stdout


def test_host_init_help_says_node_is_required_and_so_does_running_it_without(
    tmp_path: Path,
) -> None:
    helped = meshops("host", "init", "--help", env={"COLUMNS": "200"})
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: meshops host init --node NAME")
    assert "--node NAME is required" in helped.stdout
    assert "host init --node NAME" in meshops("--help", env={"COLUMNS": "200"}).stdout
    missing = meshops("host", "init", "--root", tmp_path)
    assert missing.returncode == 1
    assert "pass --node NAME" in missing.stderr


def test_no_command_prints_help_and_fails() -> None:
    result = meshops()
    assert result.returncode == 1
    assert "COMMAND" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["validate", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["validate", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["-C"], "expected one argument"),
    ],
)
def test_usage_errors_exit_1_never_2(args: list[str], fragment: str) -> None:
    result = meshops(*args)
    assert result.returncode == 1  # 2 means "changes present" under --detailed-exitcode
    assert fragment in result.stderr
    assert result.stdout == ""


def test_global_options_work_before_and_after_the_command(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text(mesh_yaml(nodes=2))
    before = meshops("-C", tmp_path, "-f", "other.yaml", "validate")
    after = meshops("validate", "-C", tmp_path, "-f", "other.yaml")
    mixed = meshops("-C", tmp_path, "validate", "-f", "other.yaml")
    assert before.returncode == after.returncode == mixed.returncode == 0
    assert before.stdout == after.stdout == mixed.stdout
    assert before.stdout.startswith("other.yaml: valid: 2 nodes")


def test_file_option_is_relative_to_the_working_directory_without_C(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.yaml").write_text(mesh_yaml(nodes=1))
    result = meshops("--file", "sub/m.yaml", "validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_errors_are_one_message_on_stderr_with_a_plain_prefix(tmp_path: Path) -> None:
    result = meshops("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: mesh.yaml: no such file")
    assert "hint: run `meshops init`" in result.stderr


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    result = meshops("--debug", "validate", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "error: mesh.yaml: no such file" in result.stderr


def test_python_dash_m_runs_the_same_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "meshops", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"meshops {package.__version__}"


def test_version_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from meshops.cli.main import main; main(['--version']);"
        "heavy = [m for m in ('cryptography', 'pyrage', 'pyroute2', 'rich', 'git', 'pydantic')"
        " if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "[]"
