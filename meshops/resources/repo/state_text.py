"""state.yaml's text, written without PyYAML's representer.

PyYAML represents data in pure Python (its C part only emits): about 0.3 s for a
1,000-node state.yaml, once per apply. state.yaml holds plain data (mappings with
string keys, lists, strings, numbers, booleans, null), so it is written directly, in
the block style PyYAML uses (indentless lists, single quotes where a plain scalar
would read as something else), and any YAML loader reads back the same data.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import yaml

# a plain scalar can hold these, and does not start with an indicator or end in ":"
_PLAIN = re.compile(r"[A-Za-z0-9_.+/=][A-Za-z0-9_.+/=:@-]*(?<!:)\Z")
_STR_TAG = "tag:yaml.org,2002:str"
# first characters of every implicit (non-string) scalar YAML 1.1 knows: bool, null,
# int, float, timestamp, merge, value; a plain scalar starting otherwise is a string
_MAY_RESOLVE = frozenset("yYnNtTfFoO~-+0123456789.<=")


def emit(data: dict[str, Any]) -> str:
    """Block-style YAML for `data`."""
    out: list[str] = []
    _mapping(data, 0, out)
    return "\n".join(out) + "\n" if out else "{}\n"


def _mapping(data: dict[str, Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, value in data.items():
        if not isinstance(key, str):
            raise TypeError(f"state.yaml keys are strings, not {key!r}")
        head = f"{pad}{_key(key)}:"
        if isinstance(value, dict) and value:
            out.append(head)
            _mapping(value, indent + 2, out)
        elif isinstance(value, list) and value:
            out.append(head)
            _sequence(value, indent, out)
        else:
            out.append(f"{head} {_scalar(value)}")


def _sequence(items: list[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            lines: list[str] = []
            _mapping(item, indent + 2, lines)
            lines[0] = f"{pad}- {lines[0][indent + 2 :]}"
            out.extend(lines)
        elif isinstance(item, list) and item:
            out.append(f"{pad}-")
            _sequence(item, indent + 2, out)
        else:
            out.append(f"{pad}- {_scalar(item)}")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"state.yaml holds no {value}")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict | list) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    raise TypeError(f"state.yaml holds plain data, not {type(value).__name__}")


@functools.lru_cache(maxsize=4096)
def _key(text: str) -> str:
    """A mapping key (the same few field names, a thousand times over)."""
    return _string(text)


def _string(text: str) -> str:
    if _PLAIN.match(text) and _reads_as_string(text):
        return text
    if text.isprintable() and "'" not in text and text.strip() == text:
        return f"'{text}'"
    return _double_quoted(text)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_PRINTABLE = re.compile("[\\x20-\\x7e\\xa0-\\ud7ff\\ue000-\\ufffd\\U00010000-\\U0010ffff]")


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar: what YAML may not hold raw, escaped by code point."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _PRINTABLE.match(char) and char != "\ufeff":
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")  # fmt: skip
    return '"' + "".join(out) + '"'


@functools.lru_cache(maxsize=1)
def _resolver() -> yaml.resolver.Resolver:
    return yaml.resolver.Resolver()


def _reads_as_string(text: str) -> bool:
    """True when a loader reads `text`, unquoted, as a string (not a number, a date,
    a boolean or null): the same check PyYAML makes before writing a plain scalar."""
    if text[0] not in _MAY_RESOLVE:
        return True
    tag = _resolver().resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == _STR_TAG)
