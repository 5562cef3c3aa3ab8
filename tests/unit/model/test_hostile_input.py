"""The worst mesh.yaml files a user (or an attacker with a pull request) can write end in
one clean error from the installed CLI, in bounded time and memory, writing nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from factories import identity, make_mesh, mesh_yaml, policy, to_yaml

from meshops.model.loader import MAX_BYTES, MAX_VALUES

SECONDS = 20.0  # generous: a shared CI machine; each case takes ~0.5-3 s alone
PEAK_RSS_MIB = 320  # a no-op `plan` of a small mesh peaks at ~45 MiB


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def exploding_policies() -> str:
    return to_yaml(
        make_mesh(
            nodes=1,
            identities={f"id-{i}": identity("node-1") for i in range(600)},
            policies=[policy("all", "*", "*", methods=["GET"], paths=["/healthz"])],
        )
    )


CASES: dict[str, tuple[object, str]] = {
    "alias bomb": (billion_laughs, "expands to more than"),
    "ten thousand open brackets": (lambda: "[" * 10_000, "YAML syntax error"),
    "deep nesting": (lambda: "[" * 5_000 + "]" * 5_000, "nesting deeper than"),
    "deep block mappings": (
        lambda: "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v\n",
        "nesting deeper than",
    ),
    "a flow list of millions of numbers": (
        lambda: "junk: [" + ",".join(["1"] * (MAX_BYTES // 2 - 16)) + "]\n",
        f"more than {MAX_VALUES:,} values",
    ),
    "a block list of millions of items": (
        lambda: "junk:\n" + "- 1\n" * (MAX_BYTES // 4 - 4),
        f"more than {MAX_VALUES:,} values",
    ),
    "a file over the size limit": (lambda: "# pad\n" * (MAX_BYTES // 6 + 1), "larger than"),
    "a five megabyte name": (
        lambda: mesh_yaml(nodes=1).replace("name: test", "name: '" + "x" * 5_000_000 + "'"),
        "(5,000,002 characters) is not a valid name",
    ),
    "non-UTF-8 bytes": (
        lambda: mesh_yaml(nodes=1).encode().replace(b"name: test", b"name: t\xff\xfest"),
        "not valid UTF-8",
    ),
    "a policy for 360,000 pairs": (exploding_policies, "over the limit of"),
}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            info = path.stat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


def run_cli(*args: str) -> tuple[int, str, float, float]:
    """(exit code, stderr, seconds, peak RSS in MiB) of the installed console script."""
    exe = shutil.which("meshops")
    assert exe
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [exe, *args],
            stdout=out,
            stderr=err,
            env={**os.environ, "NO_COLOR": "1", "SOPS_DISABLE_VERSION_CHECK": "1"},
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        err.seek(0)
        return (
            os.waitstatus_to_exitcode(status),
            err.read().decode(errors="replace"),
            elapsed,
            usage.ru_maxrss / 1024,
        )


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_mesh_ends_in_one_clean_error_quickly_in_bounded_memory_writing_nothing(
    case: str, tmp_path: Path
) -> None:
    make, fragment = CASES[case]
    content = make()  # type: ignore[operator]
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    mesh = repo / "mesh.yaml"
    if isinstance(content, bytes):
        mesh.write_bytes(content)
    else:
        mesh.write_text(content)
    before = snapshot(repo)
    for command in ("validate", "plan"):
        code, stderr, seconds, rss = run_cli("-C", str(repo), command)
        assert code == 1, stderr
        assert stderr.startswith("error: "), stderr[:500]
        assert fragment in stderr, stderr[:500]
        assert "Traceback" not in stderr
        assert len(stderr) < 4_000, f"{len(stderr):,} characters of error"
        assert seconds < SECONDS, f"{command} took {seconds:.1f} s"
        assert rss < PEAK_RSS_MIB, f"{command} peaked at {rss:.0f} MiB"
    assert snapshot(repo) == before
    assert not (repo / "state").exists()
