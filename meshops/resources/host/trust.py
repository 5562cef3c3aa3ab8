"""Host scope takes from state/ only what the pinned roots signed (docs/security.md).

Before a host plans anything, `establish` reads the files it needs from the checkout's
state/ (every path component opened with O_NOFOLLOW, never through a symlink), checks
them with `meshops.trust.verify` against the roots it trusts, and copies what verified
into a snapshot under /var/lib/meshops/trusted/. Host scope then reads only that
snapshot: nothing can change between the check and the use. When a revision is refused
(an unsigned or tampered file, a root no trusted root handed over to, an older
version: a rollback), the host keeps the snapshot of the last good revision, so it
still renews its leaves, and reports the refusal (status, metrics, exit 1).

The roots a host trusts: `trust: [sha256:...]` in /etc/meshops/host.yaml, else those in
root.crt at its first apply. Both are recorded in /var/lib/meshops/trust.json with the
roots trusted now (after rotations: a new root is followed only through transitions the
old root signed) and the manifest version applied last (a lower one is a rollback):

    {"format_version": 1, "node": "web-1", "source": "host.yaml" | "first apply",
     "pinned": ["sha256:..."], "trusted": ["sha256:..."], "manifest_version": 7,
     "signer": "sha256:...", "revision": "<git commit>"}

A refusal is not recorded here (the file changes only when the material does): the
apply's record (last-applied.json, status.json, metrics.prom) says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshops.errors import MeshError
from meshops.providers.files import (
    list_beneath,
    prune_empty_dirs,
    read_beneath,
    remove,
    sync_filesystem,
    write_atomic,
)
from meshops.trust.manifest import MANIFEST, SIGNATURE, Manifest
from meshops.trust.transitions import TRANSITIONS
from meshops.trust.verify import (
    ROOT_CRT,
    NotRegular,
    StateEntry,
    StateRefused,
    Trust,
    Verified,
    check_files,
    check_roots,
    check_signature,
)

TRUST_FILE = "trust.json"
SNAPSHOT_DIR = "trusted"  # /var/lib/meshops/trusted/state/...
FORMAT_VERSION = 1
SIGNATURE_FILES = (MANIFEST, SIGNATURE, ROOT_CRT, TRANSITIONS)
_PIN = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass
class HostTrust:
    """What this host trusts and what it took from state/ (status shows it)."""

    source: str  # "host.yaml", "first apply", or "unsigned" (state/ not signed yet)
    pinned: tuple[str, ...] = ()
    trusted: tuple[str, ...] = ()
    version: int | None = None
    signer: str | None = None
    revision: str | None = None  # the revision the material in use came from
    refused: dict[str, Any] | None = None  # this run's refusal of the checkout
    error: StateRefused | None = field(default=None, repr=False)


def parse_pins(value: Any, where: str = "host.yaml") -> tuple[str, ...] | None:
    """host.yaml `trust:`: root fingerprints as `sha256:<hex>` (openssl's
    `AB:CD:...` form is accepted too); None when absent."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MeshError(
            f"{where}: `trust:` must be a list of root fingerprints (sha256:...)",
            hint="`meshops status --node N` prints the roots this host trusts now",
        )
    pins = []
    for raw in value:
        algo, _, digest = raw.strip().partition(":")
        pin = f"{algo.lower()}:{digest.replace(':', '').lower()}"
        if not _PIN.match(pin):
            raise MeshError(
                f"{where}: trust: {raw!r} is not a root fingerprint (sha256:<64 hex digits>)"
            )
        pins.append(pin)
    return tuple(sorted(set(pins)))


