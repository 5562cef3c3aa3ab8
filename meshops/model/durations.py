"""Go-style durations (`90s`, `16h`, `1h30m`) and `renew_before` (a duration or `33%`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# ASCII digits only: `\d` also takes other scripts' digits, which float() reads too
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
DURATION_BODY = r"0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|ms|s|m|h))+"
# a percentage strictly between 0% and 100%
PERCENT_BODY = r"(?!0*(?:\.0*)?%)0*[0-9]{1,2}(?:\.[0-9]+)?%"
_PERCENT = re.compile(PERCENT_BODY)


def _pattern(body: str) -> str:
    """A JSON Schema pattern matching `body` whole (see model.types.TextRule)."""
    return rf"^(?:{body})$(?!\n)"


# Go's time.Duration is int64 nanoseconds: about 2,562,047 hours.
MAX_SECONDS = (2**63 - 1) / 1e9


def parse_duration(text: str) -> float:
    """Parse a Go duration into seconds; raise ValueError with a readable message."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as 90s, 16h or 720h, got {text!r}")
    s = text
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"expected a duration such as 90s, 16h or 720h, got {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f"expected a duration such as 90s, 16h or 720h, got {text!r}")
    if not total <= MAX_SECONDS:  # also catches inf from absurdly long numbers
        raise ValueError(f"duration {_short(s)} is too long; the most is 2562047h")
    return total


def _short(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:20] + "...")


def format_duration(seconds: float) -> str:
    """Render seconds the way people write them in mesh.yaml (`720h`, `1h30m`, `90s`)."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds != seconds or seconds == float("inf"):
        return str(seconds)
    whole = int(seconds)
    if whole != seconds:
        # the shortest text that reads back as exactly this float, never in e-notation
        return f"{Decimal(repr(seconds)):f}s"
    if whole == 0:
        return "0s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs:
        parts.append(f"{secs}s")
    return "".join(parts)


class Duration(float):
    """A length of time in seconds, written in mesh.yaml as a Go duration."""

    @property
    def timedelta(self) -> timedelta:
        return timedelta(seconds=float(self))

    def __str__(self) -> str:
        return format_duration(float(self))

    def __repr__(self) -> str:
        return f"Duration({format_duration(float(self))!r})"

    @classmethod
    def parse(cls, value: Any) -> Duration:
        if isinstance(value, Duration):
            return value
        return cls(parse_duration(value))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": _pattern(DURATION_BODY),
            "description": "a Go duration such as 90s, 16h or 1h30m (at most 2562047h)",
            "$comment": "a Go duration such as 90s, 16h or 1h30m (at most 2562047h)",
            "examples": ["90s", "16h", "720h"],
        }


@dataclass(frozen=True)
class RenewBefore:
    """When to renew: a fixed time before expiry, or a fraction of the lifetime."""

    seconds: float | None = None
    fraction: float | None = None

    def before_expiry(self, ttl_seconds: float) -> float:
        """Seconds before expiry at which a certificate of this lifetime is due."""
        if self.fraction is not None:
            return ttl_seconds * self.fraction
        assert self.seconds is not None
        return self.seconds

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{self.fraction * 100:g}%"
        assert self.seconds is not None
        return format_duration(self.seconds)

    @classmethod
    def parse(cls, value: Any) -> RenewBefore:
        if isinstance(value, RenewBefore):
            return value
        if isinstance(value, str) and value.endswith("%"):
            if not _PERCENT.fullmatch(value):
                raise ValueError(
                    f"expected a percentage between 0% and 100% such as 33%, got {value!r}"
                )
            return cls(fraction=float(value[:-1]) / 100)
        try:
            return cls(seconds=parse_duration(value))
        except ValueError:
            raise ValueError(
                f"expected a duration such as 16h or a percentage such as 33%, got {value!r}"
            ) from None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": _pattern(f"{PERCENT_BODY}|{DURATION_BODY}"),
            "description": "a Go duration before expiry (16h), or a share of the lifetime (33%)",
            "$comment": "a Go duration before expiry (16h), or a share of the lifetime (33%)",
            "examples": ["33%", "16h"],
        }
