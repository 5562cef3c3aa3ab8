"""Kernel WireGuard vs wireguard-go: the same no-op host plan on both, in one VM.

    python bench/kernel_plan.py [--nodes 200] [--runs 7]

This machine has no WireGuard module, so a Debian kernel that has one boots under QEMU
with software emulation (virtme-ng, as tests/e2e/test_kernel_wireguard.py does; run
scripts/install.sh first). On this machine an N-node mesh is built and applied at repo
scope; inside the guest two test-bed hosts apply node-1's view, one on a kernel link
(generic netlink), one on a wireguard-go link started first (UAPI), then time
`plan --node node-1 --detailed-exitcode` on each, interleaved. Emulation slows both
alike; the ratio is what matters: a no-op plan on the kernel should cost what it costs
on the UAPI path.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

ENV = {"MESHOPS_IDENTITY": "", "MESHOPS_NODE": "", "SOPS_DISABLE_VERSION_CHECK": "1"}


def guest(work: Path, runs: int) -> None:
    """Inside the VM: two hosts, one kernel link and one wireguard-go link, timed plans."""
    from testbed import TestBed

    mesh = json.loads((work / "mesh.json").read_text())
    exe = mesh["meshops"]

    def argv(root: Path, *args: str) -> list[str]:
        return [exe, "--no-color", "-C", mesh["repo"], *args, "--node", "node-1",
                "--root", str(root), "--identity", mesh["identity"]]  # fmt: skip

    timings: dict[str, list[float]] = {"kernel": [], "wireguard-go": []}
    with TestBed(2, names=["kernel", "userspace"], prefix="kp") as bed:
        kernel, userspace = bed.hosts
        userspace.run(["wireguard-go", "wg-mesh"])
        roots = {}
        for name, host in (("kernel", kernel), ("wireguard-go", userspace)):
            roots[name] = Path(tempfile.mkdtemp(prefix=f"root-{name}-"))
            host.run(argv(roots[name], "apply", "--auto-approve"), env=ENV, timeout=900)
        kinds = {
            name: host.run(["ip", "-d", "link", "show", "wg-mesh"]).stdout
            for name, host in (("kernel", kernel), ("wireguard-go", userspace))
        }
        assert "wireguard" in kinds["kernel"].split("\n", 2)[-1], kinds["kernel"]
        assert "tun" in kinds["wireguard-go"], kinds["wireguard-go"]
        for _ in range(runs):
            for name, host in (("kernel", kernel), ("wireguard-go", userspace)):
                started = time.perf_counter()
                done = host.run(argv(roots[name], "plan", "--detailed-exitcode"), env=ENV,
                                check=False, timeout=900)  # fmt: skip
                timings[name].append(time.perf_counter() - started)
                assert done.returncode == 0, done.stdout + done.stderr
    (work / "timings.json").write_text(json.dumps(timings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)  # wireguard-go crawls emulated
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--guest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guest:
        guest(args.guest, args.runs)
        return 0
    from host_scale import build_mesh
    from startup import compile_package, machine_line, meshops_exe
    from test_kernel_wireguard import KERNEL_DIR, _kernel_image

    compile_package()
    image = _kernel_image()
    work = Path(tempfile.mkdtemp(prefix="meshops-kernel-plan-", dir="/tmp"))
    try:
        import host_scale

        host_scale.MESHOPS = meshops_exe()
        mesh, _ = build_mesh(work, args.nodes)
        (work / "mesh.json").write_text(json.dumps({
            "repo": str(mesh.repo), "identity": str(mesh.identity), "meshops": meshops_exe(),
        }))  # fmt: skip
        script = (
            "modprobe wireguard; modprobe veth; modprobe bridge; modprobe tun; "
            f"export PATH={Path(sys.executable).parent}:$PATH PYTHONPATH={REPO}; "
            f"{sys.executable} {HERE / 'kernel_plan.py'} --guest {work} --runs {args.runs} "
            f"> {work}/guest.log 2>&1"
        )
        vng = Path(sys.executable).parent / "vng"
        subprocess.run(
            [str(vng if vng.exists() else "vng"), "--run", str(image), "--disable-kvm",
             "--memory", "3G", "--cpus", "2", "--rwdir", str(work), "--exec", script],
            capture_output=True, timeout=3600, check=False,
        )  # fmt: skip
        timings_file = work / "timings.json"
        if not timings_file.exists():
            log = (
                (work / "guest.log").read_text(errors="replace")
                if (work / "guest.log").exists()
                else ""
            )
            raise SystemExit(f"the guest wrote no timings\n{log[-4000:]}")
        timings = json.loads(timings_file.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kernel = statistics.median(timings["kernel"])
    userspace = statistics.median(timings["wireguard-go"])
    print("| N | no-op plan, kernel (genetlink) | no-op plan, wireguard-go (UAPI) | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {args.nodes:,} | {kernel * 1000:.0f} ms | {userspace * 1000:.0f} ms "
          f"| {kernel / userspace:.2f}x |")  # fmt: skip
    print(f"\nmedians of {args.runs} interleaved runs inside a VM under software emulation "
          f"({image.name}, {KERNEL_DIR}); {machine_line()}")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
