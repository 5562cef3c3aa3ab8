"""The systemd units in examples/systemd, checked by `systemd-analyze verify` as they
are installed: the unit files as shipped, and meshops at /usr/local/bin/meshops (in a
private mount namespace, so the machine's own /usr/local/bin is left alone)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

UNITS = Path(__file__).resolve().parents[2] / "examples" / "systemd"


def verify(*units: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` with /usr/local/bin/meshops linked to this meshops."""
    if os.geteuid() != 0:
        pytest.skip("a private /usr/local/bin needs root (a mount namespace)")
    meshops = shutil.which(os.environ.get("MESHOPS_BIN", "meshops"))
    assert meshops and shutil.which("systemd-analyze"), "run scripts/install.sh"
    script = (
        'mount -t tmpfs meshops-test /usr/local/bin && ln -s "$1" /usr/local/bin/meshops '
        '&& shift && exec systemd-analyze verify "$@"'
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", meshops,
         *map(str, units)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_shipped_units_verify_cleanly() -> None:
    # the proxy templates (meshops-caddy@, meshops-nginx@) are verified per instance in
    # tests/unit/test_example_proxy_units.py
    units = sorted(u for u in UNITS.glob("meshops-*") if "@" not in u.name)
    assert [u.name for u in units] == [
        "meshops-apply.service", "meshops-apply.timer", "meshops-watch.service",
    ]  # fmt: skip
    result = verify(*units)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "systemd-analyze warned about the units"


def test_a_broken_unit_does_not_verify(tmp_path: Path) -> None:
    """The check has teeth: a misspelt key is reported, a missing binary fails it."""
    broken = tmp_path / "meshops-apply.service"
    text = (UNITS / "meshops-apply.service").read_text()
    broken.write_text(text.replace("Nice=5", "Nicee=5").replace(
        "/usr/local/bin/meshops", "/usr/local/bin/meshopz"))  # fmt: skip
    result = verify(broken)
    assert result.returncode != 0
    assert "Unknown key 'Nicee'" in result.stderr
    assert "/usr/local/bin/meshopz is not executable" in result.stderr


def test_the_units_say_how_meshops_gets_to_usr_local_bin() -> None:
    for name in ("meshops-apply.service", "meshops-watch.service"):
        text = (UNITS / name).read_text()
        assert "ln -s /opt/meshops/bin/meshops /usr/local/bin/meshops" in text, name
        assert "python3 -m venv /opt/meshops" in text, name
