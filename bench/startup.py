"""How fast does meshops start? Median wall time of the installed CLI against bare Python.

    python bench/startup.py [--runs 15] [--mesh examples/mesh.yaml] [--json]

Each command runs once to warm caches, then `--runs` times; the table shows the median
wall time, the fastest run, the median CPU time (user + system of the child: steadier
than wall time on a busy machine) and the ratios of both medians to `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(argv: list[str], runs: int) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds) of each run."""

    def once() -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode().strip()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return elapsed, cpu

    once()  # warm the page cache and .pyc files
    return [once() for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mesh", default=str(REPO / "examples" / "mesh.yaml"))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    exe = shutil.which("meshops")
    if not exe:
        raise SystemExit("meshops is not installed: pip install -e .")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "meshops --version": [exe, "--version"],
        "meshops --help": [exe, "--help"],
        "meshops validate -f MESH": [exe, "validate", "-f", args.mesh],
    }
    results = {name: measure(argv, args.runs) for name, argv in commands.items()}
    base_wall = statistics.median(w for w, _ in results["python -c pass"])
    base_cpu = statistics.median(c for _, c in results["python -c pass"])
    rows = []
    for name, samples in results.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        rows.append(
            {
                "command": name,
                "median_ms": round(wall * 1000, 1),
                "min_ms": round(min(w for w, _ in samples) * 1000, 1),
                "cpu_ms": round(cpu * 1000, 1),
                "ratio": round(wall / base_wall, 2),
                "cpu_ratio": round(cpu / base_cpu, 2),
            }
        )
    if args.json:
        print(json.dumps({"runs": args.runs, "mesh": args.mesh, "results": rows}, indent=2))
        return 0
    print(
        f"{'command':<26} {'median':>9} {'min':>9} {'x python':>9} {'cpu':>9} {'x python':>9}"
        f"   ({args.runs} runs)"
    )
    for row in rows:
        print(
            f"{row['command']:<26} {row['median_ms']:>7.1f}ms {row['min_ms']:>7.1f}ms "
            f"{row['ratio']:>8.2f}x {row['cpu_ms']:>7.1f}ms {row['cpu_ratio']:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
