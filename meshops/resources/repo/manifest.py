"""`state.manifest`: the root-signed manifest of every state/ file (docs/security.md).

Planned last, after every other repo resource: whenever this apply changes state/, the
manifest is re-signed under the next version, so a repo apply that changes state/ needs
the root key, and the plan says so. The signing itself is the apply's commit point:
`sign_state`, called by the scope's `record` after state.yaml's final write, so the
manifest covers exactly the bytes the apply leaves behind.

Before signing, what is on disk is checked against the manifest signed last: a file
that differs from it must be this machine's own uncommitted work (an apply that was
stopped before it signed). A difference that arrived in a git commit was made outside
`meshops apply` (push access without the root key), and is refused, never blessed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.providers.files import TEMP_MARK, kind_of, read_bytes, stat_beneath, write_atomic
from meshops.resources.repo.scope import RepoScope, sha256_hex
from meshops.resources.repo.state import local_cache, parsed_cached, store_local_cache
from meshops.trust.manifest import MANIFEST, SIGNATURE, UNLISTED, FileEntry, Manifest

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime

ADDRESS = "state.manifest"
_RESTORE = (
    "state/ is written only by `meshops apply`: restore it from the last signed revision "
    "(git checkout <rev> -- state/) and apply again; `meshops review` names every change"
)


@dataclass(frozen=True)
class ManifestLive:
    files: dict[str, FileEntry]  # every regular file under state/ but the two below
    manifest: Manifest | None  # as signed (None: absent or unreadable)
    signed: bool  # manifest.sig verifies with a root in root.crt
    problem: str = ""  # why the manifest cannot be read, if it cannot


def scan_state(scope: RepoScope) -> dict[str, FileEntry]:
    """sha256 and size of every file under state/; MeshError for anything that is not a
    regular file (a symlink is never followed, never signed).

    Hashing four thousand files would dominate a no-op plan of a thousand nodes, so a
    file is read only when its size, mtime, ctime or inode moved since the last scan
    (remembered under .git/, this checkout's own).
    """
    layout = scope.layout
    base = str(layout.dir)
    known = local_cache(layout, HASH_CACHE, "stat-1") or {}
    started = time.time_ns()
    files: dict[str, FileEntry] = {}
    seen: dict[str, list[Any]] = {}
    for rel, info in sorted(stat_beneath(layout.dir).items()):
        if TEMP_MARK in rel.rpartition("/")[2] or rel in UNLISTED:
            continue  # temp files are swept before signing (RepoScope.sweep_temp_files)
        kind = kind_of(info)
        if kind != "file":
            raise MeshError(
                f"state/{rel} is {kind}, not a regular file: refusing to sign it",
                hint="meshops writes only regular files under state/: remove it "
                f"(git rm state/{rel}) or restore it from the last signed revision",
            )
        stamp = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        cached = known.get(rel)
        if isinstance(cached, list) and cached[:4] == stamp:
            digest = str(cached[4])
        else:
            digest = sha256_hex(_read_regular(f"{base}/{rel}", rel))
        if started - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS:
            seen[rel] = [*stamp, digest]  # else it may change again within the same tick
        files[rel] = FileEntry(digest, info.st_size)
    if seen != known:
        store_local_cache(layout, HASH_CACHE, "stat-1", seen)
    return files


HASH_CACHE = "meshops-hash-cache.json"
RACY_NS = 2_000_000_000  # a file changed this recently is hashed again next time (git's rule)


def _read_regular(path: str, rel: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise MeshError(f"cannot read state/{rel}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        return f.read()


class ManifestResource(Resource[ManifestLive]):
    address = ADDRESS

    def __init__(self, scope: RepoScope, others: tuple[str, ...]):
        self.scope = scope
        self.depends_on = others

    def read(self, rt: Runtime) -> Observed[ManifestLive]:
        layout = self.scope.layout
        files = scan_state(self.scope)
        body = read_bytes(layout.dir / MANIFEST)
        sig = read_bytes(layout.dir / SIGNATURE)
        manifest, signed, problem = None, False, ""
        if body is not None:
            try:
                manifest = Manifest.parse(body)
            except MeshError as exc:
                problem = exc.message
            else:
                signed = sig is not None and self._signed(body, sig)
        listed = {p: vars(e) for p, e in sorted(files.items())}
        live = ManifestLive(files, manifest, signed, problem)
        return Observed(live, fingerprint_of(listed, body or b"", sig or b""))

    def _signed(self, body: bytes, sig: bytes) -> bool:
        """manifest.sig verifies with one of the roots in root.crt (cached per bytes:
        a no-op plan then needs no cryptography)."""
        roots = read_bytes(self.scope.layout.root_cert) or b""
        key = b"\0".join((body, sig, roots))
        return bool(parsed_cached(self.scope.layout, SIGNED_CACHE, key, _signature_holds))

    def plan(self, observed: Observed[ManifestLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        scope = self.scope
        manifest = live.manifest
        version = manifest.version if manifest else 0
        before = {"version": version, "files": len(manifest.files)} if manifest else None
        after = {"version": version + 1, "files": "(known after apply)"}
        needs = scope.root_needs()
        others = [c for a, c in rt.planned.items() if a != self.address and not c.is_noop]
        if manifest is None:
            if not others and not live.files:
                return Change(self.address, Action.NOOP)
            why = live.problem or (
                "signs state/ (version 1)"
                if not scope.state.roots or not live.files
                else "state/ has no signed manifest yet (written by an earlier meshops): "
                "signs every state/ file as it is (version 1)"
            )
            return Change(self.address, Action.CREATE, why, None, after, needs=needs)
        changed = _differences(manifest, live.files)
        outside = self._outside_apply(changed, live.signed)
        if outside:
            raise MeshError(
                f"state/{outside[0]} changed outside meshops apply: it does not match the "
                "signed state/manifest.yaml, and the difference is committed, so no apply "
                "of this machine made it; refusing to sign it",
                hint=_RESTORE,
            )
        if others:
            why = f"signs this apply's changes to state/: version {version} -> {version + 1}"
        elif not live.signed:
            why = "state/manifest.sig does not verify with a root in root.crt: re-signed"
        elif changed:
            shown = ", ".join(f"state/{p}" for p in changed[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            why = f"{shown}{more} changed since the manifest was signed (an interrupted apply)"
        else:
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, why, before, after, needs=needs)

    def _outside_apply(self, changed: list[str], signed: bool) -> list[str]:
        """Differences from the signed manifest that came with a commit."""
        suspects = list(changed)
        if not signed:
            suspects += [MANIFEST, SIGNATURE]
        if not suspects:
            return []
        local = self.scope.local_state_changes()
        if local is None:  # not a git checkout: every difference is this machine's
            return []
        return [p for p in suspects if p not in local]

    def apply(self, change: Change, rt: Runtime) -> None:
        self.scope.sign_due = True  # signed by `sign_state` at the commit point


def _differences(manifest: Manifest, files: dict[str, FileEntry]) -> list[str]:
    paths = set(manifest.files) | set(files)
    return sorted(p for p in paths if manifest.files.get(p) != files.get(p))


SIGNED_CACHE = "meshops-manifest-cache.json"


def _signature_holds(key: bytes) -> bool:
    from meshops.pki.parse import cert_fingerprint, load_certificates
    from meshops.trust.manifest import Signature
    from meshops.trust.signature import verify_bytes

    body, sig_bytes, roots = key.split(b"\0", 2)
    try:
        sig = Signature.parse(sig_bytes)
        certs = {cert_fingerprint(c): c for c in load_certificates(roots)}
    except MeshError:
        return False
    cert = certs.get(sig.signer)
    try:
        return cert is not None and verify_bytes(cert, body, sig.value, sig.algorithm)
    except MeshError:
        return False


def sign_state(scope: RepoScope, rt: Runtime, *, now: datetime | None = None) -> Manifest:
    """Sign every state/ file as it is now, under the next version: the commit point of
    a repo apply (and of `meshops ca rotate|import`). Needs the root key."""
    from meshops.pki.parse import cert_fingerprint
    from meshops.trust.manifest import Signature
    from meshops.trust.signature import algorithm_of, sign_bytes

    layout = scope.layout
    files = scan_state(scope)
    previous = read_bytes(layout.dir / MANIFEST)
    version = 0
    if previous is not None:
        try:
            version = Manifest.parse(previous).version
        except MeshError:
            version = 0
    cert, key = scope.root_material(rt)
    when = (now or rt.now).isoformat(timespec="seconds")
    manifest = Manifest(scope.mesh.mesh.name, version + 1, when, cert_fingerprint(cert), files)
    body = manifest.render()
    signature = Signature(manifest.signer, algorithm_of(key), sign_bytes(key, body))
    write_atomic(layout.dir / MANIFEST, body, mode=0o644)
    write_atomic(layout.dir / SIGNATURE, signature.render(), mode=0o644)
    scope.sign_due = False
    return manifest


def current_manifest(scope: RepoScope) -> Manifest | None:
    """state/manifest.yaml as it is (not checked: `status` shows what is there)."""
    body = read_bytes(scope.layout.dir / MANIFEST)
    if body is None:
        return None
    try:
        return Manifest.parse(body)
    except MeshError:
        return None
