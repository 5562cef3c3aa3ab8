"""Requests against mesh.yaml and against each other (pure: bytes and values in, proven
requests and located problems out). Used alike by `validate`, repo scope and `review`.

A request must verify (its proofs of possession), be for a node of this mesh that holds
its keys on the host, ask for that node's names only, carry a node CA key of
`ca.key_type` and, for a WireGuard node, a WireGuard key; no key may be another node's,
whether that node enrols by request or has keys recorded in state/state.yaml.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING

from meshops.enroll import ENROLL_DIR
from meshops.enroll.request import Proven, parse_request, prove
from meshops.errors import Problem, ValidationFailed
from meshops.model.types import NAME_RE

if TYPE_CHECKING:
    from meshops.model import Loaded
    from meshops.model.mesh import Mesh

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class KnownKeys:
    """A node's public keys as state/state.yaml records them (a key in use)."""

    wireguard: str | None = None  # base64
    node_ca: str | None = None  # sha256:<hex> of the node CA's SubjectPublicKeyInfo
    retired: tuple[str, ...] = ()  # keys rotated away: "wg:<base64>", "ca:sha256:<hex>"


@dataclass(frozen=True)
class Enrolments:
    """The requests that hold, by node, and every problem found (located)."""

    proven: dict[str, Proven] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    verified: frozenset[str] = frozenset()  # sha256 of each request file whose proofs held

    def raise_problems(self) -> None:
        if self.problems:
            raise ValidationFailed(list(self.problems))


def request_path(node: str) -> str:
    """Where a node's request lives, relative to the mesh repository (mesh.yaml's dir)."""
    return f"{ENROLL_DIR}/{node}.yaml"


def check_enrolments(
    loaded: Loaded,
    files: Mapping[str, bytes],
    *,
    now: datetime,
    known: Mapping[str, KnownKeys] | None = None,
    addresses: Mapping[str, Sequence[str]] | None = None,
    display_dir: str = "",
    verified: frozenset[str] = frozenset(),
) -> Enrolments:
    """Check the request files `files` (name under enroll/ -> bytes) against the mesh.

    `known`: the keys state.yaml records per node; `addresses`: the overlay addresses it
    allocated (a node's pinned `address` counts without it); `display_dir`: what to put
    before `enroll/` in locations (the directory of mesh.yaml as the user named it);
    `verified`: sha256 of request files whose signatures held before (a cache of this
    checkout's own): their three signature checks, most of the cost, are skipped.
    """
    mesh = loaded.mesh
    known = known or {}
    proven: dict[str, Proven] = {}
    problems: list[Problem] = []
    for name in sorted(files):
        shown = f"{display_dir}{ENROLL_DIR}/{name}"
        digest = hashlib.sha256(files[name]).hexdigest()
        got = _one(mesh, name, files[name], shown, now, addresses or {}, digest not in verified)
        if isinstance(got, Proven):
            proven[got.node] = got
        else:
            problems += got
    problems += _shared_keys(proven, known)
    for node in sorted(mesh.nodes):
        if mesh.host_held(node) and node not in proven and not _named(files, node):
            problems.append(_missing(loaded, node, display_dir))
    refused = {p.location.file for p in problems if p.location is not None}
    good = {n: p for n, p in proven.items() if p.document.name not in refused}
    held = frozenset(hashlib.sha256(files[f"{n}.yaml"]).hexdigest() for n in proven)
    return Enrolments(good, tuple(problems), held)


def _named(files: Mapping[str, bytes], node: str) -> bool:
    return f"{node}.yaml" in files


def _one(
    mesh: Mesh,
    name: str,
    data: bytes,
    shown: str,
    now: datetime,
    addresses: Mapping[str, Sequence[str]],
    signatures: bool = True,
) -> Proven | list[Problem]:
    stem = name.removesuffix(".yaml")
    if not name.endswith(".yaml") or not NAME_RE.match(stem):
        return [Problem(None, "", f"{shown}: not a request file name: enroll/<node>.yaml")]
    try:
        request, doc = parse_request(data, shown)
        if request.node != stem:
            return [
                doc.problem(
                    ("node",),
                    f"node {request.node!r} in the request file of {stem}: "
                    f"a request for {request.node} lives in "
                    f"{request_path(request.node)}",
                )
            ]
        proof = prove(request, doc, signatures=signatures)
    except ValidationFailed as exc:
        return list(exc.problems)
    problems = _against_mesh(mesh, proof, now, addresses)
    return problems or proof


