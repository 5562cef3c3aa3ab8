"""`hook.*`: commands that run once per apply after something they follow changed."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime


class HookResource(Resource[None]):
    # runs when anything it follows changed, even if a sibling change failed: a proxy
    # whose new config was refused reloads its old one, with the new CRL
    runs_after_any = True

    def __init__(self, address: str, commands: Sequence[Sequence[str]], follows: Sequence[str]):
        self.address = address
        self.commands = [list(c) for c in commands]
        self.depends_on = tuple(follows)

    def read(self, rt: Runtime) -> Observed[None]:
        return Observed(None, "")

    def plan(self, observed: Observed[None], rt: Runtime) -> Change:
        changed = [a for a in self.depends_on if a in rt.planned and not rt.planned[a].is_noop]
        shown = {"run": [shlex.join(c) for c in self.commands]}
        if not changed:
            return Change(self.address, Action.NOOP, "", shown, shown)
        return Change(
            self.address, Action.UPDATE, f"runs after {', '.join(changed)} changed", None, shown,
            impact=Impact.RESTART,
        )  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers.run import run

        for argv in self.commands:
            run(argv, what=f"{self.address}: {shlex.join(argv)}", timeout=300)
