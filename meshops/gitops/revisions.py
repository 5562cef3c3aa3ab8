"""Read mesh.yaml and state/ at a git revision straight from git objects (no checkout),
or from the working tree, into plain data for `build_review`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError

if TYPE_CHECKING:
    import git

WORKTREE = "working tree"
STATE_DIR = "state"
MAX_STATE_FILE = 4 * 1024 * 1024  # state/ files are small; refuse surprises


@dataclass(frozen=True)
class Snapshot:
    """mesh.yaml and state/ as they are at one revision."""

    label: str  # the ref as the user gave it, or "working tree"
    commit: str | None  # full hash; None for the working tree
    mesh_path: str  # repository-relative, POSIX
    mesh: bytes | None  # None: no mesh.yaml at this revision
    state: dict[str, bytes] = field(default_factory=dict)  # path relative to state/ -> bytes
    # entries under state/ that are not regular files (never read): path -> what they
    # are ("a symlink", "a submodule")
    irregular: dict[str, str] = field(default_factory=dict)
    # enrolment requests: the files directly under enroll/ beside mesh.yaml (name ->
    # bytes; anything but a regular file is given as empty bytes, which no check passes)
    enroll: dict[str, bytes] = field(default_factory=dict)


def open_repo(repo_dir: Path) -> git.Repo:
    import git

    try:
        return git.Repo(repo_dir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise MeshError(
            f"{repo_dir}: not inside a git repository",
            hint="run `meshops review` in the mesh repository, or pass -C REPO_DIR",
        ) from None


def repo_relative(repo: git.Repo, mesh_file: Path) -> str:
    """mesh_file as a path inside the repository (`mesh.yaml`, `infra/mesh.yaml`)."""
    top = Path(str(repo.working_tree_dir)).resolve()
    try:
        return PurePosixPath(mesh_file.resolve().relative_to(top)).as_posix()
    except ValueError:
        raise MeshError(f"{mesh_file} is outside the git repository at {top}") from None


def resolve(repo: git.Repo, ref: str) -> Any:
    """The commit `ref` names, or a MeshError saying how to make it available."""
    import git

    try:
        return repo.commit(ref)
    except (git.BadName, git.BadObject, ValueError):
        raise MeshError(
            f"unknown revision {ref!r} in {repo.working_tree_dir}",
            hint="fetch it first (`git fetch origin main`); in CI check out with full "
            "history (actions/checkout: fetch-depth: 0)",
        ) from None


def read_commit(repo: git.Repo, ref: str, mesh_path: str) -> Snapshot:
    commit = resolve(repo, ref)
    tree = commit.tree
    mesh = _blob(tree, mesh_path)
    state_path = _state_dir(mesh_path)
    state: dict[str, bytes] = {}
    irregular: dict[str, str] = {}
    try:
        state_tree = tree / state_path
    except KeyError:
        state_tree = None
    if state_tree is not None and state_tree.type == "tree":
        for item in state_tree.traverse():
            relative = PurePosixPath(item.path).relative_to(state_path).as_posix()
            if item.type == "blob" and item.mode in (0o100644, 0o100755):
                state[relative] = _read_blob(item)
            elif item.type != "tree":  # a symlink's blob is its target: never read it
                irregular[relative] = "a symlink" if item.mode == 0o120000 else (
                    "a submodule" if item.type == "commit" else "a special file"
                )  # fmt: skip
    return Snapshot(ref, commit.hexsha, mesh_path, mesh, state, irregular,
                    _enroll_blobs(tree, mesh_path))  # fmt: skip


def _enroll_blobs(tree: Any, mesh_path: str) -> dict[str, bytes]:
    from meshops.enroll import ENROLL_DIR

    try:
        folder = tree / _beside(mesh_path, ENROLL_DIR)
    except KeyError:
        return {}
    if folder.type != "tree":
        return {}
    out = {}
    for item in folder:
        if item.type == "tree":
            continue
        regular = item.type == "blob" and item.mode in (0o100644, 0o100755)
        out[item.name] = _read_blob(item) if regular else b""
    return out


def read_worktree(repo: git.Repo, mesh_path: str) -> Snapshot:
    top = Path(str(repo.working_tree_dir))
    mesh_file = top / mesh_path
    mesh = mesh_file.read_bytes() if mesh_file.is_file() else None
    state_dir = top / _state_dir(mesh_path)
    state: dict[str, bytes] = {}
    irregular: dict[str, str] = {}
    if state_dir.is_dir() and not state_dir.is_symlink():
        from meshops.providers.files import list_beneath, read_beneath

        listed = list_beneath(state_dir)
        files = [p for p, kind in listed.items() if kind == "file"]
        irregular = {p: kind for p, kind in listed.items() if kind != "file"}
        for path, data in read_beneath(state_dir, files, max_size=MAX_STATE_FILE * 4).items():
            if isinstance(data, bytes):
                state[path] = data
            else:
                irregular[path] = data
    from meshops.enroll import read_request_files

    enroll = read_request_files(top / _beside(mesh_path, "."))
    return Snapshot(WORKTREE, None, mesh_path, mesh, state, irregular, enroll)


def is_ancestor(repo: git.Repo, base: str, head: str) -> bool:
    return bool(repo.is_ancestor(resolve(repo, base), resolve(repo, head)))


def _state_dir(mesh_path: str) -> str:
    return _beside(mesh_path, STATE_DIR)


def _beside(mesh_path: str, name: str) -> str:
    """`name` in the directory of mesh.yaml, repository-relative."""
    parent = PurePosixPath(mesh_path).parent
    return (parent / name).as_posix() if str(parent) != "." else name


def _blob(tree: Any, path: str) -> bytes | None:
    try:
        item = tree / path
    except KeyError:
        return None
    if item.type != "blob":
        raise MeshError(f"{path} is a {item.type} in git, expected a file")
    return _read_blob(item)


def _read_blob(item: Any) -> bytes:
    if item.size > MAX_STATE_FILE * 4:
        raise MeshError(f"{item.path}: {item.size:,} bytes is too large to review")
    data: bytes = item.data_stream.read()
    return data
