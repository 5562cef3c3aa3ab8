"""`state/manifest.yaml` and `state/manifest.sig`: the signed list of every state/ file.

The manifest is plain YAML that meshops writes and reads line by line (a thousand-node
mesh lists four thousand files; a YAML parser would take ten times longer):

    # Signed by the root CA: state/manifest.sig holds the signature of this file.
    format: 1
    mesh: demo
    version: 7                             # grows with every apply that changes state/
    signed_at: "2026-11-23T17:00:00+00:00"
    signer: "sha256:<fingerprint of the signing root certificate>"
    files:                                 # path under state/: sha256 and size in bytes
      ca/crl.pem: 3b1f...c2 1187
      ...

The signature file names the signing root and the algorithm (`signature.ALGORITHMS`)
and holds the base64 signature of the manifest's exact bytes:

    signer: "sha256:..."
    algorithm: ecdsa-p256-sha256
    signature: MEUCIQ...

Every `state/` file but these two is listed. Parsing is strict: anything meshops would
not have written is an error naming the file and line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshops.errors import MeshError

MANIFEST = "manifest.yaml"
SIGNATURE = "manifest.sig"
UNLISTED = frozenset({MANIFEST, SIGNATURE})  # the only state/ files the manifest omits
FORMAT = 1

_COMPONENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"
PATH_RE = re.compile(rf"^{_COMPONENT}(/{_COMPONENT})*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEADER = (
    "# Signed by the root CA: state/manifest.sig holds the signature of this file.\n"
    "# Every file under state/ with its sha256 and size, written by `meshops apply`;\n"
    "# hosts and `meshops review` check state/ against it. Do not edit by hand.\n"
)
_SIG_HEADER = "# The root CA's signature of state/manifest.yaml (see docs/security.md).\n"


def valid_path(path: str) -> bool:
    """A state/ path meshops writes: relative, POSIX, no `.`/`..` component, plain
    characters (node names, `.age`/`.sops` suffixes)."""
    return bool(PATH_RE.match(path)) and ".." not in path.split("/")


@dataclass(frozen=True)
class FileEntry:
    sha256: str  # hex
    size: int


@dataclass(frozen=True)
class Manifest:
    mesh: str
    version: int
    signed_at: str
    signer: str  # sha256:<fingerprint> of the root certificate that signs
    files: Mapping[str, FileEntry] = field(default_factory=dict)

    def render(self) -> bytes:
        lines = [
            _HEADER.rstrip("\n"),
            f"format: {FORMAT}",
            f"mesh: {self.mesh}",
            f"version: {self.version}",
            f'signed_at: "{self.signed_at}"',
            f'signer: "{self.signer}"',
            "files:",
        ]
        for path in sorted(self.files):
            entry = self.files[path]
            lines.append(f"  {path}: {entry.sha256} {entry.size}")
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str = f"state/{MANIFEST}") -> Manifest:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise MeshError(f"{where}: not a meshops manifest (not ASCII text)") from None
        head: dict[str, str] = {}
        files: dict[str, FileEntry] = {}
        in_files = False
        for number, line in enumerate(text.split("\n"), 1):
            if not line or line.startswith("#"):
                continue
            if in_files:
                path, entry = _file_line(line, where, number)
                if path in files:
                    raise MeshError(f"{where}:{number}: {path} is listed twice")
                files[path] = entry
                continue
            if line == "files:":
                in_files = True
                continue
            key, sep, value = line.partition(": ")
            if (
                not sep
                or key in head
                or key not in ("format", "mesh", "version", "signed_at", "signer")
            ):
                raise MeshError(f"{where}:{number}: unexpected line {line[:60]!r}")
            head[key] = _unquote(value)
        missing = [k for k in ("format", "mesh", "version", "signer") if k not in head]
        if missing or not in_files:
            what = ", ".join(missing) or "files"
            raise MeshError(f"{where}: not a meshops manifest (no {what})")
        if head["format"] != str(FORMAT):
            raise MeshError(
                f"{where}: manifest format {head['format']!r} is not one this meshops reads",
                hint="upgrade meshops on this machine",
            )
        if not head["version"].isdigit() or not _FINGERPRINT.match(head["signer"]):
            raise MeshError(f"{where}: malformed version or signer")
        return cls(
            head["mesh"], int(head["version"]), head.get("signed_at", ""), head["signer"], files
        )


def _file_line(line: str, where: str, number: int) -> tuple[str, FileEntry]:
    if not line.startswith("  "):
        raise MeshError(f"{where}:{number}: unexpected line {line[:60]!r}")
    path, sep, rest = line[2:].partition(": ")
    digest, _, size = rest.partition(" ")
    if not sep or not valid_path(path) or not _HEX64.match(digest) or not size.isdigit():
        raise MeshError(f"{where}:{number}: malformed file entry {line[:80]!r}")
    if path in UNLISTED:
        raise MeshError(f"{where}:{number}: the manifest cannot list {path}")
    return path, FileEntry(digest, int(size))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@dataclass(frozen=True)
class Signature:
    """The contents of manifest.sig."""

    signer: str
    algorithm: str
    value: bytes

    def render(self) -> bytes:
        encoded = base64.b64encode(self.value).decode()
        return (
            f'{_SIG_HEADER}signer: "{self.signer}"\nalgorithm: {self.algorithm}\n'
            f"signature: {encoded}\n"
        ).encode()

    @classmethod
    def parse(cls, data: bytes, where: str = f"state/{SIGNATURE}") -> Signature:
        fields: dict[str, str] = {}
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise MeshError(f"{where}: not a meshops signature file") from None
        for line in text.split("\n"):
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition(": ")
            if not sep or key not in ("signer", "algorithm", "signature") or key in fields:
                raise MeshError(f"{where}: not a meshops signature file")
            fields[key] = _unquote(value)
        if set(fields) != {"signer", "algorithm", "signature"}:
            raise MeshError(f"{where}: not a meshops signature file")
        if not _FINGERPRINT.match(fields["signer"]):
            raise MeshError(f"{where}: malformed signer {fields['signer'][:80]!r}")
        try:
            raw = base64.b64decode(fields["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise MeshError(f"{where}: the signature is not base64") from None
        return cls(fields["signer"], fields["algorithm"], raw)
