"""`apply --pull` and `watch`: move a host's checkout to the remote's newest revision,
safely.

Fetch, refuse a revision that does not descend from the last applied one (a rewind
could bring back a revoked node), optionally require a trusted signature on every new
commit, check that its mesh.yaml loads, and only then check the revision out. A
refused revision never reaches the checkout: the host keeps the revision it has, so
it keeps renewing certificates from it. Settings come from host.yaml:

    pull:
      remote: origin            # default origin
      branch: main              # default: the branch the checkout was cloned on
      interval: 60s             # watch: fetch and reconcile at least this often
      allowed_signers: /etc/meshops/allowed_signers   # require SSH signatures
      gnupg_home: /etc/meshops/gnupg                  # or GPG signatures
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshops.errors import MeshError, ValidationFailed

DEFAULT_INTERVAL = 60.0
_KEYS = ("remote", "branch", "interval", "allowed_signers", "gnupg_home")


class PullRefused(MeshError):
    """The remote's revision was not taken; the checkout stays where it was."""


@dataclass(frozen=True)
class PullSettings:
    """host.yaml `pull:`; paths are host paths (under --root)."""

    remote: str = "origin"
    branch: str | None = None
    interval: float | None = None
    allowed_signers: str | None = None
    gnupg_home: str | None = None

    @property
    def requires_signatures(self) -> bool:
        return bool(self.allowed_signers or self.gnupg_home)


def parse_settings(data: Any, where: str = "host.yaml") -> PullSettings:
    """`pull:` from host.yaml (None or a missing key: the defaults)."""
    from meshops.model.durations import parse_duration

    if data is None:
        return PullSettings()
    if not isinstance(data, dict):
        raise MeshError(f"{where}: `pull:` must be a mapping (remote, branch, interval, ...)")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise MeshError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} under `pull:`: "
            f"{', '.join(map(str, unknown))}",
            hint=f"known keys: {', '.join(_KEYS)}",
        )
    for key in ("remote", "branch", "allowed_signers", "gnupg_home"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise MeshError(f"{where}: pull.{key} must be a string")
    interval = None
    if data.get("interval") is not None:
        try:
            interval = parse_duration(str(data["interval"]))
        except ValueError as exc:
            raise MeshError(f"{where}: pull.interval: {exc}") from None
        if interval <= 0:
            raise MeshError(f"{where}: pull.interval must be longer than 0s")
    return PullSettings(
        remote=data.get("remote") or "origin",
        branch=data.get("branch") or None,
        interval=interval,
        allowed_signers=data.get("allowed_signers") or None,
        gnupg_home=data.get("gnupg_home") or None,
    )


@dataclass(frozen=True)
class Pulled:
    """Where the checkout was and where it is now."""

    previous: str | None
    revision: str

    @property
    def moved(self) -> bool:
        return self.previous != self.revision


def last_applied_revision(lib_dir: Path) -> str | None:
    """The revision the last recorded host apply ran at.

    A failed apply counts: it may have applied part of its revision (a revocation),
    and its revision passed the same checks before it was checked out.
    """
    try:
        data = json.loads((lib_dir / "last-applied.json").read_text())
    except (OSError, ValueError):
        return None
    last = data.get("last_apply") if isinstance(data, dict) else None
    if isinstance(last, dict) and last.get("result") in ("ok", "no-op", "failed"):
        revision = last.get("revision")
        return revision if isinstance(revision, str) and revision else None
    return None


def pull(
    repo_dir: Path,
    settings: PullSettings,
    *,
    lib_dir: Path,
    host_path: Callable[[str], Path],
    mesh_file: Path,
    allow_rewind: bool = False,
    check_state: Callable[[str, Any], None] | None = None,
) -> Pulled:
    """Bring the checkout to the remote's newest trusted, loadable revision.

    Raises PullRefused (the checkout unchanged) when the revision cannot be fetched,
    rewinds, carries an unsigned or untrusted commit, holds a mesh.yaml that does not
    load, or (`check_state(revision, loaded mesh)`) a state/ this host refuses.
    """
    from meshops.gitops.pull import check_descends, fetch, head_revision, tracked_branch

    previous = head_revision(repo_dir)
    try:
        branch = settings.branch or tracked_branch(repo_dir, settings.remote)
        new = fetch(repo_dir, settings.remote, branch)
        last = last_applied_revision(lib_dir)
        check_descends(repo_dir, last, new, allow_rewind)
        if settings.requires_signatures:
            _verify(repo_dir, settings, last, new, host_path)
        loaded = _check_loads(repo_dir, new, mesh_file)
        if check_state is not None:
            check_state(new, loaded)
    except MeshError as exc:
        if isinstance(exc, PullRefused):
            raise
        stay = f"this host stays on {previous[:12]}" if previous else "nothing was checked out"
        raise PullRefused(f"{exc.message}; {stay}", hint=exc.hint, detail=exc.detail) from None
    if new != previous:
        # only when it moves: rewriting HEAD would wake `watch` for nothing
        from meshops.gitops.pull import checkout

        checkout(repo_dir, new)
    return Pulled(previous, new)


def remote_revision(repo_dir: Path, settings: PullSettings) -> str | None:
    """Fetch and return the remote's revision (None when it cannot be fetched); the
    checkout is left alone. `watch` uses it to notice a new commit during a back-off."""
    from meshops.gitops.pull import fetch, tracked_branch

    try:
        branch = settings.branch or tracked_branch(repo_dir, settings.remote)
        return fetch(repo_dir, settings.remote, branch, timeout=60)
    except MeshError:
        return None


def _verify(
    repo_dir: Path,
    settings: PullSettings,
    last: str | None,
    new: str,
    host_path: Callable[[str], Path],
) -> None:
    from meshops.gitops.pull import is_known, verify_range

    # last..new is "what new brings that last did not", also after an allowed rewind
    # (nothing, or the commits of the other branch); a last revision this checkout does
    # not hold (a fresh clone) means every commit of new is checked
    base = last if last and is_known(repo_dir, last) else None
    signers = settings.allowed_signers
    gnupg = settings.gnupg_home
    verify_range(
        repo_dir,
        base,
        new,
        host_path(signers) if signers else None,
        gnupg_home=host_path(gnupg) if gnupg else None,
    )


def _check_loads(repo_dir: Path, revision: str, mesh_file: Path) -> Any:
    """mesh.yaml at `revision` (from git objects) loads and validates."""
    from meshops.gitops.pull import show_file
    from meshops.model import load_text

    relative = os.path.relpath(mesh_file.absolute(), repo_dir.absolute())
    content = show_file(repo_dir, revision, relative)
    short = revision[:12]
    if content is None:
        raise MeshError(f"revision {short} has no {relative}")
    try:
        return load_text(content, f"{relative}@{short}", run_tests=False)
    except ValidationFailed as exc:
        count = len(exc.problems)
        listed = "; ".join(str(p) for p in exc.problems[:3])
        more = f" (and {count - 3} more)" if count > 3 else ""
        raise MeshError(
            f"revision {short} is not applied: its mesh.yaml is invalid: {listed}{more}",
            hint="fix it in a new commit; `meshops validate` shows every problem",
        ) from None
