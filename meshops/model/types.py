"""Typed scalar fields of mesh.yaml: names, endpoints, recipients, HTTP methods, paths.

Each type parses its text once, at load time, and says plainly what it expected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

KeyType = Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"]
HttpMethod = Literal[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "*"
]

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
NAME_RE = re.compile(rf"^{_LABEL}$")
DNS_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit"
        )
    return value


def _check_dns(value: str) -> str:
    lowered = value.lower().rstrip(".")
    if len(lowered) > 253 or not DNS_RE.match(lowered):
        raise ValueError(f"{value!r} is not a valid DNS name")
    return lowered


def _check_trust_domain(value: str) -> str:
    if "://" in value or "/" in value:
        raise ValueError(
            f"trust_domain is a bare domain such as example.org, without scheme or path; "
            f"got {value!r}"
        )
    return _check_dns(value)


Name = Annotated[str, AfterValidator(_check_name), Field(pattern=NAME_RE.pattern)]
DnsName = Annotated[str, AfterValidator(_check_dns)]
TrustDomain = Annotated[str, AfterValidator(_check_trust_domain)]


def _check_http_method(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Method = Annotated[HttpMethod, BeforeValidator(_check_http_method)]


# nginx refuses a config parameter over 4 KB, and its renderer escapes every punctuation
# character of a path (up to twice the length): with the rest of a rule this keeps every
# rendered parameter of every proxy well inside its limits (meshops.render.limits).
MAX_PATH_PATTERN = 1024
# RFC 3986 path characters every proxy compares literally: unreserved, and the
# sub-delims other than ';' (path parameters, refused by every proxy) and "'"
_PATH_CHAR = re.compile(r"[A-Za-z0-9/\-._~!$&()+,=:@]")


def _check_path_pattern(value: str) -> str:
    """Paths are exact (`/healthz`), a prefix (`/v1/*`) or everything (`*`, `/*`).

    The three proxies can all express exactly these, so what the access table allows is
    what every rendered config allows.
    """
    if value == "*":
        return value
    if len(value) > MAX_PATH_PATTERN:
        raise ValueError(
            f"path pattern is {len(value)} characters long; the limit is {MAX_PATH_PATTERN} "
            "(proxies refuse longer config parameters): use a shorter prefix such as /v1/*"
        )
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must start with '/' (or be '*' for every path)")
    body = value[:-1] if value.endswith("*") else value
    if "*" in body:
        raise ValueError(
            f"path {value!r}: '*' is only allowed at the end, as a prefix match such as /v1/*"
        )
    bad = sorted(set(_PATH_CHAR.sub("", body)))
    if bad:
        raise ValueError(
            f"path {value!r} contains {', '.join(repr(c) for c in bad)}: a path pattern holds "
            "letters, digits, '/' and - . _ ~ ! $ & ( ) + , = : @ only, as requests carry "
            "them (no percent-escapes, no ';' parameters), so every proxy matches it alike"
        )
    return value


PathPattern = Annotated[str, AfterValidator(_check_path_pattern)]


@dataclass(frozen=True)
class Endpoint:
    """Where peers reach a node: `host:port`, with `[v6]:port` for IPv6 literals."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @classmethod
    def parse(cls, value: Any) -> Endpoint:
        if isinstance(value, Endpoint):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected host:port, got {value!r}")
        text = value.strip()
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"expected [ipv6]:port, got {value!r}")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host:
                raise ValueError(f"expected host:port such as 192.0.2.11:51820, got {value!r}")
            if ":" in host:
                raise ValueError(f"write IPv6 endpoints as [address]:port, got {value!r}")
            if not is_ipv4(host):
                if host[0].isdigit() and host.replace(".", "").isdigit():
                    raise ValueError(f"{host!r} is not a valid IPv4 address")
                host = _check_dns(host)
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port must be a number from 1 to 65535, got {port_text!r}")
        return cls(host, int(port_text))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "description": "host:port", "examples": ["192.0.2.11:51820"]}


