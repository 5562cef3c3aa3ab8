"""The resource protocol: an address, a read of live state, a pure plan, an apply.

Adding a resource kind means writing one class in `meshops/resources/`; the engine only
sees this interface.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from meshops.engine.plan import Change

if TYPE_CHECKING:
    from pathlib import Path

    from meshops.engine.runtime import Runtime

L = TypeVar("L")


@dataclass(frozen=True)
class Observed(Generic[L]):
    """What `read` saw: the live value (None when absent) and a fingerprint of it.

    The fingerprint feeds the plan's live-state fingerprint, so it must change whenever
    anything the plan depends on changes, and must never reveal a secret (hash it).
    """

    value: L | None
    fingerprint: str


# one encoder for every call: json.dumps with options builds a new one each time,
# which showed up in a 1,000-node no-op plan
_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


def fingerprint_of(*parts: Any) -> str:
    """A stable short hash of public, JSON-able parts (or bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            digest.update(hashlib.sha256(part).digest())
        else:
            digest.update(_ENCODER.encode(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


class Resource(ABC, Generic[L]):
    """One managed thing. Subclasses set `address` and `depends_on` in __init__."""

    address: str
    depends_on: tuple[str, ...] = ()
    # files on the host this resource writes (meshops' own; anything else is removed
    # from its record, and the disk, when no resource names it any more)
    owns: tuple[Path, ...] = ()

    # a follower (a hook) runs when any change it follows was made, even if another
    # failed; everything else needs all of its dependencies to succeed
    runs_after_any: bool = False

    def security_first(self, change: Change) -> bool:
        """Whether `change` closes a door (a revoked peer's removal, a new CRL or
        trust bundle) and goes before other changes that are ready."""
        return False

    @abstractmethod
    def read(self, rt: Runtime) -> Observed[L]:
        """Read the live value. I/O allowed, changes forbidden."""

    @abstractmethod
    def plan(self, observed: Observed[L], rt: Runtime) -> Change:
        """Compare the desired value with what was observed; no I/O."""

    @abstractmethod
    def apply(self, change: Change, rt: Runtime) -> None:
        """Make the change. Every file through write_atomic; secrets never logged."""
