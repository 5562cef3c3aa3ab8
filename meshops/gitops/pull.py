"""Trusted pulls: fetch a revision, refuse rewinds, require signed commits.

A host applies what git gives it, so before moving to a new revision it can check
that the revision descends from the last one it applied (a rewind could bring back a
node whose removal revoked it) and that every commit since is signed by a trusted key
(SSH signatures via an allowed-signers file, OpenPGP via a given keyring). All git
calls go through `meshops.providers.run.run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from meshops.errors import CommandFailed, MeshError
from meshops.providers.files import MAX_READ
from meshops.providers.run import run

# never wait for a password prompt on a host; never let a user's pager or editor in
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_ASKPASS": "true"}
_GIT_ENV = GIT_ENV


def run_git(
    repo_dir: Path,
    *args: str,
    what: str,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> str:
    proc = run(
        ["git", "-C", str(repo_dir), *args],
        env={**_GIT_ENV, **(env or {})},
        what=what,
        timeout=timeout,
        check=check,
    )
    return proc.stdout.decode(errors="replace").strip()


def _short(rev: str) -> str:
    return rev[:12]


def head_revision(repo_dir: Path) -> str | None:
    """The commit the checkout is at (None in an empty repository)."""
    proc = run(
        ["git", "-C", str(repo_dir), "rev-parse", "--verify", "-q", "HEAD^{commit}"],
        env=_GIT_ENV,
        check=False,
        what="git rev-parse",
    )
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def tracked_branch(repo_dir: Path, remote: str = "origin") -> str:
    """The branch to follow: the checked-out one, else (a detached checkout, as after a
    pull) the remote's default branch as recorded by `git clone`."""
    proc = run(
        ["git", "-C", str(repo_dir), "symbolic-ref", "--quiet", "--short", "HEAD"],
        env=_GIT_ENV,
        check=False,
    )
    if proc.returncode == 0:
        return proc.stdout.decode().strip()
    proc = run(
        ["git", "-C", str(repo_dir), "symbolic-ref", "--quiet", f"refs/remotes/{remote}/HEAD"],
        env=_GIT_ENV,
        check=False,
    )
    prefix = f"refs/remotes/{remote}/"
    ref = proc.stdout.decode().strip()
    if proc.returncode == 0 and ref.startswith(prefix):
        return ref[len(prefix) :]
    raise MeshError(
        f"{repo_dir}: HEAD is detached and {remote}/HEAD names no default branch, so "
        "there is no branch to pull",
        hint="name the branch to follow in host.yaml (pull: {branch: main}), or run "
        f"`git -C {repo_dir} remote set-head {remote} --auto`",
    )


def is_known(repo_dir: Path, revision: str) -> bool:
    """True when `revision` is a commit this repository holds."""
    proc = run(
        ["git", "-C", str(repo_dir), "cat-file", "-e", f"{revision}^{{commit}}"],
        env=_GIT_ENV,
        check=False,
    )
    return proc.returncode == 0


def show_file(repo_dir: Path, revision: str, path: str) -> bytes | None:
    """The bytes of `path` (relative to `repo_dir`) at `revision`, None if absent."""
    spec = f"{revision}:./{Path(path).as_posix()}"
    proc = run(["git", "-C", str(repo_dir), "cat-file", "blob", spec], env=_GIT_ENV, check=False)
    return proc.stdout if proc.returncode == 0 else None


_KINDS = {"120000": "a symlink", "160000": "a submodule"}


