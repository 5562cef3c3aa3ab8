"""`meshops ca rotate|import`: stage a new root CA; `apply` rolls it out in three phases.

Staging writes the new root's certificate and its key, sealed to `ca.recipients`, to
`state/ca/root.next.*` and records the rotation in state.yaml: commit that, and the
next applies add the root to the trust bundle, re-issue the node CAs under it, then
retire the old root, each phase held `--hold` so that every host pulls the previous
one. `import` adopts an existing CA (e.g. step-ca's) instead of making one; on a
repository without a root yet, the next apply makes it the root directly. Staging into
a running mesh changes state/, so the current root signs it (docs/security.md): pass the
root identity (`--identity`).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.cli.context import Context

if TYPE_CHECKING:
    from meshops.resources.repo.scope import RepoScope


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from meshops.cli.main import _add_globals

    sub = parser.add_subparsers(dest="ca_command", metavar="SUBCOMMAND", required=True)
    rotate = sub.add_parser("rotate", help="stage a new root CA, made here")
    imp = sub.add_parser("import", help="stage an existing CA (PEM certificate and key)")
    imp.add_argument("--cert", required=True, type=Path, help="the CA certificate (PEM)")
    imp.add_argument("--key", required=True, type=Path, help="its private key (PEM, unencrypted)")
    for cmd in (rotate, imp):
        _add_globals(cmd, top=False)
        cmd.add_argument(
            "--hold",
            default="1h",
            help="time each rotation phase is held so hosts pull it (default 1h)",
        )


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli.common import make_runtime
    from meshops.engine import lock
    from meshops.errors import MeshError
    from meshops.model.durations import Duration, format_duration
    from meshops.resources import repo_lock_path
    from meshops.resources.repo.manifest import sign_state
    from meshops.resources.repo.root import stage_root
    from meshops.resources.repo.scope import open_repo_scope

    try:
        hold = float(Duration.parse(args.hold))
    except (ValueError, TypeError) as exc:
        raise MeshError(f"--hold {args.hold!r}: {exc}") from None
    loaded = ctx.load(run_tests=False)
    rt = make_runtime(ctx)
    now = rt.now
    with lock.hold(repo_lock_path(ctx.repo_dir), f"ca {args.ca_command}"):
        scope = open_repo_scope(loaded, ctx.repo_dir, now)
        state = scope.state
        if state.rotation is not None:
            raise MeshError(
                f"a root rotation is already under way (phase {state.rotation.phase!r} since "
                f"{state.rotation.entered_at})",
                hint="let `meshops apply` finish it before staging another root",
            )
        if not scope.mesh.ca.recipients:
            raise MeshError("ca.recipients is empty: nobody could unseal the new root's key")
        if args.ca_command == "rotate":
            cert, pem, reason = _made(scope, now)
        else:
            cert, pem, reason = _imported(scope, args.cert, args.key, now)
        if state.roots:  # staging changes state/: the current root signs it
            scope.root_material(rt)  # unsealed before anything is written
        stage_root(scope, cert, pem, reason=reason, now=now, hold=hold)
        if state.roots:
            sign_state(scope, rt)
    from meshops.pki.parse import cert_fingerprint
    from meshops.report.escape import visible

    rel = scope.layout.relative
    ctx.out(f"staged {visible(cert.subject.rfc4514_string())}")  # the subject is the CA's text
    ctx.out(f"  fingerprint {cert_fingerprint(cert)}")
    ctx.out(f"  valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")
    ctx.out(f"  wrote {rel(scope.layout.root_next_cert)}, {rel(scope.layout.root_next_key)}")
    if state.roots:
        ctx.out(
            "next: commit, then `meshops apply` adds it to the trust bundle (1/3); later "
            f"applies re-issue node CAs (2/3) and retire the old root (3/3), each after "
            f"{format_duration(hold)}"
        )
    else:
        ctx.out("next: commit, then `meshops apply` makes it the mesh's root")
    return 0


def _made(scope: RepoScope, now: datetime) -> tuple[Any, bytes, str]:
    from meshops.errors import MeshError
    from meshops.pki import generate_key, issue_root, private_pem

    mesh = scope.mesh
    if not scope.state.roots:
        raise MeshError(
            "there is no root CA yet: nothing to rotate",
            hint="`meshops apply` creates the first root",
        )
    key = generate_key(mesh.ca.key_type)
    cert = issue_root(
        mesh_name=mesh.mesh.name, key=key, now=now, ttl_seconds=float(mesh.ca.root_ttl)
    )
    return cert, private_pem(key), "rotation asked for (meshops ca rotate)"


def _imported(
    scope: RepoScope, cert_path: Path, key_path: Path, now: datetime
) -> tuple[Any, bytes, str]:
    from meshops.errors import MeshError
    from meshops.pki import cert_public_key, import_ca, key_type_of, private_pem
    from meshops.pki.parse import cert_fingerprint

    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise MeshError(f"cannot read {exc.filename}: {exc.strerror}") from None
    cert, key = import_ca(cert_pem, key_pem, now=now)
    mesh = scope.mesh
    kind = key_type_of(cert_public_key(cert))
    if kind != mesh.ca.key_type:
        raise MeshError(
            f"{cert_path}: the CA's key is {kind}, mesh.yaml says ca.key_type: {mesh.ca.key_type}",
            hint=f"set ca.key_type: {kind} in mesh.yaml (or import a {mesh.ca.key_type} CA)",
        )
    roots = scope.root_certificates() if scope.state.roots else []
    for root in roots:
        if cert_fingerprint(root) == cert_fingerprint(cert):
            raise MeshError(f"{cert_path} is already the mesh's root")
        if root.subject == cert.subject:
            raise MeshError(
                f"{cert_path}: its subject {cert.subject.rfc4514_string()} is the current "
                "root's: with two roots of one name, chain building and CRL lookup are "
                "ambiguous",
                hint="import a CA with a distinct subject",
            )
    return cert, private_pem(key), f"imported CA {cert_path.name}"
