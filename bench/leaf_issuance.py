"""Leaf issuance throughput: meshops' `issue_leaf` against a bare `cryptography` loop.

    python bench/leaf_issuance.py [--count 1000]

The meshops figure covers what a host does per workload certificate: a fresh P-256
key, the full X.509-SVID (SANs, usages, key ids), the signature, and PEM encoding of
the certificate and key. The bare figure is the floor: a P-256 key and a minimal
certificate (subject, issuer, key, serial, validity) signed by the same node CA.
`openssl speed` beside them shows what the signature alone costs on this machine.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshops.pki import (
    LeafSpec,
    NodeCASpec,
    cert_pem,
    generate_key,
    issue_leaf,
    issue_node_ca,
    issue_root,
    private_pem,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _node_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    root_key = generate_key("ecdsa-p256")
    root = issue_root(mesh_name="bench", key=root_key, now=NOW, ttl_seconds=3650 * 86400)
    key = ec.generate_private_key(ec.SECP256R1())
    spec = NodeCASpec(
        node="web-1",
        trust_domain="bench.internal",
        domain="mesh.bench.internal",
        dns_names=("www.example.com",),
        ips=(ip_address("10.42.0.11"),),
    )
    cert = issue_node_ca(
        root_cert=root,
        root_key=root_key,
        public_key=key.public_key(),
        spec=spec,
        now=NOW,
        ttl_seconds=30 * 86400,
    )
    return cert, key


def _time(count: int, one: Callable[[int], object]) -> float:
    for i in range(min(50, count)):  # warm up caches and the allocator
        one(i)
    start = time.process_time()
    for i in range(count):
        one(i)
    return time.process_time() - start


def _openssl_speed() -> str:
    proc = subprocess.run(
        ["openssl", "speed", "-seconds", "1", "ecdsap256"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if "sign" in line or "nistp256" in line]
    return "\n".join(lines[-2:]) if lines else (proc.stderr.strip() or "(no output)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    count = parser.parse_args().count

    ca_cert, ca_key = _node_ca()
    spec = LeafSpec(
        identity="api",
        node="web-1",
        trust_domain="bench.internal",
        domain="mesh.bench.internal",
        ttl_seconds=48 * 3600,
        dns=("www.example.com",),
        ips=(ip_address("10.42.0.11"),),
    )

    def meshops_leaf(_: int) -> object:
        key = generate_key("ecdsa-p256")
        cert = issue_leaf(
            node_ca_cert=ca_cert,
            node_ca_key=ca_key,
            public_key=key.public_key(),
            spec=spec,
            now=NOW,
        )
        return cert_pem(cert), private_pem(key)

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api")])

    def bare_leaf(i: int) -> object:
        key = ec.generate_private_key(ec.SECP256R1())
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(i + 1)
            .not_valid_before(NOW - timedelta(minutes=5))
            .not_valid_after(NOW + timedelta(hours=48))
            .sign(ca_key, hashes.SHA256())
        )

    # alternate runs so that a busy neighbour on a shared machine hits both alike
    ours_s = bare_s = 0.0
    for _ in range(2):
        ours_s += _time(count // 2, meshops_leaf)
        bare_s += _time(count - count // 2, bare_leaf)

    ratio = ours_s / bare_s
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}")  # fmt: skip
    print(f"issue_leaf + PEM   : {count} leaves in {ours_s:.3f}s "
          f"= {ours_s / count * 1e3:.3f} ms/leaf ({count / ours_s:,.0f}/s)")  # fmt: skip
    print(f"bare cryptography  : {count} leaves in {bare_s:.3f}s "
          f"= {bare_s / count * 1e3:.3f} ms/leaf ({count / bare_s:,.0f}/s)")  # fmt: skip
    print(f"ratio              : {ratio:.2f}x (target <= 1.5x) "
          f"{'OK' if ratio <= 1.5 else 'OVER TARGET'}")  # fmt: skip
    print("openssl speed -seconds 1 ecdsap256:")
    print(_openssl_speed())


if __name__ == "__main__":
    main()