class TreeAt:
    """The files under `directory` (relative to the checkout, e.g. "state") at a
    revision, read from git objects: what a pull would check out, before it does."""

    def __init__(self, repo_dir: Path, revision: str, directory: str):
        self.repo_dir = repo_dir
        prefix = run_git(repo_dir, "rev-parse", "--show-prefix", what="git rev-parse")
        self.prefix = f"{prefix}{directory.strip('/')}/"
        listed = run(
            ["git", "-C", str(repo_dir), "ls-tree", "-r", "-l", "-z", "--full-tree",
             revision, "--", self.prefix],
            env=_GIT_ENV, what="git ls-tree",
        ).stdout  # fmt: skip
        # path under `directory` -> (mode, object, size)
        self.entries: dict[str, tuple[str, str, int]] = {}
        for record in listed.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, _kind, obj, size = meta.decode().split()
            path = name.decode(errors="replace").removeprefix(self.prefix)
            self.entries[path] = (mode, obj, int(size) if size.isdigit() else 0)

    def irregular(self) -> dict[str, str]:
        """Entries that are not regular files: path -> "a symlink", "a submodule"."""
        return {
            p: _KINDS.get(mode, "a special file")
            for p, (mode, _, _) in self.entries.items()
            if mode not in ("100644", "100755")
        }

    def read(self, paths: list[str], sizes: Mapping[str, int]) -> dict[str, bytes | str]:
        """The blobs of `paths` (absent ones left out); a phrase instead for what is no
        regular file. A blob larger than expected is read only to one byte past it."""
        out: dict[str, bytes | str] = {}
        wanted = []
        for path in paths:
            entry = self.entries.get(path)
            if entry is None:
                continue
            mode, obj, size = entry
            if mode not in ("100644", "100755"):
                out[path] = _KINDS.get(mode, "a special file")
            elif size > sizes.get(path, MAX_READ):
                out[path] = self._head(obj, sizes.get(path, MAX_READ) + 1)
            else:
                wanted.append((path, obj))
        if wanted:
            batch = run(
                ["git", "-C", str(self.repo_dir), "cat-file", "--batch"],
                input="".join(f"{obj}\n" for _, obj in wanted).encode(),
                env=_GIT_ENV, what="git cat-file",
            ).stdout  # fmt: skip
            at = 0
            for path, _ in wanted:
                header_end = batch.index(b"\n", at)
                size = int(batch[at:header_end].split()[2])
                out[path] = batch[header_end + 1 : header_end + 1 + size]
                at = header_end + 1 + size + 1
        return out

    def _head(self, obj: str, limit: int) -> bytes:
        import subprocess

        with subprocess.Popen(
            ["git", "-C", str(self.repo_dir), "cat-file", "blob", obj],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            data = proc.stdout.read(limit)
            proc.kill()
        return data


def checkout(repo_dir: Path, revision: str) -> None:
    """Detach the checkout at `revision` (a host's checkout follows, it never commits)."""
    run_git(repo_dir, "checkout", "-q", "--detach", revision, what="git checkout")


def fetch(
    repo_dir: Path, remote: str = "origin", branch: str | None = None, *, timeout: float = 120
) -> str:
    """Fetch `branch` (default: `tracked_branch`) from `remote`; return its commit hash.

    Only the remote-tracking ref moves; the working tree and HEAD are left alone.
    """
    branch = branch or tracked_branch(repo_dir, remote)
    tracking = f"refs/remotes/{remote}/{branch}"
    try:
        run_git(
            repo_dir,
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-recurse-submodules",
            remote,
            f"+refs/heads/{branch}:{tracking}",
            what=f"git fetch {remote} {branch}",
            timeout=timeout,
        )
    except CommandFailed as exc:
        url = remote_url(repo_dir, remote)
        where = f"{remote} ({url})" if url else remote
        raise MeshError(
            f"cannot fetch branch {branch!r} from {where}: {git_reason(exc)}",
            hint="check the network and the remote's URL and credentials; this host keeps "
            "running the revision it applied last",
            detail=exc.detail,
        ) from None
    return run_git(
        repo_dir, "rev-parse", "--verify", f"{tracking}^{{commit}}", what="git rev-parse"
    )


def remote_url(repo_dir: Path, remote: str = "origin") -> str:
    """The URL `remote` names in the checkout ("" when it has none)."""
    return run_git(repo_dir, "remote", "get-url", remote, what="git remote", check=False)


def git_reason(exc: CommandFailed) -> str:
    """Why a git command failed, in git's words: its first `fatal:` line (its last is
    often advice, "and the repository exists.")."""
    lines = [ln.strip() for ln in (exc.detail or "").splitlines() if ln.strip()]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("fatal: ")), None)
    if at is None:
        return lines[-1] if lines else exc.message
    reason = lines[at].removeprefix("fatal: ")
    if reason.endswith(":") and at + 1 < len(lines):  # "unable to connect to X:"
        reason += " " + lines[at + 1]
    return reason


def check_descends(
    repo_dir: Path, last_applied: str | None, new: str, allow_rewind: bool = False
) -> bool:
    """Refuse to move to `new` unless it descends from `last_applied`.

    Returns True when `new` descends (or nothing was applied yet), False when it does
    not but `allow_rewind` let it through; raises MeshError otherwise.
    """
    if last_applied is None or last_applied == new:
        return True
    proc = run(
        ["git", "-C", str(repo_dir), "merge-base", "--is-ancestor", last_applied, new],
        env=_GIT_ENV,
        check=False,
    )
    if proc.returncode == 0:
        return True
    if allow_rewind:
        return False
    unknown = ""
    if proc.returncode != 1:  # 128: one of the commits is not in this repository
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        unknown = f" (git: {said[-1]})" if said else " (a revision is unknown here)"
    raise MeshError(
        f"refusing to move from {_short(last_applied)} to {_short(new)}: {_short(new)} does "
        "not descend from the last applied revision (a rewind could bring back revoked "
        f"nodes){unknown}; pass --allow-rewind to force",
        hint="if the branch was rewritten on purpose, review the difference first: "
        f"`meshops review --base {_short(last_applied)} --head {_short(new)}`",
    )


def verify_range(
    repo_dir: Path,
    old: str | None,
    new: str,
    allowed_signers: Path | None,
    *,
    gnupg_home: Path | None = None,
) -> list[str]:
    """Verify the signature of every commit in old..new (all of new's history if old is
    None), oldest first; return the hashes checked.

    SSH signatures are checked against `allowed_signers` (git's
    gpg.ssh.allowedSignersFile format), OpenPGP ones against the keyring in
    `gnupg_home`. Raises MeshError naming the first unsigned or untrusted commit.
    """
    if allowed_signers is None and gnupg_home is None:
        raise MeshError("signature checks need an allowed-signers file or a GnuPG keyring")
    config: list[str] = []
    env: dict[str, str] = {}
    if allowed_signers is not None:
        if not allowed_signers.is_file():
            raise MeshError(
                f"{allowed_signers}: allowed-signers file not found",
                hint='one line per trusted key: `EMAIL ssh-ed25519 AAAA...` (see "ALLOWED '
                'SIGNERS" in ssh-keygen(1))',
            )
        config += ["-c", f"gpg.ssh.allowedSignersFile={allowed_signers.resolve()}"]
    if gnupg_home is not None:
        env["GNUPGHOME"] = str(gnupg_home.resolve())
    span = new if old is None else f"{old}..{new}"
    listed = run_git(repo_dir, "rev-list", "--reverse", span, what="git rev-list")
    commits = listed.split()
    for index, commit in enumerate(commits):
        proc = run(
            ["git", "-C", str(repo_dir), *config, "verify-commit", commit],
            env={**_GIT_ENV, **env},
            check=False,
            what="git verify-commit",
        )
        if proc.returncode != 0:
            _refuse(repo_dir, commit, new, proc.stderr.decode(errors="replace"), index)
    return commits


def _refuse(repo_dir: Path, commit: str, new: str, stderr: str, index: int) -> None:
    subject = run_git(repo_dir, "log", "-1", "--format=%s", commit, what="git log", check=False)
    raw = run_git(repo_dir, "cat-file", "commit", commit, what="git cat-file", check=False)
    header = raw.split("\n\n", 1)[0]
    where = f"commit {_short(commit)} ({subject!r})"
    context = f"refusing to apply {_short(new)}"
    if index:
        context += f"; the {index} commit{'s' if index != 1 else ''} before it verified"
    if "\ngpgsig " not in f"\n{header}" and "\ngpgsig-sha256 " not in f"\n{header}":
        raise MeshError(
            f"{where} is not signed; {context}",
            hint="sign commits to the mesh repository (git config commit.gpgsign true)",
        )
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    why = lines[-1] if lines else "signature does not verify"
    ssh = "BEGIN SSH SIGNATURE" in header
    trusted = "the allowed signers file" if ssh else "the GnuPG keyring"
    raise MeshError(
        f"{where} is signed by a key that is not trusted ({why}); {context}",
        hint=f"add the signer's public key to {trusted} if it belongs to a maintainer",
        detail=stderr,
    )
