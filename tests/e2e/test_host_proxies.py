"""The mTLS proxies meshops renders, run for real: Caddy and nginx on n1 in front of a
plain HTTP upstream, called over the WireGuard overlay from n2 with curl and the
workload certificates meshops issued there.

Policies (default deny): `web` may GET/HEAD /v1/* on `api` (Caddy) and on `ledger`
(nginx); `batch` may only POST /jobs. Every refused request must stop at the proxy:
the upstream records what reaches it, and the tests check that log too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_fixtures import BedMesh, bed_mesh, openssl, wait_for_port
from test_repo_support import KeyRing, Unsealed, assert_no_secret_leaked, keyring
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


def proxy(kind: str, listen: int) -> dict[str, object]:
    return {"kind": kind, "listen": listen, "upstream": f"127.0.0.1:{UPSTREAM_PORT}"}


IDENTITIES = {
    "api": {"nodes": ["n1"], "proxy": proxy("caddy", CADDY_PORT)},
    "ledger": {"nodes": ["n1"], "proxy": proxy("nginx", NGINX_PORT)},
    "web": {"nodes": ["n2"]},
    "batch": {"nodes": ["n2"]},
}
POLICIES = [
    {"name": "web-reads", "from": ["web"], "to": ["api", "ledger"],
     "allow": [{"methods": ["GET", "HEAD"], "paths": ["/v1/*"]}]},
    {"name": "batch-submits", "from": ["batch"], "to": ["api", "ledger"],
     "allow": [{"methods": ["POST"], "paths": ["/jobs"]}]},
]  # fmt: skip


@dataclass
class Proxies:
    mesh: BedMesh
    upstream_log: Path
    foreign: Path  # a CA and a `web` leaf that meshops never issued
    reloads: dict[str, list[str]]  # identity -> the command that reloads its running proxy

    def curl(
        self, service: str, port: int, method: str, path: str, *, caller: str | None
    ) -> tuple[int, str, str]:
        """curl from n2 to n1's `service` over the overlay: (exit code, HTTP code, body).

        `caller` names the identity whose certificate is presented: a meshops identity
        on n2, "foreign" (same name and SPIFFE ID, other CA) or None (no certificate).
        """
        mesh = self.mesh
        name = f"{service}.{mesh.domain}"
        bundle = mesh.tls_dir("n2", "web") / "ca.pem"
        argv = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                "--cacert", str(bundle), "--resolve", f"{name}:{port}:{mesh.overlay_ip('n1')}",
                "-X", method]  # fmt: skip
        if method == "HEAD":
            argv[argv.index("-X") : argv.index("-X") + 2] = ["--head"]
        if caller == "foreign":
            argv += ["--cert", str(self.foreign / "web.crt")]
            argv += ["--key", str(self.foreign / "web.key")]
        elif caller is not None:
            tls = mesh.tls_dir("n2", caller)
            argv += ["--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem")]
        argv.append(f"https://{name}:{port}{path}")
        proc = mesh.host("n2").run(argv, check=False, timeout=30)
        body, _, code = proc.stdout.rpartition("\n")
        return proc.returncode, code.strip(), body + proc.stderr

    def reached(self) -> list[str]:
        return self.upstream_log.read_text().splitlines() if self.upstream_log.exists() else []


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


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[Proxies]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("host-proxies")
    with bed_mesh(directory, keyring, ["n1", "n2"], identities=IDENTITIES,
                  policies=POLICIES) as built:  # fmt: skip
        built.apply_repo("initial state")
        built.apply_all()
        yield start_proxies(built, directory)


def start_proxies(mesh: BedMesh, directory: Path) -> Proxies:
    """Run the upstream, Caddy (`api`) and nginx (`ledger`) on n1 with the configs
    meshops rendered there (IDENTITIES, POLICIES); the bed's teardown stops them."""
    n1 = mesh.host("n1")
    log = directory / "upstream.log"
    upstream = n1.popen(["python3", "-c", UPSTREAM, str(log), str(UPSTREAM_PORT)])
    wait_for_port(n1, UPSTREAM_PORT, proc=upstream)

    caddy_file = mesh.host_path("n1", "/etc/meshops/proxy/api.caddy")
    caddy_home = directory / "caddy-home"
    caddy_env = {"HOME": str(caddy_home), "XDG_DATA_HOME": str(caddy_home / "data"),
                 "XDG_CONFIG_HOME": str(caddy_home / "config")}  # fmt: skip
    pidfile = directory / "caddy.pid"
    caddy_run = ["caddy", "run", "--config", str(caddy_file), "--adapter", "caddyfile",
                 "--pidfile", str(pidfile)]  # fmt: skip
    with open(directory / "caddy.log", "wb") as caddy_log:
        caddy = n1.popen(caddy_run, env=caddy_env, stdout=caddy_log, stderr=subprocess.STDOUT)
    wait_for_port(n1, CADDY_PORT, proc=caddy)

    work = directory / "nginx"
    work.mkdir()
    server = mesh.host_path("n1", "/etc/meshops/proxy/ledger.conf")
    wrapper = work / "nginx.conf"
    wrapper.write_text(nginx_wrapper(server, work))
    nginx = n1.popen(["nginx", "-p", str(work), "-e", str(work / "error.log"),
                      "-c", str(wrapper), "-g", "daemon off;"])  # fmt: skip
    wait_for_port(n1, NGINX_PORT, proc=nginx)

    foreign = make_foreign_web_cert(directory / "foreign", mesh.trust_domain, mesh.domain)
    # the rendered Caddyfile turns the admin endpoint off: Caddy reloads by restarting
    # (what `systemctl restart caddy` does), here by a script run as the hook
    env = " ".join(f"{k}={v}" for k, v in caddy_env.items())
    restart_caddy = (
        f"kill $(cat {pidfile}); "
        f"while (exec 3<>/dev/tcp/127.0.0.1/{CADDY_PORT}) 2>/dev/null; do sleep 0.05; done; "
        f"{env} setsid {' '.join(caddy_run)} </dev/null >>{directory / 'caddy.log'} 2>&1 & "
        f"for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{CADDY_PORT}) 2>/dev/null "
        "&& exit 0; sleep 0.05; done; exit 1"
    )
    reloads = {
        "api": ["bash", "-c", restart_caddy],
        "ledger": ["nginx", "-p", str(work), "-c", str(wrapper), "-s", "reload"],
    }
    return Proxies(mesh, log, foreign, reloads)


