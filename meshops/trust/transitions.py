"""`state/ca/transitions.yaml`: the append-only chain of root rotations.

Each entry says "root A hands over to root B", signed by A's key, and carries both
certificates, so that a host which pinned A (in host.yaml or on its first apply) can
trust B without ever having seen it, even after A left root.crt and even if it
missed every phase in between:

    transitions:
      - from: "sha256:<A>"
        to: "sha256:<B>"
        at: "2026-11-23T17:00:00+00:00"
        signature: <base64 of A's signature of the signed text below>
        from_cert: |
          -----BEGIN CERTIFICATE-----
          ...
        to_cert: |
          ...

The signed text binds both fingerprints and the time (`signed_text`). A root that the
previous root never handed over to is trusted by nobody who pinned an earlier root.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError

if TYPE_CHECKING:
    from cryptography import x509

TRANSITIONS = "ca/transitions.yaml"  # under state/
_HEADER = (
    "# Root transitions, each signed by the outgoing root (see docs/security.md): a host\n"
    "# that trusts any earlier root follows them to the current one. Append-only;\n"
    "# written by `meshops apply` when a new root joins the trust bundle.\n"
)


@dataclass(frozen=True)
class Transition:
    from_fp: str
    to_fp: str
    at: str
    signature: bytes
    algorithm: str
    from_cert: bytes  # PEM
    to_cert: bytes  # PEM

    def signed_text(self) -> bytes:
        return transition_text(self.from_fp, self.to_fp, self.at)


def transition_text(from_fp: str, to_fp: str, at: str) -> bytes:
    """What the outgoing root signs."""
    return f"meshops root transition 1\nfrom: {from_fp}\nto: {to_fp}\nat: {at}\n".encode()


def make_transition(
    old: x509.Certificate, old_key: Any, new: x509.Certificate, at: str
) -> Transition:
    """`old` hands over to `new`, signed with `old_key`."""
    from meshops.pki import cert_pem
    from meshops.pki.parse import cert_fingerprint
    from meshops.trust.signature import algorithm_of, sign_bytes

    from_fp, to_fp = cert_fingerprint(old), cert_fingerprint(new)
    signature = sign_bytes(old_key, transition_text(from_fp, to_fp, at))
    return Transition(
        from_fp, to_fp, at, signature, algorithm_of(old_key), cert_pem(old), cert_pem(new)
    )


def render(entries: Sequence[Transition]) -> bytes:
    import yaml

    data = {
        "transitions": [
            {
                "from": e.from_fp,
                "to": e.to_fp,
                "at": e.at,
                "algorithm": e.algorithm,
                "signature": base64.b64encode(e.signature).decode(),
                "from_cert": e.from_cert.decode(),
                "to_cert": e.to_cert.decode(),
            }
            for e in entries
        ]
    }

    class Plain(yaml.SafeDumper):  # never anchors: `parse` refuses them
        def ignore_aliases(self, data: Any) -> bool:
            return True

    body = yaml.dump(data, Dumper=Plain, sort_keys=False, default_flow_style=False, width=200)
    return (_HEADER + body).encode()


MAX_BYTES = 1 << 20  # an entry is about 2 KB: room for hundreds of rotations


def parse(data: bytes, where: str = f"state/{TRANSITIONS}") -> list[Transition]:
    """The entries of a transitions file. It is read before any signature is checked
    (it says whom to check with), so it is refused early when it could not be
    meshops' own: too large, or using YAML anchors and aliases (`&`, `*`)."""
    import yaml

    if len(data) > MAX_BYTES or b"&" in data or b"*" in data:
        raise MeshError(f"{where}: not a transitions file meshops wrote (too large or aliased)")
    try:
        doc = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        raise MeshError(f"{where}: not valid YAML") from None
    entries = doc.get("transitions") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise MeshError(f"{where}: expected a `transitions:` list")
    out = []
    keys = {"from", "to", "at", "algorithm", "signature", "from_cert", "to_cert"}
    for index, raw in enumerate(entries):
        if (
            not isinstance(raw, dict)
            or set(raw) != keys
            or not all(isinstance(raw[k], str) for k in keys)
        ):
            raise MeshError(f"{where}: entry {index + 1} is malformed")
        try:
            signature = base64.b64decode(raw["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise MeshError(f"{where}: entry {index + 1}: the signature is not base64") from None
        out.append(
            Transition(
                raw["from"],
                raw["to"],
                raw["at"],
                signature,
                raw["algorithm"],
                raw["from_cert"].encode(),
                raw["to_cert"].encode(),
            )
        )
    return out


def verified(entry: Transition) -> tuple[x509.Certificate, x509.Certificate] | None:
    """The (from, to) certificates when the entry is sound: both certificates match
    their fingerprints and the from-root's key signed it; None otherwise."""
    from cryptography import x509

    from meshops.pki.parse import cert_fingerprint
    from meshops.trust.signature import verify_bytes

    try:
        old = x509.load_pem_x509_certificate(entry.from_cert)
        new = x509.load_pem_x509_certificate(entry.to_cert)
    except ValueError:
        return None
    if cert_fingerprint(old) != entry.from_fp or cert_fingerprint(new) != entry.to_fp:
        return None
    try:
        ok = verify_bytes(old, entry.signed_text(), entry.signature, entry.algorithm)
    except MeshError:  # a key type meshops does not sign with
        return None
    return (old, new) if ok else None


def walk(
    trusted: Collection[str], entries: Sequence[Transition]
) -> tuple[frozenset[str], dict[str, x509.Certificate]]:
    """The roots reachable from `trusted` through sound transitions, and every
    certificate the sound entries carry (fingerprint -> certificate).

    Repeated until nothing changes, so the order of entries does not matter.
    """
    from meshops.pki.parse import cert_fingerprint

    reach = set(trusted)
    certs: dict[str, x509.Certificate] = {}
    sound = []
    for entry in entries:
        pair = verified(entry)
        if pair is not None:
            sound.append(entry)
            for cert in pair:
                certs[cert_fingerprint(cert)] = cert
    moved = True
    while moved:
        moved = False
        for entry in sound:
            if entry.from_fp in reach and entry.to_fp not in reach:
                reach.add(entry.to_fp)
                moved = True
    return frozenset(reach), certs


def handed_over(root: str, trusted: Collection[str], entries: Sequence[Transition]) -> bool:
    """Whether `root` handed over (by a sound transition) to a root in `trusted`: an
    outgoing root may stay in root.crt while a rotation is under way."""
    return any(
        e.from_fp == root and e.to_fp in trusted and verified(e) is not None for e in entries
    )
