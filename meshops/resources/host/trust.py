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
from meshops.providers.files import read_beneath, read_bytes, write_atomic
from meshops.resources.host.checkout import CheckoutReader, Seen
from meshops.resources.host.pack import PACK_FILE, Pack, read_pack, write_pack
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
LEGACY_SNAPSHOT = "trusted"  # an earlier meshops' verified files, one by one
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


def fixed_host_files(node: str, suffix: str) -> tuple[str, ...]:
    """The state/ files a host reads whatever the manifest lists (some may be absent)."""
    return ("state.yaml", ROOT_CRT, "ca/crl.pem", TRANSITIONS,
            f"nodes/{node}/ca.key{suffix}", f"nodes/{node}/wg.key{suffix}")  # fmt: skip


def host_files(manifest: Manifest, node: str, suffix: str) -> list[str]:
    """The state/ files a host reads: state.yaml, roots, CRLs, every node CA (proxies
    trust the current ones) and its own sealed keys."""
    wanted = set(fixed_host_files(node, suffix))
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


@dataclass(frozen=True)
class StateFiles:
    """The state/ files host scope reads: bytes that verified, held in memory from the
    check to the use; or, for a repository no meshops has signed yet on a host that
    pinned nothing (`source` "unsigned"), the checkout's state/ as it is."""

    verified: Mapping[str, bytes] | None
    checkout: Path  # the checkout's state/

    def read(self, path: str) -> bytes | None:
        """A file by its path under state/, or None when there is none."""
        if self.verified is not None:
            return self.verified.get(path)
        return read_bytes(self.checkout / path)


@dataclass
class Kept:
    """What `watch` keeps of its last check between runs: the pack it read or wrote
    (with its digest) and the record of the checkout, instead of reading both again."""

    pack: tuple[str, Pack] | None = None
    seen: Seen | None = None


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
    kept: Kept | None = None,
) -> tuple[StateFiles, HostTrust]:
    """Verify the checkout's state/; the files host scope reads (those that verified,
    or on refusal the last good ones) and what was trusted.

    A checkout whose manifest and signature are the ones verified last, read under the
    same trust, is checked only for files that changed since (see `host/checkout.py`);
    files unchanged since they verified are not read again. With `commit` (apply) the
    verified files become the pack (host/pack.py) and trust.json records the pins and
    the version; without (plan, status) nothing is written. MeshError when the revision
    is refused and there is no good material to keep. `kept` holds the pack and the
    checkout's record (watch: between runs); the apply's record writes the latter
    (`kept.seen.save`), so an apply refused before its record leaves it as it was.
    """
    record = read_record(lib_dir)
    trust, source, pinned = starting_trust(pins, record)
    state_dir = repo_dir / "state"
    kept = kept if kept is not None else Kept()
    held_pack = _recorded_pack(lib_dir, record, node, kept)
    if kept.seen is None or kept.seen.checkout != str(state_dir):
        kept.seen = Seen.load(lib_dir, state_dir)
    seen = kept.seen
    known = {held_pack.digests[p]: d for p, d in held_pack.files.items()} if held_pack else {}
    reader = CheckoutReader(state_dir, seen, known)
    try:
        files = _unchanged(reader, held_pack, record, trust, node, suffix)
        if files is not None:
            held = HostTrust(
                source, pinned or tuple(record["trusted"]), tuple(record["trusted"]),
                int(record["manifest_version"]), str(record["signer"]), revision,
            )  # fmt: skip
        else:
            verified, files = verify_host_view(reader, trust, node, suffix)
            held = HostTrust(
                source, pinned or verified.roots, verified.roots, verified.version,
                verified.signer, revision,
            )  # fmt: skip
    except StateRefused as exc:
        if _unsigned_legacy(repo_dir, pins, record):
            return StateFiles(None, state_dir), HostTrust("unsigned", revision=revision)
        return _keep_last_good(exc, record, lib_dir, node, suffix, source=source,
                               pinned=pinned, revision=revision, now=now)  # fmt: skip
    if not commit:
        return StateFiles(files, state_dir), held
    digest = record.get("pack") if held_pack is not None and files == held_pack.files else None
    if digest is None:
        pack = Pack.of(files)
        digest = write_pack(lib_dir, pack)
        kept.pack = (digest, pack)
        _remove_legacy_snapshot(lib_dir)
    reader.remember(files)  # written by the apply's record (`Seen.save`), not before
    _write_record(lib_dir, {
        "format_version": FORMAT_VERSION, "node": node, "source": source,
        "pinned": list(held.pinned), "trusted": list(held.trusted),
        "manifest_version": held.version, "signer": held.signer, "revision": revision,
        "pack": digest,
    })  # fmt: skip
    return StateFiles(files, state_dir), held


