"""reload and on_renew commands get a minimal environment (issue 14): PATH, the locale and
the documented MESHOPS_* facts; never meshops' own secrets or settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshops.engine.plan import Action, Change
from meshops.engine.runtime import Runtime
from meshops.resources.host.hooks import HookResource


def test_a_hook_sees_only_path_locale_and_its_documented_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY", "AGE-SECRET-KEY-1NOTFORHOOKS")
    monkeypatch.setenv("MESHOPS_IDENTITY", "/etc/meshops/host.key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not for hooks either")
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = tmp_path / "env.txt"
    hook = HookResource(
        'hook.on_renew["api"]',
        [["sh", "-c", f"env > {out}"]],
        ['cert.leaf["api"]'],
        env={"MESHOPS_WORKLOAD": "api", "MESHOPS_TLS_DIR": "/etc/meshops/tls/api"},
    )
    hook.apply(Change(hook.address, Action.UPDATE), Runtime())
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    seen.pop("PWD", None)  # set by the shell itself
    seen.pop("SHLVL", None)
    seen.pop("_", None)
    assert seen.keys() == {
        "PATH", "LANG", "MESHOPS_HOOK", "MESHOPS_WORKLOAD", "MESHOPS_TLS_DIR",
    }  # fmt: skip
    assert seen["MESHOPS_HOOK"] == 'hook.on_renew["api"]'
    assert "AGE-SECRET-KEY" not in out.read_text()
