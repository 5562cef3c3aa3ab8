"""Why a secret did not unseal, in words: what was tried, what the file expects.

Only public facts appear: identity sources, public keys, SSH tags, stanza kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshops.errors import SecretError
from meshops.secrets.identities import Identity
from meshops.secrets.info import SealInfo


class UnsealFailed(SecretError):
    """None of the given identities opens a sealed file."""

    def __init__(
        self,
        target: str,
        identities: Sequence[Identity],
        info: SealInfo | None,
        *,
        detail: str | None = None,
    ):
        self.target = target
        self.identities = tuple(identities)
        self.info = info
        message, hint = explain(target, identities, info)
        super().__init__(message, hint=hint, detail=detail)


def explain(target: str, identities: Sequence[Identity], info: SealInfo | None) -> tuple[str, str]:
    """(message, hint) for an unseal failure."""
    n = len(identities)
    if n == 0:
        head = f"cannot unseal {target}: no identity was given"
    else:
        noun = "identity" if n == 1 else f"{n} identities"
        head = f"cannot unseal {target}: {'the' if n == 1 else 'none of the'} {noun} given "
        head += "does not open it" if n == 1 else "opens it"
    lines = [head]
    if info is not None:
        lines.append(f"  the file is {info.describe()}")
        lines.extend(f"    {_short_key(r)}" for r in info.known_recipients)
    if identities:
        lines.append("  tried:")
        lines.extend(f"    {_tried(identity, info)}" for identity in identities)
    return "\n".join(lines), _hint(identities, info)


def _tried(identity: Identity, info: SealInfo | None) -> str:
    line = identity.describe()
    if info is None:
        return line
    if info.known_recipients:
        present = identity.public in info.known_recipients
        return line + (" - listed as a recipient" if present else " - not a recipient")
    if identity.kind == "age":
        if info.has_x25519:
            return line + " - the file cannot say whether this is one of its X25519 recipients"
        return line + " - the file has no X25519 recipient"
    if identity.tag in info.ssh_tags:
        return line + " - tag matches a stanza, yet it did not open (damaged file?)"
    return line + " - tag matches no stanza"


def _hint(identities: Sequence[Identity], info: SealInfo | None) -> str:
    if not identities:
        return (
            "pass --identity FILE (or set MESHOPS_IDENTITY) with an age identity file "
            "or the SSH private key the file is sealed to"
        )
    kinds = {i.kind for i in identities}
    if info is not None and kinds == {"age"} and info.has_ssh and not info.has_x25519:
        return (
            "you gave only age X25519 identities, but the file is sealed only to SSH keys: "
            "pass the SSH private key (e.g. /etc/ssh/ssh_host_ed25519_key) with --identity"
        )
    if info is not None and "age" not in kinds and info.has_x25519 and not info.has_ssh:
        return (
            "you gave only SSH keys, but the file is sealed only to age X25519 recipients: "
            "pass the age identity file (AGE-SECRET-KEY-1...) with --identity"
        )
    return (
        "pass the identity of one of the file's recipients with --identity; if the "
        "recipients changed in mesh.yaml, run meshops apply at repo scope to re-seal"
    )


def _short_key(text: str) -> str:
    """An SSH public key shortened for reading; age recipients are short already."""
    kind, _, body = text.partition(" ")
    if len(body) <= 48:
        return text
    return f"{kind} {body[:20]}...{body[-20:]}"
