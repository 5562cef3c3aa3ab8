"""What a long-running `watch` keeps in memory between its runs on one host.

A one-shot `apply` pays for everything each time: parsing and validating mesh.yaml,
reading state/, reading the live WireGuard device (a 1,000-peer dump). `watch` runs
the same pipeline again and again on mostly the same inputs, so it keeps:

- the validated mesh, reused while mesh.yaml's bytes are the same (sha256), and
  revalidated only where a change touched it when it edits node entries
  (`model/reload.py`);
- the parsed state.yaml, likewise;
- the live view (link and device) read at the end of the last run, right after its
  apply: a run woken by a change in the checkout plans from it instead of dumping the
  device again, so a commit that changes one peer costs one WireGuard request.

A run woken by the clock (`pull.interval`, a renewal deadline) re-reads the live view,
so drift made by someone else (`wg set` by hand) is found and undone within an
interval, as in cron mode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshops.resources.host.trust import Kept

if TYPE_CHECKING:
    from meshops.model import Loaded
    from meshops.providers.wireguard import DeviceState, LinkState
    from meshops.resources.repo.state import StateDoc, StateLayout


@dataclass
class HostSession:
    mesh_digest: str | None = None
    mesh_text: bytes = b""
    loaded: Loaded | None = None
    state_digest: str | None = None
    state: StateDoc | None = None
    live: tuple[LinkState | None, DeviceState | None] | None = None
    kept: Kept = field(default_factory=Kept)  # the pack and the checkout's record
    # set by watch for one run: plan from `live` instead of reading the device again
    trust_live: bool = False

    def load(self, path: Path, display: str, lib_dir: Path) -> Loaded:
        """The validated mesh in `path`, parsed again only when its bytes changed (the
        host's cache of validated meshes serves the first run)."""
        from meshops.model import from_document
        from meshops.model.loader import read_document
        from meshops.model.reload import revalidate
        from meshops.resources.host.mesh_cache import validated

        try:
            data = path.read_bytes()
        except OSError:
            return from_document(read_document(path, display), run_tests=False)  # its error
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.mesh_digest or self.loaded is None:
            edited = revalidate(self.loaded, self.mesh_text, data, display) if self.loaded else None
            self.loaded = edited or validated(data, display, lib_dir)  # kept in memory
            self.mesh_digest, self.mesh_text = digest, data
        return self.loaded

    def state_of(self, layout: StateLayout, text: bytes | None) -> StateDoc:
        """state.yaml's record from its bytes, parsed again only when they changed."""
        from meshops.resources.repo.state import StateDoc, state_from

        if text is None:
            return StateDoc()
        digest = hashlib.sha256(text).hexdigest()
        if digest != self.state_digest or self.state is None:
            self.state = state_from(layout, text)
            self.state_digest = digest
        return self.state

    def live_view(self) -> tuple[LinkState | None, DeviceState | None] | None:
        """The live view to plan from in this run, or None to read it."""
        return self.live if self.trust_live else None
