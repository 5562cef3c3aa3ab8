"""Changes and plans as plain data (after Terraform's `internal/plans`).

The engine knows nothing about colours, markdown or JSON field names; renderers in
`meshops.report` read these values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JSON = Any  # a JSON-serialisable value (str, int, float, bool, None, list, dict)


class Action(StrEnum):
    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # delete then create
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"no-op": " ", "create": "+", "update": "~", "replace": "-/+", "delete": "-"}[
            self.value
        ]

    @property
    def terraform_actions(self) -> list[str]:
        if self is Action.REPLACE:
            return ["delete", "create"]
        return [self.value]


class Impact(StrEnum):
    """What a change does to running traffic."""

    NONE = "none"
    IN_PLACE = "in-place"  # e.g. one peer's allowed IPs
    SESSION_RESET = "session-reset"  # a key change that forces a new handshake
    RESTART = "restart"  # a proxy reload or restart


@dataclass(frozen=True)
class Change:
    """One resource's planned change. `before`/`after` hold public facts only."""

    address: str
    action: Action
    reason: str = ""
    before: dict[str, JSON] | None = None
    after: dict[str, JSON] | None = None
    sensitive: bool = False
    needs: tuple[str, ...] = ()  # identities to unseal ("root CA key"), "root privileges"
    impact: Impact = Impact.NONE
    depends_on: tuple[str, ...] = ()

    @property
    def is_noop(self) -> bool:
        return self.action is Action.NOOP


@dataclass(frozen=True)
class Plan:
    """Everything apply would do in one scope, in apply order."""

    scope: str  # "repo" or "node:<name>"
    changes: tuple[Change, ...]
    fingerprint: str  # of the live state the plan was computed from
    revision: str | None = None  # git revision of the mesh repository
    created_at: str = ""
    meta: dict[str, JSON] = field(default_factory=dict)

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.is_noop)

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable)

    def counts(self) -> dict[str, int]:
        """Terraform's summary: a replace counts as one add and one destroy."""
        tally = Counter(c.action for c in self.actionable)
        return {
            "add": tally[Action.CREATE] + tally[Action.REPLACE],
            "change": tally[Action.UPDATE],
            "destroy": tally[Action.DELETE] + tally[Action.REPLACE],
        }

    def needs(self) -> list[str]:
        return sorted({need for c in self.actionable for need in c.needs})
