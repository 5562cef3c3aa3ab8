"""`review` of enrolment requests (docs/keys.md): each request at head is checked as
`validate` checks it (signatures, the node's names, keys no other node uses), and each
one the change adds or replaces is said in words (pure: two snapshots in)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from meshops.errors import Problem
from meshops.gitops.revisions import Snapshot

if TYPE_CHECKING:
    from meshops.enroll.request import Proven
    from meshops.model import Loaded
    from meshops.resources.repo.state import StateDoc


@dataclass(frozen=True)
class EnrolmentReview:
    changed: tuple[str, ...] = ()  # enroll/ files that differ between base and head
    summary: tuple[str, ...] = ()  # one line per request added or replaced
    errors: tuple[Problem, ...] = ()  # located in the request file or mesh.yaml
    proven: tuple[tuple[str, Proven], ...] = ()  # head's requests that hold, by node

    def proven_by_node(self) -> dict[str, Proven]:
        return dict(self.proven)


def review_enrolments(
    base: Snapshot, head: Snapshot, head_loaded: Loaded, now: datetime
) -> EnrolmentReview:
    from meshops.enroll import ENROLL_DIR, known_keys, recorded_addresses
    from meshops.enroll.checks import check_enrolments
    from meshops.gitops.state_review import _state_doc

    names = sorted(set(base.enroll) | set(head.enroll))
    changed = tuple(
        f"{_prefix(head)}{ENROLL_DIR}/{n}"
        for n in names
        if base.enroll.get(n) != head.enroll.get(n)
    )
    if not head.enroll and not any(head_loaded.mesh.host_held(n) for n in head_loaded.mesh.nodes):
        return EnrolmentReview(changed)
    from meshops.resources.repo.state import StateDoc

    state = _state_doc(head.state.get("state.yaml")) or StateDoc()
    checked = check_enrolments(
        head_loaded, head.enroll, now=now, known=known_keys(state),
        addresses=recorded_addresses(state), display_dir=_prefix(head),
    )  # fmt: skip
    mesh = head_loaded.mesh
    before = _state_doc(base.state.get("state.yaml"))
    summary = []
    for node, proof in sorted(checked.proven.items()):
        if base.enroll.get(f"{node}.yaml") == head.enroll.get(f"{node}.yaml"):
            continue
        summary.append(_line(node, proof, mesh.mesh.domain, before))
    return EnrolmentReview(
        changed, tuple(summary), checked.problems, tuple(sorted(checked.proven.items()))
    )


def _prefix(snapshot: Snapshot) -> str:
    parent = snapshot.mesh_path.rpartition("/")[0]
    return f"{parent}/" if parent else ""


def _line(node: str, proof: Proven, domain: str, before: StateDoc | None) -> str:
    from meshops.enroll.request import short_key

    parts = []
    if proof.wireguard_key:
        parts.append(f"WireGuard key {short_key(proof.wireguard_key)}")
    parts.append(
        f"node CA request for {node}.{domain} ({proof.request.key_type}, key "
        f"{short_key(proof.ca_key)})"
    )
    parts.append("signatures valid")
    old = before.nodes.get(node) if before is not None else None
    if old is None or old.ca is None:
        verb = "enrols"
    elif old.ca.public_key and old.ca.public_key != proof.ca_key and not old.ca.recipients:
        verb = "enrols new keys (rotation; the old node CA will be revoked)"
    elif old.ca.public_key == proof.ca_key:
        verb = "keeps its enrolled keys"
    else:
        verb = (
            "moves to host-held keys and enrols (its sealed keys leave state/; the old "
            "node CA will be revoked)"
        )
    return f"{node} {verb}: {', '.join(parts)}"
