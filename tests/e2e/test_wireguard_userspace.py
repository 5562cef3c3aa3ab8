"""wireguard-go as meshops starts it (issue 15): detached, so that it outlives the run
that started it, and with errors that say what failed and what to do.

Test-bed hosts run the real wireguard-go (this kernel has no WireGuard module, so the
userspace path is the one taken; the plan test also hides any module from the host).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_fixtures import CLEAN_ENV, BedMesh, bed_mesh, clean_failure, one_host_mesh
from test_repo_support import MESHOPS, KeyRing, Result, keyring
from testbed import Host, unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]

NODE = "node-1"
IFACE = "wg-mesh"
SOCKET = f"/run/wireguard/{IFACE}.sock"
WIREGUARD_NEED = "WireGuard: the kernel module or wireguard-go (neither is available here)"


@pytest.fixture
def bed_ok() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def run_meshops(mesh: BedMesh, *args: str, env: dict[str, str] | None = None) -> Result:
    """`meshops <args> --node node-1` inside node-1's host with extra `env`."""
    argv = [MESHOPS, "--no-color", "-C", str(mesh.repo.path),
            "--identity", str(mesh.keys[NODE].private_file),
            *args, "--node", NODE, "--root", str(mesh.roots[NODE])]  # fmt: skip
    proc = mesh.host(NODE).run(argv, env={**CLEAN_ENV, **(env or {})}, check=False, timeout=120)
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    mesh.repo.outputs.append(result.output)
    return result


def wireguard_go_pids(host: Host) -> list[int]:
    return [pid for pid in host.pids() if _comm(pid) == "wireguard-go"]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def session_and_group(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[3]), int(fields[2])  # session id, process group id


def hide_kernel_modules(host: Host) -> None:
    """Make the host look like a kernel without WireGuard (its own mount namespace)."""
    for where in ("/sys/module", "/lib/modules"):
        if host.run(["test", "-d", where], check=False).returncode == 0:
            host.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "hidden", where])


# -- lifetime ---------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path, keyring: KeyRing, bed_ok: None) -> Iterator[BedMesh]:
    with bed_mesh(tmp_path, keyring, [NODE, "node-2"]) as mesh:
        mesh.apply_repo("initial state")
        mesh.apply("node-2")
        yield mesh


def test_killing_the_apply_process_group_leaves_the_tunnel_up(pair: BedMesh) -> None:
    """A cron job or a oneshot unit kills what a run leaves in its process group (or
    cgroup): wireguard-go must not be there. The apply runs as the leader of its own
    group; after it exits the whole group is SIGKILLed, and the tunnel still works."""
    argv = [MESHOPS, "--no-color", "-C", str(pair.repo.path),
            "--identity", str(pair.keys[NODE].private_file), "apply", "--auto-approve",
            "--node", NODE, "--root", str(pair.roots[NODE])]  # fmt: skip
    # `setsid` makes the shell a group leader; it prints its group and execs meshops
    script = 'echo "pgid $(ps -o pgid= $$)"; exec "$@"'
    proc = pair.host(NODE).run(["setsid", "sh", "-c", script, "sh", *argv], env=CLEAN_ENV)
    group = int(proc.stdout.split("pgid", 1)[1].split()[0])
    (daemon,) = wireguard_go_pids(pair.host(NODE))
    session, daemon_group = session_and_group(daemon)
    assert daemon_group != group and session != group, "wireguard-go is in the apply's group"

    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    time.sleep(0.5)
    assert wireguard_go_pids(pair.host(NODE)) == [daemon]
    assert pair.host(NODE).ping(pair.overlay_ip("node-2"), count=3)
    assert pair.host("node-2").ping(pair.overlay_ip(NODE), count=3)
    assert pair.plan(NODE).returncode == 0  # nothing to repair either


# -- errors -----------------------------------------------------------------------------


@pytest.fixture
def lone(tmp_path: Path, keyring: KeyRing, bed_ok: None) -> Iterator[BedMesh]:
    with one_host_mesh(tmp_path, keyring, peers=1) as mesh:
        mesh.apply_repo("initial state")
        yield mesh


def assert_untouched(mesh: BedMesh) -> None:
    """Apply stopped before any change: no certificate, no interface, no daemon."""
    assert not (mesh.roots[NODE] / "etc/meshops/tls").exists()
    assert mesh.host(NODE).run(["ip", "link", "show", IFACE], check=False).returncode != 0
    assert wireguard_go_pids(mesh.host(NODE)) == []


def test_a_plan_says_when_neither_the_kernel_nor_wireguard_go_can_run_a_tunnel(
    lone: BedMesh,
) -> None:
    hide_kernel_modules(lone.host(NODE))
    env = {"MESHOPS_WIREGUARD_GO": "/nonexistent/wireguard-go"}
    plan = run_meshops(lone, "plan", env=env)
    assert plan.returncode == 0, str(plan)
    needs = next(line for line in plan.stdout.splitlines() if line.startswith("Needs: "))
    assert WIREGUARD_NEED in needs
    assert "root privileges" not in needs, "running as root: that need is met"

    applied = run_meshops(lone, "apply", "--auto-approve", env=env)
    first = clean_failure(applied)
    assert first == (
        "WireGuard interface wg-mesh: the kernel has no WireGuard module and "
        "/nonexistent/wireguard-go is not installed ($MESHOPS_WIREGUARD_GO)"
    ), first
    assert "hint: install wireguard-go (Debian: apt install wireguard-go)" in applied.stderr
    assert "wireguard: false" in applied.stderr
    assert_untouched(lone)


def test_a_wireguard_go_that_is_not_executable_is_named(lone: BedMesh, tmp_path: Path) -> None:
    hide_kernel_modules(lone.host(NODE))
    fake = tmp_path / "wireguard-go"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    applied = run_meshops(lone, "apply", "--auto-approve", env={"MESHOPS_WIREGUARD_GO": str(fake)})
    first = clean_failure(applied)
    assert first.endswith(f"{fake} is not executable"), first
    assert "/dev/net/tun" not in applied.stderr and "┌" not in applied.stderr
    assert_untouched(lone)


def test_a_uapi_socket_served_from_another_namespace_is_named(lone: BedMesh) -> None:
    """Another wireguard-go for the same name, in another network namespace that shares
    this host's /run: wireguard-go itself would print its banner and 'unix socket in
    use'; meshops names the socket and the way out."""
    host = lone.host(NODE)
    other = subprocess.Popen(
        ["nsenter", "-t", str(host.pid), "-m", "--", "unshare", "-n", "wireguard-go", "-f",
         IFACE],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not host.path(SOCKET).exists():
            assert time.monotonic() < deadline, "the other wireguard-go did not start"
            time.sleep(0.05)
        applied = run_meshops(lone, "apply", "--auto-approve")
        first = clean_failure(applied)
        assert first.startswith(
            f'wireguard.interface["{IFACE}"]: WireGuard interface {IFACE}: wireguard-go cannot '
            f"start: its control socket /var/run/wireguard/{IFACE}.sock is already served by "
            "another process"
        ), first
        assert "stop it, or choose another wireguard.interface" in applied.stderr
        assert "Traceback" not in applied.output and "┌" not in applied.output
        assert other.poll() is None, "the other wireguard-go was disturbed"
    finally:
        other.kill()
        other.wait(timeout=10)
    # with the other one gone, its socket is stale: the next apply clears it and converges
    lone.apply(NODE)
    assert lone.plan(NODE).returncode == 0
