"""Host-held keys, end to end (docs/keys.md): three nodes make their keys with
`meshops host init`, their requests are committed in a pull request, `review` shows the
enrolments, repo apply signs, the hosts apply with no identity at all. Real
wireguard-go between network namespaces, nginx (which checks every CA's CRL in a chain,
so each node CA's host-signed CRL too) in front of a plain upstream on n1.

Then, in order: forged requests fail `validate` and `review` with located errors; n2
rotates its keys while n1 and n3 keep their session; n4, a node with sealed keys,
migrates to host-held keys while the others keep theirs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml
from mesh_fixtures import WG_PORT, BedMesh, bed_mesh, git, openssl, wait_for_port
from test_repo_support import MESHOPS, KeyRing, Result, keyring
from testbed import unavailable_reason

from meshops.providers.proxies import nginx_wrapper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "pki"))
from test_referees import goverify  # the Go referee (crypto/x509), built once per session

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["goverify", "keyring"]  # session fixtures, imported for pytest

NODES = ["n1", "n2", "n3"]
SPARE = "n4"  # a sealed-key node that joins later, then migrates
UPSTREAM_PORT = 8080
NGINX_PORT = 7443
NGINX_CONFIG = "/etc/nginx/conf.d/meshops-api.conf"
UPSTREAM = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Echo(BaseHTTPRequestHandler):
    def answer(self):
        body = f"upstream saw {self.command} {self.path}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""
IDENTITIES = {
    "api": {
        "nodes": ["n1"],
        "proxy": {"kind": "nginx", "listen": NGINX_PORT, "upstream": f"127.0.0.1:{UPSTREAM_PORT}",
                  "config": NGINX_CONFIG},
        "tls": {"group": "www-data"},
    },
    "web": {"nodes": ["n2"]},
    "cron": {"nodes": ["n3"]},
}  # fmt: skip
POLICIES = [{"name": "web-reads", "from": ["web"], "to": "api",
             "allow": [{"methods": ["GET"], "paths": ["/v1/*"]}]}]  # fmt: skip


def host_init(mesh: BedMesh, node: str, *args: str) -> Result:
    """`meshops host init|rotate-keys` inside the node's host, on the shared checkout."""
    argv = [MESHOPS, "--no-color", "-C", str(mesh.repo.path), "host", *args, "--node", node,
            "--root", str(mesh.roots[node])]  # fmt: skip
    proc = mesh.host(node).run(argv, check=False, env={"MESHOPS_IDENTITY": ""})
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    mesh.repo.outputs.append(result.output)
    assert result.returncode == 0, str(result)
    return result


def commit(mesh: BedMesh, message: str) -> None:
    mesh.repo.write_mesh()
    mesh.repo.commit(message)


def key_files(mesh: BedMesh, node: str) -> dict[str, bytes]:
    keys = mesh.host_path(node, "/etc/meshops/keys")
    return {p.name: p.read_bytes() for p in sorted(keys.iterdir())} if keys.exists() else {}


def handshakes(mesh: BedMesh, node: str) -> dict[str, int]:
    return {k: int(v) for k, v in mesh.wg_table(node, "latest-handshakes").items()}


def curl(mesh: BedMesh, caller_node: str, identity: str, method: str, path: str) -> str:
    """The HTTP code of a call to n1's api over the overlay with `identity`'s certificate."""
    tls = mesh.tls_dir(caller_node, identity)
    name = f"api.{mesh.domain}"
    argv = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
            "--cacert", str(tls / "ca.pem"), "--cert", str(tls / "cert.pem"),
            "--key", str(tls / "key.pem"), "-X", method,
            "--resolve", f"{name}:{NGINX_PORT}:{mesh.overlay_ip('n1')}",
            f"https://{name}:{NGINX_PORT}{path}"]  # fmt: skip
    return mesh.host(caller_node).run(argv, check=False, timeout=30).stdout.strip()


