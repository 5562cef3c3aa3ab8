"""Helpers for the secrets tests: run stock tools, write test files 0600."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def stock(argv: list[str], *, env: dict[str, str] | None = None, **kwargs: object) -> bytes:
    """Run a stock tool (age, sops) and return stdout; fail the test with its stderr."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(argv, capture_output=True, env=full_env, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out: bytes = proc.stdout
    return out


def write_private(path: Path, data: bytes) -> Path:
    """Write a test file 0600, the way meshops writes sealed and secret files."""
    from meshops.providers.files import write_atomic

    write_atomic(path, data, mode=0o600, fsync=False)
    return path
