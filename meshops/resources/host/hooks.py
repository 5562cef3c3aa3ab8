"""`hook.*`: commands that run once per apply after something they follow changed."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime


class HookResource(Resource[None]):
    # runs when anything it follows changed, even if a sibling change failed: a proxy
    # whose new config was refused reloads its old one, with the new CRL
    runs_after_any = True

    def __init__(
        self,
        address: str,
        commands: Sequence[Sequence[str]],
        follows: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
    ):
        self.address = address
        self.commands = [list(c) for c in commands]
        self.depends_on = tuple(follows)
        self.env = hook_environment({"MESHOPS_HOOK": address, **(env or {})})

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
            run(argv, what=f"{self.address}: {shlex.join(argv)}", timeout=300, clean_env=self.env)


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ON = ("PATH", "LANG", "LC_ALL")


def hook_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a reload or on_renew command: PATH and the locale from
    meshops', and the MESHOPS_* facts `extra` names; never anything else of meshops'
    (SOPS_AGE_KEY, MESHOPS_IDENTITY, proxies' and cloud credentials)."""
    env = {name: os.environ[name] for name in PASSED_ON if os.environ.get(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(extra)
    return env