def test_host_apply_renders_both_proxy_configs_under_root(proxies: Proxies) -> None:
    mesh = proxies.mesh
    caddy = mesh.host_path("n1", "/etc/meshops/proxy/api.caddy").read_text()
    assert str(mesh.tls_dir("n1", "api") / "cert.pem") in caddy
    assert f"spiffe://{mesh.trust_domain}/web" in caddy
    nginx = mesh.host_path("n1", "/etc/meshops/proxy/ledger.conf").read_text()
    assert str(mesh.tls_dir("n1", "ledger") / "key.pem") in nginx
    for node in ("n1", "n2"):
        assert mesh.plan(node).returncode == 0


@pytest.mark.parametrize(
    ("service", "port"), [("api", CADDY_PORT), ("ledger", NGINX_PORT)], ids=["caddy", "nginx"]
)
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
        ("web", "GET", "/v1/../admin", "4"),  # never judged as /v1/*
    ]
    results = []
    for caller, method, path, expected in cases:
        before = len(proxies.reached())
        rc, code, body = proxies.curl(service, port, method, path, caller=caller)
        results.append((caller, method, path, rc, code))
        assert rc == 0, f"{caller} {method} {path}: curl failed: {body}"
        assert code.startswith(expected), f"{caller} {method} {path} -> {code}: {body}"
        reached = proxies.reached()[before:]
        if expected == "200":
            assert reached == [f"{method} {path}"], f"{caller} {method} {path}"
            if method != "HEAD":
                assert f"upstream saw {method} {path}" in body
        else:
            assert reached == [], f"a refused request reached the upstream: {reached}"


@pytest.mark.parametrize(
    ("service", "port"), [("api", CADDY_PORT), ("ledger", NGINX_PORT)], ids=["caddy", "nginx"]
)
@pytest.mark.parametrize("caller", [None, "foreign"], ids=["no-cert", "foreign-ca"])
def test_caller_without_a_mesh_certificate_is_refused_before_the_upstream(
    proxies: Proxies, service: str, port: int, caller: str | None
) -> None:
    before = len(proxies.reached())
    rc, code, body = proxies.curl(service, port, "GET", "/v1/users", caller=caller)
    if service == "api":
        # Caddy: require_and_verify fails the TLS handshake itself
        assert rc != 0 and code == "000", f"{caller}: handshake succeeded: {code} {body}"
    else:
        # nginx (ssl_verify_client on) completes the TLS 1.3 handshake, then answers
        # 400 ("No required SSL certificate" / "The SSL certificate error") itself
        assert rc == 0 and code == "400", f"{caller}: {code} {body}"
    assert proxies.reached()[before:] == []


def _bundle_roots(proxies: Proxies, node: str, identity: str) -> int:
    return (proxies.mesh.tls_dir(node, identity) / "ca.pem").read_text().count("BEGIN CERT")


def test_a_root_rotation_keeps_mesh_calls_flowing_through_every_phase(
    proxies: Proxies,
) -> None:
    """Each phase applied on every host before the next (what `--hold` is for): web's
    calls pass through Caddy and nginx all along, and outsiders stay out."""
    mesh = proxies.mesh
    for identity, command in proxies.reloads.items():  # running proxies cache certs
        mesh.repo.data["identities"][identity]["proxy"]["reload"] = command
    mesh.apply_repo("reload the proxies when their certificates change")
    mesh.apply_all()

    def calls() -> list[str]:
        return [
            proxies.curl(service, port, "GET", "/v1/users", caller=caller)[1]
            for service, port in (("api", CADDY_PORT), ("ledger", NGINX_PORT))
            for caller in ("web", "batch")
        ]

    assert calls() == ["200", "403", "200", "403"]
    staged = mesh.repo.meshops("ca", "rotate", "--hold", "0s", identity=True)
    assert staged.returncode == 0, str(staged)
    old_leaf = (mesh.tls_dir("n2", "web") / "cert.pem").read_bytes()
    for phase, roots in ((1, 2), (2, 2), (3, 1)):
        applied = mesh.apply_repo(f"root rotation, phase {phase}")
        assert f"rotation {phase}/3" in applied.stdout, applied.stdout
        for node, result in mesh.apply_all().items():
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
