"""How fast does meshops start? Median wall and CPU time of the installed CLI against bare Python.

    python bench/startup.py [--runs 15] [--mesh examples/mesh.yaml] [--json]

Each command runs once to warm caches, then `--runs` times, the commands interleaved
so that a busy moment on the machine hits them all alike. The table shows the median
wall time, the fastest run, the median CPU time (user + system of the child: steadier
than wall time on a shared machine), both medians as ratios to `python -c pass`, and
the target from issue 8 (`--version` within 2x, `validate` of the example within 5x).

The package is byte-compiled first: with PYTHONDONTWRITEBYTECODE set (as in some CI
and agent shells) every run would otherwise recompile meshops from source, which no
installed copy does.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"meshops --version": 2.0, "meshops validate -f MESH": 5.0}


def machine_line() -> str:
    """CPU model, cores, kernel and Python: what a number needs beside it."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


def meshops_exe() -> str:
    """The console script beside this interpreter (a pyenv shim costs ~50 ms itself)."""
    beside = Path(sys.executable).parent / "meshops"
    exe = str(beside) if beside.exists() else shutil.which("meshops")
    if not exe:
        raise SystemExit("meshops is not installed: pip install -e .")
    return exe


def compile_package() -> None:
    """Write meshops' .pyc files, as an installation would have them."""
    import meshops

    compileall.compile_dir(str(Path(meshops.__file__).parent), quiet=1)


def run_once(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one run of `argv`."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {stderr.strip()}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[tuple[float, float]]]:
    """Interleaved runs of every command, after one warm-up run each."""
    for argv in commands.values():
        run_once(argv)  # warm the page cache
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            wall, cpu, _ = run_once(argv)
            samples[name].append((wall, cpu))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mesh", default=str(REPO / "examples" / "mesh.yaml"))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    compile_package()
    exe = meshops_exe()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "meshops --version": [exe, "--version"],
        "meshops --help": [exe, "--help"],
        "meshops validate -f MESH": [exe, "validate", "-f", args.mesh],
    }
    results = measure(commands, args.runs)
    base_wall = statistics.median(w for w, _ in results["python -c pass"])
    base_cpu = statistics.median(c for _, c in results["python -c pass"])
    rows: list[dict[str, Any]] = []
    for name, samples in results.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        target = TARGETS.get(name)
        rows.append(
            {
                "command": name,
                "median_ms": round(wall * 1000, 1),
                "min_ms": round(min(w for w, _ in samples) * 1000, 1),
                "cpu_ms": round(cpu * 1000, 1),
                "ratio": round(wall / base_wall, 2),
                "cpu_ratio": round(cpu / base_cpu, 2),
                "target": target,
                "meets_target": None if target is None else wall / base_wall <= target,
            }
        )
    if args.json:
        out = {"runs": args.runs, "mesh": args.mesh, "machine": machine_line(), "results": rows}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{machine_line()}; {args.runs} runs each, interleaved; MESH = {args.mesh}")
    print()
    print("| command | median | min | x python | cpu | cpu x python | target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        goal = "" if row["target"] is None else f"<= {row['target']:g}x"
        if row["meets_target"] is not None:
            goal += " met" if row["meets_target"] else " MISSED"
        print(
            f"| {row['command']} | {row['median_ms']:.1f} ms | {row['min_ms']:.1f} ms "
            f"| {row['ratio']:.2f}x | {row['cpu_ms']:.1f} ms | {row['cpu_ratio']:.2f}x "
            f"| {goal} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
