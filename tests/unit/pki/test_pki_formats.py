"""Output formats: chain and bundle order, combined PEM, PKCS#12 read back by openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12 as p12
from pki_factories import Pki, write

from meshops.pki import (
    bundle_pem,
    chain_pem,
    combined_pem,
    load_private_pem,
    pkcs12,
    public_fingerprint,
)


def test_chain_is_leaf_then_node_ca_and_never_the_root(p256: Pki) -> None:
    leaf = p256.leaf()
    certs = x509.load_pem_x509_certificates(chain_pem(leaf.cert, p256.node_cas["web-1"].cert))
    assert certs == [leaf.cert, p256.node_cas["web-1"].cert]


def test_bundle_holds_the_roots_in_order(p256: Pki) -> None:
    other = Pki.__new__(Pki)  # only the root matters here
    other.root = p256.node_cas["api-1"]
    roots = [p256.root.cert, other.root.cert]
    assert x509.load_pem_x509_certificates(bundle_pem(roots)) == roots


def test_combined_pem_holds_chain_then_key(pki: Pki) -> None:
    leaf = pki.leaf()
    data = combined_pem([leaf.cert, pki.node_cas["web-1"].cert], leaf.key)
    assert x509.load_pem_x509_certificates(data) == [leaf.cert, pki.node_cas["web-1"].cert]
    key = load_private_pem(data[data.index(b"-----BEGIN PRIVATE KEY") :])
    assert public_fingerprint(key.public_key()) == public_fingerprint(leaf.key.public_key())


@pytest.mark.parametrize("password", [b"", b"s3cret"], ids=["empty", "password"])
def test_pkcs12_opens_with_openssl_and_cryptography(
    pki: Pki, password: bytes, tmp_path: Path
) -> None:
    leaf = pki.leaf()
    node_ca = pki.node_cas["web-1"].cert
    data = pkcs12(key=leaf.key, cert=leaf.cert, chain=[node_ca], name="api", password=password)
    loaded = p12.load_pkcs12(data, password or None)
    assert loaded.cert is not None and loaded.cert.certificate == leaf.cert
    assert loaded.cert.friendly_name == b"api"
    assert [c.certificate for c in loaded.additional_certs] == [node_ca]
    path = write(tmp_path / "bundle.p12", data)
    proc = subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-passin", f"pass:{password.decode()}",
         "-nokeys", "-info"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("BEGIN CERTIFICATE") == 2


def test_pkcs12_with_password_is_encrypted_and_refuses_a_wrong_one(p256: Pki) -> None:
    leaf = p256.leaf()
    data = pkcs12(key=leaf.key, cert=leaf.cert, password=b"right")
    with pytest.raises(ValueError):
        p12.load_pkcs12(data, b"wrong")
