"""Check a revision's `state/` against the roots a host (or a reviewer) trusts.

The caller reads `state/` (a checkout with O_NOFOLLOW, or git objects) into a mapping
of path under state/ -> bytes, or `NotRegular` for anything that is not a regular file,
and says which roots it trusts and the lowest version it accepts. In order:

1. `manifest.sig` names its signer; the signer must be trusted: pinned, or reached from
   a pinned root through transitions each signed by the outgoing root;
2. the signature over `manifest.yaml`'s bytes verifies with that root's key;
3. the version is not below the lowest accepted (no rollback);
4. every file checked is a regular file listed in the manifest with that sha256 and
   size (and, for a whole-tree check, nothing else exists and nothing is missing);
5. every root in `ca/root.crt` is trusted, or handed over to a trusted one (an
   outgoing root during a rotation).

Any failure is a `StateRefused` naming the file, in words a reviewer can act on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshops.errors import MeshError
from meshops.trust.manifest import MANIFEST, SIGNATURE, UNLISTED, Manifest, Signature
from meshops.trust.transitions import TRANSITIONS, Transition

if TYPE_CHECKING:
    from cryptography import x509

ROOT_CRT = "ca/root.crt"
_APPLY = "changed outside meshops apply"


@dataclass(frozen=True)
class NotRegular:
    """An entry under state/ that is not a regular file: never read, always refused."""

    kind: str  # "a symlink", "a directory", "a submodule", "a special file"


StateEntry = bytes | NotRegular


class StateRefused(MeshError):
    """A revision's state/ does not verify; `file` names the culprit (under state/)."""

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.file = file


@dataclass(frozen=True)
class Trust:
    """What verification starts from: the trusted root fingerprints (None: trust on
    first use, the roots in root.crt at this revision) and the lowest version taken."""

    anchors: frozenset[str] | None
    min_version: int = 0


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    roots: tuple[str, ...]  # root.crt's certificates, in order (old first)
    trusted: frozenset[str]  # anchors plus the roots reached through transitions

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def signer(self) -> str:
        return self.manifest.signer


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_state(
    entries: Mapping[str, StateEntry],
    trust: Trust,
    *,
    paths: Iterable[str] | None = None,
    prefix: str = "state/",
) -> Verified:
    """Verify `entries` (path under state/ -> bytes or NotRegular).

    With `paths`, only those files are checked (a host checks what it reads); without,
    the whole tree is: every entry must be listed and every listed file present.
    """
    manifest, roots, trusted, transitions = check_signature(entries, trust, prefix=prefix)
    if paths is None:
        check_tree(manifest, entries, prefix=prefix)
    else:
        check_files(manifest, entries, paths, prefix=prefix)
    check_roots(roots, trusted, transitions, prefix=prefix)
    return Verified(manifest, roots, trusted)


def check_signature(
    entries: Mapping[str, StateEntry], trust: Trust, *, prefix: str = "state/"
) -> tuple[Manifest, tuple[str, ...], frozenset[str], list[Transition]]:
    """Steps 1-3: the manifest, root.crt's fingerprints, the trusted set, transitions."""
    from meshops.pki.parse import cert_fingerprint
    from meshops.trust import transitions as chain

    body = _regular(entries, MANIFEST, prefix, unsigned=True)
    sig = Signature.parse(
        _regular(entries, SIGNATURE, prefix, unsigned=True), f"{prefix}{SIGNATURE}"
    )
    root_certs = _root_certs(_regular(entries, ROOT_CRT, prefix), prefix)
    roots = tuple(cert_fingerprint(c) for c in root_certs)
    listed = entries.get(TRANSITIONS)
    if isinstance(listed, NotRegular):
        raise _not_regular(TRANSITIONS, listed, prefix)
    transitions = chain.parse(listed, f"{prefix}{TRANSITIONS}") if listed is not None else []
    anchors = frozenset(roots) if trust.anchors is None else trust.anchors
    trusted, carried = chain.walk(anchors, transitions)
    certs = {**carried, **dict(zip(roots, root_certs, strict=True))}
    if sig.signer not in trusted:
        raise StateRefused(
            f"{prefix}{SIGNATURE}: the manifest is signed by root {_short(sig.signer)}, which "
            f"is not trusted here (trusted: {', '.join(map(_short, sorted(trusted)))}) and no "
            "trusted root handed over to it",
            file=f"{prefix}{SIGNATURE}",
            hint="a root becomes trusted only through a rotation signed by the root before "
            "it (`meshops ca rotate`, then apply); if this host should trust a new root, "
            "re-pin it (see docs/security.md)",
        )
    signer = certs.get(sig.signer)
    if signer is None:
        raise StateRefused(
            f"{prefix}{SIGNATURE}: the certificate of signing root {_short(sig.signer)} is in "
            f"neither {prefix}{ROOT_CRT} nor {prefix}{TRANSITIONS}",
            file=f"{prefix}{SIGNATURE}",
        )
    if not _verifies(signer, body, sig):
        raise StateRefused(
            f"{prefix}{SIGNATURE}: the signature of {prefix}{MANIFEST} does not verify with "
            f"root {_short(sig.signer)} ({prefix}{MANIFEST} {_APPLY})",
            file=f"{prefix}{MANIFEST}",
        )
    manifest = Manifest.parse(body, f"{prefix}{MANIFEST}")
    if manifest.signer != sig.signer:
        raise StateRefused(
            f"{prefix}{MANIFEST}: names signer {_short(manifest.signer)}, but "
            f"{prefix}{SIGNATURE} is by {_short(sig.signer)}",
            file=f"{prefix}{MANIFEST}",
        )
    if manifest.version < trust.min_version:
        raise StateRefused(
            f"{prefix}{MANIFEST}: version {manifest.version} is older than version "
            f"{trust.min_version} already applied here: refusing a rollback of state/",
            file=f"{prefix}{MANIFEST}",
            hint="state/ must come from a repo apply newer than the one this host applied; "
            "a rollback could bring back a revoked node CA or an old key",
        )
    return manifest, roots, trusted, transitions


