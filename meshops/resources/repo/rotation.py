"""Root rotation at repo scope: where it stands, and what this apply does about it.

A new root is either staged by `meshops ca rotate` / `meshops ca import` (into
`state/ca/root.next.*`, recorded in state.yaml) or made by apply itself when the root's
key type changes in mesh.yaml or the root nears its expiry. Apply then rolls it out in
the three phases of `meshops.pki.rotation`, one per apply, each held for `hold` seconds
so that every host pulls the trust bundle of one phase before the next relies on it:

1. add: the trust bundle holds old + new root; node CAs issued from now on are signed
   by the new root; the old root's key moves to root.previous.key (it still signs the
   CRL for node CAs it issued).
2. reissue: every node CA still under the old root is re-issued under the new one
   (hosts then re-issue their leaves: "issuer changed").
3. retire: the bundle holds only the new root; the old key is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from meshops.model.durations import format_duration

if TYPE_CHECKING:
    from meshops.resources.repo.scope import RepoScope

DEFAULT_HOLD = 3600.0  # seconds each phase is held when nobody said otherwise

RootStepAction = Literal["start", "add", "reissue", "retire"]


@dataclass(frozen=True)
class RootStep:
    """What this apply does about the roots.

    `action`: "start" makes a new root and adds it (an automatic rotation), "add" adds
    a staged one, "reissue" re-issues the node CAs in `reissue` under the new root,
    "retire" drops the old root; None does nothing (`waiting` says why, if a rotation
    is held).
    """

    action: RootStepAction | None
    reason: str = ""
    reissue: tuple[str, ...] = ()
    waiting: str = ""


def rotate_before_seconds(mesh: Any) -> float:
    """Start a rotation this long before the root expires: node CAs never outlive
    their root, so they would shrink towards its expiry otherwise."""
    return max(3 * float(mesh.ca.node_ca_ttl), float(mesh.ca.root_ttl) / 10)


def plan_rotation(scope: RepoScope, now: datetime) -> RootStep:
    """The rotation step due now, from state.yaml and the certificates under state/."""
    from meshops.pki.rotation import next_rotation_step, root_rotation_reason

    state = scope.state
    rotation = state.rotation
    if not state.roots:
        return RootStep(None)
    if rotation is None:  # from state.yaml's record: no certificate parsed per plan
        record = state.roots[-1]
        reason = root_rotation_reason(
            record.key_type or scope.mesh.ca.key_type,
            datetime.fromisoformat(record.not_after),
            key_type=scope.mesh.ca.key_type,
            rotate_before_seconds=rotate_before_seconds(scope.mesh),
            now=now,
        )
        return RootStep("start", reason) if reason else RootStep(None)
    if rotation.phase == "staged":
        return RootStep("add", rotation.reason)

    from meshops.pki.parse import load_certificates

    roots = scope.root_certificates()
    node_cas = {}
    for node in sorted(scope.mesh.nodes):
        node_record = state.nodes.get(node)
        path = scope.layout.node_ca_cert(node)
        if node_record is None or node_record.ca is None or not path.exists():
            continue
        node_cas[node] = load_certificates(path.read_bytes(), what=str(path))[0]
    step = next_rotation_step(
        roots=roots,
        node_cas=node_cas,
        phase_entered_at=datetime.fromisoformat(rotation.entered_at),
        min_phase_seconds=rotation.hold,
    )
    if step.phase is None:  # root.crt already holds only the new root: finish retiring
        return RootStep("retire", "rotation 3/3: finishing the old root's retirement")
    if not step.ready(now):
        assert step.not_before is not None
        left = format_duration(int((step.not_before - now).total_seconds()) + 1)
        what = "re-issue node CAs" if step.phase == "reissue" else "retire the old root"
        return RootStep(
            None,
            waiting=f"root rotation: next phase ({what}) held {left} more, until "
            f"{step.not_before.isoformat(timespec='seconds')}, so hosts pull the trust bundle",
        )
    if step.phase == "reissue":
        return RootStep("reissue", f"rotation 2/3: {step.reason}", step.reissue)
    return RootStep(
        "retire",
        "rotation 3/3: every node CA is signed by the new root; the old root leaves the "
        "trust bundle",
    )
