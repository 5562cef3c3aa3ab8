"""What resources may use while reading and applying: paths, time, identities, secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from meshops.engine import clock

log = logging.getLogger("meshops.engine")


@dataclass
class Runtime:
    """Per-run context. `now` is fixed for the run so a plan is self-consistent."""

    root: Path = Path("/")
    repo_dir: Path = Path(".")
    identity_files: list[Path] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: clock.now())
    dry_run: bool = False
    # plaintext secrets made or unsealed in this run, by a name such as "root-key";
    # memory only, never written in the clear
    _secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    # values resources hand to later resources in the same apply (certs just issued)
    shared: dict[str, Any] = field(default_factory=dict)
    # changes planned so far in this run, by address: a resource may look at what it
    # depends on (a hook runs when the certificate it follows changes)
    planned: dict[str, Any] = field(default_factory=dict)
    _identities: list[Any] | None = field(default=None, repr=False)

    def host_path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def remember_secret(self, name: str, plaintext: bytes) -> None:
        self._secrets[name] = plaintext

    def has_secret(self, name: str) -> bool:
        return name in self._secrets

    def secret(self, name: str, load: Callable[[], bytes]) -> bytes:
        """A secret from this run's memory, else `load()` it (unseal) and remember it."""
        if name not in self._secrets:
            self._secrets[name] = load()
        return self._secrets[name]

    def identities(self) -> list[Any]:
        """The unseal identities, loaded once (files named by --identity etc.)."""
        if self._identities is None:
            from meshops.secrets import load_identities

            self._identities = list(load_identities(self.identity_files))
        return self._identities

    def forget_secrets(self) -> None:
        self._secrets.clear()