def _verifies(cert: x509.Certificate, body: bytes, sig: Signature) -> bool:
    from meshops.trust.signature import verify_bytes

    try:
        return verify_bytes(cert, body, sig.value, sig.algorithm)
    except MeshError:
        return False


def check_files(
    manifest: Manifest,
    entries: Mapping[str, StateEntry],
    paths: Iterable[str],
    *,
    prefix: str = "state/",
) -> None:
    """Step 4 for the files a host reads: each present one is listed and matches.

    A file in `paths` that is neither present nor listed is simply absent (an optional
    file); one listed but missing is refused. Every failing file is named, the first
    in `StateRefused.file`.
    """
    problems: list[StateRefused] = []
    for path in paths:
        problem = _file_problem(manifest, entries, path, prefix)
        if problem is not None:
            problems.append(problem)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        named = ", ".join(p.file or "" for p in problems[:5])
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise StateRefused(
            f"{named}{more} {_APPLY} (first: {problems[0].message})",
            file=problems[0].file,
            hint=problems[0].hint,
        )


def _file_problem(
    manifest: Manifest, entries: Mapping[str, StateEntry], path: str, prefix: str
) -> StateRefused | None:
    entry = entries.get(path)
    listed = manifest.files.get(path)
    if isinstance(entry, NotRegular):
        return _not_regular(path, entry, prefix)
    if entry is None:
        if listed is None:
            return None
        return StateRefused(
            f"{prefix}{path} is listed in the signed manifest but missing", file=f"{prefix}{path}"
        )
    if listed is None:
        return StateRefused(
            f"{prefix}{path} {_APPLY}: the signed manifest does not list it",
            file=f"{prefix}{path}",
            hint=_RESTORE,
        )
    if len(entry) != listed.size or sha256_hex(entry) != listed.sha256:
        return StateRefused(
            f"{prefix}{path} {_APPLY}: its sha256 does not match the signed manifest",
            file=f"{prefix}{path}",
            hint=_RESTORE,
        )
    return None


def check_tree(manifest: Manifest, entries: Mapping[str, StateEntry], *, prefix: str) -> None:
    """Step 4 for a whole tree: nothing unlisted, nothing missing, nothing irregular."""
    for path in sorted(entries):
        entry = entries[path]
        if isinstance(entry, NotRegular):
            raise _not_regular(path, entry, prefix)
    check_files(manifest, entries, sorted(set(entries) - UNLISTED), prefix=prefix)
    missing = sorted(set(manifest.files) - set(entries))
    if missing:
        raise StateRefused(
            f"{prefix}{missing[0]} is listed in the signed manifest but missing",
            file=f"{prefix}{missing[0]}",
        )


def check_roots(
    roots: tuple[str, ...],
    trusted: Collection[str],
    transitions: list[Transition],
    *,
    prefix: str = "state/",
) -> None:
    """Step 5: every root in root.crt is trusted, or handed over to a trusted one."""
    from meshops.trust.transitions import handed_over

    for root in roots:
        if root not in trusted and not handed_over(root, trusted, transitions):
            raise StateRefused(
                f"{prefix}{ROOT_CRT} holds root {_short(root)}, which no trusted root "
                "handed over to",
                file=f"{prefix}{ROOT_CRT}",
                hint="only a rotation signed by the previous root adds a root",
            )


_RESTORE = (
    "state/ is written only by `meshops apply` at repo scope; restore the file from "
    "the last reviewed revision (git checkout <rev> -- state/) and apply again"
)


def _regular(
    entries: Mapping[str, StateEntry], path: str, prefix: str, *, unsigned: bool = False
) -> bytes:
    entry = entries.get(path)
    if isinstance(entry, NotRegular):
        raise _not_regular(path, entry, prefix)
    if entry is None:
        if unsigned:
            raise StateRefused(
                f"{prefix}{path} is missing: state/ at this revision is not signed",
                file=f"{prefix}{path}",
                hint="`meshops apply` at repo scope (with the root identity) signs state/; "
                "a repository made by an earlier meshops is signed by its next repo apply",
            )
        raise StateRefused(f"{prefix}{path} is missing", file=f"{prefix}{path}")
    return entry


def _root_certs(data: bytes, prefix: str) -> list[x509.Certificate]:
    from meshops.pki.parse import load_certificates

    try:
        return load_certificates(data, what=f"{prefix}{ROOT_CRT}")
    except MeshError as exc:
        raise StateRefused(exc.message, file=f"{prefix}{ROOT_CRT}") from None


def _not_regular(path: str, entry: NotRegular, prefix: str) -> StateRefused:
    return StateRefused(
        f"{prefix}{path} is {entry.kind}, not a regular file: refusing to read it "
        f"({prefix}{path} {_APPLY})",
        file=f"{prefix}{path}",
        hint="meshops writes only regular files under state/; restore it from the last "
        "reviewed revision",
    )


def _short(fingerprint: str) -> str:
    return fingerprint[:19]
