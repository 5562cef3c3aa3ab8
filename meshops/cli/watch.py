"""`meshops watch`."""

from __future__ import annotations

import argparse

from meshops.cli.context import Context, not_built


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, ctx: Context) -> int:
    return not_built("watch")