def is_ipv4(text: str) -> bool:
    """Canonical dotted-quad IPv4 text (four decimal octets, no leading zeros): what
    `str(IPv4Address(text))` gives back unchanged, at a fraction of its cost. glibc's
    inet_pton refuses leading zeros and short forms, as `ipaddress` does."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: embedded NUL
        return False
    return True


# bech32 (BIP-173), enough to check an age recipient without importing pyrage.
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_VALUES = {c: i for i, c in enumerate(_BECH32)}
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _generator_term(top: int) -> int:
    """XOR of the generator constants selected by the 5 bits of `top`."""
    term = 0
    for i, g in enumerate(_BECH32_GEN):
        if (top >> i) & 1:
            term ^= g
    return term


# precomputed once, so the checksum costs one lookup per symbol instead of five tests
_BECH32_TERMS = tuple(_generator_term(top) for top in range(32))


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    terms = _BECH32_TERMS
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ v) ^ terms[chk >> 25]
    return chk


def _bech32_valid(text: str) -> bool:
    hrp, sep, data = text.lower().rpartition("1")
    if not sep or not hrp or len(data) < 6:
        return False
    try:
        tail = [_BECH32_VALUES[c] for c in data]
    except KeyError:
        return False
    return _bech32_polymod(_hrp_values(hrp) + tail) == 1


def _hrp_values(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_encode(hrp: str, data: bytes) -> str:
    """`data` as bech32 (lower case) with the human-readable part `hrp`: age's spelling
    of keys (`age1...`, `AGE-SECRET-KEY-1...` in upper case)."""
    values, acc, bits = [], 0, 0
    for byte in data:
        acc, bits = acc << 8 | byte, bits + 8
        while bits >= 5:
            bits -= 5
            values.append(acc >> bits & 31)
    if bits:
        values.append(acc << (5 - bits) & 31)
    check = _bech32_polymod(_hrp_values(hrp) + values + [0] * 6) ^ 1
    values += [check >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[v] for v in values)


def bech32_decode(text: str) -> tuple[str, bytes] | None:
    """(hrp, data) of a valid bech32 string, or None."""
    if not _bech32_valid(text):
        return None
    hrp, _, symbols = text.lower().rpartition("1")
    out, acc, bits = bytearray(), 0, 0
    for c in symbols[:-6]:
        acc, bits = acc << 5 | _BECH32_VALUES[c], bits + 5
        if bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        return None  # padding that is not zero bits
    return hrp, bytes(out)


# the suffix of a sealed file, per `secrets.format` (`ca/root.key.age`, `wg.key.sops`)
SEALED_SUFFIX: dict[str, str] = {"age": ".age", "sops": ".sops"}


def recipients_digest(recipients: Iterable[Recipient]) -> str:
    """A stable digest of a recipient set (order and duplicates ignored), for state.yaml."""
    canonical = "\n".join(sorted({r.text for r in recipients}))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Recipient:
    """Who a secret is sealed to: an age X25519 recipient or an SSH public key."""

    kind: Literal["age", "ssh-ed25519", "ssh-rsa"]
    text: str  # canonical form: `age1...` or `ssh-<type> <base64>` without comment

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, value: Any) -> Recipient:
        if isinstance(value, Recipient):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected an age or SSH public key, got {value!r}")
        text = value.strip()
        if text.startswith("age1"):
            if text.lower() != text or len(text) != 62 or not _bech32_valid(text):
                raise ValueError(f"{_short(text)} is not a valid age X25519 recipient")
            return cls("age", text)
        fields = text.split()
        if fields and fields[0] in ("ssh-ed25519", "ssh-rsa"):
            if len(fields) < 2:
                raise ValueError(f"{fields[0]} key is missing its base64 body")
            try:
                parts = _ssh_wire_strings(base64.b64decode(fields[1], validate=True))
                inner = parts[0].decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise ValueError(f"{_short(text)} is not a valid SSH public key") from None
            if inner != fields[0]:
                raise ValueError(f"SSH key says {fields[0]} but its body holds {inner}")
            if inner == "ssh-ed25519" and (len(parts) != 2 or len(parts[1]) != 32):
                raise ValueError(f"{_short(text)}: an ssh-ed25519 key holds 32 bytes")
            if inner == "ssh-rsa" and (len(parts) != 3 or len(parts[2].lstrip(b"\0")) < 256):
                raise ValueError(f"{_short(text)}: an ssh-rsa key needs at least 2048 bits")
            kind: Literal["ssh-ed25519", "ssh-rsa"] = (
                "ssh-ed25519" if fields[0] == "ssh-ed25519" else "ssh-rsa"
            )
            return cls(kind, f"{fields[0]} {fields[1]}")
        raise ValueError(
            f"{_short(text)} is not a recipient: expected an age key (age1...) "
            "or an SSH public key (ssh-ed25519 AAAA... or ssh-rsa AAAA...)"
        )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": r"^(age1[0-9a-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$",
        }


def _ssh_wire_strings(blob: bytes) -> list[bytes]:
    """Split an SSH public key blob into its length-prefixed fields (RFC 4253)."""
    parts = []
    pos = 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("truncated")
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        pos += 4
        if pos + length > len(blob):
            raise ValueError("truncated")
        parts.append(blob[pos : pos + length])
        pos += length
    if not parts:
        raise ValueError("empty")
    return parts


def _short(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:20] + "...")
