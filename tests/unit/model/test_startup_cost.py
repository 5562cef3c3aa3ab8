"""What the CLI does to start and stop fast must not change what it prints or returns.

`meshops` skips pydantic's plugin search, pauses the garbage collector for one-shot
commands and, as the console script, leaves without interpreter teardown.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from factories import mesh_yaml, meshops

from meshops.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mesh.yaml"


def test_validate_never_imports_the_pydantic_plugin_machinery() -> None:
    code = (
        "import sys; from meshops.cli.main import main;"
        f"rc = main(['validate', '-f', {str(EXAMPLE)!r}]);"
        "print(rc, 'importlib.metadata' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "0 False"


def test_big_output_is_complete_when_the_console_script_exits_early() -> None:
    result = meshops("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "nodes" in schema["properties"]


def test_exit_codes_and_stderr_survive_the_early_exit(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(mesh_yaml(nodes=1).replace("version: 1", "version: 7"))
    result = meshops("-C", tmp_path, "validate")
    assert result.returncode == 1
    assert "mesh.yaml:1:1: version:" in result.stderr


def test_an_in_process_run_leaves_the_garbage_collector_as_it_found_it(capsys: object) -> None:
    assert gc.isenabled()
    assert main(["validate", "-f", str(EXAMPLE)]) == 0
    assert gc.isenabled()
    gc.disable()
    try:
        assert main(["validate", "-f", str(EXAMPLE)]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()
