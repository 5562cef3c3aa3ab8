"""Root rotation without downtime, as pure data.

Three phases, each its own apply (and its own commit), so hosts pick up each trust
bundle before the next phase relies on it:

1. `add-new-root`: the trust bundle holds old + new root; node CAs issued from now on
   are signed by the new root. Every host now trusts leaves under either root.
2. `reissue`: every node CA still signed by the old root is re-issued under the new
   one (hosts then re-issue their leaves: "issuer changed").
3. `retire-old-root`: once no node CA depends on the old root, the bundle holds only
   the new root.

`next_rotation_step` reads where a rotation stands from the current roots (old first,
new last, as they appear in `state/ca/root.crt`) and node CAs, and says what comes next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from meshops.errors import MeshError
from meshops.model.durations import format_duration
from meshops.model.types import KeyType
from meshops.pki.specs import utc

if TYPE_CHECKING:  # cryptography loads only when a rotation is under way
    from cryptography import x509

RotationPhase = Literal["add-new-root", "reissue", "retire-old-root"]


@dataclass(frozen=True)
class RotationStep:
    """What to do next about the roots.

    `phase` is None when no rotation is under way and none was asked for. `bundle` is
    the trust bundle after this step, `signing_root` the root that signs node CAs from
    now on, `reissue` the nodes whose CA must be re-issued under it. `not_before`, when
    set, is the earliest moment the step should be applied (hosts need time to pull the
    previous phase).
    """

    phase: RotationPhase | None
    bundle: tuple[x509.Certificate, ...]
    signing_root: x509.Certificate
    reissue: tuple[str, ...]
    reason: str
    not_before: datetime | None = None

    def ready(self, now: datetime) -> bool:
        return self.phase is not None and (self.not_before is None or utc(now) >= self.not_before)


def _same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    from meshops.pki.keys import cert_public_key, public_der

    return public_der(cert_public_key(a)) == public_der(cert_public_key(b))


def next_rotation_step(
    *,
    roots: Sequence[x509.Certificate],
    node_cas: Mapping[str, x509.Certificate],
    new_root: x509.Certificate | None = None,
    phase_entered_at: datetime | None = None,
    min_phase_seconds: float = 0.0,
) -> RotationStep:
    """The next rotation phase given the current roots (old first) and node CAs.

    `new_root` asks for a rotation to that root; it is ignored once it is in `roots`.
    `phase_entered_at` (from state) and `min_phase_seconds` hold each phase for a while
    so that hosts pull the bundle of one phase before the next phase is applied.
    """
    if not roots:
        raise MeshError("there is no root CA yet: a rotation needs an existing root")
    if len(roots) > 2:
        raise MeshError(
            f"the trust bundle holds {len(roots)} roots; a rotation works with two at most",
            hint="finish the rotation under way before starting another",
        )
    not_before = None
    if phase_entered_at is not None and min_phase_seconds > 0:
        not_before = utc(phase_entered_at) + timedelta(seconds=min_phase_seconds)

    if len(roots) == 1:
        (current,) = roots
        if new_root is None or _same_key(new_root, current):
            return RotationStep(None, (current,), current, (), "no rotation")
        return RotationStep(
            "add-new-root",
            (current, new_root),
            new_root,
            (),
            "trust the new root everywhere before anything is signed by it",
        )

    old, new = roots
    if new_root is not None and not any(_same_key(new_root, r) for r in roots):
        raise MeshError(
            "a root rotation is already under way; a third root cannot be added",
            hint="finish the rotation (reissue, retire-old-root) before starting another",
        )
    from meshops.pki.renewal import issued_by

    stale = tuple(sorted(node for node, ca in node_cas.items() if not issued_by(ca, new)))
    if stale:
        return RotationStep(
            "reissue",
            (old, new),
            new,
            stale,
            f"{len(stale)} node CA(s) still signed by the old root",
            not_before,
        )
    return RotationStep(
        "retire-old-root",
        (new,),
        new,
        (),
        "every node CA is signed by the new root",
        not_before,
    )


def root_rotation_reason(
    current_key_type: str,
    not_after: datetime,
    *,
    key_type: KeyType,
    rotate_before_seconds: float,
    now: datetime,
) -> str | None:
    """Why the mesh should rotate to a new root of `key_type`, or None: the current
    root's key type differs, or it expires within `rotate_before_seconds`."""
    if current_key_type != key_type:
        return f"root key type changed: {current_key_type} -> {key_type}"
    remaining = (utc(not_after) - utc(now)).total_seconds()
    if remaining <= rotate_before_seconds:
        if remaining <= 0:
            return f"root expired {format_duration(round(-remaining))} ago"
        return (
            f"root expires in {format_duration(round(remaining))} "
            f"< {format_duration(rotate_before_seconds)}"
        )
    return None
