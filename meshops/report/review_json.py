"""`meshops review --format json`: a stable, documented document.

Schema (format_version 1); fields are only ever added:

    {
      "format_version": 1,
      "ok": bool,                 # head validates, policy tests pass, state/ verifies,
                                  # enrolment requests hold (exit 0)
      "base": Revision, "head": Revision,
      "notes": [str],             # facts about the comparison (base not an ancestor, ...)
      "summary": {"changes": int, "access_gained": int, "access_lost": int,
                  "ports_gained": int, "ports_lost": int,
                  "tests_total": int, "tests_failed": int, "warnings": int,
                  "nodes_impacted": int, "state_issues": int, "state_changed": int,
                  "state_errors": int},
      "changes": [{"address": str, "section": str, "name": str,
                   "action": "added" | "removed" | "changed", "details": [str]}],
      "access": {"gained": [Grant], "lost": [Grant],
                 "ports_gained": [PortGrant], "ports_lost": [PortGrant]},
      "tests": {"total": int, "passed": int, "failures": [Problem]},
      "warnings": [{"code": str, "message": str}],
      "nodes": [{"node": str, "status": "added" | "removed" | "changed",
                 "own_changes": [str], "certs_added": [str], "certs_removed": [str],
                 "certs_changed": [str], "peer_count": int, "peers_added": [str],
                 "peers_removed": [str], "peers_changed": [str],
                 "all_peers_added": bool,    # a new node: all peer_count peers are new
                 "all_peers_changed": bool,  # keepalive/network: every peer, in place
                 "proxies_changed": [str],
                 "session_resets": [str], "reloads": [str], "hosts_changed": bool,
                 "firewall_changes": [str]}],  # `+db:5432/tcp from api-1`, `-db:53/udp`
      "state": {"issues": [str],  # state/ vs mesh.yaml at head (out of date: warnings)
                "changed": [str],  # state/ files that differ between base and head
                "verified": bool,  # they did, and head's state/ is apply's signed output
                "errors": [{"file": str | null, "message": str}],  # changed outside apply
                "summary": [str],  # the verified change in words (roots, node CAs, ...)
                "manifest": {"base_version": int | null, "head_version": int | null,
                             "signer": str | null}},
      "enrolments": {"changed": [str],     # enroll/ files that differ (docs/keys.md)
                     "summary": [str],     # each request added or replaced, in words
                     "errors": [Problem]},  # requests refused (exit 1), located
      "plan": null | {"note": str, "changes": [{"action": "create" | "update" |
                 "replace" | "destroy", "symbol": str, "address": str, "reason": str}]}
    }
    Revision = {"ref": str, "commit": str | null, "mesh_path": str, "found": bool,
                "valid": bool, "problems": [Problem]}
    Grant    = {"caller": str, "callee": str, "method": str, "path": str, "policy": str}
    PortGrant = {"caller": str, "callee": str, "port": "5432/tcp", "policy": str}  # L4
    Problem  = {"file": str | null, "line": int | null, "column": int | null,
                "path": str, "message": str}

Lists are sorted (changes by section order then name, grants by caller, callee, method,
path; nodes by name). Codes of warnings: wildcard-policy, longer-ttl,
ca-recipient-removed, node-removed, node-recipient-changed, mtls-permissive,
min-tls-lowered, trust-domain-changed, network-changed, secrets-format-changed,
identity-on-many-nodes, runs-command (a new or changed reload or on_renew command),
writes-outside-meshops (a new or changed proxy.config or outputs.dir outside
/etc/meshops).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from meshops.errors import Problem
from meshops.gitops.review import Review, RevisionInfo
from meshops.policy import Grant, PortGrant

FORMAT_VERSION = 1


def _problem(problem: Problem) -> dict[str, Any]:
    loc = problem.location
    return {
        "file": loc.file if loc else None,
        "line": loc.line if loc else None,
        "column": loc.column if loc else None,
        "path": problem.path,
        "message": problem.message,
    }


def _revision(info: RevisionInfo) -> dict[str, Any]:
    return {
        "ref": info.label,
        "commit": info.commit,
        "mesh_path": info.mesh_path,
        "found": info.found,
        "valid": info.valid,
        "problems": [_problem(p) for p in info.problems],
    }


def _grant(grant: Grant) -> dict[str, str]:
    return {
        "caller": grant.caller,
        "callee": grant.callee,
        "method": grant.method,
        "path": grant.path,
        "policy": grant.policy,
    }


def _port_grant(grant: PortGrant) -> dict[str, str]:
    return {
        "caller": grant.caller,
        "callee": grant.callee,
        "port": str(grant.port),
        "policy": grant.policy,
    }


def review_to_dict(review: Review) -> dict[str, Any]:
    plan = None
    if review.plan is not None:
        plan = {
            "note": review.plan.note,
            "changes": [
                {"action": c.action, "symbol": c.symbol, "address": c.address, "reason": c.reason}
                for c in review.plan.lines
            ],
        }
    return {
        "format_version": FORMAT_VERSION,
        "ok": review.ok,
        "base": _revision(review.base),
        "head": _revision(review.head),
        "notes": list(review.notes),
        "summary": {
            "changes": len(review.changes),
            "access_gained": len(review.access.gained),
            "access_lost": len(review.access.lost),
            "ports_gained": len(review.access.ports_gained),
            "ports_lost": len(review.access.ports_lost),
            "tests_total": review.tests.total,
            "tests_failed": len(review.tests.failures),
            "warnings": len(review.warnings),
            "nodes_impacted": len(review.impacts),
            "state_issues": len(review.state_issues),
            "state_changed": len(review.state.changed),
            "state_errors": len(review.state.errors),
        },
        "changes": [
            {
                "address": c.address,
                "section": c.section,
                "name": c.name,
                "action": c.action,
                "details": list(c.details),
            }
            for c in review.changes
        ],
        "access": {
            "gained": [_grant(g) for g in review.access.gained],
            "lost": [_grant(g) for g in review.access.lost],
            "ports_gained": [_port_grant(g) for g in review.access.ports_gained],
            "ports_lost": [_port_grant(g) for g in review.access.ports_lost],
        },
        "tests": {
            "total": review.tests.total,
            "passed": review.tests.passed,
            "failures": [_problem(p) for p in review.tests.failures],
        },
        "warnings": [{"code": w.code, "message": w.message} for w in review.warnings],
        "nodes": [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(i).items()}
            for i in review.impacts
        ],
        "state": {
            "issues": list(review.state_issues),
            "changed": list(review.state.changed),
            "verified": review.state.verified,
            "errors": [{"file": e.file, "message": e.message} for e in review.state.errors],
            "summary": list(review.state.summary),
            "manifest": {
                "base_version": review.state.base_version,
                "head_version": review.state.head_version,
                "signer": review.state.signer,
            },
        },
        "enrolments": {
            "changed": list(review.enrolments.changed),
            "summary": list(review.enrolments.summary),
            "errors": [_problem(p) for p in review.enrolments.errors],
        },
        "plan": plan,
    }


def render_json(review: Review) -> str:
    return json.dumps(review_to_dict(review), indent=2) + "\n"