def read_record(lib_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((lib_dir / TRUST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format_version") == 1 else {}


def starting_trust(
    pins: tuple[str, ...] | None, record: Mapping[str, Any]
) -> tuple[Trust, str, tuple[str, ...]]:
    """(what verification starts from, the source of the pins, the pins).

    host.yaml's pins win; while they are the ones recorded, verification starts from
    the roots trusted now (so a retired root stays retired). Without pins in host.yaml
    the recorded ones hold; without either, the first verified revision is trusted.
    """
    recorded = tuple(record.get("pinned") or ())
    trusted = frozenset(record.get("trusted") or ())
    version = int(record.get("manifest_version") or 0)
    if pins:
        if record.get("source") == "host.yaml" and recorded == pins and trusted:
            return Trust(trusted, version), "host.yaml", pins
        return Trust(frozenset(pins)), "host.yaml", pins
    if trusted:
        return Trust(trusted, version), str(record.get("source") or "first apply"), recorded
    return Trust(None), "first apply", ()


def host_files(manifest: Manifest, node: str, suffix: str) -> list[str]:
    """The state/ files a host reads: state.yaml, roots, CRLs, every node CA (proxies
    trust the current ones) and its own sealed keys."""
    wanted = {"state.yaml", ROOT_CRT, "ca/crl.pem", TRANSITIONS}
    wanted |= {f"nodes/{node}/ca.key{suffix}", f"nodes/{node}/wg.key{suffix}"}
    for path in manifest.files:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "nodes" and parts[2] in ("ca.crt", "crl.pem"):
            wanted.add(path)
    return sorted(wanted)


Reader = Callable[[list[str], Mapping[str, int]], Mapping[str, StateEntry]]


def verify_host_view(
    read: Reader, trust: Trust, node: str, suffix: str
) -> tuple[Verified, dict[str, bytes]]:
    """Verify what a host reads of a revision's state/, read by `read(paths, sizes)`
    (paths under state/); the verified files. StateRefused when it does not verify."""
    first = read(list(SIGNATURE_FILES), {})
    manifest, roots, trusted, chain = check_signature(first, trust)
    paths = host_files(manifest, node, suffix)
    sizes = {p: manifest.files[p].size for p in paths if p in manifest.files}
    rest = [p for p in paths if p not in first]
    entries = {**{p: e for p, e in first.items() if p in paths}, **read(rest, sizes)}
    check_files(manifest, entries, paths)
    check_roots(roots, trusted, chain)
    files = {p: e for p, e in entries.items() if isinstance(e, bytes)}
    files[MANIFEST] = _bytes(first, MANIFEST)
    files[SIGNATURE] = _bytes(first, SIGNATURE)
    return Verified(manifest, roots, trusted), files


def _bytes(entries: Mapping[str, StateEntry], path: str) -> bytes:
    entry = entries[path]
    assert isinstance(entry, bytes)
    return entry


def checkout_reader(repo_dir: Path) -> Reader:
    """Read state/ of a checkout without following symlinks."""

    def read(paths: list[str], sizes: Mapping[str, int]) -> dict[str, StateEntry]:
        got = read_beneath(
            repo_dir,
            [f"state/{p}" for p in paths],
            sizes={f"state/{p}": s for p, s in sizes.items()},
        )
        return {
            k.removeprefix("state/"): (v if isinstance(v, bytes) else NotRegular(v))
            for k, v in got.items()
        }

    return read


def establish(
    *,
    repo_dir: Path,
    lib_dir: Path,
    node: str,
    suffix: str,
    pins: tuple[str, ...] | None,
    revision: str | None,
    now: str,
    commit: bool,
) -> tuple[Path, HostTrust]:
    """Verify the checkout's state/; the directory whose state/ host scope reads (the
    snapshot of verified files, or on refusal the last good one) and what was trusted.

    With `commit` (apply) the snapshot and trust.json are updated; without (plan,
    status) nothing is written, and a newly verified revision is read from the checkout
    it was just checked in. MeshError when the revision is refused and there is no
    good material to keep.
    """
    record = read_record(lib_dir)
    trust, source, pinned = starting_trust(pins, record)
    snapshot = lib_dir / SNAPSHOT_DIR
    try:
        verified, files = verify_host_view(checkout_reader(repo_dir), trust, node, suffix)
    except StateRefused as exc:
        if _unsigned_legacy(repo_dir, pins, record):
            return repo_dir, HostTrust("unsigned", revision=revision)
        return _keep_last_good(exc, record, snapshot, node, suffix, source=source,
                               pinned=pinned, revision=revision, now=now)  # fmt: skip
    held = HostTrust(
        source, pinned or verified.roots, verified.roots, verified.version, verified.signer,
        revision,
    )  # fmt: skip
    fresh = _snapshot_matches(snapshot, files, record, node)
    if not commit:
        return (snapshot if fresh else repo_dir), held
    if not fresh:
        _write_snapshot(lib_dir, files)
    _write_record(lib_dir, {
        "format_version": FORMAT_VERSION, "node": node, "source": source,
        "pinned": list(held.pinned), "trusted": list(held.trusted),
        "manifest_version": held.version, "signer": held.signer, "revision": revision,
    })  # fmt: skip
    return snapshot, held


def check_revision(
    read: Reader,
    irregular: Mapping[str, str],
    *,
    lib_dir: Path,
    node: str,
    suffix: str,
    pins: tuple[str, ...] | None,
) -> None:
    """Before a pull checks a revision out: its state/ (read from git objects by
    `read`) verifies for this host, and nothing under state/ is a symlink or other
    non-file (`irregular`: path -> what it is). StateRefused otherwise."""
    record = read_record(lib_dir)
    trust, _, _ = starting_trust(pins, record)
    if irregular:
        path = min(irregular)
        raise StateRefused(
            f"state/{path} is {irregular[path]}, not a regular file (state/{path} changed "
            "outside meshops apply)",
            file=f"state/{path}",
        )
    try:
        verify_host_view(read, trust, node, suffix)
    except StateRefused:
        if not pins and not record.get("trusted") and not read([MANIFEST, SIGNATURE], {}):
            return  # not signed yet, and nothing pinned: see `_unsigned_legacy`
        raise


def _keep_last_good(
    exc: StateRefused,
    record: Mapping[str, Any],
    snapshot: Path,
    node: str,
    suffix: str,
    *,
    source: str,
    pinned: tuple[str, ...],
    revision: str | None,
    now: str,
) -> tuple[Path, HostTrust]:
    refusal = {"reason": exc.message, "file": exc.file, "revision": revision, "at": now}
    kept = _verified_snapshot(snapshot, record, node, suffix)
    if kept is None:
        raise StateRefused(
            f"{exc.message}; this host has no verified state/ to keep using",
            file=exc.file,
            hint=exc.hint,
        ) from None
    held = HostTrust(
        source, pinned, tuple(record.get("trusted") or ()), kept.version, kept.signer,
        record.get("revision"), refusal, exc,
    )  # fmt: skip
    return snapshot, held


def _verified_snapshot(
    snapshot: Path, record: Mapping[str, Any], node: str, suffix: str
) -> Verified | None:
    """The last good material, checked again (a torn or edited snapshot is not used)."""
    trusted = frozenset(record.get("trusted") or ())
    if not trusted or record.get("node") != node:
        return None
    try:
        verified, _ = verify_host_view(checkout_reader(snapshot), Trust(trusted), node, suffix)
    except MeshError:
        return None
    return verified


def _unsigned_legacy(
    repo_dir: Path, pins: tuple[str, ...] | None, record: Mapping[str, Any]
) -> bool:
    """A repository no meshops has signed yet (made by an earlier version), on a host
    that never pinned a root: taken as it is until its next repo apply signs it (the
    first signed revision is then pinned). A host with pins refuses it."""
    if pins or record.get("trusted"):
        return False
    present = read_beneath(repo_dir, [f"state/{MANIFEST}", f"state/{SIGNATURE}"])
    return not present


def _snapshot_matches(
    snapshot: Path, files: Mapping[str, bytes], record: Mapping[str, Any], node: str
) -> bool:
    """Whether the snapshot holds this very signed revision: it was written whole from
    files verified against its manifest, so the same manifest and signature suffice."""
    if record.get("node") != node:
        return False
    names = [f"state/{MANIFEST}", f"state/{SIGNATURE}"]
    held = read_beneath(snapshot, names)
    return all(held.get(f"state/{p}") == files[p] for p in (MANIFEST, SIGNATURE))


def _write_snapshot(lib_dir: Path, files: Mapping[str, bytes]) -> None:
    """Bring the snapshot to the verified `files`, writing only what changed.

    Each file is replaced atomically; the data is flushed (one syncfs) before the
    manifest and its signature are written, last, and files no longer listed are
    removed after. A run killed half-way leaves the old manifest, so the next run finds
    the snapshot stale and finishes the job; a snapshot whose files do not match its
    own manifest is never used as the last good material (`_verified_snapshot`).
    """
    snap = lib_dir / SNAPSHOT_DIR / "state"
    old = _manifest_at(snap)
    new = Manifest.parse(files[MANIFEST])
    changed = [
        path
        for path in sorted(files)
        if path not in (MANIFEST, SIGNATURE)
        and (
            old is None or old.files.get(path) != new.files.get(path) or not (snap / path).exists()
        )
    ]
    for path in changed:
        private = path.endswith((".age", ".sops"))
        write_atomic(snap / path, files[path], mode=0o600 if private else 0o644, fsync=False)
    if changed:
        sync_filesystem(snap)
    write_atomic(snap / SIGNATURE, files[SIGNATURE], mode=0o644)
    write_atomic(snap / MANIFEST, files[MANIFEST], mode=0o644)
    for path in sorted(set(list_beneath(snap)) - set(files)):
        remove(snap / path)
        prune_empty_dirs((snap / path).parent, stop=snap)


def _manifest_at(snap: Path) -> Manifest | None:
    data = read_beneath(snap, [MANIFEST]).get(MANIFEST)
    if not isinstance(data, bytes):
        return None
    try:
        return Manifest.parse(data)
    except MeshError:
        return None


def _write_record(lib_dir: Path, record: Mapping[str, Any]) -> None:
    """Write trust.json when it changes (an apply with nothing new writes nothing)."""
    if read_record(lib_dir) == dict(record):
        return
    body = json.dumps(dict(record), sort_keys=True, separators=(",", ":")) + "\n"
    write_atomic(lib_dir / TRUST_FILE, body.encode(), mode=0o644)
