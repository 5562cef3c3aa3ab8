"""`meshops status`: on a host (`--node`), certificates and expiry, WireGuard peers and
the last apply; on the mesh repository, the roots, a rotation under way, node CAs and
the CRL."""

from __future__ import annotations

import argparse
import json
from typing import Any

from meshops.cli.context import Context
from meshops.engine import clock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    node = ctx.resolve_node()
    if node is None:
        status, render_text = _repo(ctx), render_repo
    else:
        status, render_text = _host(ctx, node), render
    if args.format == "json":
        ctx.out(json.dumps(status, indent=2, sort_keys=True))
    else:
        from meshops.report.escape import visible_lines

        # what the last apply recorded quotes commands' own output
        ctx.out(visible_lines(render_text(status).rstrip("\n")))
    return 0


def _host(ctx: Context, node: str) -> dict[str, Any]:
    from meshops.cli.common import make_runtime, use_host_config
    from meshops.resources import git_revision
    from meshops.resources.host import open_host_scope
    from meshops.resources.host.status import collect
    from meshops.resources.host.trust import parse_pins

    use_host_config(ctx, make_runtime(ctx))
    now = clock.now()
    pins = parse_pins((ctx.host_config() or {}).get("trust"))
    scope = open_host_scope(
        ctx.load_on_host(), ctx.repo_dir, node, ctx.root,
        pins=pins, revision=git_revision(ctx.repo_dir), now=now,
    )  # fmt: skip
    return collect(scope, now)


def _repo(ctx: Context) -> dict[str, Any]:
    from meshops.resources import git_revision
    from meshops.resources.repo.scope import open_repo_scope
    from meshops.resources.repo.status import collect

    now = clock.now()
    scope = open_repo_scope(ctx.load(run_tests=False), ctx.repo_dir, now)
    return collect(scope, now, git_revision(ctx.repo_dir))


def render_repo(status: dict[str, Any]) -> str:
    rev = (status["revision"] or "")[:12] or "-"
    lines = [f"mesh {status['mesh']} (repository at {rev})", "", "root CA:"]
    for root in status["roots"]:
        lines.append(
            f"  {root['fingerprint'][:19]}  {root['key_type']:<11} "
            f"expires {_left(root['expires_in_seconds'])}"
        )
    if not status["roots"]:
        lines.append("  none yet (`meshops apply` creates it)")
    rotation = status["rotation"]
    if rotation:
        lines.append(
            f"  rotation: {rotation['phase']} since {rotation['since']} ({rotation['reason']}); "
            f"next: {rotation['next']}, due {rotation['due_at']}"
        )
    lines += ["", "node CAs:"]
    for ca in status["node_cas"]:
        lines.append(_cert_line(ca["node"], ca, missing="MISSING (apply issues it)"))
    crl = status["crl"]
    lines += [
        "",
        f"CRL: number {crl['number']}, {crl['revoked']} revoked, next update "
        f"{crl['next_update'] or '-'}",
    ]
    if status["removed_nodes"]:
        lines.append(f"removed, not yet applied: {', '.join(status['removed_nodes'])}")
    signed = status.get("manifest")
    lines.append(
        f"state/ signed: version {signed['version']} by {signed['signer'][:19]} at "
        f"{signed['signed_at']} ({signed['files']} files)"
        if signed
        else "state/ NOT signed yet (`meshops apply` with the root identity signs it)"
    )
    return "\n".join(lines) + "\n"


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    from meshops.model.durations import format_duration

    return format_duration(max(0, seconds)) + " ago"


def _left(seconds: int) -> str:
    from meshops.model.durations import format_duration

    return f"in {format_duration(seconds)}" if seconds > 0 else f"{format_duration(-seconds)} ago"


def _cert_line(name: str, cert: dict[str, Any], *, missing: str) -> str:
    """One certificate's row: status, expiry and renewal time (host leaves, node CAs)."""
    if cert["status"] == "missing":
        return f"  {name:<16} {missing}"
    return (
        f"  {name:<16} {cert['status']:<8} expires {_left(cert['expires_in_seconds'])} "
        f"(renews at {cert['renew_at']})"
    )


