"""`caddy validate` (Debian's 2.6 and a current release) and `nginx -t` accept what the
renderers write, standalone and imported (real cert files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from proxy_binaries import CADDY_RELEASES, caddy, nginx
from render_factories import spec_for
from render_pki import TlsFiles

from meshops.errors import CommandFailed
from meshops.model import load_file
from meshops.providers.proxies import check_config
from meshops.render import render, render_caddy_site, render_nginx
from meshops.render.caddy import caddy_version_of
from meshops.render.nginx import render_nginx_include

EXAMPLE = Path(__file__).parents[3] / "examples" / "mesh.yaml"
MODES = [("strict", None), ("permissive", 18080)]
PROXIES = [*CADDY_RELEASES, "nginx", "envoy"]


def _binary(proxy: str) -> str | None:
    if proxy.startswith("caddy"):
        return caddy(proxy)[0]
    return nginx() if proxy == "nginx" else None


def _kind(proxy: str) -> str:
    return "caddy" if proxy.startswith("caddy") else proxy


def _version(proxy: str) -> tuple[int, int, int]:
    return caddy(proxy)[1] if proxy.startswith("caddy") else (2, 11, 0)


@pytest.mark.parametrize(("mode", "plaintext"), MODES)
@pytest.mark.parametrize("proxy", PROXIES)
def test_proxy_accepts_rendered_config(
    proxy: str, mode: str, plaintext: int | None, tls_files: TlsFiles, tmp_path: Path
) -> None:
    access = load_file(EXAMPLE).access
    spec = spec_for(
        _kind(proxy),  # type: ignore[arg-type]
        access,
        "api",
        tls=tls_files,
        mode=mode,
        plaintext_listen=plaintext,
        state_dir=str(tmp_path / "state"),
        run_dir=str(tmp_path / "run"),
        caddy_version=_version(proxy),
    )
    text = render(spec)
    assert check_config(spec.kind, text, workdir=tmp_path / "check", binary=_binary(proxy)) is None


@pytest.mark.parametrize("release", CADDY_RELEASES)
def test_caddy_site_block_alone_is_importable(
    release: str, tls_files: TlsFiles, tmp_path: Path
) -> None:
    spec = spec_for("caddy", load_file(EXAMPLE).access, "api", tls=tls_files, run="import",
                    caddy_version=_version(release))  # fmt: skip
    site = render(spec)
    assert site == render_caddy_site(spec)
    assert not site.lstrip().startswith("{")  # no global options: safe to `import`
    (tmp_path / "api.caddy").write_text(site)
    main = f"{{\n\tstorage file_system {tmp_path}/data\n}}\nimport {tmp_path}/api.caddy\n"
    assert check_config("caddy", main, workdir=tmp_path / "check", binary=_binary(release)) is None


def test_caddy_renders_what_each_release_understands(tls_files: TlsFiles) -> None:
    access = load_file(EXAMPLE).access
    old = render(spec_for("caddy", access, "api", tls=tls_files, caddy_version=(2, 6, 2)))
    new = render(spec_for("caddy", access, "api", tls=tls_files, caddy_version=(2, 11, 7)))
    assert "persist_config" not in old and "\tpersist_config off" in new
    # 2.6's Caddyfile reads one certificate per file: every node CA is listed inline
    assert old.count("trusted_ca_cert ") == tls_files.node_cas.read_text().count("BEGIN CERT")
    assert "trust_pool file" not in old and f"trust_pool file {tls_files.node_cas}" in new


@pytest.mark.parametrize(
    ("output", "version"),
    [("v2.11.7 h1:yj0Y4fYZGPkSvibBJ1sTWE33xC0fxztVyXEW5iIdUT4=\n", (2, 11, 7)),
     ("2.6.2\n", (2, 6, 2)), ("v2.8.0-beta.1 h1:x\n", (2, 8, 0)), ("(devel)\n", None)],
)  # fmt: skip
def test_caddy_version_is_read_from_caddy_version_output(
    output: str, version: tuple[int, int, int] | None
) -> None:
    assert caddy_version_of(output) == version


@pytest.mark.parametrize("release", CADDY_RELEASES)
def test_the_installed_releases_say_their_version(release: str) -> None:
    binary, version = caddy(release)
    assert f"caddy-{version[0]}.{version[1]}" == release and Path(binary).exists()


def test_two_nginx_identity_files_can_be_included_together(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    access = load_file(EXAMPLE).access
    both = render_nginx(spec_for("nginx", access, "api", tls=tls_files, listen=18443))
    both += render_nginx(spec_for("nginx", access, "db", tls=tls_files, listen=18444))
    assert check_config("nginx", both, workdir=tmp_path / "check", binary=nginx()) is None


def test_standalone_nginx_wraps_the_same_include(tls_files: TlsFiles, tmp_path: Path) -> None:
    spec = spec_for("nginx", load_file(EXAMPLE).access, "api", tls=tls_files, run="standalone",
                    run_dir=str(tmp_path / "run"), state_dir=str(tmp_path / "state"))  # fmt: skip
    whole = render_nginx(spec)
    assert whole.startswith(f'pid "{tmp_path}/run/nginx.pid";')
    body = render_nginx_include(spec)
    assert all(f"\t{line}" in whole for line in body.splitlines() if line)
    (tmp_path / "run").mkdir()  # what the unit's RuntimeDirectory= and StateDirectory= make
    (tmp_path / "state").mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(whole)
    import subprocess

    checked = subprocess.run([nginx(), "-t", "-q", "-p", str(tmp_path), "-e",
                              str(tmp_path / "error.log"), "-c", str(config)],
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("proxy", "needle"),
    [*((r, "no such file") for r in CADDY_RELEASES), ("nginx", "cannot load certificate")],
)
def test_missing_certificate_is_refused_with_the_proxy_message(
    proxy: str, needle: str, tmp_path: Path
) -> None:
    spec = spec_for(_kind(proxy), load_file(EXAMPLE).access, "api",  # type: ignore[arg-type]
                    caddy_version=_version(proxy))  # fmt: skip
    with pytest.raises(CommandFailed, match=needle):
        check_config(spec.kind, render(spec), workdir=tmp_path / "check", binary=_binary(proxy))


def test_rendered_standalone_caddyfile_keeps_caddy_local_and_quiet(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    spec = spec_for("caddy", load_file(EXAMPLE).access, "api", tls=tls_files,
                    run_dir=str(tmp_path))  # fmt: skip
    text = render(spec)
    for line in (f"admin unix/{tmp_path}/admin.sock", "auto_https off", "persist_config off",
                 "storage file_system"):  # fmt: skip
        assert f"\t{line}" in text
    assert "admin off" in render(dataclasses.replace(spec, run_dir=None))
