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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from meshops.model.port import PORT_NUMBER, PROTOCOL

KeyType = Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"]
HttpMethod = Literal[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "*"
]


@dataclass(frozen=True)
class TextRule:
    """A field-level rule for text: one regular expression, matched whole.

    `body` is written in the common subset of Python's `re` and ECMA-262 (the JSON
    Schema dialect), so the loader and the published schema check the same thing.
    The loader matches it with `fullmatch`: `re.match("...$")` would accept a trailing
    newline, and a name with a newline ends up in a certificate or a config file.
    """

    body: str

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.body)

    def matches(self, text: str) -> bool:
        return self.regex.fullmatch(text) is not None

    @property
    def schema_pattern(self) -> str:
        # `$(?!\n)`: Python validators (jsonschema) search with `$`, which also matches
        # before a final newline; ECMA-262 engines read it as the plain end of the text
        return rf"^(?:{self.body})$(?!\n)"

    def schema(self, description: str, **extra: Any) -> dict[str, Any]:
        """Its JSON Schema: a string matching the pattern, with a description."""
        return {
            "type": "string",
            "pattern": self.schema_pattern,
            "description": description,
            # the rule in words, kept when a field's own description replaces the one
            # above (docs/mesh-yaml.md shows it in place of a long pattern)
            "$comment": description,
            **extra,
        }


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ANY_CASE_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# a DNS name: at most 253 characters, not counting one final dot
_DNS_LENGTH = r"(?=[^:]{1,253}$|[^:]{1,253}\.$)"
NAME = TextRule(_LABEL)
HOSTNAME = TextRule(rf"{_DNS_LENGTH}{_ANY_CASE_LABEL}(?:\.{_ANY_CASE_LABEL})*\.?")
DNS_SAN = TextRule(rf"{_DNS_LENGTH}(?:\*\.)?{_ANY_CASE_LABEL}(?:\.{_ANY_CASE_LABEL})*\.?")
# free-text names shown to people (policies, tests): no markup, no line breaks
POLICY_NAME = TextRule(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
TEST_NAME = TextRule(r"[A-Za-z0-9](?:[A-Za-z0-9 ._:/-]{0,198}[A-Za-z0-9])?")
# Kubernetes' label syntax: an optional DNS prefix and `/`, a name, a value (may be empty)
LABEL_KEY = TextRule(
    r"(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
)
LABEL_VALUE = TextRule(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
# an absolute path without `.`, `..` or empty segments, so what review shows is where
# the file goes
ABSOLUTE_FILE = TextRule(r"(?:/(?!\.\.?(?:/|$))[^/\x00-\x1f\x7f-\x9f]+)+")
ABSOLUTE_DIR = TextRule(ABSOLUTE_FILE.body + "/?")
# one argument of a command (reload, on_renew): any text on one line
ARGUMENT = TextRule(r"[^\x00-\x1f\x7f-\x9f]*")
NAME_RE = NAME.regex  # kept for callers that match names (`meshops init --name`)


def _check_name(value: str) -> str:
    if not NAME.matches(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit"
        )
    return value


def _dns(value: str, rule: TextRule, what: str) -> str:
    if not rule.matches(value):
        raise ValueError(f"{value!r} is not a valid {what}")
    return value.lower().removesuffix(".")


def _check_dns(value: str) -> str:
    return _dns(value, DNS_SAN, "DNS name")


def _check_domain(value: str) -> str:
    return _dns(value, HOSTNAME, "DNS name (without a wildcard)")


def _check_trust_domain(value: str) -> str:
    if "://" in value or "/" in value:
        raise ValueError(
            f"trust_domain is a bare domain such as example.org, without scheme or path; "
            f"got {value!r}"
        )
    return _dns(value, HOSTNAME, "DNS name (without a wildcard)")


def rule_check(rule: TextRule, what: str) -> Callable[[str], str]:
    """A validator refusing text that `rule` does not match: `'x' is not <what>`."""

    def check(value: str) -> str:
        if not rule.matches(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema(NAME.schema("lowercase letters, digits and '-', 1-63 characters")),
]
DnsName = Annotated[
    str,
    AfterValidator(_check_dns),
    WithJsonSchema(DNS_SAN.schema("a DNS name (a leading '*.' for a wildcard); stored lowercase")),
]
DomainName = Annotated[
    str,
    AfterValidator(_check_domain),
    WithJsonSchema(HOSTNAME.schema("a DNS domain such as mesh.example.org")),
]
TrustDomain = Annotated[
    str,
    AfterValidator(_check_trust_domain),
    WithJsonSchema(HOSTNAME.schema("a bare domain such as example.org (no scheme, no path)")),
]
_POLICY_NAME_RULE = "letters, digits, '.', '_' and '-', 1-128 characters"
_TEST_NAME_RULE = "letters, digits, spaces and . _ : / -, 1-200 characters"
_EDGES = ", starting and ending with a letter or digit"
_NO_DOTS = "(starting with '/', without '.' or '..' segments)"
PolicyName = Annotated[
    str,
    AfterValidator(
        rule_check(POLICY_NAME, f"a valid policy name: use {_POLICY_NAME_RULE}{_EDGES}")
    ),
    WithJsonSchema(POLICY_NAME.schema(_POLICY_NAME_RULE + _EDGES)),
]
TestName = Annotated[
    str,
    AfterValidator(rule_check(TEST_NAME, f"a valid test name: {_TEST_NAME_RULE}{_EDGES}")),
    WithJsonSchema(TEST_NAME.schema(_TEST_NAME_RULE + _EDGES)),
]
LabelKey = Annotated[
    str,
    AfterValidator(rule_check(LABEL_KEY, "a valid label key (Kubernetes syntax: [prefix/]name)")),
    WithJsonSchema(LABEL_KEY.schema("[prefix/]name, as in Kubernetes")),
]
LabelValue = Annotated[
    str,
    AfterValidator(rule_check(LABEL_VALUE, "a valid label value (as in Kubernetes)")),
    WithJsonSchema(LABEL_VALUE.schema("letters, digits, '.', '_' and '-', at most 63")),
]
AbsoluteFile = Annotated[
    str,
    AfterValidator(rule_check(ABSOLUTE_FILE, f"an absolute path to a file {_NO_DOTS}")),
    WithJsonSchema(ABSOLUTE_FILE.schema(f"an absolute path to a file {_NO_DOTS}")),
]
AbsoluteDir = Annotated[
    str,
    AfterValidator(rule_check(ABSOLUTE_DIR, f"an absolute path to a directory {_NO_DOTS}")),
    WithJsonSchema(ABSOLUTE_DIR.schema(f"an absolute path to a directory {_NO_DOTS}")),
]
Argument = Annotated[
    str,
    AfterValidator(rule_check(ARGUMENT, "a command argument (one line of text)")),
    WithJsonSchema(ARGUMENT.schema("one argument")),
]


def _non_empty_argv(argv: list[str]) -> list[str]:
    if not argv:
        raise ValueError("each command is a non-empty argv list, such as [systemctl, reload, x]")
    return argv


Command = Annotated[
    list[Argument],
    AfterValidator(_non_empty_argv),
    WithJsonSchema(
        {
            "type": "array",
            "items": ARGUMENT.schema("one argument"),
            "minItems": 1,
            "description": "a command as an argv list (not run through a shell)",
        }
    ),
]
PortNumber = Annotated[int, Strict(), Field(ge=1, le=65535)]
PRINCIPAL = TextRule(rf"\*|(?:group:)?{_LABEL}")
Principal = Annotated[
    str,
    AfterValidator(rule_check(PRINCIPAL, "an identity name, group:<name>, or * for everyone")),
    WithJsonSchema(PRINCIPAL.schema("an identity, group:<name>, or *")),
]


def principal_schema() -> dict[str, Any]:
    return PRINCIPAL.schema("an identity, group:<name>, or *")


def _text_ip(value: Any) -> Any:
    """IP addresses are written as text: an integer would be read as an address too."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address as text, got {value!r}")
    if "%" in value:
        raise ValueError(f"{value!r}: a scoped IPv6 address (with %zone) is not allowed here")
    return value


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = TextRule(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
IPV6 = TextRule(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # the shape; the loader checks the value
IPV4_NETWORK = TextRule(rf"{IPV4.body}/(?:[0-9]|[12][0-9]|3[0-2])")
ULA_64 = TextRule(r"[fF][cdCD][0-9A-Fa-f]{2}:[0-9A-Fa-f:.]*/64")
IPV6_NETWORK = TextRule(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/[0-9]{1,3}")


def _text_network(rule: TextRule, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or not rule.matches(value):
            raise ValueError(f"expected {what}, got {value!r}")
        return value

    return check


IPv4Net = Annotated[
    IPv4Network,
    BeforeValidator(_text_network(IPV4_NETWORK, "an IPv4 network such as 10.42.0.0/16")),
    WithJsonSchema(IPV4_NETWORK.schema("an IPv4 network in CIDR form", format="ipv4network")),
]
Ula64 = Annotated[
    IPv6Network,
    # the loader says what is wrong (not a /64, not unique local) after parsing
    BeforeValidator(_text_network(IPV6_NETWORK, "an IPv6 network such as fd42::/64")),
    WithJsonSchema(ULA_64.schema("a unique local IPv6 /64 such as fd42::/64")),
]
IPv4 = Annotated[
    IPv4Address,
    BeforeValidator(_text_ip),
    WithJsonSchema(IPV4.schema("an IPv4 address (dotted quad)", format="ipv4")),
]
IPv6 = Annotated[
    IPv6Address,
    BeforeValidator(_text_ip),
    WithJsonSchema(IPV6.schema("an IPv6 address", format="ipv6")),
]
AnyIP = Annotated[
    IPv4Address | IPv6Address,
    BeforeValidator(_text_ip),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^(?:{IPV4.body}|{IPV6.body})$(?!\n)",
            "description": "an IPv4 or IPv6 address",
            "$comment": "an IPv4 or IPv6 address",
        }
    ),
]


def _check_http_method(value: Any) -> Any:
    # ASCII only: "optıons".upper() is "OPTIONS" (dotless i)
    return value.upper() if isinstance(value, str) and value.isascii() else value


def any_case(word: str) -> str:
    """A regular expression for `word` in any letter case (JSON Schema has no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


_METHODS = [m for m in get_args(HttpMethod) if m != "*"]
METHOD = TextRule("|".join([*(any_case(m) for m in _METHODS), r"\*"]))
REQUEST = TextRule(
    rf" *(?:{'|'.join(any_case(m) for m in _METHODS)}) +/[^ ]* *"
    # an L4 test: tcp/5432 (or 5432/tcp)
    rf"| *{PROTOCOL}/{PORT_NUMBER} *| *{PORT_NUMBER}/{PROTOCOL} *"
)

Method = Annotated[
    HttpMethod,
    BeforeValidator(_check_http_method),
    WithJsonSchema(METHOD.schema("an HTTP method (any letter case), or * for any")),
]


# nginx refuses a config parameter over 4 KB, and its renderer escapes every punctuation
# character of a path (up to twice the length): with the rest of a rule this keeps every
# rendered parameter of every proxy well inside its limits (meshops.render.limits).
MAX_PATH_PATTERN = 1024
# RFC 3986 path characters every proxy compares literally: unreserved, and the
# sub-delims other than ';' (path parameters, refused by every proxy) and "'"
_PATH_CHARS = "A-Za-z0-9/._~!$&()+,=:@-"  # (no escapes: ECMA-262's unicode mode)
_PATH_CHAR = re.compile(f"[{_PATH_CHARS}]")
PATH_PATTERN = TextRule(rf"\*|(?=[^\n]{{1,{MAX_PATH_PATTERN}}}$)/[{_PATH_CHARS}]*\*?")


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


PathPattern = Annotated[
    str,
    AfterValidator(_check_path_pattern),
    WithJsonSchema(
        PATH_PATTERN.schema("an exact path (/healthz), a prefix (/v1/*) or * for every path")
    ),
]


_PORT = PORT_NUMBER
ENDPOINT = TextRule(
    rf" *(?:{IPV4.body}"
    # a DNS name, never one of only digits and dots (a mistyped IPv4 address)
    rf"|(?![0-9.]+:)(?=[^:]{{1,253}}\.?:){_ANY_CASE_LABEL}(?:\.{_ANY_CASE_LABEL})*\.?"
    rf"|\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]):{_PORT} *"
)


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
        text = value.strip(" ")
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
                host = _check_domain(host)
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port must be a number from 1 to 65535, got {port_text!r}")
        if not ENDPOINT.matches(value):  # what the checks above let through, e.g. a zone
            raise ValueError(f"expected host:port such as 192.0.2.11:51820, got {value!r}")
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
        return ENDPOINT.schema(
            "host:port, the host an IPv4 address, a DNS name or [an IPv6 address]",
            examples=["192.0.2.11:51820"],
        )


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


# the shape of a recipient; the loader also checks the checksum and the key inside
RECIPIENT = TextRule(
    r" *(?:age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}"
    r"|ssh-(?:ed25519|rsa) +[A-Za-z0-9+/]+={0,2}(?: +[^\x00-\x1f\x7f-\x9f]*)?) *"
)


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
        text = value.strip(" ")
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
        return RECIPIENT.schema(
            "an age X25519 recipient (age1...) or an SSH public key (ssh-ed25519 or ssh-rsa)"
        )


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