@pytest.fixture(scope="module")
def mesh(keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    # nginx's workers (www-data) reach the TLS files through every directory above them
    directory = Path(tempfile.mkdtemp(prefix="meshops-enrol-", dir="/tmp"))
    directory.chmod(0o711)
    try:
        with bed_mesh(directory, keyring, NODES, spare=[SPARE]) as built:
            built.repo.data["nodes"] = {}
            built.keys = {}  # host-held nodes: no identity is ever passed to a host
            built.repo.write_mesh()
            built.repo.apply()  # main: the root CA, no node yet
            commit(built, "a mesh with no node")
            git(built.repo.path, "branch", "-M", "main")
            with _nginx(built):
                yield built
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _nginx(mesh: BedMesh) -> Iterator[None]:
    """Enrol the three nodes by pull request (what the first test checks), then run the
    upstream and nginx on n1."""
    git(mesh.repo.path, "checkout", "-q", "-b", "enrol")
    for node in NODES:
        host_init(mesh, node, "init", "--keys", "host")
        mesh.repo.data["nodes"][node] = {
            "endpoint": f"{mesh.host(node).underlay_ip}:{WG_PORT}", "keys": "host"}  # fmt: skip
    mesh.repo.data["identities"] = dict(IDENTITIES)
    mesh.repo.data["policies"] = list(POLICIES)
    commit(mesh, "enrol n1, n2 and n3")
    n1 = mesh.host("n1")
    upstream = n1.popen(["python3", "-c", UPSTREAM, str(UPSTREAM_PORT)])
    wait_for_port(n1, UPSTREAM_PORT, proc=upstream)
    work = mesh.repo.path.parent / "nginx"
    work.mkdir()
    main = work / "nginx.conf"
    main.write_text("user www-data;\n" + nginx_wrapper(mesh.host_path("n1", NGINX_CONFIG), work))
    mesh.nginx = (work, main)  # type: ignore[attr-defined]
    yield


def _start_nginx(mesh: BedMesh) -> None:
    """nginx on n1 with the config host apply rendered; from now on apply reloads it."""
    work, main = mesh.nginx  # type: ignore[attr-defined]
    mesh.host("n1").popen(["nginx", "-p", str(work), "-e", str(work / "error.log"),
                           "-c", str(main), "-g", "daemon off;"])  # fmt: skip
    wait_for_port(mesh.host("n1"), NGINX_PORT)
    reload = ["nginx", "-p", str(work), "-c", str(main), "-s", "reload"]
    mesh.repo.data["identities"]["api"]["proxy"]["reload"] = reload
    mesh.apply_repo("reload nginx when api's files change")
    mesh.apply("n1")


def test_three_nodes_enrol_by_pull_request_and_come_up_without_any_identity(
    mesh: BedMesh,
) -> None:
    repo = mesh.repo
    review = repo.meshops("review", "--base", "main", "--head", "enrol")
    assert review.returncode == 0, str(review)
    for node in NODES:
        assert re.search(
            rf"{node} enrols: WireGuard key [0-9a-f]{{8}}…, node CA request for "
            rf"{node}\.{re.escape(mesh.domain)} \(ecdsa-p256, key [0-9a-f]{{8}}…\), "
            "signatures valid", review.stdout), review.stdout  # fmt: skip
    git(repo.path, "checkout", "-q", "main")
    git(repo.path, "merge", "-q", "--ff-only", "enrol")
    applied = mesh.apply_repo("repo apply: enrolments")
    for node in NODES:
        assert f'+ ca.node["{node}"]: enrols the key of enroll/{node}.yaml' in applied.stdout
    mesh.apply_all()  # no --identity: host-held keys need none
    _start_nginx(mesh)
    mesh.traffic()
    for node in NODES:
        assert mesh.wg(node, "public-key").strip() == mesh.public_key(node)
    assert curl(mesh, "n2", "web", "GET", "/v1/users") == "200"
    assert curl(mesh, "n2", "web", "DELETE", "/v1/users") == "403"
    # cron (n3) has no policy to api: n1's overlay firewall drops it before TLS
    assert curl(mesh, "n3", "cron", "GET", "/v1/users") == "000"
    # nothing sealed for these nodes, nothing private anywhere in the repository's history
    state = repo.state_dir
    assert not [p for p in state.rglob("nodes/*/*") if p.suffix in (".age", ".sops")]
    _assert_no_node_private_key_in_git(mesh)
    for node in NODES:
        assert mesh.plan(node).returncode == 0


def _assert_no_node_private_key_in_git(mesh: BedMesh) -> None:
    repo = mesh.repo.path
    objects = git(repo, "rev-list", "--all", "--objects").split()
    blobs = [o for o in objects if len(o) == 40]
    everything = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"],
                                input="\n".join(blobs).encode(), capture_output=True,
                                check=True).stdout  # fmt: skip
    assert b"PRIVATE KEY" not in everything
    for node in NODES:
        for name, data in key_files(mesh, node).items():
            secret = data.decode().strip()
            body = "".join(secret.splitlines()[1:-1]) if "BEGIN" in secret else secret
            assert body.encode() not in everything, f"{node}'s {name} is in git"
            assert all(body not in out for out in mesh.repo.outputs), f"{node}'s {name} printed"


