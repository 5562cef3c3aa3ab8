"""Factories for PKI tests: a small mesh's root, node CAs and leaves, and `openssl verify`.

    from pki_factories import make_pki, leaf_spec, openssl_verify, NOW

The one way tests build a mesh PKI: everything is issued by `meshops.pki` itself. Tests
outside this folder (proxy renders, the leaf benchmark) import it too; they pass a real
`now` when real TLS stacks check the certificates against the clock.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from cryptography import x509

from meshops.model.types import KeyType
from meshops.pki import (
    LeafSpec,
    NodeCASpec,
    PrivateKey,
    build_crl,
    cert_pem,
    certs_pem,
    crl_pem,
    generate_key,
    issue_leaf,
    issue_node_ca,
    issue_root,
)

KEY_TYPES: tuple[KeyType, ...] = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072")
NOW = datetime(2030, 1, 15, 12, 0, 0, tzinfo=UTC)
HOUR = 3600.0
DAY = 24 * HOUR
TRUST_DOMAIN = "demo.internal"
DOMAIN = "mesh.demo.internal"


def node_ca_spec(
    node: str = "web-1", *, key_type: KeyType = "ecdsa-p256", **kw: object
) -> NodeCASpec:
    fields: dict[str, object] = {
        "node": node,
        "trust_domain": TRUST_DOMAIN,
        "domain": DOMAIN,
        "dns_names": ("www.example.com",),
        "ips": (ip_address("10.42.0.11"), ip_address("fd42::11")),
        "key_type": key_type,
        "identities": ("api",),  # the identity leaf_spec issues for
    }
    fields.update(kw)
    return NodeCASpec(**fields)  # type: ignore[arg-type]


def leaf_spec(
    identity: str = "api", node: str = "web-1", *, key_type: KeyType = "ecdsa-p256", **kw: object
) -> LeafSpec:
    fields: dict[str, object] = {
        "identity": identity,
        "node": node,
        "trust_domain": TRUST_DOMAIN,
        "domain": DOMAIN,
        "ttl_seconds": 48 * HOUR,
        "key_type": key_type,
        "dns": ("www.example.com",),
        "ips": (ip_address("10.42.0.11"), ip_address("fd42::11")),
    }
    fields.update(kw)
    return LeafSpec(**fields)  # type: ignore[arg-type]


def node_ips(index: int) -> tuple[IPv4Address | IPv6Address, ...]:
    """The overlay addresses of the index-th node of a test PKI (web-1 is 10.42.0.11)."""
    return (ip_address(f"10.42.0.{11 + index}"), ip_address(f"fd42::{11 + index}"))


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey


@dataclass
class Pki:
    """A root and one node CA per node, all of one key type, issued at `now` (NOW)."""

    key_type: KeyType
    root: Issued
    node_cas: dict[str, Issued]
    now: datetime = NOW

    def leaf(
        self, spec: LeafSpec | None = None, *, node: str = "web-1", now: datetime | None = None
    ) -> Issued:
        """A leaf for `spec` (default: `api` on `node`), issued at `now` (default: the PKI's)."""
        now = self.now if now is None else now
        if spec is None:
            index = list(self.node_cas).index(node)
            spec = leaf_spec(node=node, key_type=self.key_type, ips=node_ips(index))
        key = generate_key(spec.key_type)
        ca = self.node_cas[spec.node]
        cert = issue_leaf(
            node_ca_cert=ca.cert,
            node_ca_key=ca.key,
            public_key=key.public_key(),
            spec=spec,
            now=now,
        )
        return Issued(cert, key)


def make_pki(
    key_type: KeyType,
    *,
    nodes: Sequence[str] = ("web-1", "api-1"),
    now: datetime = NOW,
    mesh_name: str = "demo",
    identities: Sequence[str] = ("api",),
) -> Pki:
    """A root and one node CA per node (`node_ips(i)` for the i-th), all issued at `now`;
    each node CA vouches for `identities` (its name constraints list their names)."""
    root_key = generate_key(key_type)
    root = issue_root(mesh_name=mesh_name, key=root_key, now=now, ttl_seconds=3650 * DAY)
    node_cas = {}
    for index, node in enumerate(nodes):
        key = generate_key(key_type)
        spec = node_ca_spec(
            node, key_type=key_type, ips=node_ips(index), identities=tuple(identities)
        )
        cert = issue_node_ca(
            root_cert=root,
            root_key=root_key,
            public_key=key.public_key(),
            spec=spec,
            now=now,
            ttl_seconds=30 * DAY,
        )
        node_cas[node] = Issued(cert, key)
    return Pki(key_type, Issued(root, root_key), node_cas, now)


def empty_crl_pem(ca: Issued, *, now: datetime = NOW) -> bytes:
    """An empty CRL signed by `ca` (number 1, next update in a week), as PEM."""
    crl = build_crl(
        issuer_cert=ca.cert,
        issuer_key=ca.key,
        revoked=[],
        number=1,
        now=now,
        next_update_seconds=7 * DAY,
    )
    return crl_pem(crl)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@dataclass
class Verdict:
    ok: bool
    output: str


def openssl_verify(
    tmp_path: Path,
    leaf: x509.Certificate,
    *,
    roots: Sequence[x509.Certificate],
    untrusted: Sequence[x509.Certificate] = (),
    purpose: str = "sslserver",
    crl: bytes | None = None,
    attime: datetime = NOW,
    extra: Sequence[str] = (),
) -> Verdict:
    """Run the real `openssl verify -x509_strict` on `leaf`, at `attime`."""
    argv = [
        "openssl",
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-attime",
        str(int(attime.timestamp())),
        "-CAfile",
        str(write(tmp_path / "roots.pem", certs_pem(roots))),
    ]
    if untrusted:
        argv += ["-untrusted", str(write(tmp_path / "untrusted.pem", certs_pem(untrusted)))]
    if crl is not None:
        argv += ["-crl_check", "-CRLfile", str(write(tmp_path / "crl.pem", crl))]
    argv += [*extra, str(write(tmp_path / "leaf.pem", cert_pem(leaf)))]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return Verdict(proc.returncode == 0, proc.stdout + proc.stderr)


def openssl_text(tmp_path: Path, cert: x509.Certificate) -> str:
    """`openssl x509 -text` of a certificate."""
    path = write(tmp_path / "show.pem", cert_pem(cert))
    proc = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout
