"""Identities that unseal: age X25519 identity files and OpenSSH private keys.

An `Identity` knows its kind, where it came from and its public recipient form, so an
unseal failure can say which keys were tried. The secret itself stays in a field that
is never shown (`repr=False`, and `__str__` prints only the public side).
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from meshops.errors import SecretError
from meshops.model.types import Recipient
from meshops.secrets.sshkeys import (
    OPENSSH_BEGIN,
    parse_openssh_private_key,
    public_text,
    ssh_tag,
)

IdentityKind = Literal["age", "ssh-ed25519", "ssh-rsa"]
AGE_SECRET_PREFIX = "AGE-SECRET-KEY-1"
_PEM_RSA_BEGIN = "-----BEGIN RSA PRIVATE KEY-----"
_MAX_IDENTITY_FILE = 1 << 20


@dataclass(frozen=True)
class Identity:
    """A key that can unseal: its kind, its source (file, and line for age files), its
    public recipient text. `secret` holds the key material and is never printed."""

    kind: IdentityKind
    source: str
    public: str  # "age1..." or "ssh-ed25519 AAAA..." (canonical, no comment)
    secret: bytes = field(repr=False, compare=False)
    path: Path | None = field(default=None, compare=False)

    @property
    def recipient(self) -> Recipient:
        return Recipient.parse(self.public)

    @property
    def tag(self) -> str | None:
        """The age stanza tag of an SSH identity; None for X25519."""
        if self.kind == "age":
            return None
        return ssh_tag(base64.b64decode(self.public.split()[1]))

    def describe(self) -> str:
        """`<source>: <public form>`, for messages. Never the secret."""
        if self.kind == "age":
            return f"{self.source}: age X25519 identity for {self.public}"
        body = self.public.split()[1]
        short = body if len(body) <= 32 else f"{body[:16]}...{body[-12:]}"
        return f"{self.source}: SSH {self.kind[4:]} key {self.kind} {short} (tag {self.tag})"

    def __str__(self) -> str:
        return self.describe()

    def to_pyrage(self) -> Any:
        """The pyrage identity object (imported here: pyrage is only needed to unseal)."""
        from pyrage import ssh, x25519

        if self.kind == "age":
            return x25519.Identity.from_str(self.secret.decode())
        return ssh.Identity.from_buffer(self.secret)


def default_identity_paths(root: Path) -> list[Path]:
    """Host scope's fallback identity: the SSH host key, under `--root`."""
    return [Path(root) / "etc/ssh/ssh_host_ed25519_key"]


def generate_age_identity() -> tuple[str, Recipient]:
    """A new X25519 identity: (identity file text, its recipient).

    The text is what `age-keygen` writes, minus the date: a public-key comment and the
    `AGE-SECRET-KEY-1...` line. The caller writes it 0600 with `write_atomic`.
    """
    from pyrage import x25519

    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    text = f"# public key: {recipient}\n{identity}\n"
    return text, Recipient.parse(recipient)


def load_identities(paths: Sequence[Path]) -> list[Identity]:
    """Every identity in `paths`, in order: age identity files (several keys each,
    `#` comments allowed) and unencrypted OpenSSH ed25519/rsa private keys."""
    found: list[Identity] = []
    for path in paths:
        found.extend(load_identity_file(Path(path)))
    return found


def load_identity_file(path: Path) -> list[Identity]:
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith(OPENSSH_BEGIN):
        return [_openssh_identity(path, text)]
    if stripped.startswith(_PEM_RSA_BEGIN):
        return [_pem_rsa_identity(path, text)]
    if stripped.startswith("age-encryption.org/") or stripped.startswith(
        "-----BEGIN AGE ENCRYPTED FILE-----"
    ):
        raise SecretError(
            f"identity file {path} is itself age-encrypted (passphrase-protected)",
            hint="meshops cannot prompt for a passphrase; decrypt it to a 0600 file first",
        )
    if stripped.startswith("-----BEGIN"):
        kind = stripped.splitlines()[0].strip("- ").removeprefix("BEGIN ")
        raise SecretError(
            f"identity file {path} holds a {kind}, which age cannot use",
            hint="use an age identity (AGE-SECRET-KEY-1...) or an OpenSSH ed25519/rsa "
            "private key such as /etc/ssh/ssh_host_ed25519_key",
        )
    return _age_identities(path, text)


def _read_text(path: Path) -> str:
    try:
        info = os.stat(path)
        if info.st_size > _MAX_IDENTITY_FILE:
            raise SecretError(f"identity file {path} is {info.st_size} bytes: too large for a key")
        _check_private(path, info)
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecretError(
            f"identity file {path} does not exist",
            hint="pass --identity FILE (or MESHOPS_IDENTITY) naming an age identity file "
            "or an SSH private key",
        ) from None
    except IsADirectoryError:
        raise SecretError(f"identity file {path} is a directory") from None
    except OSError as exc:
        raise SecretError(f"cannot read identity file {path}: {exc.strerror}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise SecretError(
            f"identity file {path} is not text: expected an age identity file "
            "or an OpenSSH private key"
        ) from None


def _check_private(path: Path, info: os.stat_result) -> None:
    """Refuse a key file others may read, as ssh does: whoever could read it holds
    the key, and a key that leaked must not be used as if it had not."""
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISREG(info.st_mode) and mode & 0o077:
        raise SecretError(
            f"identity file {path} is accessible by group or others (mode {mode:04o}); "
            "refusing to use a private key that is not private",
            hint=f"chmod 600 {path}  (and replace the key if others may have read it)",
        )


def _age_identities(path: Path, text: str) -> list[Identity]:
    from pyrage import IdentityError, x25519

    found: list[Identity] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        if line.startswith("AGE-PLUGIN-"):
            raise SecretError(
                f"{where}: age plugin identities are not supported",
                hint="use an X25519 identity (age-keygen) or an SSH key",
            )
        # Never echo the line: it may be a mangled secret key.
        if not line.startswith(AGE_SECRET_PREFIX):
            raise SecretError(
                f"{where}: not an age identity (expected a line starting with "
                f"{AGE_SECRET_PREFIX}, or a # comment)",
                hint="pass an age identity file from age-keygen or an OpenSSH private key",
            )
        try:
            identity = x25519.Identity.from_str(line)
        except IdentityError:
            raise SecretError(f"{where}: damaged age secret key (bad checksum)") from None
        found.append(
            Identity(
                kind="age",
                source=where,
                public=str(identity.to_public()),
                secret=line.encode(),
                path=path,
            )
        )
    if not found:
        raise SecretError(f"identity file {path} holds no age identity (only comments)")
    return found


def _openssh_identity(path: Path, text: str) -> Identity:
    try:
        facts = parse_openssh_private_key(text)
    except ValueError as exc:
        raise SecretError(f"SSH private key {path} is damaged: {exc}") from None
    if facts.key_type not in ("ssh-ed25519", "ssh-rsa"):
        raise SecretError(
            f"SSH private key {path} is {facts.key_type}; age supports only "
            "ssh-ed25519 and ssh-rsa keys",
            hint="use the host's ed25519 key (/etc/ssh/ssh_host_ed25519_key) or an age identity",
        )
    if facts.encrypted:
        raise SecretError(
            f"SSH private key {path} is passphrase-protected; meshops cannot prompt "
            "for a passphrase",
            hint=f"use an unencrypted key (host keys are), or an age identity; "
            f"its public key is {facts.public_text[:40]}...",
        )
    kind: IdentityKind = "ssh-ed25519" if facts.key_type == "ssh-ed25519" else "ssh-rsa"
    identity = Identity(
        kind=kind,
        source=str(path),
        public=facts.public_text,
        secret=text.encode(),
        path=path,
    )
    _check_pyrage_accepts(identity)
    return identity


def _pem_rsa_identity(path: Path, text: str) -> Identity:
    if "ENCRYPTED" in text.split("\n\n", 1)[0]:
        raise SecretError(
            f"SSH private key {path} is passphrase-protected; meshops cannot prompt "
            "for a passphrase",
            hint="use an unencrypted key, or an age identity",
        )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise SecretError(f"SSH private key {path} is damaged or encrypted") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecretError(f"{path} is not an RSA private key")
    openssh = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(openssh.split()[1])
    identity = Identity(
        kind="ssh-rsa",
        source=str(path),
        public=public_text("ssh-rsa", blob),
        secret=text.encode(),
        path=path,
    )
    _check_pyrage_accepts(identity)
    return identity


def _check_pyrage_accepts(identity: Identity) -> None:
    from pyrage import IdentityError

    try:
        identity.to_pyrage()
    except IdentityError as exc:
        raise SecretError(f"SSH private key {identity.source} cannot be used: {exc}") from None
