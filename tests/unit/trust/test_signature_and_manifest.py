"""Root signatures over bytes, and the manifest / signature file formats."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from trust_helpers import Root

from meshops.errors import MeshError
from meshops.trust.manifest import FileEntry, Manifest, Signature, valid_path
from meshops.trust.signature import algorithm_of, sign_bytes, verify_bytes


def test_a_signature_verifies_with_its_root_and_nothing_else(any_root: Root, root: Root) -> None:
    data = b"format: 1\nversion: 7\n"
    sig = sign_bytes(any_root.key, data)
    algorithm = algorithm_of(any_root.key)
    assert verify_bytes(any_root.cert, data, sig, algorithm)
    assert not verify_bytes(any_root.cert, data + b"x", sig, algorithm)
    if any_root is not root:
        assert not verify_bytes(root.cert, data, sig, algorithm_of(root.key))


def test_a_signature_file_cannot_choose_another_algorithm(root: Root) -> None:
    data = b"manifest"
    sig = sign_bytes(root.key, data)
    assert not verify_bytes(root.cert, data, sig, "rsa-pkcs1-sha256")
    assert not verify_bytes(root.cert, data, sig, "none")


def test_stock_openssl_verifies_the_signature(any_root: Root, tmp_path: Path) -> None:
    """What an operator without meshops can check (docs/security.md)."""
    data = tmp_path / "manifest.yaml"
    data.write_bytes(b"format: 1\nmesh: demo\n")
    sig = tmp_path / "manifest.sig.der"
    sig.write_bytes(sign_bytes(any_root.key, data.read_bytes()))
    pub = tmp_path / "root.pub"
    pub.write_bytes(any_root.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    algorithm = algorithm_of(any_root.key)
    if algorithm == "ed25519":
        argv = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
                "-in", str(data), "-sigfile", str(sig)]  # fmt: skip
    else:
        digest = "-sha384" if algorithm.endswith("sha384") else "-sha256"
        argv = ["openssl", "dgst", digest, "-verify", str(pub), "-signature", str(sig), str(data)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


paths = st.lists(
    st.from_regex(
        r"[a-z0-9_-][a-z0-9._-]{0,12}(/[a-z0-9_-][a-z0-9._-]{0,12}){0,3}", fullmatch=True
    ),
    max_size=20,
    unique=True,
).filter(lambda ps: all(valid_path(p) and p not in ("manifest.yaml", "manifest.sig") for p in ps))


@given(
    files=paths,
    version=st.integers(0, 10**12),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_a_rendered_manifest_parses_back_to_itself(
    files: list[str], version: int, data: st.DataObject
) -> None:
    entries = {
        p: FileEntry(
            data.draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
            data.draw(st.integers(0, 10**9)),
        )
        for p in files
    }
    manifest = Manifest(
        "demo", version, "2030-01-15T12:00:00+00:00", "sha256:" + "ab" * 32, entries
    )
    assert Manifest.parse(manifest.render()) == manifest


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_parsing_any_bytes_fails_cleanly_or_succeeds(blob: bytes) -> None:
    for parse in (Manifest.parse, Signature.parse):
        with contextlib.suppress(MeshError):
            parse(blob)


@pytest.mark.parametrize(
    "line",
    [
        "  ../etc/passwd: " + "a" * 64 + " 1",
        "  /etc/passwd: " + "a" * 64 + " 1",
        "  ca/./x: " + "a" * 64 + " 1",
        "  ca/x: " + "A" * 64 + " 1",
        "  ca/x: " + "a" * 63 + " 1",
        "  ca/x: " + "a" * 64 + " -1",
        "  manifest.sig: " + "a" * 64 + " 1",
    ],
)
def test_a_manifest_entry_meshops_would_not_write_is_refused(line: str) -> None:
    body = f'format: 1\nmesh: demo\nversion: 1\nsigner: "sha256:{"ab" * 32}"\nfiles:\n{line}\n'
    with pytest.raises(MeshError, match=r"malformed file entry|cannot list"):
        Manifest.parse(body.encode())


def test_a_signature_file_round_trips_and_refuses_junk() -> None:
    sig = Signature("sha256:" + "cd" * 32, "ed25519", b"\x00\x01sig")
    assert Signature.parse(sig.render()) == sig
    with pytest.raises(MeshError):
        Signature.parse(sig.render() + b"extra: 1\n")
    with pytest.raises(MeshError):
        Signature.parse(sig.render().replace(b"signature: ", b"signature: !!"))
