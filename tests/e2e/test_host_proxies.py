"""The mTLS proxies meshops renders, run for real the way users run them: on n1, Caddy
(Debian's 2.6 and a current release, each in turn) standalone as user `caddy`, reloaded
through its admin socket, and nginx included in a Debian-style nginx.conf whose workers
run as `www-data`; both in front of a plain HTTP upstream, called over the WireGuard
overlay from n2 with curl and the workload certificates meshops issued there.

Policies (default deny): `web` and `cron` may GET/HEAD /v1/* on `api` (Caddy) and on
`ledger` (nginx); `batch` may only POST /jobs. `web` and `batch` run on n2, `cron` on n3,
a node that exists only in mesh.yaml (its CA key is what a thief of n3 would hold).
Every refused request must stop at the proxy: the upstream records what reaches it.
"""

from __future__ import annotations

import contextlib
import copy
import grp
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mesh_fixtures import GHOST_UNDERLAY, WG_PORT, BedMesh, bed_mesh, openssl, wait_for_port
from proxy_binaries import CADDY_RELEASES, caddy
from test_repo_support import (
    KeyRing,
    Unsealed,
    age_decrypt,
    assert_no_secret_leaked,
    keyring,
)
from testbed import unavailable_reason

from meshops.providers.proxies import nginx_wrapper

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]  # the session fixture, imported for pytest

UPSTREAM_PORT = 8080
CADDY_PORT = 8443
NGINX_PORT = 7443

# Answers every method with 200 and the request line; appends it to a log first.
UPSTREAM = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

LOG = sys.argv[1]

