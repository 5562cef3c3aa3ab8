"""Kernel WireGuard end to end, run INSIDE the VM that `test_kernel_wireguard.py` boots
(a Debian kernel with the wireguard module, under QEMU). Not collected on the host: the
file name does not match `test_*.py`; the VM test names it explicitly.

Three test-bed hosts (network namespaces inside the guest) take the mesh through the
real kernel's generic netlink family: three host applies, one endpoint change, a no-op
plan, ping over the overlay. Each step asserts what a user would check with `ip` and
`wg`. The tests run in file order and share one mesh.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_fixtures import IFACE, BedMesh, bed_mesh
from test_repo_support import KeyRing

NODES = ("node-1", "node-2", "node-3")
MOVED = "192.0.2.113"  # node-3's second underlay address, its endpoint after the move


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedMesh]:
    if not Path("/sys/module/wireguard").exists():
        raise AssertionError("kernel_guest.py runs inside the VM, with the wireguard module")
    # as few keys as the three nodes need: key generation is slow under emulation
    keys = KeyRing.make(tmp_path_factory.mktemp("keys"), hosts=len(NODES))
    with bed_mesh(tmp_path_factory.mktemp("kernel"), keys, NODES) as built:
        built.apply_repo("initial state")
        yield built


def _wireguard_go_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0.endswith(b"wireguard-go"):
                found.append(int(entry.name))
    return found


def test_three_host_applies_make_kernel_links_with_every_peer(mesh: BedMesh) -> None:
    for node in NODES:
        result = mesh.apply(node)
        assert "Apply complete!" in result.stdout, result
    for node in NODES:
        link = mesh.host(node).run(["ip", "-d", "link", "show", IFACE]).stdout
        assert "wireguard" in link.split("\n", 2)[-1], link  # the kernel's link kind
        assert mesh.wg_peers(node) == {mesh.public_key(n) for n in NODES if n != node}
        public = mesh.wg(node, "public-key").strip()
        assert public == mesh.public_key(node)
    assert not _wireguard_go_pids(), "wireguard-go started although the kernel has WireGuard"


def test_ping_over_the_overlay(mesh: BedMesh) -> None:
    mesh.traffic()


def test_endpoint_change_updates_only_that_peer_in_place(mesh: BedMesh) -> None:
    mesh.host("node-3").run(["ip", "addr", "add", f"{MOVED}/24", "dev", "eth0"])
    mesh.set_endpoint("node-3", MOVED)
    mesh.apply_repo("node-3 moves")
    before = mesh.wg_table("node-1", "endpoints")
    result = mesh.apply("node-1")
    assert 'wireguard.peer["node-3"]: endpoint changed' in result.stdout, result
    assert "Resources: 0 added, 1 changed, 0 destroyed." in result.stdout, result
    after = mesh.wg_table("node-1", "endpoints")
    assert after[mesh.public_key("node-3")] == f"{MOVED}:51820"
    assert after[mesh.public_key("node-2")] == before[mesh.public_key("node-2")]
    # the move completes: node-3's first address goes (the second one is kept), so node-3
    # sends from the new one. Were both kept, node-1's kernel would roam node-3 back to the
    # first one, and whether the next plan accepts that depends on how long ago the last
    # handshake was: minutes under a loaded emulator.
    host = mesh.host("node-3")
    host.run(["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"])
    host.run(["ip", "addr", "del", f"{host.underlay_ip}/24", "dev", "eth0"])
    assert f"{MOVED}/24" in host.run(["ip", "-4", "addr", "show", "dev", "eth0"]).stdout


def test_no_op_plan_after_convergence(mesh: BedMesh) -> None:
    for node in ("node-2", "node-3"):
        mesh.apply(node)
    for node in NODES:
        result = mesh.plan(node)
        assert result.returncode == 0, result


def test_ping_after_the_move(mesh: BedMesh) -> None:
    mesh.traffic()
    assert mesh.plan("node-1").returncode == 0
