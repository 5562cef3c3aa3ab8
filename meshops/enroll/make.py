"""Build an enrolment request on the host, from keys that never leave it (pure: the keys,
the names and `now` come in, a `Request` comes out)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from meshops.enroll.request import Request

if TYPE_CHECKING:
    from meshops.pki.keys import PrivateKey
    from meshops.pki.specs import IPAddress


def make_request(
    *,
    mesh: str,
    node: str,
    dns: Sequence[str],
    ips: Sequence[IPAddress],
    ca_key: PrivateKey,
    wireguard_private: bytes | None,
    now: datetime,
    crl_ttl_seconds: float,
) -> Request:
    """The request for `node`: a CSR for `ca_key` naming `dns` and `ips` (what the host
    knows of its names), the node CA's empty CRL valid for `crl_ttl_seconds`, and the
    WireGuard public key of `wireguard_private` with its XEdDSA signature."""
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding

    from meshops.pki import xeddsa
    from meshops.pki.ca import node_ca_empty_crl, node_ca_request
    from meshops.pki.keys import key_type_of, public_fingerprint
    from meshops.pki.specs import utc

    csr = node_ca_request(key=ca_key, node=node, dns=dns, ips=ips)
    crl = node_ca_empty_crl(key=ca_key, node=node, now=now, ttl_seconds=crl_ttl_seconds)
    unsigned = Request(
        mesh=mesh,
        node=node,
        created_at=utc(now).replace(microsecond=0).isoformat(timespec="seconds"),
        key_type=key_type_of(ca_key),
        ca_key=public_fingerprint(ca_key.public_key()),
        csr=base64.b64encode(csr.public_bytes(Encoding.DER)).decode(),
        crl=base64.b64encode(crl.public_bytes(Encoding.DER)).decode(),
        wireguard_key=(
            base64.b64encode(xeddsa.public_key(wireguard_private)).decode()
            if wireguard_private is not None
            else None
        ),
    )
    if wireguard_private is None:
        return unsigned
    signature = xeddsa.sign(wireguard_private, unsigned.signed_text())
    from dataclasses import replace

    return replace(unsigned, wireguard_signature=base64.b64encode(signature).decode())
