"""Host scope end to end: `meshops apply --node N` inside three test-bed hosts running
real wireguard-go, checked with the stock tools (`ping`, `wg show`, `openssl`).

One converged mesh is shared by the tests of this module (building it costs a repo
apply and three host applies). The tests run in file order and each one leaves the
mesh converged: read-only checks first, then an endpoint change, a node removal, and
a certificate renewal on node-1.
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mesh_fixtures import CLEAN_ENV, BedMesh, bed_mesh, converged, openssl
from test_repo_support import MESHOPS, KeyRing, Unsealed, assert_no_secret_leaked, keyring
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]  # the session fixture, imported for pytest

NODES = ("node-1", "node-2", "node-3")
JOINER = "node-4"  # a spare host: joins the mesh in a test, set up by `meshops host init`
IDENTITIES = {
    "web": {"nodes": ["node-1"]},
    "api": {"nodes": ["node-2", "node-3"], "dns": ["api.example.test"]},
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("host-scope")
    with bed_mesh(directory, keyring, NODES, identities=IDENTITIES, spare=[JOINER]) as built:
        yield converged(built)


def expected_leaves(mesh: BedMesh) -> list[tuple[str, str]]:
    """(node, identity) for every leaf the mesh places."""
    identities = mesh.repo.data["identities"]
    return [(n, i) for i in sorted(identities) for n in identities[i]["nodes"] if n in mesh.nodes]


def handshakes(mesh: BedMesh, node: str) -> dict[str, int]:
    return {k: int(v) for k, v in mesh.wg_table(node, "latest-handshakes").items()}


def transfer(mesh: BedMesh, node: str) -> dict[str, tuple[int, int]]:
    out = {}
    for key, rest in mesh.wg_table(node, "transfer").items():
        rx, tx = rest.split("\t")
        out[key] = (int(rx), int(tx))
    return out


# -- a converged mesh ----------------------------------------------------------------------


def test_every_pair_pings_over_the_overlay_and_wg_lists_exactly_the_other_nodes(
    mesh: BedMesh,
) -> None:
    mesh.traffic()
    for node in mesh.nodes:
        others = {mesh.public_key(n) for n in mesh.nodes if n != node}
        assert mesh.wg_peers(node) == others, node
        assert mesh.wg(node, "public-key").strip() == mesh.public_key(node)
        assert mesh.wg(node, "listen-port").strip() == "51820"
        allowed = mesh.wg_table(node, "allowed-ips")
        for other in mesh.nodes:
            if other != node:
                assert allowed[mesh.public_key(other)] == f"{mesh.overlay_ip(other)}/32"
        endpoints = mesh.wg_table(node, "endpoints")
        for other in mesh.nodes:
            if other != node:
                assert endpoints[mesh.public_key(other)] == f"{mesh.host(other).underlay_ip}:51820"


def test_leaf_certificates_chain_to_the_root_carry_the_spiffe_id_and_keep_keys_private(
    mesh: BedMesh,
) -> None:
    state = mesh.repo.state_dir
    for node, identity in expected_leaves(mesh):
        tls = mesh.tls_dir(node, identity)
        node_ca = state / "nodes" / node / "ca.crt"
        verified = openssl(
            "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(tls / "ca.pem"),
            "-untrusted", str(node_ca), str(tls / "cert.pem"),
        )  # fmt: skip
        assert verified.returncode == 0, f"{node}/{identity}: {verified.stdout}{verified.stderr}"
        client = openssl(
            "verify", "-purpose", "sslclient", "-CAfile", str(tls / "ca.pem"),
            "-untrusted", str(tls / "cert.pem"), str(tls / "cert.pem"),
        )  # fmt: skip
        assert client.returncode == 0, f"{node}/{identity}: chain inside cert.pem: {client.stderr}"
        pems = re.findall(
            r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
            (tls / "cert.pem").read_text(),
            re.S,
        )
        assert len(pems) == 2 and pems[1].strip() == node_ca.read_text().strip()
        assert (tls / "ca.pem").read_bytes() == (state / "ca/root.crt").read_bytes()

        san = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(tls / "cert.pem"))
        names = [n.strip() for n in san.stdout.splitlines()[1].split(",")]
        uris = [n for n in names if n.startswith("URI:")]
        assert uris == [f"URI:spiffe://{mesh.trust_domain}/{identity}"], names
        assert f"DNS:{identity}.{mesh.domain}" in names
        assert f"DNS:{node}.{mesh.domain}" in names
        assert f"IP Address:{mesh.overlay_ip(node)}" in names
        for extra in mesh.repo.data["identities"][identity].get("dns", []):
            assert f"DNS:{extra}" in names
        subject = openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in",
                          str(tls / "cert.pem"))  # fmt: skip
        assert subject.stdout.strip() == f"subject=CN={identity}"

        key_mode = stat.S_IMODE((tls / "key.pem").stat().st_mode)
        assert key_mode == 0o600, f"{node}/{identity}: key.pem is {oct(key_mode)}"
        # the root's CRL, then every node CA's own (nginx wants one per CA in a chain)
        placed = sorted(mesh.repo.data["nodes"])
        node_crls = [(state / "nodes" / n / "crl.pem").read_bytes() for n in placed]
        want = b"".join([(state / "ca/crl.pem").read_bytes(), *node_crls])
        assert (tls / "crl.pem").read_bytes() == want
    # identities land only where they are placed
    assert not mesh.tls_dir("node-1", "api").exists()
    assert not mesh.tls_dir("node-2", "web").exists()


def test_a_second_plan_on_each_host_has_no_changes(mesh: BedMesh) -> None:
    for node in mesh.nodes:
        result = mesh.plan(node)
        assert result.returncode == 0, f"[{node}] {result}"
        assert "No changes." in result.stdout


def test_hosts_block_names_every_node_and_identity_at_its_overlay_address(
    mesh: BedMesh,
) -> None:
    text = mesh.host_path("node-1", "/etc/hosts").read_text()
    for node in mesh.nodes:
        assert re.search(rf"^{re.escape(mesh.overlay_ip(node))}\s.*\b{node}\.", text, re.M), text
    assert f"web.{mesh.domain}" in text
    assert f"api.{mesh.domain}" in text


def test_status_json_names_peers_by_node_with_handshake_ages_after_traffic(
    mesh: BedMesh,
) -> None:
    mesh.traffic()
    for node in mesh.nodes:
        status = mesh.status(node)
        assert status["format_version"] == "1.0"
        assert status["node"] == node and status["mesh"] == mesh.repo.data["mesh"]["name"]
        datetime.fromisoformat(status["generated_at"])
        placed = [i for n, i in expected_leaves(mesh) if n == node]
        assert [i["name"] for i in status["identities"]] == placed
        for ident in status["identities"]:
            assert ident["status"] == "ok"
            assert ident["spiffe_id"] == f"spiffe://{mesh.trust_domain}/{ident['name']}"
            assert set(ident) >= {"serial", "not_after", "expires_in_seconds", "renew_at"}
            assert 0 < ident["expires_in_seconds"] <= 48 * 3600
        assert set(status["node_ca"]) >= {"not_after", "expires_in_seconds"}
        wg = status["wireguard"]
        assert wg["present"] is True and wg["interface"] == "wg-mesh"
        assert wg["public_key"] == mesh.public_key(node)
        assert wg["listen_port"] == 51820
        assert f"{mesh.overlay_ip(node)}/16" in wg["addresses"]
        others = [n for n in mesh.nodes if n != node]
        assert [p["node"] for p in wg["peers"]] == others
        for peer in wg["peers"]:
            assert set(peer) >= {
                "node", "public_key", "endpoint", "allowed_ips", "latest_handshake",
                "handshake_age_seconds", "rx_bytes", "tx_bytes", "state",
            }  # fmt: skip
            assert peer["public_key"] == mesh.public_key(peer["node"])
            assert peer["state"] == "ok"
            assert 0 <= peer["handshake_age_seconds"] < 180
            assert peer["rx_bytes"] > 0 and peer["tx_bytes"] > 0
            assert peer["endpoint"] == f"{mesh.host(peer['node']).underlay_ip}:51820"
        last = status["last_apply"]
        assert last["result"] in ("ok", "no-op") and last["error"] is None
        assert last["revision"] and re.fullmatch(r"[0-9a-f]{40}", last["revision"])

        lib = mesh.host_path(node, "/var/lib/meshops")
        recorded = json.loads((lib / "status.json").read_text())
        assert recorded["format_version"] == "1.0" and recorded["node"] == node
        assert [p["node"] for p in recorded["wireguard"]["peers"]] == others
        metrics = (lib / "metrics.prom").read_text()
        for ident in placed:
            assert f'meshops_cert_expiry_timestamp_seconds{{node="{node}",identity="{ident}"}}' in (
                metrics
            )
        assert f'meshops_last_apply_success{{node="{node}"}} 1' in metrics
        assert "meshops_last_apply_timestamp_seconds" in metrics
    text = mesh.meshops("node-1", "status", identity=False).stdout
    assert "node-2" in text and "node-3" in text and "handshake" in text


# -- changes ------------------------------------------------------------------------------


def test_changed_endpoint_updates_exactly_that_peer_in_place_on_the_other_hosts(
    mesh: BedMesh,
) -> None:
    moved, new_ip = "node-2", "192.0.2.52"
    mesh.host(moved).run(["ip", "addr", "add", f"{new_ip}/24", "dev", "eth0"])
    old_ip = mesh.host(moved).underlay_ip
    mesh.traffic()
    before = {n: handshakes(mesh, n) for n in mesh.nodes}
    mesh.set_endpoint(moved, new_ip)
    mesh.apply_repo(f"move {moved}")

    key = mesh.public_key(moved)
    assert mesh.plan(moved).returncode == 0, "the moved node itself has nothing to do"
    others = [n for n in mesh.nodes if n != moved]
    for node in others:
        applied = mesh.apply(node)  # prints its plan first
        changes = [line.strip() for line in applied.stdout.splitlines() if line.startswith("  ")]
        changes = [c for c in changes if c[:1] in "+-~"]
        assert changes == [
            f'~ wireguard.peer["{moved}"]: endpoint changed: {old_ip}:51820 -> '
            f"{new_ip}:51820  [in-place]"
        ], applied.stdout
        assert "Plan: 0 to add, 1 to change, 0 to destroy." in applied.stdout
        assert mesh.wg_table(node, "endpoints")[key] == f"{new_ip}:51820"
        after = handshakes(mesh, node)
        assert after == before[node], "an in-place endpoint change must keep every session"
    # node-2 still sends from its first address, so the others' WireGuard roams back to
    # it: a session that answers from another address of the peer is not drift
    mesh.traffic()
    for node in others:
        assert mesh.plan(node).returncode == 0


def test_host_initialised_with_host_init_joins_and_applies_from_host_yaml_alone(
    mesh: BedMesh, tmp_path: Path
) -> None:
    host, root = mesh.host(JOINER), mesh.roots[JOINER]
    init = host.run(
        [MESHOPS, "--no-color", "host", "init", "--node", JOINER,
         "--repo", str(mesh.repo.path), "--root", str(root)],
        env=CLEAN_ENV, cwd=tmp_path,
    )  # fmt: skip
    (recipient,) = [
        ln.split(": ", 1)[1] for ln in init.stdout.splitlines() if ln.startswith("recipient: ")
    ]
    assert recipient.startswith("age1")
    key_file = root / "etc/meshops/host.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = [ln for ln in key_file.read_text().splitlines() if ln.startswith("AGE-SECRET-KEY-1")]
    assert len(secret) == 1 and secret[0] not in init.stdout + init.stderr

    mesh.repo.data["nodes"][JOINER] = {
        "endpoint": f"{host.underlay_ip}:51820",
        "recipient": recipient,
    }
    mesh.apply_repo(f"add {JOINER}")
    for node in mesh.nodes:
        if node == JOINER:
            continue
        applied = mesh.apply(node)
        assert f'+ wireguard.peer["{JOINER}"]: new peer' in applied.stdout
        assert "~ hosts.block: 1 entry added, 0 entries removed" in applied.stdout
        # and each identity's CRL bundle gains the new node CA's CRL
        crls = re.findall(r'~ tls\.crl\["[^"]+"\]', applied.stdout)
        assert crls, applied.stdout
        assert f"Resources: 1 added, {1 + len(crls)} changed, 0 destroyed." in applied.stdout
    # no -C, --node or --identity: host.yaml under --root names all three
    joined = host.run([MESHOPS, "--no-color", "--root", str(root), "apply", "--auto-approve"],
                      env=CLEAN_ENV, cwd=tmp_path)  # fmt: skip
    assert f"on the node {JOINER}" in joined.stdout
    mesh.traffic()
    assert mesh.wg_peers(JOINER) == {mesh.public_key(n) for n in mesh.nodes if n != JOINER}
    again = host.run([MESHOPS, "--no-color", "--root", str(root), "plan", "--detailed-exitcode"],
                     env=CLEAN_ENV, cwd=tmp_path, check=False)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr


def test_removed_node_is_dropped_everywhere_while_other_sessions_survive(
    mesh: BedMesh,
) -> None:
    gone = "node-3"
    gone_key = mesh.public_key(gone)
    mesh.traffic()
    stay = [n for n in mesh.nodes if n != gone]
    now = int(time.time())
    before = {n: handshakes(mesh, n) for n in stay}
    bytes_before = {n: transfer(mesh, n) for n in stay}
    mesh.repo.remove_node(gone)
    mesh.repo.data["identities"]["api"]["nodes"].remove(gone)
    mesh.apply_repo(f"remove {gone}")
    assert gone not in mesh.repo.state()["nodes"]

    for node in stay:
        applied = mesh.apply(node)  # prints its plan first
        assert f'- wireguard.peer["{gone}"]: node removed from the mesh' in applied.stdout
        assert re.search(r"Plan: \d+ to add, \d+ to change, 1 to destroy\.", applied.stdout)
    for node in stay:
        peers = mesh.wg_peers(node)
        assert gone_key not in peers
        assert peers == {mesh.public_key(n) for n in stay if n != node}
        after = handshakes(mesh, node)
        for key, when in before[node].items():
            if key == gone_key:
                continue
            # WireGuard itself re-keys a session after 120 s; younger ones must not move
            if now - when < 100:
                assert after[key] == when, f"{node}: the session with {key[:8]} was reset"
            else:
                assert after[key] >= when
            rx, tx = transfer(mesh, node)[key]
            assert rx >= bytes_before[node][key][0] and tx >= bytes_before[node][key][1], (
                "peer counters went back: the peer was removed and re-added"
            )
    mesh.traffic()
    assert mesh.plan("node-1").returncode == 0
    hosts_text = mesh.host_path("node-1", "/etc/hosts").read_text()
    assert f"{gone}.{mesh.domain}" not in hosts_text


def test_leaf_in_its_renewal_window_is_renewed_and_on_renew_runs_once(
    mesh: BedMesh, tmp_path: Path
) -> None:
    node, identity = "node-1", "ticker"
    hook_log = tmp_path / "renewals.log"
    mesh.repo.data["identities"][identity] = {
        "nodes": [node],
        "ttl": "90s",
        "renew_before": "70s",
        "on_renew": [["sh", "-c", f"echo renewed >> {hook_log}"]],
    }
    mesh.apply_repo(f"add {identity}")

    def runs() -> int:
        return len(hook_log.read_text().splitlines()) if hook_log.exists() else 0

    def serial() -> str:
        cert = mesh.tls_dir(node, identity) / "cert.pem"
        return openssl("x509", "-noout", "-serial", "-in", str(cert)).stdout.strip()

    first = mesh.apply(node)
    assert f'+ cert.leaf["{identity}"]: no certificate yet' in first.stdout
    assert runs() == 1, "on_renew runs after the first issuance too"
    issued = serial()
    noop = mesh.apply(node)
    assert "No changes" in noop.stdout
    assert runs() == 1, "a no-op apply must not run on_renew"

    (ticker,) = [i for i in mesh.status(node)["identities"] if i["name"] == identity]
    assert ticker["status"] == "ok"
    renew_at = datetime.fromisoformat(ticker["renew_at"])
    time.sleep(max(0.0, (renew_at - datetime.now(UTC)).total_seconds()) + 1.5)

    (due,) = [i for i in mesh.status(node)["identities"] if i["name"] == identity]
    assert due["status"] == "due"
    renewed = mesh.apply(node)  # prints its plan first
    assert re.search(
        rf'-/\+ cert\.leaf\["{identity}"\]: expires in .* < renew_before 1m10s', renewed.stdout
    ), renewed.stdout
    assert f'~ hook.on_renew["{identity}"]: runs after cert.leaf["{identity}"] changed' in (
        renewed.stdout
    )
    assert f'cert.leaf["{identity}"]: replaced' in renewed.stdout
    assert runs() == 2, "exactly one on_renew run per renewal"
    assert serial() != issued
    again = mesh.apply(node)
    assert "No changes" in again.stdout
    assert runs() == 2
    # the other leaves on this node were not touched by the renewal
    assert 'cert.leaf["web"]' not in renewed.stdout


def test_no_private_key_reached_any_output(mesh: BedMesh) -> None:
    assert_no_secret_leaked(mesh.repo, Unsealed())