def _trust_lines(trust: dict[str, Any]) -> list[str]:
    if trust["source"] == "unsigned":
        return [
            "trust: state/ is NOT signed (a repository made by an earlier meshops): run "
            "`meshops apply` at repo scope to sign it; this host pins the first signed roots"
        ]
    where = "host.yaml" if trust["source"] == "host.yaml" else "its first apply"
    lines = [f"trust: roots pinned by {where}:"]
    lines += [f"  {fingerprint}" for fingerprint in trust["pinned"]]
    if trust["trusted"] != trust["pinned"]:
        lines.append("  trusted now (followed through signed root rotations):")
        lines += [f"    {fingerprint}" for fingerprint in trust["trusted"]]
    rev = (trust.get("revision") or "")[:12] or "-"
    lines.append(
        f"  state/ version {trust['manifest_version']} signed by "
        f"{(trust['signed_by'] or '-')[:19]} (revision {rev})"
    )
    if trust.get("refused"):
        lines.append(
            f"  REFUSED the latest revision, kept the last good state/: {trust['refused']}"
        )
    return lines


def _crl_lines(crls: list[dict[str, Any]]) -> list[str]:
    """Root CRLs one by one; node CA CRLs summed up, except those that need attention."""
    lines = []
    node_cas = [c for c in crls if c["kind"] == "node CA"]
    shown = [c for c in crls if c["kind"] == "root" or c["status"] != "ok"]
    for crl in shown:
        mark = {
            "ok": "",
            "warning": "  WARNING: re-sign it (repo apply) and pull",
            "expired": "  EXPIRED: verifiers refuse every client",
        }[crl["status"]]
        lines.append(
            f"  {crl['issuer'][:40]:<40} next update {_left(crl['expires_in_seconds'])}{mark}"
        )
    ok = [c for c in node_cas if c["status"] == "ok"]
    if ok:
        first = min(ok, key=lambda c: c["expires_in_seconds"])
        lines.append(
            f"  {len(ok)} node CA CRL(s) ok, the first next update "
            f"{_left(first['expires_in_seconds'])}"
        )
    return lines or ["  none"]


def _firewall_lines(firewall: dict[str, Any] | None) -> list[str]:
    if firewall is None:
        return []
    if not firewall["enabled"]:
        return ["", "firewall: off (firewall.enabled: false)"]
    if not firewall["present"]:
        return ["", f"firewall {firewall['table']}: MISSING (apply creates it)"]
    lines = [
        "",
        f"firewall {firewall['table']}: default deny, dropped {firewall['dropped_packets']} "
        f"packets ({firewall['dropped_bytes']} B)",
    ]
    for opening in firewall["openings"]:
        who = ", ".join(opening["nodes"]) or "nobody"
        lines.append(f"  {opening['name']:<24} {opening['kind']:<9} from {who}")
    return lines


def render(status: dict[str, Any]) -> str:
    lines = [f"node {status['node']} (mesh {status['mesh']})", "", "certificates:"]
    for ident in status["identities"]:
        lines.append(_cert_line(ident["name"], ident, missing="MISSING"))
    if not status["identities"]:
        lines.append("  (no identities on this node)")
    ca = status["node_ca"]
    if ca:
        lines.append(f"  {'node CA':<16} {'':<8} expires {_left(ca['expires_in_seconds'])}")
    wg = status["wireguard"]
    if not wg.get("enabled", True):
        lines += ["", "wireguard: off (certificates only)"]
    else:
        lines += ["", f"wireguard {wg['interface']}: " + ("up" if wg["present"] else "MISSING")]
    if wg["present"]:
        lines.append(f"  listen port {wg['listen_port']}, addresses {', '.join(wg['addresses'])}")
    for peer in wg["peers"]:
        name = peer["node"] or peer["public_key"][:12]
        if peer["state"] == "missing":
            lines.append(f"  {name:<16} not configured")
            continue
        lines.append(
            f"  {name:<16} {peer['state']:<6} {peer['endpoint'] or '-':<22} handshake "
            f"{_age(peer['handshake_age_seconds'])}, "
            f"rx {peer['rx_bytes']} B, tx {peer['tx_bytes']} B"
        )
    lines += _firewall_lines(status.get("firewall"))
    lines += ["", *_trust_lines(status["trust"]), "", "CRLs:", *_crl_lines(status["crls"])]
    last = status.get("last_apply")
    lines.append("")
    if last:
        rev = (last.get("revision") or "")[:12] or "-"
        lines.append(f"last apply: {last['time']} {last['result']} (revision {rev})")
        failures = last.get("failures")
        if failures:  # every failure, not only the first
            lines += [f"  error: {f['address']}: {_first_line(f['error'])}" for f in failures]
        elif last.get("error"):  # recorded by an older meshops
            lines.append(f"  error: {last['error']}")
        if last.get("skipped"):
            lines.append(f"  not attempted: {', '.join(last['skipped'])}")
    else:
        lines.append("last apply: never")
    return "\n".join(lines) + "\n"
