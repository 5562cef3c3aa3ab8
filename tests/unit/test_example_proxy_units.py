"""The example systemd units that run standalone sidecars: systemd accepts them, and
they name the paths meshops renders (config, state and runtime directories)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from meshops.resources.host.proxy import EXTENSIONS, RUN_DIR, STATE_DIR

UNITS = Path(__file__).parents[2] / "examples" / "systemd"
KINDS = ["caddy", "nginx"]


def _unit(kind: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / f"meshops-{kind}@.service").read_text())
    return parser


@pytest.mark.parametrize("kind", KINDS)
def test_systemd_analyze_verify_accepts_the_unit(kind: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run scripts/install.sh"
    proc = subprocess.run([analyze, "verify", str(UNITS / f"meshops-{kind}@api.service")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"meshops-{kind}@" not in proc.stderr, proc.stderr  # no warning about our unit


@pytest.mark.parametrize("kind", KINDS)
def test_the_unit_uses_the_paths_meshops_renders(kind: str) -> None:
    service = _unit(kind)["Service"]
    config = f"/etc/meshops/proxy/%i.{EXTENSIONS[kind]}"
    assert f"-c {config}" in service["ExecStart"] or f"--config {config}" in service["ExecStart"]
    ids = {"kind": kind, "identity": "%i"}
    assert "/var/lib/" + service["StateDirectory"] == STATE_DIR.format(**ids)
    assert "/run/" + service["RuntimeDirectory"] == RUN_DIR.format(**ids)


def test_caddy_reload_is_forced_and_nothing_but_the_socket_admins_it() -> None:
    service = _unit("caddy")["Service"]
    assert service["ExecReload"].endswith("--force")  # unchanged text, new certificates
    assert service["User"] == "caddy" and service["RuntimeDirectoryMode"] == "0700"
