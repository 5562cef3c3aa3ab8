"""Sealed secrets: age (pyrage) and sops sealing, identities, unseal diagnostics.

Import cost is small: pyrage, cryptography and yaml load only inside the functions
that need them.
"""

from meshops.secrets.age import AGE_SUFFIX, seal_age, unseal_age
from meshops.secrets.agefile import Stanza
from meshops.secrets.diagnostics import UnsealFailed
from meshops.secrets.identities import (
    Identity,
    default_identity_paths,
    generate_age_identity,
    load_identities,
)
from meshops.secrets.info import SealInfo, recipients_fingerprint, recipients_of
from meshops.secrets.sealer import AgeSealer, Sealer, SopsSealer, sealer_for
from meshops.secrets.sops import SOPS_SUFFIX, seal_sops, unseal_sops

__all__ = [
    "AGE_SUFFIX",
    "SOPS_SUFFIX",
    "AgeSealer",
    "Identity",
    "SealInfo",
    "Sealer",
    "SopsSealer",
    "Stanza",
    "UnsealFailed",
    "default_identity_paths",
    "generate_age_identity",
    "load_identities",
    "recipients_fingerprint",
    "recipients_of",
    "seal_age",
    "seal_sops",
    "sealer_for",
    "unseal_age",
    "unseal_sops",
]
