"""state.yaml's text, written without PyYAML's representer and read back without its
composer.

PyYAML represents data in pure Python (its C part only emits): about 0.3 s for a
1,000-node state.yaml, once per apply. state.yaml holds plain data (mappings with
string keys, lists, strings, numbers, booleans, null), so it is written directly, in
the block style PyYAML uses (indentless lists, single quotes where a plain scalar
would read as something else), and any YAML loader reads back the same data.

Reading it back with the C loader still takes about 0.15 s at 1,000 nodes (a host's
first apply, every apply after state/ changed), so `read` reads what `emit` writes,
line by line, in a tenth of that; anything else (a hand edit, another style, a float)
is left to a YAML loader.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    import yaml  # deferred: a host plan reads state.yaml from its parse cache

    return yaml.resolver.Resolver()


def _reads_as_string(text: str) -> bool:
    """True when a loader reads `text`, unquoted, as a string (not a number, a date,
    a boolean or null): the same check PyYAML makes before writing a plain scalar."""
    if text[0] not in _MAY_RESOLVE:
        return True
    from yaml import ScalarNode

    tag = _resolver().resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == _STR_TAG)


# -- reading back what `emit` wrote ----------------------------------------------------


class _NotEmitted(Exception):
    """The text is not in the form `emit` writes: a YAML loader must read it."""


_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_HEX_LENGTH = {"x": 2, "u": 4, "U": 8}


def read(text: str) -> Any | None:
    """The data `emit` wrote as `text` (comment lines before it allowed), or None when
    `text` is not in that form: a YAML loader then gives the same answer, slower."""
    lines = text.split("\n")
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    if lines[-1] != "":
        return None
    lines = lines[start:-1]
    if lines == ["{}"]:
        return {}
    indents = [len(line) - len(line.lstrip(" ")) for line in lines]
    if any(depth == len(line) for depth, line in zip(indents, lines, strict=True)):
        return None  # a blank line: `emit` writes none
    try:
        data, end = _read_mapping(lines, indents, 0, 0)
    except _NotEmitted:
        return None
    return data if end == len(lines) and lines else None


def _read_mapping(
    lines: list[str], indents: list[int], at: int, indent: int
) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    count = len(lines)
    while at < count and indents[at] == indent:
        body = lines[at][indent:]
        if body[0] == "-":
            break
        key, rest = _split_key(body)
        if key in out:
            raise _NotEmitted
        at += 1
        if rest:
            out[key] = _read_scalar(rest)
        elif at < count and indents[at] == indent and lines[at][indent] == "-":
            out[key], at = _read_sequence(lines, indents, at, indent)
        elif at < count and indents[at] == indent + 2:
            out[key], at = _read_mapping(lines, indents, at, indent + 2)
        else:
            raise _NotEmitted  # `emit` writes an empty value as {} or []
    if not out:
        raise _NotEmitted
    return out, at


def _read_sequence(
    lines: list[str], indents: list[int], at: int, indent: int
) -> tuple[list[Any], int]:
    out: list[Any] = []
    item: Any
    while at < len(lines) and indents[at] == indent and lines[at][indent] == "-":
        body = lines[at][indent + 1 :]
        if not body:  # a list in a list
            item, at = _read_sequence(lines, indents, at + 1, indent + 2)
        elif body[0] != " " or body[:2] == "  ":
            raise _NotEmitted
        elif _is_key_line(body[1:]):  # a mapping in a list: its first key on the dash line
            lines[at] = " " * (indent + 2) + body[1:]
            indents[at] = indent + 2
            item, at = _read_mapping(lines, indents, at, indent + 2)
        else:
            item, at = _read_scalar(body[1:]), at + 1
        out.append(item)
    return out, at


def _is_key_line(body: str) -> bool:
    try:
        _split_key(body)
    except _NotEmitted:
        return False
    return True


def _split_key(body: str) -> tuple[str, str]:
    """`key: value` or `key:` -> (key, value text or "")."""
    if body[0] in "'\"":
        end = _quoted_end(body)
        key, after = _read_scalar(body[:end]), body[end:]
        if not isinstance(key, str):
            raise _NotEmitted
    else:
        cut = body.find(": ")
        key = body[:cut] if cut >= 0 else body[:-1]
        after = body[len(key) :]
        if not _plain_key(key):
            raise _NotEmitted
    if after == ":":
        return key, ""
    if after[:2] != ": " or len(after) == 2:
        raise _NotEmitted
    return key, after[2:]


@functools.lru_cache(maxsize=4096)
def _plain_key(text: str) -> bool:
    """A key `emit` writes unquoted (the same few field names, a thousand times over)."""
    return bool(_PLAIN.match(text)) and _reads_as_string(text)


def _quoted_end(body: str) -> int:
    """The index just past the quoted scalar `body` starts with."""
    quote = body[0]
    at = 1
    while at < len(body):
        char = body[at]
        if char == quote:
            return at + 1
        at += 2 if char == "\\" and quote == '"' else 1
    raise _NotEmitted


def _read_scalar(text: str) -> Any:
    first = text[:1]
    if first == "'":
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != "'" or "'" in inner or not inner.isprintable():
            raise _NotEmitted
        return inner
    if first == '"':
        if _quoted_end(text) != len(text):
            raise _NotEmitted
        return _unescape(text[1:-1])
    if text in ("{}", "[]"):
        return {} if text == "{}" else []
    if _INT.match(text):
        return int(text)
    if text in _WORDS:
        return _WORDS[text]
    if not _PLAIN.match(text) or not _reads_as_string(text):
        raise _NotEmitted  # a float, a date, `yes`...: as a YAML loader reads them
    return text


_WORDS: dict[str, Any] = {"null": None, "true": True, "false": False}


def _unescape(inner: str) -> str:
    out = []
    at = 0
    while at < len(inner):
        char = inner[at]
        if char != "\\":
            out.append(char)
            at += 1
            continue
        code = inner[at + 1 : at + 2]
        if code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            at += 2
        elif code in _HEX_LENGTH:
            digits = inner[at + 2 : at + 2 + _HEX_LENGTH[code]]
            if len(digits) != _HEX_LENGTH[code] or not all(c in "0123456789abcdef" for c in digits):
                raise _NotEmitted
            out.append(chr(int(digits, 16)))
            at += 2 + len(digits)
        else:
            raise _NotEmitted
    return "".join(out)
