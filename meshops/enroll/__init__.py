"""Enrolment of host-held keys (docs/keys.md): a node's keys are born on it, and a small
request in `enroll/<node>.yaml` (public keys, a CSR, signatures by those keys) is what
the operator commits in a pull request; repo scope signs from it.

`request` is the file format and its signatures, `checks` relates requests to mesh.yaml
and to each other (pure), `make` builds a request on the host. This module reads the
files of a checkout and the keys state.yaml records.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

ENROLL_DIR = "enroll"

if TYPE_CHECKING:
    from meshops.enroll.checks import Enrolments, KnownKeys
    from meshops.model import Loaded
    from meshops.resources.repo.state import StateDoc


def read_request_files(mesh_dir: Path) -> dict[str, bytes]:
    """The files directly under `<mesh_dir>/enroll/` (name -> bytes), never through a
    symlink; a symlink or other non-file is given as empty bytes (refused as unreadable
    by the checks)."""
    from meshops.providers.files import list_beneath, read_beneath

    base = mesh_dir / ENROLL_DIR
    listed = {p: kind for p, kind in list_beneath(base).items() if "/" not in p}
    read = read_beneath(base, [p for p, kind in listed.items() if kind == "file"])
    return {p: (data if isinstance(data, bytes) else b"") for p, data in
            ((p, read.get(p, b"")) for p in sorted(listed))}  # fmt: skip


def known_keys(state: StateDoc) -> dict[str, KnownKeys]:
    """The public keys state.yaml records per node: keys in use."""
    from meshops.enroll.checks import KnownKeys

    return {
        name: KnownKeys(
            rec.wireguard.public_key if rec.wireguard else None,
            (rec.ca.public_key or None) if rec.ca else None,
            tuple(rec.retired),
        )
        for name, rec in state.nodes.items()
    }


def recorded_addresses(state: StateDoc) -> dict[str, list[str]]:
    return {
        name: [a for a in (rec.address, rec.address6) if a] for name, rec in state.nodes.items()
    }


VERIFIED_CACHE = "meshops-enrol-cache.json"


def load_enrolments(
    loaded: Loaded, mesh_dir: Path, state: StateDoc, *, now: datetime, display_dir: str = ""
) -> Enrolments:
    """Check the requests of the checkout at `mesh_dir` against its mesh and state.

    Requests whose signatures held before (by sha256, remembered under .git/, this
    checkout's own) are not verified again: a 1,000-node plan would spend seconds on
    signatures that cannot have changed. Review verifies from git objects, uncached.
    """
    from meshops.enroll.checks import check_enrolments
    from meshops.resources.repo.state import StateLayout, local_cache, store_local_cache

    files = read_request_files(mesh_dir)
    if not files and not any(loaded.mesh.host_held(n) for n in loaded.mesh.nodes):
        from meshops.enroll.checks import Enrolments

        return Enrolments()
    layout = StateLayout(mesh_dir)
    cached = local_cache(layout, VERIFIED_CACHE, "verified-1")
    verified = frozenset(cached) if isinstance(cached, list) else frozenset()
    checked = check_enrolments(
        loaded,
        files,
        now=now,
        known=known_keys(state),
        addresses=recorded_addresses(state),
        display_dir=display_dir,
        verified=verified,
    )
    if checked.verified != verified:
        store_local_cache(layout, VERIFIED_CACHE, "verified-1", sorted(checked.verified))
    return checked
