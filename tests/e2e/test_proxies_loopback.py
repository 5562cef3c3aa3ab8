"""Real traffic through real Caddy and nginx on loopback, configs rendered by meshops.

A throwaway PKI (root -> node CA -> leaves with URI SAN spiffe://demo.internal/<id>
and CN <id>, plus a foreign CA), a tiny upstream counting the requests it gets, and
curl presenting each identity's certificate. Everything started here is stopped here.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "render"))

from render_pki import TlsFiles, make_mesh

from meshops.model.mesh import Policy
from meshops.policy import compile_policies
from meshops.providers.proxies import write_nginx_wrapper
from meshops.render import ProxySpec, render_caddy, render_nginx

pytestmark = pytest.mark.e2e

POLICIES = [
    Policy.model_validate(
        {
            "name": "web-reads",
            "from": "web",
            "to": "api",
            "allow": [{"methods": ["GET", "HEAD"], "paths": ["/v1/*"]}],
        }
    ),
    Policy.model_validate(
        {
            "name": "batch-health",
            "from": "batch",
            "to": "api",
            "allow": [{"methods": ["GET"], "paths": ["/healthz"]}],
        }
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upstream:
    port: int
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    record = Upstream(free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            record.hits.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", "9")
            self.end_headers()
            if body:
                self.wfile.write(b"upstream\n")

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def do_DELETE(self) -> None:
            self._answer(True)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", record.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Certs:
    api: TlsFiles
    web: TlsFiles
    batch: TlsFiles
    foreign_web: TlsFiles


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    mesh = make_mesh(tmp_path / "pki")
    return Certs(
        api=mesh.write_identity("api"),
        web=mesh.write_identity("web"),
        batch=mesh.write_identity("batch"),
        foreign_web=mesh.write_identity("web", foreign=True),
    )


def api_spec(kind: str, certs: Certs, upstream: Upstream, state: Path) -> ProxySpec:
    table = compile_policies(POLICIES, ["api", "web", "batch"], {})
    return ProxySpec(
        identity="api",
        kind=kind,  # type: ignore[arg-type]
        trust_domain="demo.internal",
        listen=free_port(),
        listen_address="127.0.0.1",
        upstream=f"127.0.0.1:{upstream.port}",
        cert_file=str(certs.api.cert),
        key_file=str(certs.api.key),
        ca_file=str(certs.api.ca),
        crl_file=str(certs.api.crl),
        rules=tuple(table.rules_for("api")),
        state_dir=str(state),
    )


@contextlib.contextmanager
def running(argv: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{argv[0]} did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def curl(port: int, tls: TlsFiles | None, method: str, path: str) -> tuple[int, str]:
    """(curl exit code, HTTP status or '000' when no HTTP answer came back)."""
    argv = ["curl", "-sk", "--path-as-is", "--max-time", "5", "-o", "/dev/null"]
    argv += ["-w", "%{http_code}"]
    argv += ["-I"] if method == "HEAD" else ["-X", method]
    if tls is not None:
        argv += ["--cert", str(tls.cert), "--key", str(tls.key)]
    proc = subprocess.run(
        [*argv, f"https://127.0.0.1:{port}{path}"], capture_output=True, text=True
    )
    return proc.returncode, proc.stdout.strip()


@pytest.fixture(params=["caddy", "nginx"])
def proxy(
    request: pytest.FixtureRequest, certs: Certs, upstream: Upstream, tmp_path: Path
) -> Iterator[tuple[str, int]]:
    kind = request.param
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    binary = shutil.which("caddy") if kind == "caddy" else nginx
    if binary is None or shutil.which("curl") is None:
        pytest.skip(f"{kind} or curl is not installed")
    state = tmp_path / f"{kind}-state"
    state.mkdir()
    spec = api_spec(kind, certs, upstream, state)
    if kind == "caddy":
        config = state / "Caddyfile"
        config.write_text(render_caddy(spec))
        argv = [binary, "run", "--config", str(config), "--adapter", "caddyfile"]
        env = {"HOME": str(state), "XDG_DATA_HOME": str(state), "XDG_CONFIG_HOME": str(state)}
    else:
        wrapper = write_nginx_wrapper(render_nginx(spec), state)
        argv = [binary, "-p", str(state), "-e", str(state / "error.log"), "-c", str(wrapper)]
        argv += ["-g", "daemon off;"]
        env = {}
    with running(argv, spec.listen, env, state / "proxy.log"):
        yield kind, spec.listen


def assert_rejected(result: tuple[int, str], kind: str) -> None:
    """Caddy fails the TLS handshake; nginx completes it and answers 400 itself."""
    rc, status = result
    if kind == "caddy":
        assert rc != 0 and status == "000", result
    else:
        assert (rc != 0 and status == "000") or status == "400", result


def test_allowed_caller_method_and_path_reach_the_upstream(
    proxy: tuple[str, int], certs: Certs, upstream: Upstream
) -> None:
    _, port = proxy
    assert curl(port, certs.web, "GET", "/v1/users") == (0, "200")
    assert curl(port, certs.web, "HEAD", "/v1/users") == (0, "200")
    assert curl(port, certs.batch, "GET", "/healthz") == (0, "200")
    assert upstream.hits == ["GET /v1/users", "HEAD /v1/users", "GET /healthz"]


def test_disallowed_method_path_or_caller_gets_403_and_never_reaches_upstream(
    proxy: tuple[str, int], certs: Certs, upstream: Upstream
) -> None:
    _, port = proxy
    assert curl(port, certs.web, "DELETE", "/v1/users") == (0, "403")
    assert curl(port, certs.web, "GET", "/admin") == (0, "403")
    assert curl(port, certs.web, "GET", "/v1") == (0, "403")
    assert curl(port, certs.web, "GET", "/V1/users") == (0, "403")
    assert curl(port, certs.web, "GET", "/healthz") == (0, "403")
    assert curl(port, certs.batch, "GET", "/v1/users") == (0, "403")
    assert upstream.hits == []


def test_dot_segments_cannot_smuggle_a_path_past_a_prefix_rule(
    proxy: tuple[str, int], certs: Certs, upstream: Upstream
) -> None:
    kind, port = proxy
    _, status = curl(port, certs.web, "GET", "/v1/../admin")
    assert status == ("400" if kind == "caddy" else "403")  # nginx judges it as /admin
    _, status = curl(port, certs.web, "GET", "/v1%2f..%2fadmin")
    assert status in ("400", "403", "404") and "GET /admin" not in upstream.hits
    assert all(hit.split()[1].startswith("/v1") for hit in upstream.hits)


def test_no_client_certificate_or_a_foreign_ca_is_rejected_before_any_rule(
    proxy: tuple[str, int], certs: Certs, upstream: Upstream
) -> None:
    kind, port = proxy
    assert_rejected(curl(port, None, "GET", "/v1/users"), kind)
    assert_rejected(curl(port, certs.foreign_web, "GET", "/v1/users"), kind)
    assert upstream.hits == []
