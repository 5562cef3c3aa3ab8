"""Real traffic through real Caddy (Debian's 2.6 and 2.11) and nginx on loopback,
configs rendered by meshops.

A throwaway PKI (root -> node CAs of web-1 and web-2 -> leaves with URI SAN
spiffe://demo.internal/<id> and CN <id>, plus a foreign CA), a tiny upstream recording
the request line of everything that reaches it, and curl presenting each identity's
certificate. `web` and `batch` run on web-1 only unless a test says otherwise.
Everything started here is stopped here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "render"))

from proxy_binaries import CADDY_RELEASES, caddy, nginx
from render_factories import DOMAIN
from render_pki import Mesh, TlsFiles, make_mesh

from meshops.model.mesh import Policy
from meshops.pki import cert_pem
from meshops.policy import compile_policies
from meshops.providers.proxies import write_nginx_wrapper
from meshops.render import ProxySpec, render_caddy, render_nginx
from meshops.render.spec import CADDY_LATEST, pem_ders

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
PROXIES = [*CADDY_RELEASES, "nginx"]


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
    web_on_web_2: TlsFiles  # web's leaf from web-2's CA
    pki: Mesh


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    mesh = make_mesh(tmp_path / "pki")
    return Certs(
        api=mesh.write_identity("api"),
        web=mesh.write_identity("web"),
        batch=mesh.write_identity("batch"),
        foreign_web=mesh.write_identity("web", foreign=True),
        web_on_web_2=mesh.write_identity("web", node="web-2", name="web-on-web-2"),
        pki=mesh,
    )


def api_spec(
    proxy: str, certs: Certs, upstream: Upstream, state: Path, *, web_runs_on: str = "web-1"
) -> ProxySpec:
    table = compile_policies(POLICIES, ["api", "web", "batch"], {})
    version = caddy(proxy)[1] if proxy.startswith("caddy") else CADDY_LATEST
    return ProxySpec(
        identity="api",
        kind="caddy" if proxy.startswith("caddy") else "nginx",
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
        run_dir=str(state),
        domain=DOMAIN,
        caller_nodes={"web": (web_runs_on,), "batch": ("web-1",)},
        node_ca_file=str(certs.api.node_cas),
        node_ca_ders=pem_ders(certs.api.node_cas.read_bytes()),
        caddy_version=version,
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


@contextlib.contextmanager
def started(proxy: str, spec: ProxySpec, state: Path) -> Iterator[int]:
    """Run `proxy` (a Caddy release or nginx) with `spec` rendered; yields its port."""
    if proxy.startswith("caddy"):
        config = state / "Caddyfile"
        config.write_text(render_caddy(spec))
        argv = [caddy(proxy)[0], "run", "--config", str(config), "--adapter", "caddyfile"]
        env = {"HOME": str(state), "XDG_DATA_HOME": str(state), "XDG_CONFIG_HOME": str(state)}
    else:  # standalone: the rendered file is the whole nginx.conf
        config = state / "nginx.conf"
        config.write_text(render_nginx(spec))
        argv = [nginx(), "-p", str(state), "-e", str(state / "error.log"), "-c", str(config)]
        argv += ["-g", "daemon off;"]
        env = {}
    with running(argv, spec.listen, env, state / "proxy.log"):
        yield spec.listen


@pytest.fixture(params=PROXIES)
def proxy(
    request: pytest.FixtureRequest, certs: Certs, upstream: Upstream, tmp_path: Path
) -> Iterator[tuple[str, int]]:
    state = tmp_path / "state"
    state.mkdir()
    with started(request.param, api_spec(request.param, certs, upstream, state), state) as port:
        yield request.param, port


def assert_rejected(result: tuple[int, str], proxy: str) -> None:
    """Caddy fails the TLS handshake; nginx completes it and answers 400 itself."""
    rc, status = result
    if proxy.startswith("caddy"):
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
    assert curl(port, certs.web, "GET", "/v1/a%20b") == (0, "200")
    assert upstream.hits == ["GET /v1/users", "HEAD /v1/users", "GET /healthz", "GET /v1/a%20b"]


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


# each would pass a `/v1/*` rule judged on a normalized path, and reach the upstream as
# written, where it means something else (dot segments, encoded separators) or, for
# Tomcat, Jetty and Spring, `/admin` (`;` path parameters)
SMUGGLED = [
    "/admin/../v1/x",
    "/admin%2f..%2fv1/x",
    "/admin/%2e%2e/v1/x",
    "/admin/%2E%2e/v1/x",
    "/v1/../admin",
    "/v1/..;/admin",
    "/v1/x;jsessionid=1",
    "/v1/%3b/../admin",
    "/v1/%2e%2e/admin",
    "/v1//x",
    "/v1/./x",
    "/v1/x/.",
    "/v1\\..\\admin",
    "/v1/%5c..%5cadmin",
    "/v1%2fx",
]


@pytest.mark.parametrize("path", SMUGGLED)
def test_a_non_canonical_path_is_refused_before_any_rule(
    proxy: tuple[str, int], certs: Certs, upstream: Upstream, path: str
) -> None:
    _, port = proxy
    assert curl(port, certs.web, "GET", path) == (0, "400")
    assert upstream.hits == []


def test_no_client_certificate_or_a_foreign_ca_is_rejected_before_any_rule(
    proxy: tuple[str, int], certs: Certs, upstream: Upstream
) -> None:
    name, port = proxy
    assert_rejected(curl(port, None, "GET", "/v1/users"), name)
    assert_rejected(curl(port, certs.foreign_web, "GET", "/v1/users"), name)
    assert upstream.hits == []


@pytest.mark.parametrize("name", PROXIES)
def test_a_leaf_from_another_nodes_ca_is_refused_for_an_identity_not_running_there(
    name: str, certs: Certs, upstream: Upstream, tmp_path: Path
) -> None:
    """web runs only on web-2. A leaf for web minted with web-1's CA key (what a thief of
    web-1 could do) is refused; the real web on web-2 passes."""
    state = tmp_path / "state"
    state.mkdir()
    spec = api_spec(name, certs, upstream, state, web_runs_on="web-2")
    with started(name, spec, state) as port:
        assert curl(port, certs.web, "GET", "/v1/users") == (0, "403")
        assert curl(port, certs.web_on_web_2, "GET", "/v1/users") == (0, "200")
        assert curl(port, certs.batch, "GET", "/healthz") == (0, "200")  # batch: web-1
    assert upstream.hits == ["GET /v1/users", "GET /healthz"]


@pytest.mark.parametrize("release", CADDY_RELEASES)
def test_caddy_trusts_only_the_node_cas_in_its_pool(
    release: str, certs: Certs, upstream: Upstream, tmp_path: Path
) -> None:
    """Caddy checks no CRL: a node CA missing from node-cas.pem (a removed node's) fails
    the handshake, though the root signed it; the other node's leaves pass."""
    pool = tmp_path / "pool.pem"
    pool.write_bytes(cert_pem(certs.pki.own.node_cas["web-2"].cert))
    state = tmp_path / "state"
    state.mkdir()
    spec = api_spec(release, certs, upstream, state, web_runs_on="web-2")
    spec = dataclasses.replace(
        spec, node_ca_file=str(pool), node_ca_ders=pem_ders(pool.read_bytes())
    )
    with started(release, spec, state) as port:
        assert_rejected(curl(port, certs.batch, "GET", "/healthz"), release)  # web-1's CA
        assert curl(port, certs.web_on_web_2, "GET", "/v1/users") == (0, "200")
    assert upstream.hits == ["GET /v1/users"]


RUN_MODES = [(p, m) for p in PROXIES for m in ("standalone", "import")]


@contextlib.contextmanager
def started_as(
    proxy: str, run: str, spec: ProxySpec, state: Path
) -> Iterator[tuple[int, Callable[[ProxySpec], None]]]:
    """Run `proxy` the way `run` means (its own config, or imported into an operator's
    own); yields the port and a function that renders a new spec and reloads."""
    spec = dataclasses.replace(spec, run=run)  # type: ignore[arg-type]
    rendered = state / ("sidecar.caddy" if proxy.startswith("caddy") else "sidecar.conf")
    if proxy.startswith("caddy"):
        binary = caddy(proxy)[0]
        main = rendered
        if run == "import":  # the operator's Caddyfile, admin API on its default-like port;
            main = state / "Caddyfile"  # curl dials an IP address: no SNI (docs/proxies.md)
            main.write_text(
                "\n".join([
                    "{", f"\tadmin localhost:{free_port()}", f"\tstorage file_system {state}/data",
                    f"\tservers 127.0.0.1:{spec.listen} {{", "\t\tstrict_sni_host insecure_off",
                    "\t}", "}", f"import {rendered}", "",
                ])
            )  # fmt: skip
        argv = [binary, "run", "--config", str(main), "--adapter", "caddyfile"]
        reload = [binary, "reload", "--config", str(main), "--adapter", "caddyfile", "--force"]
        env = {"HOME": str(state), "XDG_DATA_HOME": str(state), "XDG_CONFIG_HOME": str(state)}
    else:
        main = rendered
        if run == "import":  # included in the operator's nginx.conf
            main = write_nginx_wrapper("", state)
            main.write_text(main.read_text().replace(str(state / "server.conf"), str(rendered)))
        argv = [nginx(), "-p", str(state), "-e", str(state / "error.log"), "-c", str(main)]
        reload = [*argv, "-s", "reload"]
        argv += ["-g", "daemon off;"]
        env = {}
    renderer = render_caddy if proxy.startswith("caddy") else render_nginx
    rendered.write_text(renderer(spec))

    def change(new: ProxySpec) -> None:
        rendered.write_text(renderer(dataclasses.replace(new, run=run)))  # type: ignore[arg-type]
        done = subprocess.run(reload, capture_output=True, text=True, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        time.sleep(0.5)  # nginx swaps workers, Caddy its servers, a moment after

    with running(argv, spec.listen, env, state / "proxy.log"):
        yield spec.listen, change


@pytest.mark.parametrize(("name", "run"), RUN_MODES)
def test_each_way_of_running_a_sidecar_reloads_a_new_policy(
    name: str, run: str, certs: Certs, upstream: Upstream, tmp_path: Path
) -> None:
    """Standalone (its own process, reloaded through Caddy's admin socket or nginx's
    pid) and imported (into an operator's Caddyfile or nginx.conf, reloaded the
    operator's way): a policy change lands without a restart."""
    state = tmp_path / "state"
    state.mkdir()
    spec = api_spec(name, certs, upstream, state)
    moved = compile_policies(
        [Policy.model_validate({"name": "web-moved", "from": "web", "to": "api",
                                "allow": [{"methods": ["GET"], "paths": ["/v2/*"]}]})],
        ["api", "web", "batch"], {},
    )  # fmt: skip
    with started_as(name, run, spec, state) as (port, change):
        assert curl(port, certs.web, "GET", "/v1/a") == (0, "200")
        assert curl(port, certs.web, "GET", "/v2/a") == (0, "403")
        change(dataclasses.replace(spec, rules=tuple(moved.rules_for("api"))))
        assert curl(port, certs.web, "GET", "/v2/a") == (0, "200")
        assert curl(port, certs.web, "GET", "/v1/a") == (0, "403")
    assert upstream.hits == ["GET /v1/a", "GET /v2/a"]
