"""The age file header, read as text: which kinds of recipient a file is sealed to.

An age file starts with `age-encryption.org/v1`, then one stanza per recipient
(`-> X25519 <share>`, `-> ssh-ed25519 <tag> <share>`, `-> ssh-rsa <tag>`, ...), each
followed by base64 body lines, then `--- <mac>` and the binary payload. The ASCII armor
(`-----BEGIN AGE ENCRYPTED FILE-----`) wraps all of it in base64. X25519 stanzas do not
reveal their recipient; SSH stanzas carry a 4-byte tag of the key. Pure code.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

VERSION_LINE = b"age-encryption.org/v1"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
# age implementations add random "grease" stanzas (rage: `-> <random>-grease ...`) so
# that parsers stay tolerant of unknown kinds; they say nothing about recipients.
_GREASE_SUFFIX = "-grease"
_MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: its kind, the SSH key tag if any, the recipient if known."""

    kind: str  # "X25519", "ssh-ed25519", "ssh-rsa", "scrypt", or another age kind
    tag: str | None = None
    recipient: str | None = None  # known for sops files, never for age X25519


def is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(ARMOR_BEGIN)


def dearmor(data: bytes) -> bytes:
    """The binary age file inside ASCII armor; ValueError when the armor is damaged."""
    text = data.strip()
    if not text.startswith(ARMOR_BEGIN):
        raise ValueError("not ASCII-armored")
    end = text.find(ARMOR_END)
    if end < 0:
        raise ValueError("the armor has no END line (truncated file?)")
    body = b"".join(text[len(ARMOR_BEGIN) : end].split())
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise ValueError("the armored base64 body is damaged") from None


def parse_header(data: bytes) -> tuple[Stanza, ...]:
    """The recipient stanzas of an age file (armored or binary), grease left out.

    Raises ValueError saying what is wrong when `data` is not an age file.
    """
    raw = dearmor(data) if is_armored(data) else data
    if not raw.startswith(VERSION_LINE + b"\n"):
        raise ValueError("it does not start with 'age-encryption.org/v1'")
    end = raw.find(b"\n---", 0, _MAX_HEADER)
    if end < 0:
        raise ValueError("its header has no '---' MAC line (truncated or damaged)")
    try:
        lines = raw[len(VERSION_LINE) + 1 : end].decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ValueError("its header is not ASCII text") from None
    stanzas: list[Stanza] = []
    for line in lines:
        if not line.startswith("-> "):
            continue  # a stanza body line
        args = line[3:].split(" ")
        kind = args[0]
        if not kind:
            raise ValueError("it has a stanza without a type")
        if kind.endswith(_GREASE_SUFFIX):
            continue
        tag = args[1] if kind in ("ssh-ed25519", "ssh-rsa") and len(args) > 1 else None
        stanzas.append(Stanza(kind=kind, tag=tag))
    if not stanzas:
        raise ValueError("its header names no recipient")
    return tuple(stanzas)