def test_enrolled_chains_verify_with_openssl_and_go(mesh: BedMesh, goverify: Path,
                                                    tmp_path: Path) -> None:  # fmt: skip
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    root = mesh.repo.state_dir / "ca" / "root.crt"
    for node, identity in (("n1", "api"), ("n2", "web"), ("n3", "cron")):
        tls = mesh.tls_dir(node, identity)
        chain = x509.load_pem_x509_certificates((tls / "cert.pem").read_bytes())
        node_ca = tmp_path / f"{node}-ca.pem"
        node_ca.write_bytes((mesh.repo.state_dir / "nodes" / node / "ca.crt").read_bytes())
        checked = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-crl_check_all",
                          "-CRLfile", str(tls / "crl.pem"), "-CAfile", str(root),
                          "-untrusted", str(node_ca), str(tls / "cert.pem"))  # fmt: skip
        assert checked.returncode == 0, checked.stderr + checked.stdout
        leaf = tmp_path / f"{node}-leaf.pem"
        leaf.write_bytes(chain[0].public_bytes(Encoding.PEM))
        go = subprocess.run([str(goverify), "-roots", str(root), "-intermediates", str(node_ca),
                             "-leaf", str(leaf), "-usage", "client",
                             "-time", str(int(datetime.now(UTC).timestamp()))],
                            capture_output=True, text=True, check=False)  # fmt: skip
        assert go.returncode == 0, go.stdout + go.stderr


def _forge(mesh: BedMesh, node: str, text: bytes) -> tuple[Result, Result]:
    """On a branch, add `node` (keys: host) with `text` as its request and commit;
    `validate` there and `review` against main; back to main."""
    repo = mesh.repo
    git(repo.path, "checkout", "-q", "-b", "forged")
    try:
        repo.data["nodes"][node] = {"endpoint": "198.51.100.5:51820", "keys": "host"}
        (repo.path / "enroll" / f"{node}.yaml").write_bytes(text)
        commit(mesh, "a forged request")
        return repo.meshops("validate"), repo.meshops("review", "--base", "main")
    finally:
        git(repo.path, "checkout", "-q", "-f", "main")
        git(repo.path, "branch", "-q", "-D", "forged")
        mesh.repo.data = yaml.safe_load((repo.path / "mesh.yaml").read_text())


def test_forged_requests_fail_validate_and_review_with_located_errors(mesh: BedMesh) -> None:
    from meshops.enroll.make import make_request
    from meshops.pki import generate_key, load_private_pem
    from meshops.providers.wireguard import b64_to_bytes

    stolen_wg = b64_to_bytes(key_files(mesh, "n1")["wg.key"].decode())
    stolen_ca = load_private_pem(key_files(mesh, "n1")["ca.key"])

    def request(**kw: object) -> bytes:
        args = {"mesh": mesh.repo.data["mesh"]["name"], "node": "n5", "ips": [],
                "dns": [f"n5.{mesh.domain}"], "ca_key": generate_key("ecdsa-p256"),
                "wireguard_private": os.urandom(32), "now": datetime.now(UTC),
                "crl_ttl_seconds": 86400.0, **kw}  # fmt: skip
        return make_request(**args).render()  # type: ignore[arg-type]

    good = request()
    bad_signature = re.sub(rb'(signature: ")(.)', lambda m: m[1] + (b"B" if m[2] == b"A" else b"A"),
                           good)  # fmt: skip
    cases = [
        (bad_signature, "enroll/n5.yaml:9:3: wireguard.signature: the signature by the WireGuard"),
        (request(wireguard_private=stolen_wg), "enroll/n5.yaml:8:3: wireguard.public_key: this "
         "WireGuard key is already used by node n1 (enroll/n1.yaml)"),
        (request(ca_key=stolen_ca), "enroll/n5.yaml:12:3: node_ca.key: this node CA key is "
         "already used by node n1 (enroll/n1.yaml)"),
        (request(dns=[f"n5.{mesh.domain}", f"n1.{mesh.domain}"]), "enroll/n5.yaml:13:3: "
         f"node_ca.csr: the CSR asks for names that are not node n5's: dns:n1.{mesh.domain}"),
        (request(ips=[ip_address(mesh.overlay_ip("n2"))]), "enroll/n5.yaml:13:3: node_ca.csr: "
         f"the CSR asks for names that are not node n5's: ip:{mesh.overlay_ip('n2')}"),
    ]  # fmt: skip
    for text, expected in cases:
        validated, reviewed = _forge(mesh, "n5", text)
        assert validated.returncode == 1, str(validated)
        assert expected in validated.stderr, str(validated)
        assert reviewed.returncode == 1, str(reviewed)
        assert "Enrolment requests refused" in reviewed.stdout and expected in reviewed.stdout
    assert "n5" not in mesh.repo.data["nodes"]


