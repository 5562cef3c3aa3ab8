"""import_ca: adopting an existing CA (e.g. step-ca's) as the mesh root, and refusing bad ones."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pki_factories import DAY, NOW, Pki, leaf_spec, node_ca_spec, openssl_verify

from meshops.errors import MeshError
from meshops.pki import (
    cert_pem,
    generate_key,
    import_ca,
    issue_leaf,
    issue_node_ca,
    keys_match,
    private_pem,
)
from meshops.pki._build import sign


def _openssl_ca(tmp_path: Path, *extensions: str) -> tuple[bytes, bytes]:
    """A CA made by the stock `openssl req`, the way another tool would have made it."""
    key, crt = tmp_path / "ca.key", tmp_path / "ca.crt"
    argv = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "3650",
        "-subj", "/O=Example/CN=Example Root CA",
    ]  # fmt: skip
    for ext in extensions:
        argv += ["-addext", ext]
    subprocess.run(argv, check=True, capture_output=True)
    return crt.read_bytes(), key.read_bytes()


def test_openssl_made_root_is_imported_and_signs_a_working_chain(tmp_path: Path) -> None:
    cert_data, key_data = _openssl_ca(
        tmp_path, "keyUsage=critical,keyCertSign,cRLSign", "basicConstraints=critical,CA:TRUE"
    )
    now = x509.load_pem_x509_certificate(cert_data).not_valid_before_utc + timedelta(hours=1)
    root, root_key = import_ca(cert_data, key_data, now=now)
    assert keys_match(root_key, root)
    node_key = generate_key("ecdsa-p256")
    node_ca = issue_node_ca(
        root_cert=root,
        root_key=root_key,
        public_key=node_key.public_key(),
        spec=node_ca_spec(),
        now=now,
        ttl_seconds=30 * DAY,
    )
    leaf = issue_leaf(
        node_ca_cert=node_ca,
        node_ca_key=node_key,
        public_key=generate_key("ecdsa-p256").public_key(),
        spec=leaf_spec(),
        now=now,
    )
    verdict = openssl_verify(tmp_path, leaf, roots=[root], untrusted=[node_ca], attime=now)
    assert verdict.ok, verdict.output


def test_own_root_round_trips_through_import(pki: Pki) -> None:
    cert, key = import_ca(cert_pem(pki.root.cert), private_pem(pki.root.key), now=NOW)
    assert cert == pki.root.cert
    assert keys_match(key, cert)


def test_leaf_certificate_is_not_a_ca(p256: Pki) -> None:
    leaf = p256.leaf()
    with pytest.raises(MeshError, match="is not a CA") as info:
        import_ca(cert_pem(leaf.cert), private_pem(leaf.key), now=NOW)
    assert "CN=api" in str(info.value)


def test_node_ca_with_pathlen_zero_cannot_be_the_root(p256: Pki) -> None:
    ca = p256.node_cas["web-1"]
    with pytest.raises(MeshError, match="path length 0"):
        import_ca(cert_pem(ca.cert), private_pem(ca.key), now=NOW)


def test_key_of_another_ca_is_a_mismatch(p256: Pki) -> None:
    with pytest.raises(MeshError, match="does not belong to its certificate"):
        import_ca(cert_pem(p256.root.cert), private_pem(generate_key("ecdsa-p256")), now=NOW)


def test_expired_ca_is_refused_with_its_expiry_date(p256: Pki) -> None:
    later = p256.root.cert.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(MeshError, match=r"expired on \d{4}-\d\d-\d\d"):
        import_ca(cert_pem(p256.root.cert), private_pem(p256.root.key), now=later)


def test_not_yet_valid_ca_points_at_the_clock(p256: Pki) -> None:
    earlier = NOW - timedelta(days=1)
    with pytest.raises(MeshError, match="not valid before") as info:
        import_ca(cert_pem(p256.root.cert), private_pem(p256.root.key), now=earlier)
    assert "clock" in str(info.value)


def test_ca_without_key_cert_sign_is_refused(tmp_path: Path) -> None:
    cert_data, key_data = _openssl_ca(
        tmp_path, "keyUsage=critical,digitalSignature", "basicConstraints=critical,CA:TRUE"
    )
    now = x509.load_pem_x509_certificate(cert_data).not_valid_before_utc
    with pytest.raises(MeshError, match="keyCertSign"):
        import_ca(cert_data, key_data, now=now)


def test_ca_without_key_usage_is_refused_because_strict_verifiers_reject_it(
    tmp_path: Path,
) -> None:
    cert_data, key_data = _openssl_ca(tmp_path)  # openssl req's default: no keyUsage
    now = x509.load_pem_x509_certificate(cert_data).not_valid_before_utc
    with pytest.raises(MeshError, match="no keyUsage extension"):
        import_ca(cert_data, key_data, now=now)


def test_certificate_without_basic_constraints_is_not_a_ca() -> None:
    key = generate_key("ed25519")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")])
    cert = sign(
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1)),
        key,
    )
    with pytest.raises(MeshError, match="CA:TRUE is missing"):
        import_ca(cert_pem(cert), private_pem(key), now=NOW)


def test_garbage_certificate_is_a_clear_error(p256: Pki) -> None:
    with pytest.raises(MeshError, match="not a readable PEM certificate"):
        import_ca(b"hello", private_pem(p256.root.key), now=NOW)
