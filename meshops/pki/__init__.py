"""The PKI core: keys, root / node CA / leaf issuance, CRL, renewal, rotation, formats.

Pure functions over `cryptography` objects: no file I/O, `now` always passed in.
Importing `meshops.pki` is cheap: the specs are plain dataclasses, and the functions
(which need `cryptography`) are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from meshops.pki.specs import CLOCK_SKEW_SECONDS, LeafSpec, NodeCASpec

if TYPE_CHECKING:
    from meshops.pki.ca import import_ca, issue_node_ca, issue_root, node_ca_constraints
    from meshops.pki.crl import Revoked, build_crl, crl_number, crl_pem
    from meshops.pki.formats import (
        bundle_pem,
        cert_pem,
        certs_pem,
        chain_pem,
        combined_pem,
        java_truststore,
        pkcs12,
    )
    from meshops.pki.keys import (
        PrivateKey,
        PublicKey,
        cert_public_key,
        generate_key,
        key_type_of,
        keys_match,
        load_private_pem,
        private_pem,
        public_fingerprint,
    )
    from meshops.pki.leaf import issue_leaf
    from meshops.pki.renewal import issued_by, jitter_seconds, renewal_reason, renewal_time
    from meshops.pki.rotation import (
        RotationPhase,
        RotationStep,
        next_rotation_step,
        root_rotation_reason,
    )

_LAZY = {
    "meshops.pki.ca": ("import_ca", "issue_node_ca", "issue_root", "node_ca_constraints"),
    "meshops.pki.crl": ("Revoked", "build_crl", "crl_number", "crl_pem"),
    "meshops.pki.formats": (
        "bundle_pem",
        "cert_pem",
        "certs_pem",
        "chain_pem",
        "combined_pem",
        "java_truststore",
        "pkcs12",
    ),
    "meshops.pki.keys": (
        "PrivateKey",
        "PublicKey",
        "cert_public_key",
        "generate_key",
        "key_type_of",
        "keys_match",
        "load_private_pem",
        "private_pem",
        "public_fingerprint",
    ),
    "meshops.pki.leaf": ("issue_leaf",),
    "meshops.pki.renewal": ("issued_by", "jitter_seconds", "renewal_reason", "renewal_time"),
    "meshops.pki.rotation": (
        "RotationPhase",
        "RotationStep",
        "next_rotation_step",
        "root_rotation_reason",
    ),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "LeafSpec",
    "NodeCASpec",
    "PrivateKey",
    "PublicKey",
    "Revoked",
    "RotationPhase",
    "RotationStep",
    "build_crl",
    "bundle_pem",
    "cert_pem",
    "cert_public_key",
    "certs_pem",
    "chain_pem",
    "combined_pem",
    "crl_number",
    "crl_pem",
    "generate_key",
    "import_ca",
    "issue_leaf",
    "issue_node_ca",
    "issue_root",
    "issued_by",
    "java_truststore",
    "jitter_seconds",
    "key_type_of",
    "keys_match",
    "load_private_pem",
    "next_rotation_step",
    "node_ca_constraints",
    "pkcs12",
    "private_pem",
    "public_fingerprint",
    "renewal_reason",
    "renewal_time",
    "root_rotation_reason",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshops.pki' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
