"""One front door for sealing: `sealer_for(format, repo_dir)` gives an age or sops Sealer.

The state layout names a sealed file `<name><sealer.suffix>`: `ca/root.key.age` or
`ca/root.key.sops`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from meshops.model.types import SEALED_SUFFIX, Recipient
from meshops.secrets.identities import Identity


class Sealer(Protocol):
    """Seals bytes to recipients and unseals them with identities."""

    @property
    def suffix(self) -> str: ...

    def seal(self, plaintext: bytes, recipients: Sequence[Recipient], target: Path) -> bytes:
        """Sealed bytes for the file at `target` (relative to the mesh repository)."""
        ...

    def unseal(self, ciphertext: bytes, identities: Sequence[Identity], target_name: str) -> bytes:
        """The plaintext; `target_name` names the file in error messages."""
        ...


@dataclass(frozen=True)
class AgeSealer:
    suffix: str = SEALED_SUFFIX["age"]

    def seal(self, plaintext: bytes, recipients: Sequence[Recipient], target: Path) -> bytes:
        from meshops.secrets.age import seal_age

        return seal_age(plaintext, recipients)

    def unseal(self, ciphertext: bytes, identities: Sequence[Identity], target_name: str) -> bytes:
        from meshops.secrets.age import unseal_age

        return unseal_age(ciphertext, identities, target_name=target_name)


@dataclass(frozen=True)
class SopsSealer:
    repo_dir: Path
    suffix: str = SEALED_SUFFIX["sops"]

    def seal(self, plaintext: bytes, recipients: Sequence[Recipient], target: Path) -> bytes:
        from meshops.secrets.sops import seal_sops

        return seal_sops(plaintext, recipients, repo_dir=self.repo_dir, target=target)

    def unseal(self, ciphertext: bytes, identities: Sequence[Identity], target_name: str) -> bytes:
        from meshops.secrets.sops import unseal_sops

        return unseal_sops(ciphertext, identities, target_name=target_name)


def sealer_for(format: Literal["age", "sops"], repo_dir: Path) -> Sealer:
    """The sealer for mesh.yaml's `secrets.format`."""
    if format == "sops":
        return SopsSealer(Path(repo_dir))
    return AgeSealer()
