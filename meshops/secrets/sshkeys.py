"""SSH key facts that age needs, read without any crypto library.

An OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`) keeps its public key
and cipher name in clear, even when the private part is passphrase-protected. That lets
us say "this key is encrypted" and show its public form before touching the secret.

age's `ssh-ed25519` and `ssh-rsa` stanzas name the key they were sealed to by a *tag*:
the first 4 bytes of SHA-256 over the SSH wire-format public key, base64 without padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from meshops.model.types import Recipient

OPENSSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
OPENSSH_END = "-----END OPENSSH PRIVATE KEY-----"
_MAGIC = b"openssh-key-v1\x00"


@dataclass(frozen=True)
class SshKeyFacts:
    """What an OpenSSH private key file says in clear about itself."""

    key_type: str  # "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", ...
    public_blob: bytes
    encrypted: bool

    @property
    def public_text(self) -> str:
        return public_text(self.key_type, self.public_blob)

    @property
    def tag(self) -> str:
        return ssh_tag(self.public_blob)


def public_text(key_type: str, blob: bytes) -> str:
    """`ssh-ed25519 AAAA...`, the canonical recipient form (no comment)."""
    return f"{key_type} {base64.b64encode(blob).decode()}"


def ssh_tag(public_blob: bytes) -> str:
    """The age stanza tag of an SSH public key (wire format blob)."""
    return base64.b64encode(hashlib.sha256(public_blob).digest()[:4]).decode().rstrip("=")


def recipient_tag(recipient: Recipient) -> str | None:
    """The tag an age file sealed to `recipient` carries; None for X25519 (no tag)."""
    if recipient.kind == "age":
        return None
    return ssh_tag(base64.b64decode(recipient.text.split()[1]))


def _read_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, offset)
    start = offset + 4
    end = start + length
    if end > len(data):
        raise ValueError("truncated")
    return data[start:end], end


def parse_openssh_private_key(text: str) -> SshKeyFacts:
    """Read the clear header of an OpenSSH private key; ValueError when it is malformed."""
    body = text.strip()
    if not body.startswith(OPENSSH_BEGIN) or OPENSSH_END not in body:
        raise ValueError("not an OpenSSH private key")
    inner = body[len(OPENSSH_BEGIN) : body.index(OPENSSH_END)]
    try:
        raw = base64.b64decode("".join(inner.split()), validate=True)
    except binascii.Error:
        raise ValueError("its base64 body is damaged") from None
    if not raw.startswith(_MAGIC):
        raise ValueError("unknown OpenSSH key format version")
    try:
        cipher, offset = _read_string(raw, len(_MAGIC))
        _kdf, offset = _read_string(raw, offset)
        _kdf_options, offset = _read_string(raw, offset)
        (count,) = struct.unpack_from(">I", raw, offset)
        if count != 1:
            raise ValueError(f"holds {count} keys; expected exactly one")
        blob, offset = _read_string(raw, offset + 4)
        key_type, _ = _read_string(blob, 0)
    except struct.error:
        raise ValueError("truncated") from None
    return SshKeyFacts(
        key_type=key_type.decode(errors="replace"),
        public_blob=blob,
        encrypted=cipher != b"none",
    )
