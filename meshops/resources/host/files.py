"""`files.stale`: files meshops wrote that nothing in mesh.yaml names any more (an
identity left this node, its outputs were switched off, a proxy config moved).

Only files in meshops' record are removed, then the directories meshops created that
are left empty; anything else in those directories stays as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.resources.host.scope import HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime

SHOWN = 3


class StaleFilesResource(Resource[list[str]]):
    address = "files.stale"

    def __init__(self, scope: HostScope, desired: Sequence[Path]):
        self.scope = scope
        self.desired = list(desired)

    def read(self, rt: Runtime) -> Observed[list[str]]:
        stale = [str(p) for p in self.scope.owned.stale(self.desired) if os.path.lexists(p)]
        return Observed(stale, fingerprint_of(stale))

    def plan(self, observed: Observed[list[str]], rt: Runtime) -> Change:
        stale = observed.value or []
        if not stale:
            return Change(self.address, Action.NOOP, "", None, None)
        shown = ", ".join(stale[:SHOWN]) + (
            f" and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
        )
        return Change(
            self.address, Action.DELETE, f"no longer in mesh.yaml: {shown}", {"files": stale},
            None,
        )  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        self.scope.owned.remove(self.scope.owned.stale(self.desired))