class Echo(BaseHTTPRequestHandler):
    def answer(self):
        line = f"{self.command} {self.path}"
        with open(LOG, "a") as log:
            log.write(line + "\\n")
        body = f"upstream saw {line}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = answer

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[2])), Echo).serve_forever()
"""

CADDY_CONFIG = "/etc/meshops/proxy/api.caddy"
NGINX_CONFIG = "/etc/nginx/conf.d/meshops-ledger.conf"


def proxy(kind: str, listen: int, config: str) -> dict[str, object]:
    return {"kind": kind, "listen": listen, "upstream": f"127.0.0.1:{UPSTREAM_PORT}",
            "config": config}  # fmt: skip


IDENTITIES = {
    "api": {"nodes": ["n1"], "proxy": proxy("caddy", CADDY_PORT, CADDY_CONFIG)},
    "ledger": {
        "nodes": ["n1"],
        "proxy": proxy("nginx", NGINX_PORT, NGINX_CONFIG),
        "tls": {"group": "www-data"},
    },
    "web": {"nodes": ["n2"]},
    "batch": {"nodes": ["n2"]},
    "cron": {"nodes": ["n3"]},
}
POLICIES = [
    {"name": "reads", "from": ["web", "cron"], "to": ["api", "ledger"],
     "allow": [{"methods": ["GET", "HEAD"], "paths": ["/v1/*"]}]},
    {"name": "batch-submits", "from": ["batch"], "to": ["api", "ledger"],
     "allow": [{"methods": ["POST"], "paths": ["/jobs"]}]},
]  # fmt: skip
SERVICES = [("api", CADDY_PORT), ("ledger", NGINX_PORT)]


@dataclass
class Proxies:
    mesh: BedMesh
    release: str
    upstream_log: Path
    foreign: Path  # a CA and a `web` leaf that meshops never issued
    minted: Path  # leaves minted with stolen node CA keys (see `mint`)

    def curl(
        self, service: str, port: int, method: str, path: str, *, caller: str | None
    ) -> tuple[int, str, str]:
        """curl from n2 to n1's `service` over the overlay: (exit code, HTTP code, body).

        `caller` names whose certificate is presented: a meshops identity on n2,
        "foreign" (same name and SPIFFE ID, other CA), a leaf minted into `minted`
        ("minted:<name>") or None (no certificate).
        """
        mesh = self.mesh
        name = f"{service}.{mesh.domain}"
        bundle = mesh.tls_dir("n2", "web") / "ca.pem"
        argv = ["curl", "-sS", "--path-as-is", "--max-time", "10", "-o", "-",
                "-w", "\n%{http_code}", "--cacert", str(bundle),
                "--resolve", f"{name}:{port}:{mesh.overlay_ip('n1')}", "-X", method]  # fmt: skip
        if method == "HEAD":
            argv[argv.index("-X") : argv.index("-X") + 2] = ["--head"]
        if caller == "foreign":
            argv += [
                "--cert",
                str(self.foreign / "web.crt"),
                "--key",
                str(self.foreign / "web.key"),
            ]
        elif caller is not None and caller.startswith("minted:"):
            leaf = caller.partition(":")[2]
            argv += ["--cert", str(self.minted / f"{leaf}.crt")]
            argv += ["--key", str(self.minted / f"{leaf}.key")]
        elif caller is not None:
            tls = mesh.tls_dir("n2", caller)
            argv += ["--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem")]
        argv.append(f"https://{name}:{port}{path}")
        proc = mesh.host("n2").run(argv, check=False, timeout=30)
        body, _, code = proc.stdout.rpartition("\n")
        return proc.returncode, code.strip(), body + proc.stderr

    def reached(self) -> list[str]:
        return self.upstream_log.read_text().splitlines() if self.upstream_log.exists() else []

    def apply(self, message: str) -> None:
        """Repo apply (commit), then host apply on the two running hosts."""
        self.mesh.apply_repo(message)
        for node in ("n1", "n2"):
            self.mesh.apply(node)

    def mint(
        self, name: str, *, node: str, identity: str, not_after: datetime, dns: str = ""
    ) -> None:
        """What a thief of `node`'s CA key can do: a leaf for `identity` (its CN, SPIFFE
        ID and the DNS name `dns`, default `<identity>.<domain>`), signed with that key,
        valid until `not_after`."""
        mesh = self.mesh
        key_file = mesh.repo.state_dir / "nodes" / node / "ca.key.age"
        opened = age_decrypt(key_file, mesh.keys[node].private_file)
        assert opened.returncode == 0, opened.stderr
        ca_key = self.minted / f"{node}-ca.key"
        ca_key.write_bytes(opened.stdout)
        ca_key.chmod(0o600)
        ca_crt = mesh.repo.state_dir / "nodes" / node / "ca.crt"
        key, csr, crt = (self.minted / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.minted / f"{name}.ext"
        ext.write_text(
            f"subjectAltName=URI:spiffe://{mesh.trust_domain}/{identity},"
            f"DNS:{dns or f'{identity}.{mesh.domain}'}\n"
            "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n"
        )
        days = str(max(1, (not_after - datetime.now(UTC)).days))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        steps = [
            ["req", "-new", *ec, "-subj", f"/CN={identity}", "-keyout", str(key), "-out", str(csr)],
            ["x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", days, "-extfile", str(ext), "-out", str(crt)],
        ]  # fmt: skip
        for step in steps:
            done = openssl(*step)
            assert done.returncode == 0, done.stderr
        crt.write_text(crt.read_text() + ca_crt.read_text())  # leaf + its node CA
        ca_key.unlink()


def make_foreign_web_cert(directory: Path, trust_domain: str, domain: str) -> Path:
    """A CA of our own and a leaf that claims to be `web` (CN and SPIFFE ID)."""
    directory.mkdir(parents=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "web.key", directory / "web.csr", directory / "web.crt"
    ext = directory / "web.ext"
    ext.write_text(
        f"subjectAltName=URI:spiffe://{trust_domain}/web,DNS:web.{domain}\n"
        "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["req", "-x509", *ec, "-subj", "/CN=foreign-root", "-days", "1",
         "-keyout", str(ca_key), "-out", str(ca_crt)],
        ["req", "-new", *ec, "-subj", "/CN=web", "-keyout", str(key), "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(crt)],
    ]  # fmt: skip
    for step in steps:
        done = openssl(*step)
        assert done.returncode == 0, done.stderr
    return directory


def owned_dir(path: Path, user: str, mode: int) -> Path:
    """What the example systemd unit's StateDirectory= / RuntimeDirectory= make."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, user, user)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module", params=CADDY_RELEASES)
def proxies(request: pytest.FixtureRequest, keyring: KeyRing) -> Iterator[Proxies]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with proxies_bed(keyring, request.param) as built:
        yield built


