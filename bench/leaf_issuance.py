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
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshops.pki import cert_pem, private_pem

# the root and node CA come from the tests' PKI factory (issued by meshops.pki)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit" / "pki"))
from pki_factories import NOW, leaf_spec, make_pki


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

    pki = make_pki("ecdsa-p256", nodes=("web-1",))
    spec = leaf_spec("api", "web-1", ips=(ip_address("10.42.0.11"),))

    def meshops_leaf(_: int) -> object:
        leaf = pki.leaf(spec)
        return cert_pem(leaf.cert), private_pem(leaf.key)

    node_ca = pki.node_cas["web-1"]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api")])

    def bare_leaf(i: int) -> object:
        key = ec.generate_private_key(ec.SECP256R1())
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(node_ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(i + 1)
            .not_valid_before(NOW - timedelta(minutes=5))
            .not_valid_after(NOW + timedelta(hours=48))
            .sign(node_ca.key, hashes.SHA256())
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
