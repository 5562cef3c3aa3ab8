"""`caddy validate` and `nginx -t` accept what the renderers write (real cert files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from render_factories import spec_for
from render_pki import TlsFiles

from meshops.errors import CommandFailed
from meshops.model import load_file
from meshops.providers.proxies import check_config
from meshops.render import render, render_caddy_site, render_nginx

EXAMPLE = Path(__file__).parents[3] / "examples" / "mesh.yaml"
MODES = [("strict", None), ("permissive", 18080)]


def _needs(binary: str) -> None:
    if shutil.which(binary) is None and shutil.which(binary, path="/usr/sbin") is None:
        pytest.skip(f"{binary} is not installed")


@pytest.mark.parametrize(("mode", "plaintext"), MODES)
@pytest.mark.parametrize("kind", ["caddy", "nginx", "envoy"])
def test_proxy_accepts_rendered_config(
    kind: str, mode: str, plaintext: int | None, tls_files: TlsFiles, tmp_path: Path
) -> None:
    if kind != "envoy":
        _needs(kind)
    access = load_file(EXAMPLE).access
    spec = spec_for(
        kind,  # type: ignore[arg-type]
        access,
        "api",
        tls=tls_files,
        mode=mode,
        plaintext_listen=plaintext,
        state_dir=str(tmp_path / "state"),
    )
    assert check_config(spec.kind, render(spec), workdir=tmp_path / "check") is None


def test_caddy_site_block_alone_is_importable(tls_files: TlsFiles, tmp_path: Path) -> None:
    _needs("caddy")
    spec = spec_for("caddy", load_file(EXAMPLE).access, "api", tls=tls_files)
    site = render_caddy_site(spec)
    assert not site.lstrip().startswith("{")  # no global options: safe to `import`
    (tmp_path / "api.caddy").write_text(site)
    main = (
        f"{{\n\tadmin off\n\tstorage file_system {tmp_path}/data\n}}\nimport {tmp_path}/api.caddy\n"
    )
    assert check_config("caddy", main, workdir=tmp_path / "check") is None


def test_two_nginx_identity_files_can_be_included_together(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    _needs("nginx")
    access = load_file(EXAMPLE).access
    both = render_nginx(spec_for("nginx", access, "api", tls=tls_files, listen=18443))
    both += render_nginx(spec_for("nginx", access, "db", tls=tls_files, listen=18444))
    assert check_config("nginx", both, workdir=tmp_path / "check") is None


@pytest.mark.parametrize(
    ("kind", "needle"), [("caddy", "no such file"), ("nginx", "cannot load certificate")]
)
def test_missing_certificate_is_refused_with_the_proxy_message(
    kind: str, needle: str, tls_files: TlsFiles, tmp_path: Path
) -> None:
    _needs(kind)
    spec = spec_for(kind, load_file(EXAMPLE).access, "api")  # type: ignore[arg-type]
    with pytest.raises(CommandFailed, match=needle):
        check_config(spec.kind, render(spec), workdir=tmp_path / "check")


def test_rendered_caddyfile_keeps_caddy_local_and_quiet(tls_files: TlsFiles) -> None:
    text = render(spec_for("caddy", load_file(EXAMPLE).access, "api", tls=tls_files))
    for line in ("admin off", "auto_https off", "persist_config off", "storage file_system"):
        assert f"\t{line}" in text
