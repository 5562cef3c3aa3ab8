"""meshops on a real kernel's WireGuard: a Debian kernel (with the wireguard module) boots
under QEMU with software emulation (virtme-ng; no KVM needed) and runs `kernel_guest.py`
inside: three host applies in network namespaces, one endpoint change, a no-op plan,
ping over the overlay, all through the kernel's generic netlink family.

This machine has no WireGuard module; `scripts/install.sh` extracts Debian's
`linux-image-amd64` into KERNEL_DIR and installs qemu-system-x86 and virtme-ng. The
guest sees this machine's file system (read-only, with writable overlays), so it runs
the same Python, meshops and tools. Bounded: the VM is killed after VM_TIMEOUT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
# not under /var, /tmp, /usr or /opt: the guest overlays those, and virtme-ng's link to
# the modules from inside an overlaid directory finds nothing
KERNEL_DIR = Path(
    os.environ.get("MESHOPS_TEST_KERNEL_DIR", Path.home() / ".cache/meshops-test/kernel")
)
VM_TIMEOUT = 1200  # seconds; about 5 minutes is usual under emulation on 2 shared cores
INSTALL_HINT = "run `bash scripts/install.sh` (it extracts the kernel and installs QEMU)"


def _kernel_image() -> Path:
    images = sorted(KERNEL_DIR.glob("boot/vmlinuz-*"))
    assert images, f"no Debian kernel under {KERNEL_DIR}/boot: {INSTALL_HINT}"
    version = images[-1].name.removeprefix("vmlinuz-")
    module = KERNEL_DIR / "lib/modules" / version / "kernel/drivers/net/wireguard/wireguard.ko"
    assert module.exists(), f"{module} is missing: {INSTALL_HINT}"
    return images[-1]


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: {INSTALL_HINT}"
    return found


def test_kernel_wireguard_in_a_vm(tmp_path: Path) -> None:
    image = _kernel_image()
    vng = _tool("vng")
    for tool in ("qemu-system-x86_64", "depmod"):
        assert shutil.which(tool), f"{tool} is not installed: {INSTALL_HINT}"
    out = tmp_path / "out"
    out.mkdir()
    bindir = Path(sys.executable).parent
    script = (
        "set +e; modprobe wireguard; modprobe veth; modprobe bridge; "
        f"cd {REPO}; export PATH={bindir}:$PATH PYTHONPATH={REPO} PYTHONDONTWRITEBYTECODE=1 "
        "SOPS_DISABLE_VERSION_CHECK=1 MESHOPS_IDENTITY= MESHOPS_NODE=; "
        f"{sys.executable} -m pytest -p no:cacheprovider -p no:xdist -q -x "
        f"--basetemp=/tmp/meshops-kernel-vm tests/e2e/kernel_guest.py > {out}/log 2>&1; "
        f"echo $? > {out}/rc"
    )
    argv = [vng, "--run", str(image), "--disable-kvm", "--memory", "2G", "--cpus", "2",
            "--rwdir", str(out), "--exec", script]  # fmt: skip
    try:
        vm = subprocess.run(argv, capture_output=True, text=True, timeout=VM_TIMEOUT, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"the VM did not finish within {VM_TIMEOUT}s\n--- guest log\n{_read(out / 'log')}"
            f"\n--- console\n{_tail(exc.stdout)}{_tail(exc.stderr)}"
        ) from None
    log = _read(out / "log")
    rc = _read(out / "rc").strip()
    assert rc == "0", (
        f"kernel WireGuard checks in the VM failed (pytest exit {rc or 'missing'}; "
        f"vng exit {vm.returncode})\n--- guest pytest\n{log}\n--- console\n"
        f"{_tail(vm.stdout)}{_tail(vm.stderr)}"
    )
    assert " passed" in log and "failed" not in log, log


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str | bytes | None, lines: int = 60) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:]) + "\n"
