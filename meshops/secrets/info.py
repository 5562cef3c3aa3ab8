"""Who a sealed file is sealed to, read from the file without unsealing it. Pure.

age files tell the *kinds* of their recipients and, for SSH keys, a tag of each key;
X25519 stanzas do not reveal their recipient. sops files list every recipient in
clear. So "must this file be re-sealed because the recipients changed?" is answered
exactly for SSH-only age files and for sops files, and not at all for age files with
X25519 stanzas: for those the caller records `recipients_fingerprint(recipients)` in
state.yaml when it seals, and re-seals when the fingerprint of the desired recipients
differs. `SealInfo.matches` is the cross-check for files changed outside meshops.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from meshops.errors import SecretError
from meshops.model.types import Recipient, recipients_digest
from meshops.secrets.agefile import Stanza, parse_header
from meshops.secrets.sshkeys import recipient_tag

SealFormat = Literal["age", "sops"]
_SOPS_KEY_KINDS = ("kms", "gcp_kms", "azure_kv", "hc_vault", "hckms", "pgp")


@dataclass(frozen=True)
class SealInfo:
    """The recipients a sealed file declares: age stanzas, plus other sops master keys."""

    format: SealFormat
    stanzas: tuple[Stanza, ...]
    other_keys: tuple[str, ...] = ()  # sops only: "pgp 85D7...", "kms arn:..."

    def count(self, kind: str) -> int:
        return sum(1 for s in self.stanzas if s.kind == kind)

    @property
    def ssh_tags(self) -> frozenset[str]:
        return frozenset(s.tag for s in self.stanzas if s.tag is not None)

    @property
    def has_x25519(self) -> bool:
        return self.count("X25519") > 0

    @property
    def has_ssh(self) -> bool:
        return any(s.kind in ("ssh-ed25519", "ssh-rsa") for s in self.stanzas)

    @property
    def known_recipients(self) -> tuple[str, ...]:
        return tuple(s.recipient for s in self.stanzas if s.recipient is not None)

    def describe(self) -> str:
        """`sealed to 2 X25519 recipients and 1 SSH ed25519 key (tag P/Y/Ng)`."""
        parts: list[str] = []
        for kind, n in Counter(s.kind for s in self.stanzas).items():
            if kind in ("ssh-ed25519", "ssh-rsa"):
                tags = ", ".join(sorted(s.tag or "?" for s in self.stanzas if s.kind == kind))
                noun = "key" if n == 1 else "keys"
                parts.append(f"{n} SSH {kind[4:]} {noun} (tag {tags})")
            elif kind == "X25519":
                parts.append(f"{n} X25519 recipient{'s' if n != 1 else ''}")
            else:
                parts.append(f"{n} {kind} stanza{'s' if n != 1 else ''}")
        parts.extend(self.other_keys)
        if not parts:
            return "sealed to no recipient"
        head = ", ".join(parts[:-1])
        return "sealed to " + (f"{head} and {parts[-1]}" if head else parts[-1])

    def matches(self, recipients: Sequence[Recipient]) -> bool | None:
        """Is the file sealed to exactly `recipients`? None when the file cannot tell.

        age: False when the SSH tags or the number of X25519 stanzas differ; True when
        there is no X25519 stanza and the tags agree; otherwise None. sops: False when
        a wanted recipient is missing; True when the age recipients are exactly these;
        None when there are more (they may come from a `.sops.yaml` rule).
        """
        wanted = {r.text for r in recipients}
        if self.format == "sops":
            present = set(self.known_recipients)
            if not wanted <= present:
                return False
            return True if present == wanted and not self.other_keys else None
        wanted_tags = {t for r in recipients if (t := recipient_tag(r)) is not None}
        wanted_x25519 = sum(1 for r in recipients if r.kind == "age")
        other = [s for s in self.stanzas if s.kind not in ("X25519", "ssh-ed25519", "ssh-rsa")]
        if other or wanted_tags != self.ssh_tags or wanted_x25519 != self.count("X25519"):
            return False
        if len(recipients) != len(self.stanzas):
            return False  # duplicated SSH keys or two keys sharing a tag
        return None if wanted_x25519 else True


def recipients_of(ciphertext: bytes, *, name: str = "sealed file") -> SealInfo:
    """Read the recipients an age or sops file declares; SecretError for anything else."""
    if ciphertext.lstrip().startswith(b"{"):
        return sops_info(ciphertext, name=name)
    try:
        return SealInfo(format="age", stanzas=parse_header(ciphertext))
    except ValueError as exc:
        raise SecretError(
            f"{name} is not an age file: {exc}",
            hint="sealed files are written by meshops apply; restore it from git",
        ) from None


def sops_info(ciphertext: bytes, *, name: str = "sealed file") -> SealInfo:
    """The recipients listed in a sops JSON file's `sops` metadata."""
    metadata = _sops_metadata(ciphertext, name)
    stanzas: list[Stanza] = []
    for entry in metadata.get("age") or []:
        text = str(entry.get("recipient", "")) if isinstance(entry, dict) else ""
        stanzas.append(_stanza_for_recipient(text))
    others: list[str] = []
    for kind in _SOPS_KEY_KINDS:
        for entry in metadata.get(kind) or []:
            if isinstance(entry, dict):
                ident = entry.get("fp") or entry.get("arn") or entry.get("resource_id")
                ident = ident or entry.get("vault_address") or entry.get("key_id") or "?"
                others.append(f"sops {kind} key {ident}")
    for group in metadata.get("key_groups") or []:
        if isinstance(group, dict):
            for entry in group.get("age") or []:
                if isinstance(entry, dict):
                    stanzas.append(_stanza_for_recipient(str(entry.get("recipient", ""))))
            others.extend(
                f"sops {kind} key" for kind in _SOPS_KEY_KINDS for _ in group.get(kind) or []
            )
    return SealInfo(format="sops", stanzas=tuple(stanzas), other_keys=tuple(others))


def _sops_metadata(ciphertext: bytes, name: str) -> dict[str, Any]:
    try:
        document = json.loads(ciphertext)
    except (ValueError, UnicodeDecodeError):
        raise SecretError(f"{name} is not a sops file: it is not valid JSON") from None
    metadata = document.get("sops") if isinstance(document, dict) else None
    if not isinstance(metadata, dict):
        raise SecretError(f"{name} is not a sops file: it has no 'sops' metadata")
    return metadata


def _stanza_for_recipient(text: str) -> Stanza:
    try:
        recipient = Recipient.parse(text)
    except ValueError:
        return Stanza(kind="age-plugin" if text.startswith("age1") else "unknown", recipient=text)
    kind = "X25519" if recipient.kind == "age" else recipient.kind
    return Stanza(kind=kind, tag=recipient_tag(recipient), recipient=recipient.text)


# a stable digest of a recipient set, for state.yaml (defined beside Recipient)
recipients_fingerprint = recipients_digest
