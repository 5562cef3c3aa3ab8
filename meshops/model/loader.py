"""Load mesh.yaml keeping every value's line and column, and reject what YAML allows
silently but people never mean (duplicate keys) or what can hurt (alias bombs, depth).

The composed node tree is converted by hand so that each value's position is recorded
under its path (`("nodes", "web-1", "endpoint")`); validation errors from pydantic
and from the semantic checks are then located by path.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from meshops.errors import Location, MeshError, Problem, ValidationFailed

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

PathKey = tuple[str | int, ...]

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
# Values produced, aliases expanded: bounds a "billion laughs", and what a big file
# costs. A 5,000-node mesh has about 35,000; each costs the loader ~10 us and ~500 bytes.
MAX_VALUES = 500_000
# Composing builds every node before the values can be counted (~6 us, ~300 bytes
# each): a 16 MiB flow list of numbers would take a minute and gigabytes. A file this
# big (a 2,000-node mesh) has its nodes counted first, in one streaming pass.
COUNT_NODES_ABOVE = 256 * 1024

try:  # the C composer is several times faster on large meshes
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

_SURROGATE = re.compile("[\ud800-\udfff]")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass
class Document:
    """Plain data from a YAML file plus where each value came from.

    Positions are kept as bare (line, column) pairs and turned into `Location`s only
    when a message needs one: a 1,000-node mesh has over 6,000 of them.
    """

    name: str
    data: Any
    spots: dict[PathKey, tuple[int, int]] = field(default_factory=dict)  # 1-based

    @cached_property
    def marks(self) -> dict[PathKey, Location]:
        """Every recorded position, by path."""
        return {path: Location(self.name, *spot) for path, spot in self.spots.items()}

    def locate(self, path: Iterable[str | int]) -> Location | None:
        """The location of the value at `path`, or of its nearest located ancestor."""
        key = tuple(path)
        while True:
            spot = self.spots.get(key)
            if spot is not None:
                return Location(self.name, *spot)
            if not key:
                return None
            key = key[:-1]

    def problem(self, path: Iterable[str | int], message: str) -> Problem:
        key = tuple(path)
        return Problem(self.locate(key), format_path(key), shorten(message))


MAX_MESSAGE = 500
_LONG_RUN = re.compile(r"\S{120,}")


def shorten(message: str) -> str:
    """Keep a message about a huge value readable: messages quote the value, and a
    hostile file can hold a 16 MB one."""
    if len(message) <= MAX_MESSAGE:
        return message
    message = _LONG_RUN.sub(
        lambda m: f"{m.group()[:60]}... ({len(m.group()):,} characters)", message
    )
    if len(message) > 4 * MAX_MESSAGE:
        message = message[: 4 * MAX_MESSAGE] + f"... ({len(message):,} characters)"
    return message


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            out += ("." if out else "") + (text if text.isprintable() else repr(text))
    return out


_SCALAR_TAGS = frozenset("tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null"))
_TEXT_TAGS = frozenset(("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"))
_COLLECTION_TAGS = frozenset(
    (_MAP_TAG, _SEQ_TAG, "tag:yaml.org,2002:set", "tag:yaml.org,2002:omap")
)


_CONTROL_NAMES = {"\n": "LINE FEED", "\t": "TAB", "\r": "CARRIAGE RETURN", "\x1b": "ESCAPE"}


def unprintable(text: str) -> str:
    """Why `text` is refused: it holds a character that is not printable text.

    Every value in mesh.yaml ends up in certificates, configs, commands or in what a
    reviewer reads; a newline, an escape code or a right-to-left override there can
    hide or forge what follows, so one line of printable text is the rule for all.
    """
    bad = next(c for c in text if not c.isprintable())
    name = unicodedata.name(bad, "") or _CONTROL_NAMES.get(bad, "a control character")
    return shorten(
        f"{text!r} contains U+{ord(bad):04X} ({name}): values in mesh.yaml are one line "
        "of printable text"
    )


def _refuse(location: Location, message: str) -> ValidationFailed:
    return ValidationFailed([Problem(location, "", shorten(message))])


class _Converter:
    """Composed YAML nodes -> plain data, recording each value's (line, column)."""

    def __init__(self, name: str):
        self.name = name
        self.spots: dict[PathKey, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.scalars = yaml.constructor.SafeConstructor()

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def check_size(self, root: yaml.Node, *, aliases: bool = True) -> None:
        """Refuse alias bombs, recursive aliases and deep nesting before expanding.

        Aliases share composed nodes, so the expanded size of every node is computed
        once (memoized by identity): linear in the file, however many times the
        aliases multiply it. A document without anchors is a plain tree: one
        iterative pass checks its depth, in the same order.
        """
        if not aliases and self._tree_within_limits(root):
            return
        sizes: dict[int, int] = {}
        open_nodes: set[int] = set()

        def size(node: yaml.Node, depth: int) -> int:
            key = id(node)
            if key in sizes:
                return sizes[key]
            if key in open_nodes:
                raise _refuse(self.loc(node), "an alias refers to a node that contains it")
            if depth > MAX_DEPTH:
                raise _refuse(self.loc(node), f"nesting deeper than {MAX_DEPTH} levels")
            open_nodes.add(key)
            total = 1
            if isinstance(node, yaml.MappingNode):
                total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                total += sum(size(item, depth + 1) for item in node.value)
            open_nodes.discard(key)
            if total > MAX_VALUES:
                raise _refuse(
                    self.loc(node),
                    f"the document expands to more than {MAX_VALUES:,} values "
                    "(aliases nested too deeply?); refusing to load it",
                )
            sizes[key] = total
            return total

        size(root, 0)

    def _tree_within_limits(self, root: yaml.Node) -> bool:
        """Depth-check a tree in pre-order (raising as `check_size` would); False when
        it holds too many values, so `check_size` names the node as it always has."""
        stack: list[tuple[yaml.Node, int]] = [(root, 0)]
        count = 0
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise _refuse(self.loc(node), f"nesting deeper than {MAX_DEPTH} levels")
            count += 1
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in reversed(node.value):
                    stack.append((value_node, depth + 1))
                    stack.append((key_node, depth + 1))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((item, depth + 1) for item in reversed(node.value))
        return count <= MAX_VALUES

    def convert(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _refuse(self.loc(node), f"nesting deeper than {MAX_DEPTH} levels")
        if path not in self.spots:
            mark = node.start_mark
            self.spots[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            raise _refuse(self.loc(node), f"unsupported YAML tag {node.tag}")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]

    def scalar(self, node: yaml.Node, path: PathKey = ()) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return None  # a collection used as a key; reported by the caller
        tag = node.tag
        if tag == _STR_TAG or tag in _TEXT_TAGS:
            text = str(node.value)  # what the constructor would return, without its detour
            if not text.isprintable():
                where = format_path(path)
                self.problems.append(Problem(self.loc(node), where, unprintable(text)))
            return text  # (dates are strings in mesh.yaml)
        if tag not in _SCALAR_TAGS:
            raise _refuse(self.loc(node), f"unsupported YAML tag {tag}")
        try:
            return self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            raise _refuse(
                self.loc(node), f"{node.value!r} is not a valid {tag.rsplit(':', 1)[-1]}"
            ) from None

    def mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: dict[str, tuple[int, int]] = {}
        merged: dict[str, Any] = {}
        spots = self.spots
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self.merge_source(value_node, path, depth))
                continue
            key = self.scalar(key_node, (*path, str(getattr(key_node, "value", ""))))
            if not isinstance(key, str | int | float) or isinstance(key, bool):
                shown = key if isinstance(key_node, yaml.ScalarNode) else "(a collection)"
                self.problems.append(
                    Problem(self.loc(key_node), format_path(path), f"unsupported key {shown!r}")
                )
                continue
            key = str(key)
            mark = key_node.start_mark
            where = (mark.line + 1, mark.column + 1)
            if key in explicit:
                self.problems.append(
                    Problem(
                        Location(self.name, *where),
                        format_path((*path, key)),
                        f"duplicate key {key!r} (first defined at line {explicit[key][0]}); "
                        "YAML would silently keep only the last one",
                    )
                )
                continue
            explicit[key] = where
            child = (*path, key)
            spots[child] = where
            result[key] = self.convert(value_node, child, depth + 1)
        if merged:
            for key, value in merged.items():
                result.setdefault(key, value)
            for key, where in explicit.items():  # a merge must not relocate explicit keys
                spots[(*path, key)] = where
        return result

    def merge_source(self, node: yaml.Node, path: PathKey, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                raise _refuse(self.loc(source), "'<<' merges only mappings")
            merged.update(self.mapping(source, path, depth + 1))
        return merged


def parse_yaml(content: bytes | str, name: str) -> Document:
    """Parse YAML text into a located Document, or raise ValidationFailed / MeshError."""
    if isinstance(content, bytes):
        if len(content) > MAX_BYTES:
            raise MeshError(f"{name}: file is larger than the limit of {MAX_BYTES:,} bytes")
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = content[: exc.start].count(b"\n") + 1
            col = exc.start - (content.rfind(b"\n", 0, exc.start) + 1) + 1
            where_bytes = Location(name, line, col)
            raise ValidationFailed(
                [Problem(where_bytes, "", f"not valid UTF-8 (byte 0x{content[exc.start]:02x})")]
            ) from None
    else:
        text = content
        bad = _SURROGATE.search(text)
        if bad:  # lone surrogates cannot be encoded for the YAML parser
            at = _text_location(name, text, bad.start())
            raise ValidationFailed([Problem(at, "", "not valid Unicode (a lone surrogate)")])
    if len(text) > MAX_BYTES:
        raise MeshError(f"{name}: file is larger than the limit of {MAX_BYTES:,} bytes")
    try:
        if len(text) > COUNT_NODES_ABOVE:
            _refuse_too_many_nodes(text, name)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise ValidationFailed([_syntax_problem(exc, name)]) from None
    except yaml.reader.ReaderError as exc:
        at = _text_location(name, text, exc.position)
        shown = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise ValidationFailed(
            [Problem(at, "", f"control character {shown} is not allowed in YAML")]
        ) from None
    except yaml.YAMLError as exc:
        raise ValidationFailed([Problem(None, "", f"{name}: YAML error: {exc}")]) from None
    except RecursionError:
        raise MeshError(f"{name}: nesting too deep to parse") from None
    if node is None:
        raise ValidationFailed([Problem(Location(name, 1, 1), "", EMPTY)])
    converter = _Converter(name)
    try:
        converter.check_size(node, aliases="&" in text)  # no anchor, no alias
        data = converter.convert(node, (), 0)
    except RecursionError:
        raise MeshError(f"{name}: nesting too deep to load") from None
    if converter.problems:
        raise ValidationFailed(converter.problems)
    return Document(name, data, converter.spots)


EMPTY = (
    "the file is empty (or only comments); a minimal mesh.yaml holds `version: 1` and "
    "`mesh:` with `name`, `trust_domain` and `domain`; then `nodes:`, `identities:` and "
    "`policies:` (`meshops init` writes a commented example)"
)


def _syntax_problem(exc: yaml.MarkedYAMLError, name: str) -> Problem:
    """PyYAML's error, located where it broke and naming where the construct it was
    reading started: an unclosed `[` breaks lines later, and the bracket is what to fix."""
    mark = exc.problem_mark or exc.context_mark
    where = Location(name, mark.line + 1, mark.column + 1) if mark else None
    start = exc.context_mark
    if exc.context and exc.problem and start is not None and start is not exc.problem_mark:
        message = (
            f"{exc.problem}, {exc.context} that starts at line {start.line + 1}, "
            f"column {start.column + 1}"
        )
    else:
        message = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
    return Problem(where, "", f"YAML syntax error: {message}")


_NODE_EVENTS = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)


def _refuse_too_many_nodes(text: str, name: str) -> None:
    """Count the nodes from the parser's events, which are not kept, and refuse a file
    with more than MAX_VALUES before composing (and keeping) any of them."""
    loader = _Loader(text)
    try:
        count = 0
        next_event: Any = loader.get_event  # untyped in the stubs
        while loader.check_event():
            event = next_event()
            if isinstance(event, _NODE_EVENTS):
                count += 1
                if count > MAX_VALUES:
                    mark = event.start_mark
                    where = Location(name, mark.line + 1, mark.column + 1) if mark else None
                    raise ValidationFailed(
                        [
                            Problem(
                                where,
                                "",
                                f"the document has more than {MAX_VALUES:,} values; "
                                "refusing to load it",
                            )
                        ]
                    )
    finally:
        loader.dispose()


def _text_location(name: str, text: str, index: int) -> Location:
    line = text.count("\n", 0, index) + 1
    return Location(name, line, index - (text.rfind("\n", 0, index) + 1) + 1)


def read_document(path: Path, display: str | None = None) -> Document:
    """Read and parse a YAML file, with errors naming it as the user did."""
    name = display or str(path)
    try:
        with path.open("rb") as fh:
            content = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise MeshError(
            f"{name}: no such file", hint="run `meshops init` to create one, or pass -f FILE"
        ) from None
    except IsADirectoryError:
        raise MeshError(f"{name}: is a directory, expected a mesh.yaml file") from None
    except OSError as exc:
        raise MeshError(f"{name}: cannot read: {exc.strerror}") from None
    return parse_yaml(content, name)


# -- pydantic errors, located ---------------------------------------------------


def validate_document(doc: Document, model: type[M], top_level: str) -> M:
    """`doc` as an instance of the pydantic `model`; ValidationFailed with located
    problems otherwise (`top_level`: what to say when the document is no mapping)."""
    from pydantic import ValidationError

    if not isinstance(doc.data, dict):
        raise ValidationFailed([doc.problem((), top_level)])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_problems(doc, exc, model)) from None


