"""Three independent verifiers agree on meshops' chains: `openssl verify -x509_strict`,
Go's crypto/x509 (a small verifier compiled from goverify/main.go) and `cryptography`'s
x509.verification (server and client verifiers), for leaves of every key type, and
during a root rotation, when the trust bundle holds two roots.

cryptography's verifier follows the Web PKI profile, which has no Ed25519 signatures: a
chain of Ed25519 CAs it can only refuse for that reason (asserted below), while openssl
and Go verify it. Ed25519 leaves under ECDSA or RSA CAs pass all three.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pki_factories import (
    DOMAIN,
    KEY_TYPES,
    NOW,
    TRUST_DOMAIN,
    Issued,
    Pki,
    leaf_spec,
    make_pki,
    node_ips,
    openssl_verify,
)

from meshops.model.types import KeyType
from meshops.pki import certs_pem

GO_SOURCE = Path(__file__).parent / "goverify" / "main.go"


@pytest.fixture(scope="session")
def goverify(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go verifier, built once (kept in pytest's cache dir when there is one)."""
    go = shutil.which("go")
    assert go is not None, "Go is needed for this referee: apt-get install golang-go"
    cache = getattr(request.config, "cache", None)
    where = cache.mkdir("goverify") if cache is not None else tmp_path_factory.mktemp("goverify")
    digest = hashlib.sha256(GO_SOURCE.read_bytes()).hexdigest()[:12]
    binary = Path(where) / f"goverify-{digest}"
    if not binary.exists():
        work = Path(where)
        env = {**os.environ, "GOCACHE": str(work / "gocache"), "GOPATH": str(work / "gopath"),
               "GO111MODULE": "off", "CGO_ENABLED": "0"}  # fmt: skip
        built = subprocess.run([go, "build", "-o", str(binary), str(GO_SOURCE)],
                               capture_output=True, text=True, env=env, check=False)  # fmt: skip
        assert built.returncode == 0, built.stderr
    return binary


def go_verify(
    binary: Path, tmp: Path, leaf: x509.Certificate, *, roots: Sequence[x509.Certificate],
    untrusted: Sequence[x509.Certificate], usage: str, dns: str = "",
) -> tuple[bool, str]:  # fmt: skip
    (tmp / "go-roots.pem").write_bytes(certs_pem(roots))
    (tmp / "go-inter.pem").write_bytes(certs_pem(untrusted))
    (tmp / "go-leaf.pem").write_bytes(certs_pem([leaf]))
    argv = [str(binary), "-roots", str(tmp / "go-roots.pem"), "-intermediates",
            str(tmp / "go-inter.pem"), "-leaf", str(tmp / "go-leaf.pem"), "-usage", usage,
            "-time", str(int(NOW.timestamp()))]  # fmt: skip
    if dns:
        argv += ["-dns", dns]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode == 0, done.stdout + done.stderr


def rust_verify(
    leaf: x509.Certificate, *, roots: Sequence[x509.Certificate],
    untrusted: Sequence[x509.Certificate], usage: str, dns: str = "",
) -> tuple[bool, str]:  # fmt: skip
    builder = PolicyBuilder().store(Store(list(roots))).time(NOW)
    try:
        if usage == "server":
            builder.build_server_verifier(x509.DNSName(dns)).verify(leaf, list(untrusted))
        else:
            client = builder.build_client_verifier().verify(leaf, list(untrusted))
            spiffe = [
                n for n in client.subjects or [] if isinstance(n, x509.UniformResourceIdentifier)
            ]
            assert [n.value for n in spiffe] == [f"spiffe://{TRUST_DOMAIN}/api"]
    except VerificationError as exc:
        return False, str(exc)
    return True, ""


def all_referees(
    tmp: Path, binary: Path, leaf: Issued, node_ca: Issued, roots: Sequence[x509.Certificate]
) -> None:
    """openssl, Go and cryptography accept the leaf as a server and as a client."""
    name = f"api.{DOMAIN}"
    for usage, purpose in (("server", "sslserver"), ("client", "sslclient")):
        verdict = openssl_verify(
            tmp, leaf.cert, roots=roots, untrusted=[node_ca.cert], purpose=purpose
        )
        assert verdict.ok, f"openssl ({usage}): {verdict.output}"
        ok, said = go_verify(binary, tmp, leaf.cert, roots=roots, untrusted=[node_ca.cert],
                             usage=usage, dns=name if usage == "server" else "")  # fmt: skip
        assert ok, f"Go crypto/x509 ({usage}): {said}"
        ok, said = rust_verify(
            leaf.cert, roots=roots, untrusted=[node_ca.cert], usage=usage, dns=name
        )
        if _kind(node_ca) == "ed25519":  # Ed25519 signatures: outside the Web PKI profile
            assert not ok and "Forbidden public key algorithm" in said, said
        else:
            assert ok, f"cryptography x509.verification ({usage}): {said}"


def _kind(issued: Issued) -> str:
    from meshops.pki import cert_public_key, key_type_of

    return key_type_of(cert_public_key(issued.cert))


@pytest.mark.parametrize("ca_type", KEY_TYPES)
@pytest.mark.parametrize("leaf_type", ["ecdsa-p256", "ecdsa-p384", "rsa-3072", "ed25519"])
def test_every_referee_accepts_a_leaf_of_each_key_type(
    tmp_path: Path, goverify: Path, ca_type: KeyType, leaf_type: KeyType, pkis: dict[str, Pki]
) -> None:
    pki = pkis[ca_type]
    leaf = pki.leaf(leaf_spec(node="web-1", key_type=leaf_type, ips=node_ips(0)))
    all_referees(tmp_path, goverify, leaf, pki.node_cas["web-1"], [pki.root.cert])


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-3072", "ed25519"])
def test_during_a_root_rotation_leaves_under_either_root_verify_against_both(
    tmp_path: Path, goverify: Path, key_type: KeyType, pkis: dict[str, Pki]
) -> None:
    old, new = pkis[key_type], make_pki(key_type, mesh_name="demo-next")
    bundle = [old.root.cert, new.root.cert]  # root.crt in phases 1 and 2
    for pki in (old, new):
        all_referees(tmp_path, goverify, pki.leaf(), pki.node_cas["web-1"], bundle)


def test_a_node_ca_cannot_vouch_for_another_nodes_name_for_any_referee(
    tmp_path: Path, goverify: Path, pkis: dict[str, Pki]
) -> None:
    """web-1's CA, asked for a leaf naming api-1 (another node): every referee says no."""
    pki = pkis["ecdsa-p256"]
    spec = leaf_spec(node="api-1", ips=node_ips(0))  # api-1's name, web-1's addresses
    key = pki.node_cas["web-1"]
    from meshops.pki import generate_key, issue_leaf

    public = generate_key("ecdsa-p256").public_key()
    cert = issue_leaf(node_ca_cert=key.cert, node_ca_key=key.key, public_key=public,
                      spec=spec, now=NOW)  # fmt: skip
    assert not openssl_verify(tmp_path, cert, roots=[pki.root.cert], untrusted=[key.cert]).ok
    ok, _ = go_verify(
        goverify, tmp_path, cert, roots=[pki.root.cert], untrusted=[key.cert], usage="client"
    )
    assert not ok
    ok, _ = rust_verify(cert, roots=[pki.root.cert], untrusted=[key.cert], usage="client")
    assert not ok


@pytest.fixture(scope="module")
def pkis() -> dict[str, Pki]:
    return {key_type: make_pki(key_type) for key_type in KEY_TYPES}
