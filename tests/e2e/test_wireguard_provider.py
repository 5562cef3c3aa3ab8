"""The WireGuard provider against real wireguard-go, in the namespace test bed."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testbed import Host, TestBed

from meshops.providers.wireguard import generate_private_key, public_key_of

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

HELPER = str(Path(__file__).with_name("wg_helper.py"))
IFACE = "wg-mesh"
PORT = 51820
MTU = 1420


def call(host: Host, *ops: dict[str, Any]) -> list[Any]:
    """Run provider operations inside `host`; returns one result per operation."""
    payload = json.dumps([{"name": IFACE, **op} for op in ops])
    proc = host.run([sys.executable, HELPER], input=payload, timeout=60)
    return json.loads(proc.stdout)


def overlay_ip(host: Host) -> str:
    return f"10.42.0.{host.index}"


@dataclass
class Mesh:
    bed: TestBed
    keys: dict[str, bytes]

    def public(self, host: Host) -> str:
        return public_key_of(self.keys[host.name])

    def peer(
        self, host: Host, *, endpoint: str | None = None, keepalive: int | None = None
    ) -> dict[str, Any]:
        return {
            "public_key": self.public(host),
            "endpoint": endpoint or f"{host.underlay_ip}:{PORT}",
            "allowed_ips": [f"{overlay_ip(host)}/32"],
            "keepalive": keepalive,
        }

    def configure_ops(self, host: Host) -> list[dict[str, Any]]:
        """Everything that makes `host` a mesh member, in apply order."""
        private = base64.b64encode(self.keys[host.name]).decode()
        ops: list[dict[str, Any]] = [
            {"op": "ensure_interface", "mtu": MTU},
            {"op": "configure_device", "private_key": private, "listen_port": PORT},
            {"op": "add_address", "address": f"{overlay_ip(host)}/16"},
            {"op": "set_up"},
        ]
        ops += [{"op": "set_peer", "peer": self.peer(p)} for p in self.bed.hosts if p is not host]
        return ops

    def read(self, host: Host) -> dict[str, Any]:
        (state,) = call(host, {"op": "read"})
        assert state is not None
        return state


@pytest.fixture
def mesh(testbed: Callable[..., TestBed]) -> Iterator[Mesh]:
    bed = testbed(3)
    mesh = Mesh(bed, {h.name: generate_private_key() for h in bed.hosts})
    for host in bed.hosts:
        results = call(host, *mesh.configure_ops(host))
        assert results[0] is True, "the interface was created"
    yield mesh


def ping_all(mesh: Mesh) -> None:
    for src in mesh.bed.hosts:
        for dst in mesh.bed.hosts:
            if src is not dst:
                assert src.ping(overlay_ip(dst), timeout=5), f"{src.name} -> {dst.name} over wg"


def test_three_hosts_ping_each_other_over_the_overlay_and_read_reports_it(mesh: Mesh) -> None:
    ping_all(mesh)
    for host in mesh.bed.hosts:
        state = mesh.read(host)
        assert state["public_key"] == mesh.public(host)
        assert state["listen_port"] == PORT
        others = {mesh.public(h): h for h in mesh.bed.hosts if h is not host}
        assert set(state["peers"]) == set(others)
        for key, peer in state["peers"].items():
            assert peer["allowed_ips"] == [f"{overlay_ip(others[key])}/32"]
            assert peer["endpoint"] == f"{others[key].underlay_ip}:{PORT}"
            assert peer["last_handshake"] is not None
            assert time.time() - peer["last_handshake"] < 120
            assert peer["rx_bytes"] > 0 and peer["tx_bytes"] > 0
            assert peer["keepalive"] is None and peer["preshared_key"] is False
        (link,) = call(host, {"op": "read_link"})
        assert link["kind"] == "tun"  # wireguard-go; "wireguard" with the kernel module
        assert link["mtu"] == MTU and link["up"] is True
        assert f"{overlay_ip(host)}/16" in link["addresses"]
        assert "10.42.0.0/16" in link["routes"]


def test_raw_uapi_dump_parses_to_what_read_reports(mesh: Mesh) -> None:
    from meshops.providers.wireguard.uapi import parse_get

    h1 = mesh.bed.hosts[0]
    ping_all(mesh)
    raw, state = call(h1, {"op": "raw_get"}, {"op": "read"})
    parsed = parse_get(raw, name=IFACE)
    assert set(parsed.peers) == set(state["peers"])
    for key, peer in parsed.peers.items():
        assert peer.last_handshake == state["peers"][key]["last_handshake"]
        assert list(peer.allowed_ips) == state["peers"][key]["allowed_ips"]


def test_reading_a_thousand_peers_takes_milliseconds(testbed: Callable[..., TestBed]) -> None:
    (host,) = testbed(1).hosts
    private = base64.b64encode(generate_private_key()).decode()
    call(
        host,
        {"op": "ensure_interface", "mtu": MTU},
        {"op": "configure_device", "private_key": private, "listen_port": PORT},
        {"op": "many_peers", "count": 1000},
    )
    (timing,) = call(host, {"op": "read_timing"})
    print(f"read of {timing['peers']} peers: best {timing['best_ms']:.1f} ms, "
          f"median {timing['median_ms']:.1f} ms")  # fmt: skip
    assert timing["peers"] == 1000
    assert timing["best_ms"] < 250  # ~17 ms measured on an idle 2-core machine


def test_changing_one_endpoint_updates_that_peer_in_place_and_keeps_other_sessions(
    mesh: Mesh,
) -> None:
    h1, h2, h3 = mesh.bed.hosts
    ping_all(mesh)
    before = mesh.read(h1)["peers"]
    h2.run(["ip", "addr", "add", "192.0.2.112/24", "dev", "eth0"])
    time.sleep(1.1)  # handshake times have 1 s resolution in what we compare
    call(h1, {"op": "set_peer", "peer": mesh.peer(h2, endpoint=f"192.0.2.112:{PORT}")})
    after = mesh.read(h1)["peers"]
    assert after[mesh.public(h2)]["endpoint"] == f"192.0.2.112:{PORT}"
    assert after[mesh.public(h3)] == before[mesh.public(h3)]
    assert after[mesh.public(h2)]["last_handshake"] == before[mesh.public(h2)]["last_handshake"]
    assert h1.ping(overlay_ip(h2), timeout=5)
    assert h1.ping(overlay_ip(h3), timeout=5)
    later = mesh.read(h1)["peers"]
    assert later[mesh.public(h3)]["last_handshake"] == before[mesh.public(h3)]["last_handshake"]


def test_removing_a_peer_removes_only_that_peer(mesh: Mesh) -> None:
    h1, h2, h3 = mesh.bed.hosts
    ping_all(mesh)
    before = mesh.read(h1)["peers"]
    call(h1, {"op": "remove_peer", "public_key": mesh.public(h3)})
    after = mesh.read(h1)["peers"]
    assert set(after) == {mesh.public(h2)}
    assert after[mesh.public(h2)]["last_handshake"] == before[mesh.public(h2)]["last_handshake"]
    assert h1.ping(overlay_ip(h2), timeout=5)
    assert not h1.ping(overlay_ip(h3), timeout=2)


def test_keepalive_set_then_cleared_reads_back_as_off(mesh: Mesh) -> None:
    h1, h2, _ = mesh.bed.hosts
    call(h1, {"op": "set_peer", "peer": mesh.peer(h2, keepalive=7)})
    assert mesh.read(h1)["peers"][mesh.public(h2)]["keepalive"] == 7
    call(h1, {"op": "set_peer", "peer": mesh.peer(h2, keepalive=None)})
    assert mesh.read(h1)["peers"][mesh.public(h2)]["keepalive"] is None


def test_preshared_key_set_then_cleared_explicitly(mesh: Mesh) -> None:
    h1, h2, _ = mesh.bed.hosts
    psk = base64.b64encode(bytes(range(32))).decode()
    call(h1, {"op": "set_peer", "peer": {**mesh.peer(h2), "preshared_key": psk}})
    assert mesh.read(h1)["peers"][mesh.public(h2)]["preshared_key"] is True
    call(h1, {"op": "set_peer", "peer": mesh.peer(h2)})
    assert mesh.read(h1)["peers"][mesh.public(h2)]["preshared_key"] is False


def test_running_the_same_configuration_twice_changes_nothing(mesh: Mesh) -> None:
    ping_all(mesh)
    for host in mesh.bed.hosts:
        before = mesh.read(host)
        (link_before,) = call(host, {"op": "read_link"})
        time.sleep(1.1)
        results = call(host, *mesh.configure_ops(host))
        assert results[0] is False, "ensure_interface created nothing"
        assert results[2] is False and results[3] is False, "address and up unchanged"
        after = mesh.read(host)
        assert after["public_key"] == before["public_key"]
        assert after["listen_port"] == before["listen_port"]
        for key, peer in before["peers"].items():
            now = after["peers"][key]
            for field in ("endpoint", "allowed_ips", "keepalive", "last_handshake"):
                assert now[field] == peer[field], f"{host.name}: peer {field} changed"
        assert call(host, {"op": "read_link"}) == [link_before]
    ping_all(mesh)


def test_delete_interface_removes_the_link_and_stops_wireguard_go(mesh: Mesh) -> None:
    h1 = mesh.bed.hosts[0]
    assert call(h1, {"op": "delete_interface"}) == [True]
    assert call(h1, {"op": "read_link"}, {"op": "read"}) == [None, None]
    commands = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in h1.pids()]
    assert "wireguard-go" not in commands
    assert call(h1, {"op": "delete_interface"}) == [False]
