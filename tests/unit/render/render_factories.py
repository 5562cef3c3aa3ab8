"""Factories for proxy render tests: a ProxySpec from an access table."""

from __future__ import annotations

from render_pki import TlsFiles

from meshops.policy import AccessTable
from meshops.render.spec import ProxyKind, ProxySpec


def spec_for(
    kind: ProxyKind,
    table: AccessTable,
    callee: str,
    *,
    tls: TlsFiles | None = None,
    listen: int = 8443,
    upstream: str = "127.0.0.1:8080",
    mode: str = "strict",
    plaintext_listen: int | None = None,
    state_dir: str | None = None,
) -> ProxySpec:
    base = "/etc/meshops/tls/" + callee
    return ProxySpec(
        identity=callee,
        kind=kind,
        trust_domain="demo.internal",
        listen=listen,
        listen_address="127.0.0.1",
        upstream=upstream,
        cert_file=str(tls.cert) if tls else f"{base}/cert.pem",
        key_file=str(tls.key) if tls else f"{base}/key.pem",
        ca_file=str(tls.ca) if tls else f"{base}/ca.pem",
        crl_file=str(tls.crl) if tls else f"{base}/crl.pem",
        rules=tuple(table.rules_for(callee)),
        mode=mode,  # type: ignore[arg-type]
        plaintext_listen=plaintext_listen,
        state_dir=state_dir,
    )
