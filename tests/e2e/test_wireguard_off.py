"""A node whose WireGuard is turned off (`nodes.<n>.wireguard: false`) after it ran the
tunnel: its next host apply removes the interface meshops made (peers, wireguard-go)
and the packet filter that guarded it, so no peer outlives the mesh's view of it; an
interface of that name meshops did not make is left alone.

Three test-bed hosts with real wireguard-go and nft; n2 leaves WireGuard.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_fixtures import IFACE, BedMesh, bed_mesh, converged
from test_repo_support import KeyRing, keyring
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    identities = {"web": {"nodes": ["n2"]}, "api": {"nodes": ["n1"], "ports": ["5432/tcp"]}}
    with bed_mesh(tmp_path_factory.mktemp("wg-off"), keyring, ["n1", "n2", "n3"],
                  identities=identities) as built:  # fmt: skip
        converged(built)
        built.traffic()
        yield built


def has_link(mesh: BedMesh, node: str) -> bool:
    return mesh.host(node).run(["ip", "link", "show", IFACE], check=False).returncode == 0


def has_table(mesh: BedMesh, node: str) -> bool:
    listed = mesh.host(node).run(["nft", "list", "table", "inet", "meshops"], check=False)
    return listed.returncode == 0


def userspace_processes(mesh: BedMesh, node: str) -> list[str]:
    """wireguard-go processes running in the node's network namespace."""
    found = []
    for pid in mesh.host(node).pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"wireguard-go"):
            found.append(b" ".join(argv).decode())
    return found


def test_turning_wireguard_off_removes_the_tunnel_its_peers_and_its_filter(
    mesh: BedMesh,
) -> None:
    assert has_link(mesh, "n2") and has_table(mesh, "n2") and userspace_processes(mesh, "n2")
    mesh.repo.data["nodes"]["n2"]["wireguard"] = False
    mesh.apply_repo("n2: certificates only")

    plan = mesh.plan("n2")
    assert plan.returncode == 2, plan
    assert f'- wireguard.interface["{IFACE}"]' in plan.stdout, plan.stdout
    assert "WireGuard is off for this node (certificates only): the tunnel and its 2 peer(s) go" \
        in plan.stdout  # fmt: skip
    assert "- firewall.table" in plan.stdout, plan.stdout
    mesh.apply("n2")
    assert not has_link(mesh, "n2")
    assert userspace_processes(mesh, "n2") == []
    assert not has_table(mesh, "n2")
    assert mesh.plan("n2").returncode == 0  # converged: nothing left to remove

    # the others drop n2's peer, and reach it on the underlay from now on
    for node in ("n1", "n3"):
        mesh.apply(node)
        assert mesh.public_key("n1" if node == "n3" else "n3") in mesh.wg_peers(node)
        assert len(mesh.wg_peers(node)) == 1
    hosts = mesh.host_path("n1", "/etc/hosts").read_text()
    assert f"{mesh.host('n2').underlay_ip}\tn2.{mesh.domain}" in hosts


def test_an_interface_of_that_name_meshops_did_not_make_is_left_alone(mesh: BedMesh) -> None:
    host = mesh.host("n2")
    host.run(["ip", "link", "add", IFACE, "type", "veth", "peer", "name", "other-end"])  # not ours
    try:
        assert mesh.plan("n2").returncode == 0
        mesh.apply("n2")
        assert has_link(mesh, "n2")
    finally:
        host.run(["ip", "link", "del", IFACE])
