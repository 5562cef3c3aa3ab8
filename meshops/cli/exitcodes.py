"""The exit codes of every command, in one place (documented in docs/commands.md).

Terraform's convention: 2 means "changes present" (`plan --detailed-exitcode`), so a
usage error exits 1 like every other error, never argparse's 2.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success; with --detailed-exitcode: no changes
    ERROR = 1  # any error: invalid input, a refused revision, a failed change, usage
    CHANGES = 2  # plan --detailed-exitcode: changes present
    INTERRUPTED = 130  # Ctrl-C (SIGINT) during a one-shot command: 128 + SIGINT
