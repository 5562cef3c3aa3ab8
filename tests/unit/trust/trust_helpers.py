"""Signed states for trust tests: real roots, real signatures, state/ as a mapping.

root = Root.make("ecdsa-p256")
entries = signed({"state.yaml": b"...", "ca/root.crt": root.pem}, root, version=3)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshops.model.types import KeyType
from meshops.pki import cert_pem, generate_key, issue_root
from meshops.pki.parse import cert_fingerprint
from meshops.trust.manifest import MANIFEST, SIGNATURE, FileEntry, Manifest, Signature
from meshops.trust.signature import algorithm_of, sign_bytes
from meshops.trust.verify import StateEntry, sha256_hex

NOW = datetime(2030, 1, 15, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Root:
    cert: Any
    key: Any

    @classmethod
    def make(cls, key_type: KeyType = "ecdsa-p256", name: str = "demo") -> Root:
        key = generate_key(key_type)
        return cls(issue_root(mesh_name=name, key=key, now=NOW, ttl_seconds=3650 * 86400.0), key)

    @property
    def pem(self) -> bytes:
        return bytes(cert_pem(self.cert))

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)


def signed(
    files: Mapping[str, bytes], signer: Root, *, version: int = 1, mesh: str = "demo"
) -> dict[str, StateEntry]:
    """`files` plus manifest.yaml and manifest.sig listing and signing them."""
    listed = {p: FileEntry(sha256_hex(d), len(d)) for p, d in files.items()}
    manifest = Manifest(mesh, version, NOW.isoformat(), signer.fingerprint, listed)
    body = manifest.render()
    sig = Signature(signer.fingerprint, algorithm_of(signer.key), sign_bytes(signer.key, body))
    return {**files, MANIFEST: body, SIGNATURE: sig.render()}


def base_files(root: Root, *roots: Root) -> dict[str, bytes]:
    """A small state/: root.crt (the given roots, `root` last), a CRL, state.yaml, a node."""
    bundle = b"".join(r.pem for r in roots) + root.pem
    return {
        "state.yaml": b"version: 1\nmesh: demo\n",
        "ca/root.crt": bundle,
        "ca/crl.pem": b"-----BEGIN X509 CRL-----\n...\n",
        "nodes/web-1/ca.crt": b"node ca\n",
        "nodes/web-1/crl.pem": b"node crl\n",
        "nodes/web-1/ca.key.age": b"sealed\n",
        "nodes/web-1/wg.key.age": b"sealed\n",
    }
