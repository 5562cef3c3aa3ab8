"""The error family every user-facing failure belongs to.

A `MeshError` carries a message written for the user (what went wrong, where, what to
do) and optional `detail` for developers. The CLI prints `str(error)` on stderr and
exits 1; `--debug` adds the traceback. Anything that is not a MeshError reaching the
CLI is a bug and is reported as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """A place in a source file: 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class MeshError(Exception):
    """An error caused by input or environment, with a message meant for the user."""

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


@dataclass(frozen=True)
class Problem:
    """One located problem in a mesh file (a validation error)."""

    location: Location | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        field_path = f"{self.path}: " if self.path else ""
        return f"{where}{field_path}{self.message}"


@dataclass
class ValidationFailed(MeshError):
    """mesh.yaml failed to load or validate; carries every problem found."""

    problems: list[Problem] = field(default_factory=list)

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        count = len(problems)
        head = "\n".join(str(p) for p in problems)
        noun = "problem" if count == 1 else "problems"
        MeshError.__init__(self, f"{head}\n{count} {noun} found")

    def __str__(self) -> str:
        return self.message


class SecretError(MeshError):
    """A secret could not be sealed or unsealed."""


class LockHeld(MeshError):
    """Another apply holds the lock for this scope."""


class PlanRefused(MeshError):
    """A saved plan no longer applies (state moved, expired, wrong scope)."""


class CommandFailed(MeshError):
    """An external command (proxy check, reload hook, wireguard-go) failed."""
