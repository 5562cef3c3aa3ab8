"""`enroll/<node>.yaml`: a host's enrolment request, and the proofs it carries.

    # meshops enrolment request (docs/keys.md): ...
    format: 1
    mesh: demo
    node: web-3
    created_at: "2026-11-23T17:00:00+00:00"
    wireguard:
      public_key: <base64, as `wg pubkey` prints it>
      signature: <base64 XEdDSA signature of the signed text, by that key>
    node_ca:
      key_type: ecdsa-p256
      key: sha256:<fingerprint of the CSR's public key (SubjectPublicKeyInfo DER)>
      csr: <base64 DER: CN "<node> node CA", self-signed>
      crl: <base64 DER: empty, signed by the node CA key>

DER in base64 on one line, as every value a meshops YAML file holds (no multi-line
text): `openssl req -inform DER` and `openssl crl -inform DER` read it decoded.

Proof of possession: the CSR is signed by the node CA key, and so is the CRL; the
WireGuard key signs `signed_text()`, which names the mesh, the node, the time and the
node CA key, so the two keys are bound to each other and to this node. Nothing in the
file is secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from meshops.errors import Problem, ValidationFailed
from meshops.model.loader import Document, parse_yaml, validate_document
from meshops.model.types import KeyType, Name

if TYPE_CHECKING:
    from cryptography import x509

    from meshops.pki.keys import PublicKey

FORMAT = 1
MAX_BYTES = 64 * 1024  # a request is about 2 KB; RSA-3072 stays well below this
HEADER = (
    "# meshops enrolment request (docs/keys.md): public keys and signatures only, nothing\n"
    "# secret. Commit it in a pull request; `meshops review` checks it.\n"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WireGuardPart(_Strict):
    public_key: str = Field(min_length=1)
    signature: str = Field(min_length=1)


class NodeCAPart(_Strict):
    key_type: KeyType
    key: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    csr: str = Field(min_length=1)
    crl: str = Field(min_length=1)


class RequestModel(_Strict):
    format: int
    mesh: Name
    node: Name
    created_at: str = Field(min_length=1)
    wireguard: WireGuardPart | None = None
    node_ca: NodeCAPart


@dataclass(frozen=True)
class Request:
    """A request as written: plain values (what `render` writes, `parse` reads)."""

    mesh: str
    node: str
    created_at: str
    key_type: str
    ca_key: str  # sha256:<hex> of the CSR's SubjectPublicKeyInfo
    csr: str  # base64 of the DER certificate request
    crl: str  # base64 of the DER CRL
    wireguard_key: str | None = None  # base64
    wireguard_signature: str | None = None  # base64

    def signed_text(self) -> bytes:
        """What the WireGuard key signs: the mesh, the node, the time, both public keys."""
        return (
            f"meshops enrolment request {FORMAT}\nmesh: {self.mesh}\nnode: {self.node}\n"
            f"created_at: {self.created_at}\nwireguard: {self.wireguard_key or '-'}\n"
            f"node_ca: {self.ca_key}\n"
        ).encode()

    def render(self) -> bytes:
        lines = [
            HEADER.rstrip("\n"),
            f"format: {FORMAT}",
            f"mesh: {self.mesh}",
            f"node: {self.node}",
            f'created_at: "{self.created_at}"',
        ]
        if self.wireguard_key is not None:
            lines += [
                "wireguard:",
                f'  public_key: "{self.wireguard_key}"',
                f'  signature: "{self.wireguard_signature}"',
            ]
        lines += [
            "node_ca:",
            f"  key_type: {self.key_type}",
            f'  key: "{self.ca_key}"',
            f'  csr: "{self.csr}"',
            f'  crl: "{self.crl}"',
        ]
        return ("\n".join(lines) + "\n").encode()


def parse_request(data: bytes, name: str) -> tuple[Request, Document]:
    """A request file's values and its located document; ValidationFailed (every
    problem at its line and column) when it is not a well-formed request."""
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            [Problem(None, "", f"{name}: {len(data):,} bytes; a request is at most {MAX_BYTES:,}")]
        )
    doc = parse_yaml(data, name)
    model = validate_document(doc, RequestModel, "an enrolment request is a mapping")
    if model.format != FORMAT:
        raise ValidationFailed(
            [doc.problem(("format",), f"this meshops reads request format {FORMAT}")]
        )
    wg = model.wireguard
    request = Request(
        mesh=model.mesh,
        node=model.node,
        created_at=model.created_at,
        key_type=model.node_ca.key_type,
        ca_key=model.node_ca.key,
        csr=model.node_ca.csr,
        crl=model.node_ca.crl,
        wireguard_key=wg.public_key if wg else None,
        wireguard_signature=wg.signature if wg else None,
    )
    return request, doc


@dataclass(frozen=True)
class Proven:
    """A request whose signatures verify: the parsed CSR, its key, and the CRL."""

    request: Request
    document: Document
    csr: x509.CertificateSigningRequest
    public_key: PublicKey  # the node CA key
    crl: x509.CertificateRevocationList

    @property
    def node(self) -> str:
        return self.request.node

    @property
    def ca_key(self) -> str:
        return self.request.ca_key

    @property
    def wireguard_key(self) -> str | None:
        return self.request.wireguard_key

    def names(self) -> tuple[list[str], list[str]]:
        """The CSR's requested DNS names and IP addresses (as text)."""
        from cryptography import x509

        try:
            san = self.csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return [], []
        dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        return dns, ips


