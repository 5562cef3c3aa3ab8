"""host.yaml `repo:` given as a git URL: meshops keeps the host's checkout itself, in
/var/lib/meshops/repo, cloned on first use. From then on it is a checkout like any
other: host scope verifies its state/ before using it, and `apply --pull` or `watch`
(with `pull:` in host.yaml) move it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from meshops.errors import CommandFailed, MeshError

CLONE_DIR = "/var/lib/meshops/repo"
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:\S+")  # git@host:org/mesh.git
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
GIT_TIMEOUT = 300


def is_git_url(value: str) -> bool:
    """A URL git clones (`https://`, `ssh://`, `git://`, `file://`, `user@host:path`),
    as opposed to the path of a checkout."""
    return bool(_URL.fullmatch(value) or _SCP_LIKE.fullmatch(value))


def ensure_clone(url: str, directory: Path) -> Path:
    """The checkout of `url` at `directory`, cloned there first if missing (into a
    temporary directory beside it, then renamed: a killed clone leaves no half
    checkout). One cloned from another URL is refused, not silently used."""
    from meshops.gitops.pull import git_reason, remote_url, run_git

    if (directory / ".git").exists():
        origin = remote_url(directory)
        if origin != url:
            what = f"a clone of {origin}" if origin else "a checkout without an origin remote"
            raise MeshError(
                f"{directory} is {what}, but host.yaml names {url} as the repository",
                hint=f"remove {directory} to clone {url} again, or fix `repo:` in host.yaml",
            )
        return directory
    if directory.exists():
        raise MeshError(
            f"{directory} exists but is not a git checkout; meshops keeps its clone of {url} there",
            hint=f"move {directory} away",
        )
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    staging = Path(tempfile.mkdtemp(prefix=".repo-clone-", dir=directory.parent))
    try:
        run_git(staging, "clone", "--quiet", "--no-recurse-submodules", "--", url, "r",
                what="git clone", timeout=GIT_TIMEOUT)  # fmt: skip
        (staging / "r").rename(directory)
    except CommandFailed as exc:
        raise MeshError(
            f"cannot clone {url}: {git_reason(exc)}",
            hint="check the URL in host.yaml `repo:` and this host's access to it (a deploy key)",
            detail=exc.detail,
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
