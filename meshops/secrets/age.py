"""age sealing with pyrage: ASCII-armored output that the stock `age -d -i KEY` opens.

Armor keeps sealed files as text, so git shows a clean replaced-lines diff and
reviewers see that a secret changed without seeing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshops.errors import SecretError
from meshops.model.types import SEALED_SUFFIX, Recipient
from meshops.secrets.diagnostics import UnsealFailed
from meshops.secrets.identities import Identity
from meshops.secrets.info import recipients_of

AGE_SUFFIX = SEALED_SUFFIX["age"]


def seal_age(plaintext: bytes, recipients: Sequence[Recipient]) -> bytes:
    """Encrypt `plaintext` to every recipient (X25519 or SSH ed25519/rsa), armored."""
    import pyrage

    if not recipients:
        raise SecretError(
            "cannot seal a secret to nobody: no recipient given",
            hint="list recipients in mesh.yaml (ca.recipients, or the node's recipient)",
        )
    parsed = [_pyrage_recipient(r) for r in recipients]
    try:
        return bytes(pyrage.encrypt(plaintext, parsed, armored=True))
    except pyrage.EncryptError as exc:
        raise SecretError(f"age encryption failed: {exc}") from None


def unseal_age(
    ciphertext: bytes, identities: Sequence[Identity], *, target_name: str = "sealed file"
) -> bytes:
    """Decrypt an age file (armored or binary) with any of `identities`.

    Raises `UnsealFailed` listing what was tried and what the file expects, or
    SecretError when the input is not an age file or is damaged.
    """
    import pyrage

    info = recipients_of(ciphertext, name=target_name)
    if info.format != "age":
        raise SecretError(
            f"{target_name} is a sops file, not an age file",
            hint="set secrets.format: sops in mesh.yaml, or re-seal with age",
        )
    if not identities:
        raise UnsealFailed(target_name, identities, info)
    try:
        return bytes(pyrage.decrypt(ciphertext, [i.to_pyrage() for i in identities]))
    except pyrage.DecryptError as exc:
        reason = str(exc)
        if "no matching keys" in reason.lower():
            raise UnsealFailed(target_name, identities, info, detail=reason) from None
        raise SecretError(
            f"cannot unseal {target_name}: the file is damaged or truncated ({reason})",
            hint=f"restore it from git; the file is {info.describe()}",
        ) from None


def _pyrage_recipient(recipient: Recipient) -> Any:
    import pyrage
    from pyrage import ssh, x25519

    try:
        if recipient.kind == "age":
            return x25519.Recipient.from_str(recipient.text)
        return ssh.Recipient.from_str(recipient.text)
    except pyrage.RecipientError as exc:
        raise SecretError(f"recipient {recipient.text[:40]}... is not usable: {exc}") from None