def prove(request: Request, doc: Document, *, signatures: bool = True) -> Proven:
    """Check the request's proofs of possession; ValidationFailed, located at the
    field, when one does not hold. `signatures=False` skips the three signature checks
    (only for these exact bytes verified before: see `checks.check_enrolments`)."""
    from cryptography import x509

    from meshops.pki.keys import csr_public_key, public_fingerprint
    from meshops.pki.specs import node_ca_common_name

    where_csr = ("node_ca", "csr")
    try:
        csr = x509.load_der_x509_csr(base64.b64decode(request.csr, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValidationFailed(
            [doc.problem(where_csr, f"not a certificate request (base64 DER): {exc}")]
        ) from None
    problems: list[Problem] = []
    try:
        public = csr_public_key(csr)
    except Exception as exc:  # an unsupported key type: MeshError with its own words
        raise ValidationFailed([doc.problem(where_csr, str(exc).split("\n")[0])]) from None
    if signatures and not csr.is_signature_valid:
        problems.append(
            doc.problem(
                where_csr,
                "the CSR's signature does not verify: it is not signed by "
                "the key it carries (no proof of possession)",
            )
        )
    if public_fingerprint(public) != request.ca_key:
        problems.append(
            doc.problem(("node_ca", "key"), "is not the fingerprint of the CSR's public key")
        )
    want_cn = node_ca_common_name(request.node)
    subject = csr.subject.rfc4514_string()
    if subject != f"CN={want_cn}":
        problems.append(
            doc.problem(
                where_csr,
                f"the CSR's subject is {subject!r}; node {request.node}'s "
                f"node CA is 'CN={want_cn}'",
            )
        )
    crl = _crl(request, doc, public, problems, signatures)
    if request.wireguard_key is not None:
        problems += _wireguard_proof(request, doc, signatures)
    if problems or crl is None:
        raise ValidationFailed(problems)
    return Proven(request, doc, csr, public, crl)


def _crl(
    request: Request, doc: Document, public: PublicKey, problems: list[Problem], signatures: bool
) -> x509.CertificateRevocationList | None:
    from cryptography import x509

    from meshops.pki.specs import node_ca_subject

    where = ("node_ca", "crl")
    try:
        crl = x509.load_der_x509_crl(base64.b64decode(request.crl, validate=True))
    except (ValueError, binascii.Error) as exc:
        problems.append(doc.problem(where, f"not a CRL (base64 DER): {exc}"))
        return None
    issuer = crl.issuer.rfc4514_string()
    if issuer != node_ca_subject(request.node):
        problems.append(
            doc.problem(
                where,
                f"the CRL's issuer is {issuer!r}, not the node CA "
                f"{node_ca_subject(request.node)!r}",
            )
        )
    try:
        signed = not signatures or bool(crl.is_signature_valid(public))
    except Exception:
        signed = False
    if not signed:
        problems.append(doc.problem(where, "the CRL is not signed by the node CA key of the CSR"))
    if len(crl) != 0:
        problems.append(doc.problem(where, "a node CA's CRL revokes nothing: it must be empty"))
    return crl


def _wireguard_proof(request: Request, doc: Document, signatures: bool) -> list[Problem]:
    from meshops.pki import xeddsa

    key = decode_b64(request.wireguard_key or "", 32)
    if key is None:
        return [
            doc.problem(
                ("wireguard", "public_key"),
                "not a WireGuard public key (32 bytes in base64, as `wg pubkey` prints)",
            )
        ]
    signature = decode_b64(request.wireguard_signature or "", xeddsa.SIGNATURE_SIZE)
    if signature is None or (
        signatures and not xeddsa.verify(key, request.signed_text(), signature)
    ):
        return [
            doc.problem(
                ("wireguard", "signature"),
                "the signature by the WireGuard key does "
                "not verify (no proof of possession, or the request was edited)",
            )
        ]
    return []


def decode_b64(text: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def short_key(text: str) -> str:
    """A key as review shows it: hex, first 8 digits (`ab12cd34…`)."""
    raw = base64.b64decode(text) if not text.startswith("sha256:") else None
    digits = raw.hex() if raw is not None else text.removeprefix("sha256:")
    return digits[:8] + "…"


def request_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
