"""The wall clock, in one place: every run takes its `now` from here.

`MESHOPS_TEST_NOW` (an ISO 8601 time with a UTC offset, e.g.
`2026-11-01T12:00:00+00:00`) replaces the clock, for tests and demos that must show
time passing without waiting: a repository applied "eight days ago" whose CRL a real
nginx then checks against the real clock. Certificates and CRLs made under it are dated
at that time. Never set it in production.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from meshops.errors import MeshError

TEST_NOW = "MESHOPS_TEST_NOW"


def now() -> datetime:
    override = os.environ.get(TEST_NOW)
    if not override:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(override)
    except ValueError:
        raise MeshError(f"{TEST_NOW}={override!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise MeshError(f"{TEST_NOW}={override!r} needs a UTC offset (+00:00)")
    return when.astimezone(UTC)
