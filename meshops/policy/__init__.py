"""Policies compiled into one access table; tests and diffs over it (pure)."""

from meshops.policy.table import (
    MAX_GRANTS,
    AccessDiff,
    AccessTable,
    CallerRule,
    Grant,
    PortGrant,
    access_diff,
    compile_policies,
    grant_count,
    method_matches,
    path_matches,
)

__all__ = [
    "MAX_GRANTS",
    "AccessDiff",
    "AccessTable",
    "CallerRule",
    "Grant",
    "PortGrant",
    "access_diff",
    "compile_policies",
    "grant_count",
    "method_matches",
    "path_matches",
]
