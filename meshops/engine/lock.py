"""One apply at a time per scope.

The lock is an advisory `flock` on a file that also records who holds it. The kernel
drops a flock when its holder dies, so a SIGKILLed cron run never blocks `watch`: a
stale record is simply overwritten by the next holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from meshops.errors import LockHeld, MeshError


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _describe(record: dict[str, object]) -> str:
    if not record:
        return "a run that has not recorded itself yet"
    since = record.get("since")
    age = ""
    if isinstance(since, int | float):
        age = f", for {int(time.time() - since)}s"
    return (
        f"pid {record.get('pid')} on {record.get('host')} ({record.get('operation', 'apply')}{age})"
    )


@contextlib.contextmanager
def hold(path: Path, operation: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the lock at `path` for the block; raise LockHeld naming the holder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise MeshError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"another meshops run holds {path}: {_describe(_holder(fd))}",
                        hint="wait for it to finish; the lock frees itself if that run dies",
                    ) from None
                time.sleep(0.1)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "boot_id": _boot_id(),
            "operation": operation,
            "since": time.time(),
        }
        # the record only names the holder for others; a full disk must not stop the
        # run here (its first real write then fails with a clear message)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def _holder(fd: int) -> dict[str, object]:
    """The holder's record; it writes it just after taking the lock, so wait a moment
    for it rather than name nobody."""
    for _ in range(20):
        record = _read(fd)
        if record:
            return record
        time.sleep(0.025)
    return {}


def _read(fd: int) -> dict[str, object]:
    try:
        data = os.pread(fd, 4096, 0)
        record = json.loads(data or b"{}")
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}
