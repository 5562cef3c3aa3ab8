"""`meshops watch --node N`: reconcile this host continuously.

Applies on start, then whenever the checkout changes (watchfiles), every pull interval,
and at the next certificate renewal deadline; one apply at a time; exponential
back-off with jitter after errors (but a new commit on the remote is tried at once); a
line per run on stderr; clean exit on SIGTERM or SIGINT. It pulls (as `apply --pull`)
when host.yaml has a `pull:` section or `--pull` is given.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshops.cli.context import Context
from meshops.engine import clock

FIRST_BACKOFF = 2.0
MAX_BACKOFF = 300.0
JITTER = 0.2  # a back-off is drawn from [1 - JITTER, 1 + JITTER] times its nominal length


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pull", action="store_true",
        help="fetch the remote before each run (the default when host.yaml has `pull:`)",
    )  # fmt: skip
    parser.add_argument(
        "--no-pull", action="store_true", help="never fetch; apply the checkout as it is"
    )
    parser.add_argument(
        "--interval", type=float, default=None, metavar="SECONDS",
        help="longest wait between runs (default: pull.interval in host.yaml, else 60)",
    )  # fmt: skip
    parser.add_argument("--allow-rewind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--once", action="store_true", help="run one reconcile and exit")


# -- the schedule (pure) -----------------------------------------------------------------


def next_backoff(previous: float) -> float:
    """The nominal back-off after one more error: 2 s, doubling, at most MAX_BACKOFF."""
    return min(MAX_BACKOFF, max(FIRST_BACKOFF, previous * 2))


def jittered(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


def seconds_to_renewal(status: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds until the earliest renewal deadline in a status.json document, plus one
    (status times are whole seconds, truncated); None when none lies ahead.

    A deadline already past is skipped: the apply that just ran did not renew that
    certificate (its lifetime is clamped to its issuer's), so waking for it again
    would spin.
    """
    soonest: float | None = None
    for ident in status.get("identities") or []:
        if not isinstance(ident, Mapping) or not ident.get("renew_at"):
            continue
        try:
            due = (datetime.fromisoformat(str(ident["renew_at"])) - now).total_seconds()
        except (TypeError, ValueError):
            continue
        if due > 0 and (soonest is None or due < soonest):
            soonest = due
    return None if soonest is None else soonest + 1.0


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


# -- the loop ----------------------------------------------------------------------------


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli.common import make_runtime, use_host_config
    from meshops.errors import MeshError
    from meshops.gitops.sync import parse_settings

    if ctx.resolve_node() is None:
        raise MeshError("watch runs on a host: pass --node NAME (or set MESHOPS_NODE)")
    use_host_config(ctx, make_runtime(ctx))  # the checkout host.yaml names, if any
    config = ctx.host_config() or {}
    settings = parse_settings(config.get("pull"))
    pulling = not args.no_pull and (args.pull or "pull" in config)
    interval = args.interval if args.interval is not None else settings.interval or 60.0
    if interval <= 0:
        raise MeshError("--interval must be more than 0 seconds")

    from meshops.resources.host.session import HostSession

    ctx.session = HostSession()  # the parsed mesh, state and live view, kept between runs
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rng = random.Random()
    mode = f"pulling every {interval:g}s" if pulling else f"checking every {interval:g}s"
    _log(ctx, f"started for node {ctx.resolve_node()} on {ctx.repo_dir} ({mode})")
    backoff = 0.0
    watcher = CheckoutWatcher(ctx.repo_dir, ctx.mesh_file, stop)
    while not stop.is_set():
        # no cyclic garbage collection during a run (a full collection over a 1,000-node
        # mesh kept in memory is tens of milliseconds): one after it, while idle
        gc.disable()
        try:
            error = _reconcile(args, ctx, pulling=pulling, watcher=watcher)
        finally:
            gc.enable()
        gc.collect()
        ctx.session.trust_live = False
        sys.stdout.flush()
        if error is None:
            backoff = 0.0
        else:
            backoff = next_backoff(backoff)
            _log(ctx, f"error: {error} (retry in about {backoff:.0f}s)")
        if args.once:
            return 0 if error is None else 1
        delay = jittered(backoff, rng) if backoff else interval
        renewal = seconds_to_renewal(_status(ctx), clock.now())
        if renewal is not None:
            delay = min(delay, renewal)
        failed_at = _remote_now(ctx) if backoff and pulling else None
        changed = _sleep(
            ctx, watcher, delay, stop, interval=interval if pulling else None, failed_at=failed_at
        )
        # woken by a change in the checkout, after a run that went well: plan from the
        # live view read at the end of that run (the clock's runs read it again)
        ctx.session.trust_live = changed and not backoff
    _log(ctx, "stopped")
    return 0