def test_a_rotation_switches_n2_to_new_keys_while_n1_and_n3_keep_their_session(
    mesh: BedMesh,
) -> None:
    repo = mesh.repo
    mesh.traffic()
    old_state = repo.state()["nodes"]["n2"]
    before = key_files(mesh, "n2")
    old_request = (repo.path / "enroll" / "n2.yaml").read_bytes()
    rotated = host_init(mesh, "n2", "rotate-keys")
    assert "wrote" in rotated.stdout and "enroll/n2.yaml" in rotated.stdout
    waiting = key_files(mesh, "n2")
    assert set(waiting) == {"wg.key", "ca.key", "wg.next.key", "ca.next.key"}
    assert mesh.plan("n2").returncode == 0  # nothing to do until state/ carries them
    git(repo.path, "add", "enroll/n2.yaml")
    reviewed = repo.meshops("review", "--base", "HEAD", "--worktree")
    assert "n2 enrols new keys (rotation; the old node CA will be revoked)" in reviewed.stdout
    applied = mesh.apply_repo("n2 rotates its keys")
    assert 'ca.node["n2"]: new key in enroll/n2.yaml (rotation): the old node CA is revoked' in (
        applied.stdout
    )
    assert f"revokes node CA of n2 (serial {old_state['ca']['serial']})" in applied.stdout
    mesh.traffic()
    kept = {n: handshakes(mesh, n) for n in ("n1", "n3")}
    for node in ("n1", "n3"):
        mesh.apply(node)
    applied_n2 = mesh.apply("n2")
    assert 'keys.local["n2"]: rotation applied' in applied_n2.stdout
    after = key_files(mesh, "n2")
    assert after == {"wg.key": waiting["wg.next.key"], "ca.key": waiting["ca.next.key"]}
    assert not set(before.values()) & set(after.values())  # the old keys are gone
    assert mesh.wg("n2", "public-key").strip() == mesh.public_key("n2") != old_state[
        "wireguard"]["public_key"]  # fmt: skip
    mesh.traffic()
    now = {n: handshakes(mesh, n) for n in ("n1", "n3")}
    assert now["n1"][mesh.public_key("n3")] == kept["n1"][mesh.public_key("n3")]
    assert now["n3"][mesh.public_key("n1")] == kept["n3"][mesh.public_key("n1")]
    assert curl(mesh, "n2", "web", "GET", "/v1/users") == "200"
    for node in NODES:
        assert mesh.plan(node).returncode == 0
    # whoever copied n2's old keys cannot bring them back: the old request is refused
    retired = repo.state()["nodes"]["n2"]["retired"]
    assert f"wg:{old_state['wireguard']['public_key']}" in retired
    (repo.path / "enroll" / "n2.yaml").write_bytes(old_request)
    try:
        refused = repo.meshops("validate")
        assert refused.returncode == 1
        assert (
            "enroll/n2.yaml:8:3: wireguard.public_key: this WireGuard key is already used by "
            "node n2 before a rotation (retired keys never enrol)" in refused.stderr
        ), str(refused)
    finally:
        git(repo.path, "checkout", "-q", "--", "enroll/n2.yaml")


