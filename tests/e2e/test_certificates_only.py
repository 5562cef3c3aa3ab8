"""Certificates-only nodes (issue 15): `wireguard: false` (per node) or
`wireguard.enabled: false` (mesh-wide) manage certificates, proxies and the /etc/hosts
block, with the node's underlay addresses, and never touch the network.

1. Unprivileged: a host apply with no capability at all (not even CAP_NET_ADMIN) exits
   0 and writes the certificates and the hosts block; run again, nothing to do.
2. In the namespace test bed, a mixed mesh: n1 and n2 without WireGuard, n3 with it.
   n2 calls n1's Caddy over the underlay with the certificate meshops issued: its
   granted request passes, the others are refused at the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from mesh_fixtures import CLEAN_ENV, BedMesh, bed_mesh, openssl, start_caddy, wait_for_port
from test_host_proxies import UPSTREAM
from test_repo_support import MESHOPS, KeyRing, MeshRepo, keyring, new_repo
from testbed import unavailable_reason
from unprivileged import NO_CAPABILITIES, host_meshops

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]

BEGIN = "# BEGIN meshops (managed, do not edit)"


def hosts_block(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    start = lines.index(BEGIN)
    end = lines.index("# END meshops")
    return lines[start + 1 : end]


def ip_sans(cert_pem: Path) -> list[str]:
    cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


# -- 1. unprivileged -----------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, keyring: KeyRing) -> Iterator[MeshRepo]:
    """Two nodes, WireGuard off mesh-wide; node-2 publishes a listed IP."""
    identities = {"api": {"nodes": ["node-1"]}, "web": {"nodes": ["node-2"]}}
    built = new_repo(tmp_path / "mesh", keyring, nodes=2, wireguard={"enabled": False},
                     identities=identities)  # fmt: skip
    built.data["nodes"]["node-2"]["ips"] = ["203.0.113.7"]
    built.write_mesh()
    built.apply()
    built.commit("initial state")
    yield built


def test_repo_state_has_no_overlay_address_and_no_wireguard_key(repo: MeshRepo) -> None:
    state = repo.state()["nodes"]
    for node in ("node-1", "node-2"):
        assert "address" not in state[node] and "wireguard" not in state[node]
        assert not (repo.state_dir / "nodes" / node / "wg.key.age").exists()
    assert repo.plan().returncode == 0


def test_an_apply_without_any_capability_writes_certificates_and_hosts(
    repo: MeshRepo, tmp_path: Path
) -> None:
    root = tmp_path / "root-1"
    root.mkdir()
    plan = host_meshops(repo, "node-1", root, "plan")
    assert plan.returncode == 0, str(plan)
    assert "wireguard." not in plan.stdout and "root privileges" not in plan.stdout

    applied = host_meshops(repo, "node-1", root, "apply", "--auto-approve")
    assert applied.returncode == 0, str(applied)
    tls = root / "etc/meshops/tls/api"
    assert (tls / "key.pem").stat().st_mode & 0o777 == 0o600
    verify = openssl("verify", "-x509_strict", "-CAfile", str(tls / "ca.pem"),
                     "-untrusted", str(tls / "cert.pem"), str(tls / "cert.pem"))  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the node's published address (its endpoint's host), not an overlay address
    assert ip_sans(tls / "cert.pem") == ["192.0.2.1"]
    assert hosts_block(root / "etc/hosts") == [
        "192.0.2.1\tnode-1.mesh.test.internal api.mesh.test.internal",
        "203.0.113.7\tnode-2.mesh.test.internal web.mesh.test.internal",
    ]
    status = json.loads((root / "var/lib/meshops/status.json").read_text())
    assert status["wireguard"]["enabled"] is False and status["wireguard"]["peers"] == []
    assert status["identities"][0]["status"] == "ok"
    text = host_meshops(repo, "node-1", root, "status")
    assert "wireguard: off (certificates only)" in text.stdout

    again = host_meshops(repo, "node-1", root, "plan", "--detailed-exitcode")
    assert again.returncode == 0, str(again)


def test_show_says_a_host_plan_was_applied(repo: MeshRepo, tmp_path: Path) -> None:
    root = tmp_path / "root-2"
    root.mkdir()
    saved = tmp_path / "host.plan"
    assert host_meshops(repo, "node-2", root, "plan", "--out", str(saved)).returncode == 0
    assert "was applied" not in host_meshops(repo, "node-2", root, "show", str(saved)).stdout
    applied = host_meshops(repo, "node-2", root, "apply", str(saved))
    assert applied.returncode == 0, str(applied)
    shown = host_meshops(repo, "node-2", root, "show", str(saved)).stdout.splitlines()[-1]
    assert shown.startswith("This plan was applied to node node-2 (last apply 20"), shown
    assert shown.endswith("); applying it again is refused."), shown


def test_a_node_that_leaves_wireguard_loses_its_address_and_key(repo: MeshRepo) -> None:
    repo.data["wireguard"]["enabled"] = True
    repo.write_mesh()
    repo.apply()
    assert repo.state()["nodes"]["node-1"]["address"]
    repo.data["nodes"]["node-1"]["wireguard"] = False
    repo.write_mesh()
    plan = repo.plan()
    assert plan.returncode == 2, str(plan)
    assert '- wireguard.key["node-1"]: WireGuard turned off (wireguard: false)' in plan.stdout
    assert '- ipam.address["node-1"]: WireGuard turned off (wireguard: false)' in plan.stdout
    assert '-/+ ca.node["node-1"]' in plan.stdout  # its names changed: overlay IP -> underlay
    assert "node-2" not in plan.stdout
    repo.apply()
    state = repo.state()["nodes"]
    assert "address" not in state["node-1"] and "wireguard" not in state["node-1"]
    assert state["node-2"]["address"] and state["node-2"]["wireguard"]


# -- 2. mTLS over the underlay, in the test bed -------------------------------------------

CADDY_PORT = 8443
UPSTREAM_PORT = 8080
IDENTITIES = {
    "api": {"nodes": ["n1"], "proxy": {"kind": "caddy", "listen": CADDY_PORT,
                                       "upstream": f"127.0.0.1:{UPSTREAM_PORT}"}},
    "web": {"nodes": ["n2"]},
    "batch": {"nodes": ["n2"]},
    "ops": {"nodes": ["n3"]},
}  # fmt: skip
POLICIES = [
    {"name": "web-reads", "from": ["web", "ops"], "to": "api",
     "allow": [{"methods": ["GET"], "paths": ["/v1/*"]}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("certs-only")
    with bed_mesh(directory, keyring, ["n1", "n2", "n3"], identities=IDENTITIES,
                  policies=POLICIES) as mesh:  # fmt: skip
        nodes = mesh.repo.data["nodes"]
        nodes["n1"].update(wireguard=False, ips=[mesh.host("n1").underlay_ip])
        del nodes["n1"]["endpoint"]
        nodes["n2"]["wireguard"] = False  # publishes its endpoint's host
        mesh.apply_repo("initial state")
        for node in ("n1", "n2"):  # no capability at all inside the host
            argv = [*NO_CAPABILITIES, MESHOPS, "--no-color", "-C", str(mesh.repo.path),
                    "--identity", str(mesh.keys[node].private_file), "apply",
                    "--auto-approve", "--node", node, "--root", str(mesh.roots[node])]  # fmt: skip
            mesh.host(node).run(argv, env=CLEAN_ENV)
        mesh.apply("n3")
        n1 = mesh.host("n1")
        upstream = n1.popen(["python3", "-c", UPSTREAM, str(directory / "upstream.log"),
                             str(UPSTREAM_PORT)])  # fmt: skip
        wait_for_port(n1, UPSTREAM_PORT, proc=upstream)
        start_caddy(n1, mesh.host_path("n1", "/etc/meshops/proxy/api.caddy"), directory,
                    CADDY_PORT)  # fmt: skip
        yield mesh


def call_api(mesh: BedMesh, node: str, caller: str | None, method: str, path: str) -> str:
    """curl from `node` to api.<domain>, resolved through the node's managed hosts block;
    the HTTP code, or the curl failure."""
    name = f"api.{mesh.domain}"
    address = next(
        line.split()[0]
        for line in hosts_block(mesh.host_path(node, "/etc/hosts"))
        if name in line.split()
    )
    tls = mesh.tls_dir(node, caller or next(i for i, s in IDENTITIES.items()
                                            if s["nodes"] == [node]))  # fmt: skip
    argv = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
            "--cacert", str(tls / "ca.pem"), "--resolve", f"{name}:{CADDY_PORT}:{address}",
            "-X", method]  # fmt: skip
    if caller is not None:
        argv += ["--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem")]
    proc = mesh.host(node).run([*argv, f"https://{name}:{CADDY_PORT}{path}"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"curl exit {proc.returncode}"


def test_certificates_only_hosts_have_no_tunnel_and_a_wireguard_host_no_peer_for_them(
    mixed: BedMesh,
) -> None:
    for node in ("n1", "n2"):
        link = mixed.host(node).run(["ip", "link", "show", "wg-mesh"], check=False)
        assert link.returncode != 0, f"{node} has a WireGuard interface"
        assert mixed.plan(node).returncode == 0
    assert mixed.wg_peers("n3") == set()
    underlay = {n: mixed.host(n).underlay_ip for n in ("n1", "n2")}
    assert hosts_block(mixed.host_path("n2", "/etc/hosts"))[:2] == [
        f"{underlay['n1']}\tn1.{mixed.domain} api.{mixed.domain}",
        f"{underlay['n2']}\tn2.{mixed.domain} batch.{mixed.domain} web.{mixed.domain}",
    ]
    # the WireGuard node reaches them on the underlay too
    assert f"{underlay['n1']}\tn1.{mixed.domain} api.{mixed.domain}" in hosts_block(
        mixed.host_path("n3", "/etc/hosts")
    )
    assert ip_sans(mixed.tls_dir("n1", "api") / "cert.pem") == [underlay["n1"]]


def test_mtls_over_the_underlay_allows_only_what_the_policy_grants(mixed: BedMesh) -> None:
    assert call_api(mixed, "n2", "web", "GET", "/v1/users") == "200"
    assert call_api(mixed, "n3", "ops", "GET", "/v1/users") == "200"  # from a WireGuard node
    assert call_api(mixed, "n2", "web", "DELETE", "/v1/users") == "403"
    assert call_api(mixed, "n2", "batch", "GET", "/v1/users") == "403"
    refused = call_api(mixed, "n2", None, "GET", "/v1/users")  # no client certificate
    assert refused.startswith("curl exit"), refused
