"""`meshops watch --node N`: reconcile this host continuously.

Applies on start, then whenever the checkout changes (watchfiles), every pull interval
(with `--pull`), and at the next certificate renewal deadline; one apply at a time;
exponential backoff with jitter after errors; a line per run; clean exit on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from datetime import UTC, datetime

from meshops.cli.context import Context

MAX_BACKOFF = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pull", action="store_true", help="fetch the remote before each run")
    parser.add_argument(
        "--interval", type=float, default=60.0, metavar="SECONDS",
        help="longest wait between runs (the pull interval; default 60)",
    )  # fmt: skip
    parser.add_argument("--allow-rewind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--once", action="store_true", help="run one reconcile and exit")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli import apply as apply_cmd
    from meshops.errors import MeshError

    if ctx.resolve_node() is None:
        raise MeshError("watch runs on a host: pass --node NAME (or set MESHOPS_NODE)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    apply_args = argparse.Namespace(
        planfile=None, auto_approve=True, quiet=True, pull=args.pull,
        allow_rewind=args.allow_rewind,
    )  # fmt: skip
    backoff = 0.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            apply_cmd.run(apply_args, ctx)
            backoff = 0.0
            _log(ctx, f"ok in {time.monotonic() - started:.1f}s")
        except MeshError as exc:
            backoff = min(MAX_BACKOFF, max(2.0, backoff * 2))
            _log(ctx, f"error: {exc.message} (retry in about {backoff:.0f}s)")
        if args.once:
            return 0 if backoff == 0 else 1
        wait = _next_wait(ctx, args.interval, backoff)
        _wait_for_change(ctx, wait, stop)
    _log(ctx, "stopped")
    return 0


def _log(ctx: Context, text: str) -> None:
    ctx.note(f"{datetime.now(UTC).isoformat(timespec='seconds')} watch: {text}")


def _next_wait(ctx: Context, interval: float, backoff: float) -> float:
    """Until the next pull, the next renewal deadline, or the end of the backoff."""
    if backoff:
        return backoff * random.uniform(0.8, 1.2)
    wait = interval
    status = ctx.host_path("/var/lib/meshops/status.json")
    try:
        data = json.loads(status.read_text())
        now = datetime.now(UTC)
        for ident in data.get("identities", []):
            if ident.get("renew_at"):
                due = (datetime.fromisoformat(ident["renew_at"]) - now).total_seconds()
                wait = min(wait, max(1.0, due + 1.0))
    except (OSError, ValueError, TypeError):
        pass
    return wait


def _wait_for_change(ctx: Context, seconds: float, stop: threading.Event) -> None:
    """Return on a change in the checkout (not state written by us), a timeout or stop."""
    from watchfiles import watch

    def interesting(change: object, path: str) -> bool:
        return "/.git/" not in path or path.endswith(("/HEAD", "/ORIG_HEAD"))

    deadline = time.monotonic() + seconds
    for changes in watch(
        ctx.repo_dir, watch_filter=interesting, stop_event=stop,
        rust_timeout=max(1, int(seconds * 1000)), yield_on_timeout=True,
    ):  # fmt: skip
        if changes or time.monotonic() >= deadline or stop.is_set():
            return