def test_a_sealed_node_migrates_to_host_held_keys_while_the_others_keep_their_sessions(
    mesh: BedMesh, keyring: KeyRing
) -> None:
    repo = mesh.repo
    host_key = keyring.ssh_hosts[3]
    repo.data["nodes"][SPARE] = {"endpoint": f"{mesh.host(SPARE).underlay_ip}:{WG_PORT}",
                                 "keys": "sealed", "recipient": host_key.recipient}  # fmt: skip
    mesh.apply_repo("n4 joins with sealed keys")
    mesh.keys[SPARE] = host_key
    mesh.apply_all()
    mesh.traffic()
    sealed = sorted(p.name for p in (repo.state_dir / "nodes" / SPARE).iterdir())
    assert sealed == ["ca.crt", "ca.key.age", "crl.pem", "wg.key.age"]
    old_serial = repo.state()["nodes"][SPARE]["ca"]["serial"]

    host_init(mesh, SPARE, "init", "--keys", "host")  # keeps its identity, makes its keys
    repo.data["nodes"][SPARE] = {"endpoint": repo.data["nodes"][SPARE]["endpoint"],
                                 "keys": "host"}  # fmt: skip
    commit(mesh, "n4 holds its keys on the host")
    reviewed = repo.meshops("review", "--base", "HEAD~1")
    assert reviewed.returncode == 0, str(reviewed)
    assert f"{SPARE} moves to host-held keys and enrols" in reviewed.stdout
    applied = mesh.apply_repo("repo apply: n4's migration")
    assert f"revokes node CA of {SPARE} (serial {old_serial})" in applied.stdout
    assert sorted(p.name for p in (repo.state_dir / "nodes" / SPARE).iterdir()) == [
        "ca.crt", "crl.pem"]  # fmt: skip
    mesh.traffic()
    others = [n for n in NODES]
    kept = {n: handshakes(mesh, n) for n in others}
    del mesh.keys[SPARE]  # from now on n4 needs no identity either
    mesh.apply_all()
    assert mesh.wg(SPARE, "public-key").strip() == mesh.public_key(SPARE)
    mesh.traffic()
    for node in others:
        now = handshakes(mesh, node)
        for peer in others:
            if peer != node:
                key = mesh.public_key(peer)
                assert now[key] == kept[node][key], f"{node} lost its session with {peer}"
    for node in [*NODES, SPARE]:
        assert mesh.plan(node).returncode == 0


def test_renewal_re_signs_the_enrolled_key_and_a_host_with_other_keys_is_told_why(
    tmp_path: Path, keyring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No namespace needed: a certificates-only node. The node CA is renewed by repo
    scope alone (same public key, new serial), the host issues leaves from it; a host
    whose keys are not the enrolled ones stops with what to do."""
    from cryptography import x509
    from test_repo_support import new_repo

    repo = new_repo(tmp_path / "mesh", keyring, nodes=0)
    repo.data["nodes"]["c1"] = {"wireguard": False, "ips": ["192.0.2.50"], "keys": "host"}
    repo.data["identities"] = {"app": {"nodes": ["c1"]}}
    repo.write_mesh()
    root = tmp_path / "root-c1"
    host = ["--node", "c1", "--root", str(root)]
    made = repo.meshops("host", "init", "--keys", "host", *host)
    assert made.returncode == 0, str(made)
    assert stat_mode(root / "etc/meshops/keys/ca.key") == 0o600
    repo.apply()

    def node_ca() -> x509.Certificate:
        return x509.load_pem_x509_certificate((repo.state_dir / "nodes/c1/ca.crt").read_bytes())

    first = node_ca()
    later = datetime.now(UTC) + timedelta(hours=700)
    monkeypatch.setenv("MESHOPS_TEST_NOW", later.isoformat(timespec="seconds"))
    renewed = repo.apply()
    assert 'ca.node["c1"]: expires in' in renewed.stdout, renewed.stdout
    second = node_ca()
    assert second.serial_number != first.serial_number
    assert second.public_key() == first.public_key()  # the same key: no help from the host
    assert not list((repo.state_dir / "nodes/c1").glob("*.age"))
    applied = repo.meshops("apply", "--auto-approve", *host)
    assert applied.returncode == 0, str(applied)
    leaf = x509.load_pem_x509_certificates((root / "etc/meshops/tls/app/cert.pem").read_bytes())
    assert leaf[1] == second

    replaced = repo.meshops("host", "init", "--keys", "host", "--force", *host)
    assert replaced.returncode == 0, str(replaced)
    (root / "etc/meshops/tls/app/cert.pem").unlink()  # so the leaf must be issued again
    refused = repo.meshops("apply", "--auto-approve", *host)
    assert refused.returncode == 1
    assert "is not one of this host's keys" in refused.stderr, str(refused)
    assert "the enrolment of this host's keys is not applied yet" in refused.stderr


def stat_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
