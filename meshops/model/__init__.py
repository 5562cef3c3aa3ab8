"""mesh.yaml v1: models, the located loader and semantic checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from meshops.errors import ValidationFailed

if TYPE_CHECKING:
    from meshops.model.loader import Document
    from meshops.model.mesh import Mesh
    from meshops.policy import AccessTable


@dataclass
class Loaded:
    """A mesh that passed validation, with its source for locating later messages."""

    mesh: Mesh
    parsed: Document | None = None
    source: tuple[bytes, str] | None = field(default=None, repr=False)  # (text, name)

    @classmethod
    def unparsed(cls, mesh: Mesh, text: bytes, name: str) -> Loaded:
        """A mesh validated earlier (a cache of it): the text is parsed for positions
        only if a message needs them."""
        return cls(mesh, None, (text, name))

    @property
    def document(self) -> Document:
        if self.parsed is None:
            from meshops.model.loader import parse_yaml

            assert self.source is not None
            self.parsed = parse_yaml(*self.source)
        return self.parsed

    @cached_property
    def access(self) -> AccessTable:
        from meshops.model.checks import access_table

        return access_table(self.mesh)


def from_document(doc: Document, *, run_tests: bool = True) -> Loaded:
    """Validate a parsed document: schema, semantic checks, then policy tests."""
    from meshops.model.checks import access_table, semantic_problems, test_problems
    from meshops.model.loader import validate_document
    from meshops.model.mesh import Mesh

    mesh = validate_document(doc, Mesh, "the top level must be a mapping")
    problems = semantic_problems(mesh, doc)
    if problems:
        raise ValidationFailed(problems)
    loaded = Loaded(mesh, doc)
    if run_tests:
        failures = test_problems(mesh, doc, access_table(mesh))
        if failures:
            raise ValidationFailed(failures)
    return loaded


def load_file(path: Path, display: str | None = None, *, run_tests: bool = True) -> Loaded:
    from meshops.model.loader import read_document

    return from_document(read_document(path, display), run_tests=run_tests)


def load_text(content: str | bytes, name: str = "mesh.yaml", *, run_tests: bool = True) -> Loaded:
    from meshops.model.loader import parse_yaml

    return from_document(parse_yaml(content, name), run_tests=run_tests)


def __getattr__(name: str) -> object:
    if name == "Document":  # the YAML loader is imported only when something parses
        from meshops.model.loader import Document

        return Document
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Document", "Loaded", "from_document", "load_file", "load_text"]
