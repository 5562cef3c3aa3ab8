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
    java_truststore,
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


@pytest.mark.parametrize("password", [b"changeit", b"s3cret \xc3\xa9"], ids=["default", "utf8"])
def test_pkcs12_opens_with_openssl_and_cryptography(
    pki: Pki, password: bytes, tmp_path: Path
) -> None:
    leaf = pki.leaf()
    node_ca = pki.node_cas["web-1"].cert
    data = pkcs12(key=leaf.key, cert=leaf.cert, chain=[node_ca], name="api", password=password)
    loaded = p12.load_pkcs12(data, password)
    assert loaded.cert is not None and loaded.cert.certificate == leaf.cert
    assert loaded.cert.friendly_name == b"api"
    assert [c.certificate for c in loaded.additional_certs] == [node_ca]
    path = write(tmp_path / "bundle.p12", data)
    proc = subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-passin", "stdin", "-nodes", "-info"],
        input=password + b"\n", capture_output=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(b"BEGIN CERTIFICATE") == 2
    assert proc.stdout.count(b"BEGIN PRIVATE KEY") == 1
    # the key sits in a shrouded (encrypted) bag, the one kind Java's KeyStore lists
    assert b"Shrouded Keybag: PBES2" in proc.stderr


def test_pkcs12_refuses_an_empty_password_it_could_not_encrypt_with(p256: Pki) -> None:
    leaf = p256.leaf()
    with pytest.raises(ValueError, match="non-empty password"):
        pkcs12(key=leaf.key, cert=leaf.cert, password=b"")


def test_pkcs12_refuses_a_wrong_password(p256: Pki) -> None:
    leaf = p256.leaf()
    data = pkcs12(key=leaf.key, cert=leaf.cert, password=b"right")
    with pytest.raises(ValueError):
        p12.load_pkcs12(data, b"wrong")


def test_java_truststore_holds_each_root_as_a_trusted_entry(p256: Pki, tmp_path: Path) -> None:
    other = Pki.__new__(Pki)
    other.root = p256.node_cas["api-1"]
    roots = [p256.root.cert, other.root.cert]
    data = java_truststore(roots, password=b"changeit")
    loaded = p12.load_pkcs12(data, b"changeit")
    assert loaded.key is None and loaded.cert is None
    assert [c.certificate for c in loaded.additional_certs] == roots
    assert [c.friendly_name for c in loaded.additional_certs] == [b"root-1", b"root-2"]
