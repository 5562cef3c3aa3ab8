"""Policies compiled into one access table; tests and diffs over it (pure)."""

from meshops.policy.table import (
    AccessDiff,
    AccessTable,
    CallerRule,
    Grant,
    access_diff,
    compile_policies,
    method_matches,
    path_matches,
)

__all__ = [
    "AccessDiff",
    "AccessTable",
    "CallerRule",
    "Grant",
    "access_diff",
    "compile_policies",
    "method_matches",
    "path_matches",
]