def _reconcile(
    args: argparse.Namespace, ctx: Context, *, pulling: bool, watcher: CheckoutWatcher
) -> str | None:
    """One apply (with a pull first); logs its line; the error as one line, if any."""
    from meshops.cli import apply as apply_cmd
    from meshops.errors import MeshError, ValidationFailed

    apply_args = argparse.Namespace(
        planfile=None, auto_approve=True, quiet=True, pull=pulling,
        allow_rewind=args.allow_rewind,
    )  # fmt: skip
    started = time.monotonic()
    # what this run reads: the checkout now, or (pulling) as its own pull leaves it
    if not pulling:
        watcher.ran()
    try:
        apply_cmd.run(apply_args, ctx)
    except ValidationFailed as exc:
        return one_line("; ".join(str(p) for p in exc.problems))
    except MeshError as exc:
        return one_line(exc.message)
    except Exception as exc:  # a bug must not end the loop that renews certificates
        if ctx.debug:
            import traceback

            traceback.print_exc()
        return one_line(f"internal error: {type(exc).__name__}: {exc} (a bug in meshops)")
    finally:
        if pulling:
            watcher.ran()
    last = _last_apply(ctx)
    revision = str(last.get("revision") or "")[:12] or "(no git revision)"
    changes = int(last.get("changes") or 0)
    took = time.monotonic() - started
    if changes:
        _log(ctx, f"applied {changes} change{'s' if changes != 1 else ''} at {revision} "
                  f"in {took:.1f}s")  # fmt: skip
    else:
        _log(ctx, f"no changes at {revision} ({took:.1f}s)")
    return None


def _log(ctx: Context, text: str) -> None:
    ctx.note(f"{datetime.now(UTC).isoformat(timespec='seconds')} watch: {text}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _status(ctx: Context) -> dict[str, Any]:
    return _read_json(ctx.host_path("/var/lib/meshops/status.json"))


def _last_apply(ctx: Context) -> dict[str, Any]:
    last = _read_json(ctx.host_path("/var/lib/meshops/last-applied.json")).get("last_apply")
    return last if isinstance(last, dict) else {}


def _remote_now(ctx: Context) -> str | None:
    """The remote's revision as last fetched (no network)."""
    from meshops.errors import MeshError
    from meshops.gitops.pull import tracked_branch
    from meshops.gitops.sync import parse_settings
    from meshops.providers.run import run

    try:
        settings = parse_settings((ctx.host_config() or {}).get("pull"))
        branch = settings.branch or tracked_branch(ctx.repo_dir, settings.remote)
    except MeshError:
        return None
    ref = f"refs/remotes/{settings.remote}/{branch}"
    proc = run(["git", "-C", str(ctx.repo_dir), "rev-parse", "-q", "--verify", ref], check=False)
    return proc.stdout.decode().strip() or None


def _sleep(
    ctx: Context,
    watcher: CheckoutWatcher,
    seconds: float,
    stop: threading.Event,
    *,
    interval: float | None,
    failed_at: str | None,
) -> bool:
    """Wait `seconds`, or less: a change in the checkout, a stop, or (during a back-off
    while pulling) a new revision on the remote found by a fetch every `interval`.
    True when a change in the checkout ended the wait."""
    from meshops.errors import MeshError
    from meshops.gitops.sync import parse_settings, remote_revision

    end = time.monotonic() + seconds
    while not stop.is_set():
        left = end - time.monotonic()
        if left <= 0:
            return False
        if watcher.wait(min(left, interval or left)):
            return True
        if interval is not None and failed_at is not None and end - time.monotonic() > 0:
            try:
                settings = parse_settings((ctx.host_config() or {}).get("pull"))
            except MeshError:
                continue
            latest = remote_revision(ctx.repo_dir, settings)
            if latest is not None and latest != failed_at:
                return False
    return False


class CheckoutWatcher:
    """Watches the checkout for the life of `watch`, in a thread, so a change made while
    a run is under way (or while the watcher would otherwise be starting again over a
    1,000-node state/ tree) is not missed: the next wait returns at once.

    What counts as a change is what a run reads: HEAD's commit, mesh.yaml and
    state/state.yaml (every repo apply rewrites it). A file event that leaves all three
    as the last run saw them (the run's own pull, git's bookkeeping) wakes nothing.
    """

    def __init__(self, repo_dir: Path, mesh_file: Path, stop: threading.Event) -> None:
        self.repo_dir = repo_dir.absolute()
        self.files = (mesh_file.absolute(), self.repo_dir / "state" / "state.yaml")
        self.stop = stop
        self.event = threading.Event()
        self.seen = self.fingerprint()
        threading.Thread(target=self._watch, name="checkout-watcher", daemon=True).start()

    def fingerprint(self) -> tuple[object, ...]:
        from meshops.resources import head_commit

        stats: list[object] = [head_commit(self.repo_dir)]
        for path in self.files:
            try:
                st = path.stat()
                stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append(None)
        return tuple(stats)

    def ran(self) -> None:
        """A run just read the checkout: later events are measured against this."""
        self.seen = self.fingerprint()

    def wait(self, seconds: float) -> bool:
        """True when the checkout changed since the last run; False on timeout or stop."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            if self.fingerprint() != self.seen:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.event.wait(min(left, 1.0)):
                self.event.clear()
        return False

    def _watch(self) -> None:
        from watchfiles import watch

        head = str(self.repo_dir / ".git" / "HEAD")

        def interesting(change: object, path: str) -> bool:
            return "/.git/" not in path or path == head or "/.git/refs/" in path

        try:
            for changes in watch(
                self.repo_dir, watch_filter=interesting, stop_event=self.stop, debounce=200,
                step=5, rust_timeout=1000, yield_on_timeout=True,
            ):  # fmt: skip
                if changes:
                    self.event.set()
        except Exception:  # the clock still wakes every run
            return
