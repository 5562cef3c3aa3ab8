"""`5432/tcp`: a plain L4 port, as identities expose it and policies allow it.

Kept apart from `types.py` (and free of pydantic imports) because the access table,
which the fast paths import, holds ports too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")
# the same rules as patterns, for the JSON Schema: 1-65535 (leading zeros allowed), any case
PORT_NUMBER = (
    r"0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
PROTOCOL = r"(?:[Tt][Cc][Pp]|[Uu][Dd][Pp])"


@dataclass(frozen=True, order=True)
class Port:
    """A plain L4 port on the overlay: `5432/tcp`, `53/udp` (the protocol is required)."""

    number: int
    protocol: Protocol

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"

    @property
    def request(self) -> str:
        """How a policy test names a connection to this port: `tcp/5432`."""
        return f"{self.protocol}/{self.number}"

    @classmethod
    def parse(cls, value: Any) -> Port:
        if isinstance(value, Port):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a port such as 5432/tcp, got {value!r}")
        number, sep, protocol = value.strip().partition("/")
        if not sep or protocol.lower() not in PROTOCOLS:
            raise ValueError(f"expected PORT/tcp or PORT/udp such as 5432/tcp, got {value!r}")
        return cls(_port_number(number, value), "tcp" if protocol.lower() == "tcp" else "udp")

    @classmethod
    def parse_request(cls, value: str) -> Port | None:
        """A policy test's L4 request, `tcp/5432` (or `5432/tcp`); None when it is not one."""
        left, sep, right = value.strip().partition("/")
        if not sep or " " in value.strip():
            return None
        if left.lower() in PROTOCOLS:
            return cls(_port_number(right, value), "tcp" if left.lower() == "tcp" else "udp")
        if right.lower() in PROTOCOLS:
            return cls.parse(value)
        return None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": rf"^(?: *{PORT_NUMBER}/{PROTOCOL} *)$(?!\n)",  # see model.types.TextRule
            "description": "PORT/tcp or PORT/udp",
            "$comment": "PORT/tcp or PORT/udp, the port from 1 to 65535",
            "examples": ["5432/tcp", "53/udp"],
        }


def _port_number(text: str, value: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return int(text)
