"""Repo-scope scale benchmark: apply N new nodes, then no-op plans, against a floor.

    python bench/repo_scale.py [--nodes 10,100,1000] [--runs 5] [--profile] [--json]
    python bench/repo_scale.py --nodes 10,100,1000,5000     # 5,000 is opt-in (minutes)

For each N a fresh mesh repository gets N nodes with real recipients: ~20 SSH ed25519
host keys and age identities, generated once and reused across nodes (endpoints stay
unique). The installed `meshops` CLI runs as a user runs it (a subprocess):

- apply: `apply --auto-approve` of the N new nodes (3N + 2 resources) into a new mesh,
  median of `--apply-runs` (3), each followed by Debian's `nebula-cert`: `ca` and N x
  `sign` (a key pair and a certificate per node, the same work; up to 1,000 nodes);
- no-op plan: median of `--runs` runs of `plan --detailed-exitcode`;
- floor: median of `--runs` runs of one subprocess that starts Python and loads
  mesh.yaml with PyYAML's C loader, the least any tool reading mesh.yaml pays;
- peak RSS of each child (its own getrusage maxrss, from wait4).

Plans and floors are interleaved, so a busy moment on a shared machine hits both. The
cost per node (plan minus floor, apply) should stay flat as N grows: the table prints
it per N, and the marginal cost between successive N. `--profile` then runs the
largest no-op plan in process under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from startup import compile_package, machine_line, meshops_exe

KEYS = 20
ISSUE_4_TARGET_SECONDS = 1.0  # a no-op plan of 1,000 nodes "well under 1 s"
NEBULA_TARGET = 0.5  # issue 18: a new mesh's repo apply <= 0.5x nebula-cert ca + N x sign


@dataclass
class Row:
    nodes: int
    resources: int
    apply_s: float
    apply_cpu_s: float
    apply_rss_mib: float
    plan_s: float
    plan_min_s: float
    plan_cpu_s: float
    plan_rss_mib: float
    floor_s: float
    floor_cpu_s: float
    state_kib: float
    nebula_s: float = 0.0  # nebula-cert ca + N x sign, median, interleaved with the applies

    @property
    def ratio(self) -> float:
        return self.plan_s / self.floor_s

    @property
    def plan_ms_per_node(self) -> float:
        return (self.plan_s - self.floor_s) * 1000 / self.nodes

    @property
    def apply_ms_per_node(self) -> float:
        return self.apply_s * 1000 / self.nodes


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


@dataclass
class Run:
    wall: float
    cpu: float
    rss_kib: int
    returncode: int
    stdout: str
    stderr: str


def run(argv: list[str]) -> Run:
    """One child: wall time, CPU time and its own peak RSS (wait4's rusage)."""
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    # as an installation runs: output buffered (a shell may set PYTHONUNBUFFERED, and a
    # line written per change is 3,000 system calls on a 1,000-node apply)
    env.pop("PYTHONUNBUFFERED", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Run(
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss,
            os.waitstatus_to_exitcode(status),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def checked(result: Run, what: str, ok: tuple[int, ...] = (0,)) -> Run:
    if result.returncode not in ok:
        print(result.stdout[-2000:], result.stderr, file=sys.stderr)
        raise SystemExit(f"{what} failed with exit code {result.returncode}")
    return result


def nebula_certs(directory: Path, nodes: int) -> float:
    """Seconds for Debian's `nebula-cert` to make a CA and sign `nodes` host certificates
    (a key pair each, written to disk): the same work a new mesh's repo apply does."""
    directory.mkdir()
    started = time.perf_counter()
    subprocess.run(
        ["nebula-cert", "ca", "-name", "bench", "-out-crt", str(directory / "ca.crt"),
         "-out-key", str(directory / "ca.key")],
        check=True, capture_output=True,
    )  # fmt: skip
    for i in range(1, nodes + 1):
        subprocess.run(
            ["nebula-cert", "sign", "-ca-crt", str(directory / "ca.crt"), "-ca-key",
             str(directory / "ca.key"), "-name", f"node-{i}",
             "-ip", f"10.42.{i // 250}.{i % 250 + 1}/16",
             "-out-crt", str(directory / f"node-{i}.crt"),
             "-out-key", str(directory / f"node-{i}.key")],
            check=True, capture_output=True,
        )  # fmt: skip
    return time.perf_counter() - started


def floor_argv(mesh: Path) -> list[str]:
    code = "import sys, yaml; yaml.load(open(sys.argv[1], 'rb').read(), Loader=yaml.CSafeLoader)"
    return [sys.executable, "-c", code, str(mesh)]


def bench_one(
    nodes: int, runs: int, exe: str, keep: Path | None, *, apply_runs: int, nebula: bool
) -> tuple[Row, Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f"meshops-bench-{nodes}-", dir=keep))
    pristine = make_repo(tmp, nodes)
    identity = str(tmp / "keys" / "operator")
    applies: list[Run] = []
    nebulas: list[float] = []
    # A new mesh each time, interleaved with nebula-cert, each going first in turn. No
    # tree is removed until every run is done: on a file system mounted with online
    # discard, deleting 5,000 files slows the file creations that follow for seconds.
    for i in range(apply_runs):
        repo = tmp / f"mesh-{i}"
        shutil.copytree(pristine, repo, symlinks=True)
        base = [exe, "--no-color", "-C", str(repo), "--identity", identity]
        if nebula and i % 2:
            nebulas.append(nebula_certs(tmp / f"nebula-{i}", nodes))
        applies.append(checked(run([*base, "apply", "--auto-approve"]), "apply"))
        if nebula and not i % 2:
            nebulas.append(nebula_certs(tmp / f"nebula-{i}", nodes))
    applied = sorted(applies, key=lambda r: r.wall)[len(applies) // 2]  # the median run
    base = [exe, "--no-color", "-C", str(repo)]
    plan_argv = [*base, "plan", "--detailed-exitcode"]
    checked(run(plan_argv), "warm-up plan")  # first plan after apply fills the state cache
    plans: list[Run] = []
    floors: list[Run] = []
    for _ in range(runs):
        plans.append(checked(run(plan_argv), "no-op plan"))
        floors.append(checked(run(floor_argv(repo / "mesh.yaml")), "floor"))
    row = Row(
        nodes=nodes,
        resources=3 * nodes + 2,
        apply_s=applied.wall,
        apply_cpu_s=applied.cpu,
        apply_rss_mib=applied.rss_kib / 1024,
        plan_s=statistics.median(p.wall for p in plans),
        plan_min_s=min(p.wall for p in plans),
        plan_cpu_s=statistics.median(p.cpu for p in plans),
        plan_rss_mib=max(p.rss_kib for p in plans) / 1024,
        floor_s=statistics.median(f.wall for f in floors),
        floor_cpu_s=statistics.median(f.cpu for f in floors),
        state_kib=(repo / "state" / "state.yaml").stat().st_size / 1024,
        nebula_s=statistics.median(nebulas) if nebulas else 0.0,
    )
    return row, repo


def linear_fit(points: list[tuple[int, float]]) -> tuple[float, float, float]:
    """Least-squares `y = fixed + per_node * n`, and the worst relative deviation."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    per_node = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    fixed = mean_y - per_node * mean_x
    worst = max(abs(fixed + per_node * x - y) / y for x, y in points)
    return fixed, per_node, worst


def print_table(rows: list[Row], runs: int) -> None:
    print(machine_line())
    print(
        f"no-op plan and floor: medians of {runs} interleaved runs; apply and nebula-cert: "
        "medians of --apply-runs interleaved runs"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (wall times suffer above ~1)")
    print()
    print(
        "| nodes | apply | apply CPU | apply/node | apply RSS | no-op plan | (min) | plan CPU "
        "| floor | plan/floor | marginal plan/node | plan RSS | state.yaml | nebula-cert "
        "| apply/nebula |"
    )
    print("| ---: " * 15 + "|")
    previous: Row | None = None
    for row in rows:
        marginal = ""
        if previous is not None:
            extra = (row.plan_s - row.floor_s) - (previous.plan_s - previous.floor_s)
            marginal = f"{extra * 1000 / (row.nodes - previous.nodes):.3f} ms"
        print(
            f"| {row.nodes:,} | {row.apply_s:.2f} s | {row.apply_cpu_s:.2f} s "
            f"| {row.apply_ms_per_node:.1f} ms "
            f"| {row.apply_rss_mib:.0f} MiB | {row.plan_s:.3f} s | {row.plan_min_s:.3f} s "
            f"| {row.plan_cpu_s:.3f} s | {row.floor_s:.3f} s | {row.ratio:.1f}x "
            f"| {marginal} | {row.plan_rss_mib:.0f} MiB | {row.state_kib:.0f} KiB "
            f"| {_nebula(row)} |"
        )
        previous = row
    print()
    for row in rows:
        if row.nodes == 1000:
            verdict = "met" if row.plan_s < ISSUE_4_TARGET_SECONDS else "MISSED"
            print(f"issue 4: no-op plan of 1,000 nodes {row.plan_s:.3f} s (< 1 s: {verdict})")
        if row.nodes == 1000 and row.nebula_s:
            ratio = row.apply_s / row.nebula_s
            verdict = "met" if ratio <= NEBULA_TARGET else "MISSED"
            print(
                f"issue 18: new 1,000-node mesh, repo apply {row.apply_s:.2f} s vs nebula-cert "
                f"{row.nebula_s:.2f} s = {ratio:.2f}x (<= {NEBULA_TARGET}x: {verdict})"
            )
    if len(rows) >= 3:
        for what, points in (
            ("no-op plan", [(r.nodes, r.plan_s) for r in rows]),
            ("no-op plan CPU", [(r.nodes, r.plan_cpu_s) for r in rows]),
            ("apply", [(r.nodes, r.apply_s) for r in rows]),
            ("apply CPU", [(r.nodes, r.apply_cpu_s) for r in rows]),
        ):
            print(growth_line(what, points))
    print()


def _nebula(row: Row) -> str:
    if not row.nebula_s:
        return "| —"
    return f"{row.nebula_s:.2f} s | {row.apply_s / row.nebula_s:.2f}x"


def growth_line(what: str, points: list[tuple[int, float]]) -> str:
    """The marginal cost per node between successive N, and whether it stays flat.

    Fixed costs (start-up) dominate small N, so the first step is only a reference:
    growth is linear when the last step costs at most 1.5x the cheapest step before.
    """
    steps = [(y2 - y1) * 1000 / (x2 - x1) for (x1, y1), (x2, y2) in pairwise(points)]
    verdict = "linear" if steps[-1] <= 1.5 * min(steps[:-1]) else "GROWS FASTER THAN LINEAR"
    fixed, per_node, worst = linear_fit(points)
    return (
        f"{what}: marginal cost per node "
        + " -> ".join(f"{step:.3f} ms" for step in steps)
        + f" ({verdict}); fit {fixed:.3f} s + {per_node * 1000:.3f} ms x nodes, "
        f"worst point {worst:.0%} off"
    )


def profile_plan(repo: Path) -> None:
    import cProfile
    import io
    import pstats

    from meshops.cli.main import main

    stdout, sys.stdout = sys.stdout, io.StringIO()
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        main(["-C", str(repo), "plan"])
        profiler.disable()
    finally:
        sys.stdout = stdout
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def parse_nodes(text: str) -> list[int]:
    try:
        counts = sorted({int(part.replace("_", "")) for part in text.split(",") if part})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 10,100,1000: {text}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("node counts must be positive")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=parse_nodes, default=[10, 100, 1000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the largest plan")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--keep", type=Path, help="leave the repositories under this directory")
    parser.add_argument(
        "--apply-runs", type=int, default=3, help="new-mesh applies per size (median; default 3)"
    )
    parser.add_argument(
        "--no-nebula", action="store_true", help="skip the nebula-cert reference (not installed)"
    )
    args = parser.parse_args()

    compile_package()
    exe = meshops_exe()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="meshops-bench-") as scratch:
        keep = args.keep or Path(scratch)
        keep.mkdir(parents=True, exist_ok=True)
        repo = None
        for nodes in args.nodes:
            row, repo = bench_one(
                nodes, args.runs, exe, keep, apply_runs=args.apply_runs,
                nebula=not args.no_nebula and nodes <= 1000,
            )  # fmt: skip
            rows.append(row)
            if not args.json:
                print(f"  {nodes:,} nodes done", file=sys.stderr)
        if args.json:
            print(
                json.dumps(
                    {
                        "machine": machine_line(),
                        "runs": args.runs,
                        "rows": [
                            {**asdict(r), "ratio": r.ratio, "plan_ms_per_node": r.plan_ms_per_node}
                            for r in rows
                        ],
                    },
                    indent=2,
                )
            )
        else:
            print_table(rows, args.runs)
        if args.profile and repo is not None:
            profile_plan(repo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