def _recorded_pack(lib_dir: Path, record: Mapping[str, Any], node: str, kept: Kept) -> Pack | None:
    """The pack, when it is the one trust.json records as verified for this node."""
    if record.get("node") != node or not record.get("pack"):
        return None
    if kept.pack is None or kept.pack[0] != record["pack"]:
        kept.pack = read_pack(lib_dir)
    if kept.pack is None or kept.pack[0] != record["pack"]:
        return None
    return kept.pack[1]


def _unchanged(
    reader: CheckoutReader,
    pack: Pack | None,
    record: Mapping[str, Any],
    trust: Trust,
    node: str,
    suffix: str,
) -> dict[str, bytes] | None:
    """The pack's files, when the checkout holds exactly what they were verified from
    under the trust verification starts from now: the same manifest and signature
    (byte for byte), every file the host reads the same, nothing added; else None."""
    if pack is None or not record.get("trusted") or record.get("manifest_version") is None:
        return None
    if trust != Trust(frozenset(record["trusted"]), int(record["manifest_version"])):
        return None  # re-pinned: verify afresh
    wanted = sorted(set(pack.files) | set(fixed_host_files(node, suffix)))
    sizes = {p: len(d) for p, d in pack.files.items()}
    entries = reader(wanted, sizes)
    if any(entries.get(p) != pack.files.get(p) for p in wanted):
        return None
    return dict(pack.files)


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
    lib_dir: Path,
    node: str,
    suffix: str,
    *,
    source: str,
    pinned: tuple[str, ...],
    revision: str | None,
    now: str,
) -> tuple[StateFiles, HostTrust]:
    refusal = {"reason": exc.message, "file": exc.file, "revision": revision, "at": now}
    kept = _last_good(lib_dir, record, node, suffix)
    if kept is None:
        raise StateRefused(
            f"{exc.message}; this host has no verified state/ to keep using",
            file=exc.file,
            hint=exc.hint,
        ) from None
    verified, files = kept
    held = HostTrust(
        source, pinned, tuple(record.get("trusted") or ()), verified.version,
        verified.signer, record.get("revision"), refusal, exc,
    )  # fmt: skip
    return StateFiles(files, lib_dir / PACK_FILE), held


def _last_good(
    lib_dir: Path, record: Mapping[str, Any], node: str, suffix: str
) -> tuple[Verified, dict[str, bytes]] | None:
    """The last good material, verified again (a torn or edited pack is not used): the
    pack, or the snapshot directory an earlier meshops kept."""
    trusted = frozenset(record.get("trusted") or ())
    if not trusted or record.get("node") != node:
        return None
    found = read_pack(lib_dir)
    read = _files_reader(found[1].files) if found else checkout_reader(lib_dir / LEGACY_SNAPSHOT)
    try:
        return verify_host_view(read, Trust(trusted), node, suffix)
    except MeshError:
        return None


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


def _files_reader(files: Mapping[str, bytes]) -> Reader:
    def read(paths: list[str], sizes: Mapping[str, int]) -> dict[str, StateEntry]:
        return {p: files[p] for p in paths if p in files}

    return read


def _remove_legacy_snapshot(lib_dir: Path) -> None:
    """An earlier meshops kept the verified files one by one under trusted/: the pack
    replaces them."""
    import shutil

    legacy = lib_dir / LEGACY_SNAPSHOT
    if legacy.is_dir() and not legacy.is_symlink():
        shutil.rmtree(legacy, ignore_errors=True)


def _write_record(lib_dir: Path, record: Mapping[str, Any]) -> None:
    """Write trust.json when it changes (an apply with nothing new writes nothing)."""
    if read_record(lib_dir) == dict(record):
        return
    body = json.dumps(dict(record), sort_keys=True, separators=(",", ":")) + "\n"
    write_atomic(lib_dir / TRUST_FILE, body.encode(), mode=0o644)
