"""Repo-scope scale benchmark: a 1,000-node mesh, first apply and no-op plan.

    python bench/repo_scale.py [--nodes 1000] [--runs 5] [--profile]

Recipients are real keys: ~20 SSH ed25519 host keys and age identities, generated once
and reused across nodes (endpoints stay unique). Times the installed `meshops` CLI
(a subprocess, as a user runs it): `apply --auto-approve` on the fresh repository, then
the median of `--runs` no-op `plan --detailed-exitcode`. `--profile` also runs the
no-op plan in process under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

KEYS = 20


def make_repo(directory: Path, nodes: int) -> Path:
    import pyrage
    from factories import endpoint, make_mesh, to_yaml

    keys = directory / "keys"
    keys.mkdir()
    operator = pyrage.x25519.Identity.generate()
    (keys / "operator").write_text(f"{operator}\n")
    recipients = []
    for i in range(KEYS // 2):
        path = keys / f"ssh-{i}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
            check=True,
            capture_output=True,
        )
        recipients.append(" ".join(path.with_suffix(".pub").read_text().split()[:2]))
        recipients.append(str(pyrage.x25519.Identity.generate().to_public()))
    data = make_mesh(nodes=0, wireguard={"network": "10.42.0.0/16"})
    data["ca"]["recipients"] = [str(operator.to_public())]
    data["nodes"] = {
        f"node-{i}": {"endpoint": endpoint(i), "recipient": recipients[i % len(recipients)]}
        for i in range(1, nodes + 1)
    }
    repo = directory / "mesh"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "mesh.yaml").write_text(to_yaml(data))
    return repo


def meshops(repo: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = ["meshops", "--no-color", "-C", str(repo), *args]
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, proc


def profile_plan(repo: Path) -> None:
    import cProfile
    import pstats

    from meshops.cli.main import main

    devnull = open(os.devnull, "w")  # noqa: SIM115
    stdout, sys.stdout = sys.stdout, devnull
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        main(["-C", str(repo), "plan"])
        profiler.disable()
    finally:
        sys.stdout = stdout
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshops-bench-") as tmp:
        repo = make_repo(Path(tmp), args.nodes)
        identity = str(Path(tmp) / "keys" / "operator")
        seconds, proc = meshops(repo, "--identity", identity, "apply", "--auto-approve")
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr, file=sys.stderr)
            return 1
        print(f"nodes: {args.nodes}")
        print(f"first apply: {seconds:.2f} s ({3 * args.nodes + 2} resources)")
        size = (repo / "state" / "state.yaml").stat().st_size
        print(f"state.yaml: {size / 1024:.0f} KiB")
        times = []
        for _ in range(args.runs):
            seconds, proc = meshops(repo, "plan", "--detailed-exitcode")
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr, file=sys.stderr)
                return 1
            times.append(seconds)
        print(f"no-op plan: median {statistics.median(times):.3f} s of {args.runs} ", end="")
        print(f"(min {min(times):.3f}, max {max(times):.3f})")
        version, _ = meshops(repo, "--version")
        print(f"meshops --version: {version:.3f} s (interpreter start-up floor)")
        if args.profile:
            profile_plan(repo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
