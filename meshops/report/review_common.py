"""Wording shared by the review renderers (text and markdown): one phrasing everywhere."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from meshops.gitops.impact import NodeImpact
from meshops.gitops.review import Review
from meshops.policy import Grant, PortGrant
from meshops.report.words import plural

__all__ = ["plural"]  # re-exported: the review renderers take it from here

NAMES_SHOWN = 5


def grant_line(grant: Grant) -> str:
    """`web -> api  GET /v1/*  (policy frontends-read-api)`."""
    method = "any method" if grant.method == "*" else grant.method
    path = "any path" if grant.path == "*" else grant.path
    return f"{grant.caller} -> {grant.callee}  {method} {path}  (policy {grant.policy})"


def port_grant_line(grant: PortGrant) -> str:
    """`api -> db  5432/tcp (L4, node-granular)  (policy api-to-db)`."""
    return f"{grant.caller} -> {grant.callee}  {grant.port} (L4)  (policy {grant.policy})"


def access_lines(review: Review) -> list[str]:
    """The access diff, one `+`/`-` line per grant: HTTP grants, then L4 ports."""
    diff = review.access
    lines = [f"+ {grant_line(g)}" for g in diff.gained]
    lines += [f"- {grant_line(g)}" for g in diff.lost]
    lines += [f"+ {port_grant_line(g)}" for g in diff.ports_gained]
    lines += [f"- {port_grant_line(g)}" for g in diff.ports_lost]
    return lines


def names(items: Sequence[str], shown: int = NAMES_SHOWN) -> str:
    if len(items) <= shown:
        return ", ".join(items)
    return ", ".join(items[:shown]) + f", … +{len(items) - shown} more"


def _counted(sign: str, items: Sequence[str]) -> str:
    return f"{sign}{len(items)} ({names(items)})"


def impact_parts(impact: NodeImpact) -> list[str]:
    """One node's impact as short phrases, without the node's name (so equal impacts group)."""
    parts = list(impact.own_changes)
    certs = [f"+{i}" for i in impact.certs_added] + [f"-{i}" for i in impact.certs_removed]
    certs += [f"~{i}" for i in impact.certs_changed]
    if certs:
        parts.append("certs " + names(certs))
    peers = []
    if impact.all_peers_added:
        peers.append(f"+{impact.peer_count} (every other node)")
    if impact.all_peers_changed:
        peers.append(f"~{impact.peer_count} (every peer, in place)")
    for sign, items in (
        ("+", impact.peers_added),
        ("-", impact.peers_removed),
        ("~", impact.peers_changed),
    ):
        if items:
            peers.append(_counted(sign, items))
    if peers:
        parts.append("peers " + ", ".join(peers))
    if impact.proxies_changed:
        parts.append("proxies " + names(impact.proxies_changed))
    if impact.session_resets:
        parts.append(f"session reset with {plural(len(impact.session_resets), 'peer')}")
    if impact.reloads:
        parts.append("runs " + "; ".join(impact.reloads))
    if impact.hosts_changed:
        parts.append("/etc/hosts block")
    if impact.firewall_changes:
        parts.append("firewall " + names(impact.firewall_changes))
    return parts


def grouped_impacts(impacts: Sequence[NodeImpact]) -> list[tuple[list[str], str, list[str]]]:
    """(nodes, status, phrases) with nodes of identical impact folded into one row."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for impact in impacts:
        groups[(impact.status, tuple(impact_parts(impact)))].append(impact.node)
    order = {"removed": 0, "added": 1, "changed": 2}
    rows = [(nodes, status, list(parts)) for (status, parts), nodes in groups.items()]
    rows.sort(key=lambda row: (order[row[1]], row[0][0]))
    return rows


def state_fact(review: Review) -> str:
    """`state/: 12 files changed, signed (version 4 -> 5)` or `... 2 errors`."""
    state = review.state
    files = plural(len(state.changed), "file")
    if state.errors:
        return f"state/: {files} changed, {plural(len(state.errors), 'error')}"
    versions = f"{state.base_version or 0} -> {state.head_version}"
    return f"state/: {files} changed, signed (version {versions})"


def headline(review: Review) -> str:
    """The one-line summary both renderers lead with."""
    if not review.head.valid:
        return f"{review.head.mesh_path} at {review.head.label} does not validate"
    if review.unchanged:
        facts = ["no desired-state changes"]
    elif not review.changes and review.access.empty:
        facts = ["mesh.yaml unchanged"]  # only state/ changed: said below
    else:
        facts = [plural(len(review.changes), "desired-state change")]
        access = review.access
        gained = len(access.gained) + len(access.ports_gained)
        lost = len(access.lost) + len(access.ports_lost)
        facts.append(f"access +{gained} / -{lost}")
    if review.state.changed:
        facts.append(state_fact(review))
    enrolments = review.enrolments
    if enrolments.errors:
        facts.append(f"enrolment requests: {plural(len(enrolments.errors), 'error')}")
    elif enrolments.summary:
        facts.append(plural(len(enrolments.summary), "enrolment"))
    tests = review.tests
    facts.append(f"policy tests {tests.passed}/{tests.total} passed")
    if review.warnings:
        facts.append(plural(len(review.warnings), "warning"))
    if review.impacts:
        facts.append(f"{plural(len(review.impacts), 'node')} affected")
    if review.state_issues:
        facts.append("state/ out of date")
    return " · ".join(facts)