def _against_mesh(
    mesh: Mesh, proof: Proven, now: datetime, addresses: Mapping[str, Sequence[str]]
) -> list[Problem]:
    request, doc, node = proof.request, proof.document, proof.node
    if node not in mesh.nodes:
        return [
            doc.problem(
                ("node",),
                f"there is no node {node} in mesh.yaml: add it (with "
                f"`keys: host`), or remove {request_path(node)}",
            )
        ]
    if not mesh.host_held(node):
        return [
            doc.problem(
                ("node",),
                f"node {node} holds sealed keys in mesh.yaml: set "
                f"`keys: host` on it to enrol the keys of this request (docs/keys.md)",
            )
        ]
    problems = []
    if request.mesh != mesh.mesh.name:
        problems.append(
            doc.problem(
                ("mesh",), f"the request is for mesh {request.mesh!r}, this is {mesh.mesh.name!r}"
            )
        )
    from meshops.pki.keys import key_type_of

    actual = key_type_of(proof.public_key)
    if actual != mesh.ca.key_type or request.key_type != actual:
        problems.append(
            doc.problem(
                ("node_ca", "key_type"),
                f"the node CA key is {actual}, mesh.yaml's "
                f"ca.key_type is {mesh.ca.key_type}: run `meshops host rotate-keys "
                f"--node {node}` on that host for a key of the right type",
            )
        )
    if mesh.wireguard_on(node) and request.wireguard_key is None:
        problems.append(
            doc.problem(
                (),
                f"node {node} runs WireGuard and the request has no WireGuard "
                f"key: run `meshops host rotate-keys --node {node}` on that host",
            )
        )
    problems += _names(mesh, proof, addresses.get(node, ()))
    next_update = proof.crl.next_update_utc
    if next_update is not None and next_update <= now:
        problems.append(
            doc.problem(
                ("node_ca", "crl"),
                f"the node CA's CRL expired on "
                f"{next_update:%Y-%m-%d %H:%M}Z: run `meshops host rotate-keys "
                f"--node {node}` on that host",
            )
        )
    return problems


def node_names(
    mesh: Mesh, node: str, recorded: Sequence[str]
) -> tuple[tuple[str, ...], set[IPAddress]]:
    """The DNS subtrees and addresses `node`'s CA may vouch for (its name constraints),
    with the overlay addresses known so far (pinned, or recorded in state.yaml)."""
    from meshops.pki import NodeCASpec

    if mesh.wireguard_on(node):
        own = mesh.nodes[node]
        overlay: list[IPAddress] = [ip_address(a) for a in recorded]
        overlay += [a for a in (own.address, own.address6) if a is not None]
    else:
        overlay = list(mesh.underlay_ips(node))
    spec = NodeCASpec.for_node(mesh, node, overlay=overlay)
    return spec.permitted_dns, set(spec.ips)


def _names(mesh: Mesh, proof: Proven, recorded: Sequence[str]) -> list[Problem]:
    dns_allowed, ips_allowed = node_names(mesh, proof.node, recorded)
    dns, ips = proof.names()
    foreign = [f"dns:{n}" for n in dns if not any(_within(n, d) for d in dns_allowed)]
    foreign += [f"ip:{ip}" for ip in ips if ip_address(ip) not in ips_allowed]
    if not foreign:
        return []
    return [
        proof.document.problem(
            ("node_ca", "csr"),
            f"the CSR asks for names that are not node {proof.node}'s: {', '.join(foreign)} "
            f"(its names: {', '.join(dns_allowed)}"
            + "".join(f", {ip}" for ip in sorted(ips_allowed, key=str))
            + ")",
        )
    ]


def _within(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def _shared_keys(proven: Mapping[str, Proven], known: Mapping[str, KnownKeys]) -> list[Problem]:
    """No WireGuard key and no node CA key may belong to two nodes."""
    problems = []
    wg_owner: dict[str, str] = {}
    ca_owner: dict[str, str] = {}
    for node, keys in sorted(known.items()):
        if keys.wireguard:
            wg_owner.setdefault(keys.wireguard, f"node {node} (state/state.yaml)")
        if keys.node_ca:
            ca_owner.setdefault(keys.node_ca, f"node {node} (state/state.yaml)")
        for retired in keys.retired:
            kind, _, old_key = retired.partition(":")
            by_kind = wg_owner if kind == "wg" else ca_owner
            by_kind.setdefault(old_key, f"node {node} before a rotation (retired keys never enrol)")
    claims_wg: dict[str, str] = {}
    claims_ca: dict[str, str] = {}
    for node, proof in sorted(proven.items()):  # the first claim holds; later ones are refused
        if proof.wireguard_key:
            claims_wg.setdefault(proof.wireguard_key, node)
        claims_ca.setdefault(proof.ca_key, node)
    for node, proof in sorted(proven.items()):
        doc = proof.document
        for key, where, owners, claims, what in (
            (proof.wireguard_key, ("wireguard", "public_key"), wg_owner, claims_wg, "WireGuard"),
            (proof.ca_key, ("node_ca", "key"), ca_owner, claims_ca, "node CA"),
        ):
            if key is None:
                continue
            other = claims.get(key)
            if other is not None and other != node:
                who = f"node {other} ({request_path(other)})"
            else:
                who = owners.get(key, "")
                if who.startswith(f"node {node} (state"):
                    who = ""  # its own key, already enrolled
            if who:
                problems.append(
                    doc.problem(
                        where,
                        f"this {what} key is already used by {who}: a key "
                        "belongs to one node; make new keys on this host with "
                        f"`meshops host rotate-keys --node {node}`",
                    )
                )
    return problems


def _missing(loaded: Loaded, node: str, display_dir: str) -> Problem:
    mesh = loaded.mesh
    path = ("nodes", node, "keys") if mesh.nodes[node].keys is not None else ("nodes", node)
    how = "keys: host" if mesh.nodes[node].keys else "keys: host, the default of ca.node_keys"
    return loaded.document.problem(
        path,
        f"node {node} holds its keys on the host ({how}) and has no enrolment request "
        f"{display_dir}{request_path(node)}: run `meshops host init --node {node}` on that host "
        "and commit the file it writes (docs/keys.md)",
    )