def pydantic_problems(doc: Document, error: Any, model: type[Any]) -> list[Problem]:
    """Turn a pydantic ValidationError into located, readable problems."""
    problems = []
    for err in error.errors(include_url=False):
        path = _data_path(doc.data, err["loc"])
        problems.append(doc.problem(path, _message(err, path, model)))
    return problems


def _data_path(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """Keep only the parts of a pydantic `loc` that name real keys and indexes.

    pydantic inserts union member names ("list[str]", "function-plain[...]") into
    `loc`; users should see the path in their file.
    """
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if part == "[key]":  # pydantic marks an invalid mapping key; the key itself is named
            continue
        if isinstance(current, dict) and str(part) in current:
            path.append(str(part))
            current = current[str(part)]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            path.append(part)
            current = current[part]
        elif isinstance(current, dict) and i == len(loc) - 1 and isinstance(part, str):
            path.append(part)  # a missing or unknown field: name it
    return tuple(path)


def _message(err: dict[str, Any], path: PathKey, model: type[Any]) -> str:
    kind = err["type"]
    msg: str = err["msg"]
    field_name = path[-1] if path else ""
    if kind == "missing":
        return f"missing required field {field_name!r}"
    if kind == "extra_forbidden":
        known = _fields_at(model, path[:-1])
        close = difflib.get_close_matches(str(field_name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        allowed = f" (allowed: {', '.join(sorted(known))})" if known and not close else ""
        return f"unknown field {field_name!r}{hint}{allowed}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    value = err.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(value, dict | list):
        msg = f"{msg}, got {value!r}"
    return msg


def _fields_at(model: type[Any], path: PathKey) -> list[str]:
    """The field names a pydantic model accepts at `path` (for did-you-mean hints)."""
    from pydantic import BaseModel

    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if info is None:
                return []
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