@contextlib.contextmanager
def proxies_bed(
    keyring: KeyRing, release: str, *, first_apply: Callable[[Proxies], None] | None = None
) -> Iterator[Proxies]:
    """The running bed of this module (IDENTITIES, POLICIES, Caddy `release`), for other
    modules too. `first_apply` replaces the first `apply("initial state")` (a test that
    must apply the repository differently, e.g. on the test clock)."""
    binary, _ = caddy(release)
    # the proxies run as unprivileged users, who must reach the TLS files through every
    # directory above them: a base of our own (pytest's temp root is 0700)
    directory = Path(tempfile.mkdtemp(prefix="meshops-proxies-", dir="/tmp"))
    directory.chmod(0o711)
    try:
        identities, policies = copy.deepcopy(IDENTITIES), copy.deepcopy(POLICIES)
        with bed_mesh(directory, keyring, ["n1", "n2"], identities=identities,
                      policies=policies, tls={"group": "caddy"}) as mesh:  # fmt: skip
            # n3 is only in mesh.yaml: its CA exists, no host runs it
            mesh.repo.set_node("n3", keyring.ssh_hosts[2], 3)
            mesh.repo.data["nodes"]["n3"]["endpoint"] = f"{GHOST_UNDERLAY}13:{WG_PORT}"
            mesh.keys["n3"] = keyring.ssh_hosts[2]
            # meshops checks and renders for the Caddy this host runs: first on PATH
            mesh.env["PATH"] = f"{Path(binary).parent}:{os.environ['PATH']}"
            built = Proxies(mesh, release, directory / "upstream.log",
                            make_foreign_web_cert(directory / "foreign", mesh.trust_domain,
                                                  mesh.domain), directory / "minted")  # fmt: skip
            built.minted.mkdir()
            (first_apply or (lambda b: b.apply("initial state")))(built)
            yield from _run_proxies(built, binary)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run_proxies(built: Proxies, binary: str) -> Iterator[Proxies]:
    mesh, directory = built.mesh, built.upstream_log.parent
    n1 = mesh.host("n1")
    upstream = n1.popen(["python3", "-c", UPSTREAM, str(built.upstream_log), str(UPSTREAM_PORT)])
    wait_for_port(n1, UPSTREAM_PORT, proc=upstream)

    # Caddy standalone, as the example unit runs it: user caddy, state and runtime
    # directories of its own, `caddy reload` through the admin socket
    caddy_file = mesh.host_path("n1", CADDY_CONFIG)
    state = owned_dir(mesh.host_path("n1", "/var/lib/meshops-caddy/api"), "caddy", 0o750)
    owned_dir(mesh.host_path("n1", "/run/meshops-caddy/api"), "caddy", 0o700)
    env = {"HOME": str(state), "XDG_DATA_HOME": str(state), "XDG_CONFIG_HOME": str(state)}
    as_caddy = ["setpriv", "--reuid=caddy", "--regid=caddy", "--init-groups"]
    run = [*as_caddy, binary, "run", "--config", str(caddy_file), "--adapter", "caddyfile"]
    with open(directory / "caddy.log", "wb") as log:
        server = n1.popen(run, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(n1, CADDY_PORT, proc=server)

    # nginx: the rendered file included in a Debian-style nginx.conf (workers www-data)
    work = directory / "nginx"
    work.mkdir()
    main = work / "nginx.conf"
    included = mesh.host_path("n1", NGINX_CONFIG)
    main.write_text("user www-data;\n" + nginx_wrapper(included, work))
    nginx = n1.popen(["nginx", "-p", str(work), "-e", str(work / "error.log"),
                      "-c", str(main), "-g", "daemon off;"])  # fmt: skip
    wait_for_port(n1, NGINX_PORT, proc=nginx)

    # the reload commands of the example units, now that the proxies run; Caddy skips a
    # reload whose config text is unchanged, though certificate files changed: --force
    caddy_reload = [binary, "reload", "--config", str(caddy_file), "--adapter", "caddyfile"]
    reloads = {
        "api": [*caddy_reload, "--force"],
        "ledger": ["nginx", "-p", str(work), "-c", str(main), "-s", "reload"],
    }
    for identity, command in reloads.items():
        mesh.repo.data["identities"][identity]["proxy"]["reload"] = command
    built.apply("reload the proxies when their certificates or trust pool change")
    yield built


def test_host_apply_renders_both_proxy_configs_with_group_readable_keys(proxies: Proxies) -> None:
    mesh = proxies.mesh
    caddy_text = mesh.host_path("n1", CADDY_CONFIG).read_text()
    if proxies.release == "caddy-2.6":  # its Caddyfile reads one certificate per file
        assert caddy_text.count("trusted_ca_cert ") == 3
    else:
        assert str(mesh.tls_dir("n1", "api") / "node-cas.pem") in caddy_text
    assert f"spiffe://{mesh.trust_domain}/web" in caddy_text
    assert "admin unix/" in caddy_text  # `caddy reload` works; nothing listens on TCP
    nginx_text = mesh.host_path("n1", NGINX_CONFIG).read_text()
    assert str(mesh.tls_dir("n1", "ledger") / "key.pem") in nginx_text
    for identity, group in (("api", "caddy"), ("ledger", "www-data")):
        info = (mesh.tls_dir("n1", identity) / "key.pem").stat()
        assert stat.S_IMODE(info.st_mode) == 0o640, identity
        assert (info.st_uid, grp.getgrgid(info.st_gid).gr_name) == (0, group), identity
    assert (mesh.tls_dir("n1", "api") / "node-cas.pem").read_text().count("BEGIN CERT") == 3
    assert not (mesh.tls_dir("n1", "ledger") / "node-cas.pem").exists()  # nginx has CRLs
    for node in ("n1", "n2"):
        assert mesh.plan(node).returncode == 0


@pytest.mark.parametrize("service,port", SERVICES, ids=["caddy", "nginx"])
def test_policy_matrix_allows_only_what_the_mesh_grants(
    proxies: Proxies, service: str, port: int
) -> None:
    cases = [
        ("web", "GET", "/v1/users", "200"),
        ("web", "HEAD", "/v1/users", "200"),
        ("batch", "POST", "/jobs", "200"),
        ("web", "DELETE", "/v1/users", "403"),  # allowed path, method not granted
        ("web", "GET", "/admin", "403"),  # allowed method, path not granted
        ("web", "POST", "/jobs", "403"),  # batch's grant is not web's
        ("batch", "GET", "/v1/users", "403"),
        ("web", "GET", "/admin/../v1/x", "400"),  # judged as /v1/x, forwarded as written
        ("web", "GET", "/admin/%2e%2e/v1/x", "400"),
        ("web", "GET", "/v1/..;/admin", "400"),  # /admin to Tomcat, Jetty, Spring
    ]
    for caller, method, path, expected in cases:
        before = len(proxies.reached())
        rc, code, body = proxies.curl(service, port, method, path, caller=caller)
        assert rc == 0, f"{caller} {method} {path}: curl failed: {body}"
        assert code == expected, f"{caller} {method} {path} -> {code}: {body}"
        reached = proxies.reached()[before:]
        if expected == "200":
            assert reached == [f"{method} {path}"], f"{caller} {method} {path}"
            if method != "HEAD":
                assert f"upstream saw {method} {path}" in body
        else:
            assert reached == [], f"a refused request reached the upstream: {reached}"


def assert_handshake_refused(result: tuple[int, str, str], service: str) -> None:
    rc, code, body = result
    if service == "api":  # Caddy fails the TLS handshake itself
        assert rc != 0 and code == "000", f"handshake succeeded: {code} {body}"
    else:  # nginx completes the TLS 1.3 handshake, then answers 400 itself
        assert rc == 0 and code == "400", f"{code} {body}"


@pytest.mark.parametrize("service,port", SERVICES, ids=["caddy", "nginx"])
@pytest.mark.parametrize("caller", [None, "foreign"], ids=["no-cert", "foreign-ca"])
def test_caller_without_a_mesh_certificate_is_refused_before_the_upstream(
    proxies: Proxies, service: str, port: int, caller: str | None
) -> None:
    before = len(proxies.reached())
    assert_handshake_refused(
        proxies.curl(service, port, "GET", "/v1/users", caller=caller), service
    )
    assert proxies.reached()[before:] == []


@pytest.mark.parametrize("service,port", SERVICES, ids=["caddy", "nginx"])
def test_a_stolen_node_ca_cannot_be_an_identity_of_another_node(
    proxies: Proxies, service: str, port: int
) -> None:
    """web runs only on n2. With n1's CA key (a stolen n1) a leaf for web is minted, with
    a DNS name n1's CA may vouch for (its own; `web.<domain>` its name constraints
    refuse): the chain verifies, the proxies refuse it; the real web, from n2, passes."""
    far = datetime.now(UTC) + timedelta(days=3650)
    own_name = f"n1.{proxies.mesh.domain}"
    proxies.mint("web-by-n1", node="n1", identity="web", not_after=far, dns=own_name)
    before = len(proxies.reached())
    rc, code, body = proxies.curl(service, port, "GET", "/v1/users", caller="minted:web-by-n1")
    assert (rc, code) == (0, "403"), body
    assert proxies.reached()[before:] == []
    assert proxies.curl(service, port, "GET", "/v1/users", caller="web")[1] == "200"


def test_a_removed_nodes_ca_is_refused_even_with_a_far_not_after(proxies: Proxies) -> None:
    """cron runs on n3. A leaf for cron minted with n3's CA key, valid for ten years,
    passes while n3 is in the mesh. Then n3 is removed (cron moves to n2): after the
    repo apply and the hosts' applies, Caddy (no CRL: its pool lost n3's CA) and nginx
    (the CRL revokes it) refuse that leaf, and cron's calls from n2 pass."""
    mesh = proxies.mesh
    proxies.mint("cron-by-n3", node="n3", identity="cron", not_after=datetime.now(UTC)
                 + timedelta(days=3650))  # fmt: skip
    for service, port in SERVICES:
        code = proxies.curl(service, port, "GET", "/v1/x", caller="minted:cron-by-n3")[1]
        assert code == "200", f"{service}: the minted leaf is a good one while n3 is here"
    n3_ca = (mesh.repo.state_dir / "nodes/n3/ca.crt").read_text()
    del mesh.repo.data["nodes"]["n3"]
    mesh.repo.data["identities"]["cron"]["nodes"] = ["n2"]
    proxies.apply("remove n3; cron moves to n2")
    pool = (mesh.tls_dir("n1", "api") / "node-cas.pem").read_text()
    assert n3_ca not in pool
    # n1's CA, n2's new one (re-issued: cron's name joined it) and its previous one,
    # still good for n2's leaves until they renew
    assert pool.count("BEGIN CERT") == 3
    before = len(proxies.reached())
    for service, port in SERVICES:
        refused = proxies.curl(service, port, "GET", "/v1/x", caller="minted:cron-by-n3")
        assert_handshake_refused(refused, service)
        assert proxies.curl(service, port, "GET", "/v1/x", caller="cron")[1] == "200"
    assert proxies.reached()[before:] == ["GET /v1/x", "GET /v1/x"]


def _bundle_roots(proxies: Proxies, node: str, identity: str) -> int:
    return (proxies.mesh.tls_dir(node, identity) / "ca.pem").read_text().count("BEGIN CERT")


def test_a_root_rotation_keeps_mesh_calls_flowing_through_every_phase(
    proxies: Proxies,
) -> None:
    """Each phase applied on every host before the next (what `--hold` is for): web's
    calls pass through Caddy and nginx all along, and outsiders stay out."""
    mesh = proxies.mesh

    def calls() -> list[str]:
        return [
            proxies.curl(service, port, "GET", "/v1/users", caller=caller)[1]
            for service, port in SERVICES
            for caller in ("web", "batch")
        ]

    assert calls() == ["200", "403", "200", "403"]
    staged = mesh.repo.meshops("ca", "rotate", "--hold", "0s", identity=True)
    assert staged.returncode == 0, str(staged)
    old_leaf = (mesh.tls_dir("n2", "web") / "cert.pem").read_bytes()
    for phase, roots in ((1, 2), (2, 2), (3, 1)):
        applied = mesh.apply_repo(f"root rotation, phase {phase}")
        assert f"rotation {phase}/3" in applied.stdout, applied.stdout
        for node in ("n1", "n2"):
            result = mesh.apply(node)
            if phase == 2:  # node CAs re-issued: every leaf follows, proxies reload
                assert "cert.leaf" in result.stdout, f"[{node}] {result.stdout}"
                assert "hook.reload" in result.stdout or node == "n2"
        assert _bundle_roots(proxies, "n1", "api") == roots
        assert _bundle_roots(proxies, "n2", "web") == roots
        assert calls() == ["200", "403", "200", "403"], f"after phase {phase}"
    assert (mesh.tls_dir("n2", "web") / "cert.pem").read_bytes() != old_leaf
    for node in ("n1", "n2"):
        assert mesh.plan(node).returncode == 0


def test_repo_scope_publishes_a_crl_per_node_ca(tmp_path: Path, keyring: KeyRing) -> None:
    from test_repo_support import new_repo

    repo = new_repo(tmp_path / "mesh", keyring, nodes=2)
    repo.apply()
    for node in ("node-1", "node-2"):
        crl = repo.state_dir / "nodes" / node / "crl.pem"
        ca = repo.state_dir / "nodes" / node / "ca.crt"
        assert crl.exists(), f"no CRL of {node}'s CA"
        verified = openssl("crl", "-noout", "-CAfile", str(ca), "-in", str(crl))
        assert verified.returncode == 0, verified.stderr


def test_no_private_key_reached_any_output(proxies: Proxies) -> None:
    assert_no_secret_leaked(proxies.mesh.repo, Unsealed())
