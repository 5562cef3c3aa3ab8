"""`apply --pull`: move a host's checkout to the remote's newest revision, safely.

Fetch, refuse a revision that does not descend from the last applied one (a rewind
could bring back a revoked node), optionally require a trusted signature on every new
commit, then check the revision out. Settings come from host.yaml:

    pull:
      remote: origin            # default origin
      branch: main              # default: the checkout's current branch
      allowed_signers: /etc/meshops/allowed_signers   # require SSH signatures
      gnupg_home: /etc/meshops/gnupg                  # or GPG signatures
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshops.errors import MeshError


def last_applied_revision(lib_dir: Path) -> str | None:
    try:
        data = json.loads((lib_dir / "last-applied.json").read_text())
    except (OSError, ValueError):
        return None
    last = data.get("last_apply") if isinstance(data, dict) else None
    if isinstance(last, dict) and last.get("result") in ("ok", "no-op"):
        revision = last.get("revision")
        return revision if isinstance(revision, str) else None
    return None


def pull(
    repo_dir: Path,
    *,
    settings: dict[str, Any],
    lib_dir: Path,
    host_path: Any,
    allow_rewind: bool = False,
) -> str:
    """Bring the checkout to the remote's newest trusted revision; return it."""
    from meshops.gitops.pull import check_descends, fetch, verify_range
    from meshops.providers.run import run

    if not isinstance(settings, dict):
        raise MeshError("host.yaml: `pull:` must be a mapping")
    remote = str(settings.get("remote", "origin"))
    branch = settings.get("branch")
    new = fetch(repo_dir, remote, str(branch) if branch else None)
    last = last_applied_revision(lib_dir)
    check_descends(repo_dir, last, new, allow_rewind)
    signers = settings.get("allowed_signers")
    gnupg = settings.get("gnupg_home")
    if signers or gnupg:
        verify_range(
            repo_dir,
            None if allow_rewind else last,
            new,
            host_path(str(signers)) if signers else None,
            gnupg_home=host_path(str(gnupg)) if gnupg else None,
        )
    run(["git", "-C", str(repo_dir), "checkout", "-q", "--detach", new], what="git checkout")
    return new
