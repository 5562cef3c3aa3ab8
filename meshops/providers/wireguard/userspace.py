"""wireguard-go, the userspace WireGuard: is it there, start it so that it outlives
meshops, and say plainly why it did not start.

meshops runs from cron or a `Type=oneshot` systemd unit, and both clean up what a run
leaves behind: a cron job's process group, the unit's cgroup. So wireguard-go starts
detached: under systemd (when meshops shares PID 1's network and mount namespaces) as
a transient unit of its own (`systemd-run --unit meshops-wireguard-go-<name>`),
otherwise in a session of its own (setsid). It daemonizes as usual
(WG_PROCESS_FOREGROUND stays unset); its parent exits once the TUN device and the
UAPI socket exist.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from meshops.errors import CommandFailed, MeshError
from meshops.providers.run import run
from meshops.providers.wireguard.uapi import socket_path

PROGRAM = "wireguard-go"
# names another userspace implementation (or a wireguard-go outside PATH)
PROGRAM_ENV = "MESHOPS_WIREGUARD_GO"
INSTALL_HINT = (
    "install wireguard-go (Debian: apt install wireguard-go), load the kernel module "
    "(modprobe wireguard), or set `wireguard: false` on this node for certificates only"
)


def program() -> str:
    """The userspace implementation to run: $MESHOPS_WIREGUARD_GO, else wireguard-go."""
    return os.environ.get(PROGRAM_ENV) or PROGRAM


def kernel_module_present(release: str | None = None) -> bool:
    """Whether this kernel has WireGuard loaded, built in or installed as a module."""
    if Path("/sys/module/wireguard").is_dir():
        return True
    release = release or os.uname().release
    modules = Path("/lib/modules") / release
    for index in ("modules.builtin", "modules.dep"):
        try:
            text = (modules / index).read_text(errors="replace")
        except OSError:
            continue
        if "/wireguard.ko" in text:
            return True
    return False


def program_problem(name: str | None = None) -> str | None:
    """Why the userspace implementation cannot be run, or None when it can."""
    name = name or program()
    found = shutil.which(name) if "/" not in name else name
    if found is None or not os.path.exists(found):
        where = f" (${PROGRAM_ENV})" if os.environ.get(PROGRAM_ENV) else " on PATH"
        return f"{name} is not installed{where}"
    if not os.path.isfile(found) or not os.access(found, os.X_OK):
        return f"{found} is not executable"
    return None


def support_problem() -> str | None:
    """Why this machine cannot run a WireGuard interface at all, or None.

    Read-only and unprivileged, so a plan can say it before apply tries.
    """
    if kernel_module_present():
        return None
    problem = program_problem()
    if problem is None:
        return None
    return f"the kernel has no WireGuard module and {problem}"


# --- starting ---------------------------------------------------------------------


def start(name: str, executable: str | None = None) -> None:
    """Start the userspace implementation for interface `name`, detached from meshops.

    Raises MeshError saying what failed and what to do: missing or not executable,
    the UAPI socket served by another process, the TUN device refused.
    """
    prog = executable or program()
    problem = program_problem(prog)
    if problem is not None:
        raise MeshError(
            f"WireGuard interface {name}: the kernel has no WireGuard support and {problem}",
            hint=INSTALL_HINT,
        )
    _claim_socket(name, prog)
    unit = unit_name(name) if under_systemd() else None
    argv = systemd_run_argv(unit, prog, name) if unit else [prog, name]
    try:
        # a session of its own: killing meshops' process group leaves it running
        run(argv, what=f"start {prog} for {name}", timeout=30, new_session=True)
    except CommandFailed as exc:
        output = exc.detail or exc.message
        if unit is not None:
            output = _journal(unit) or output
        raise start_failure(name, prog, output) from None


def _claim_socket(name: str, prog: str) -> None:
    """Refuse when another process already serves this interface's UAPI socket (e.g.
    a wireguard-go for the same name in another network namespace); clear a stale one."""
    path = socket_path(name)
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
            path.unlink(missing_ok=True)  # nobody listens: left by a killed process
            return
        raise MeshError(
            f"WireGuard interface {name}: cannot check {path}: {exc.strerror}"
        ) from None
    finally:
        probe.close()
    raise socket_in_use(name, prog)


def socket_in_use(name: str, prog: str) -> MeshError:
    path = socket_path(name)
    return MeshError(
        f"WireGuard interface {name}: {prog} cannot start: its control socket {path} is "
        "already served by another process, and this network namespace has no "
        f"interface {name}",
        hint=f"another {prog} runs for {name} (in another network namespace sharing "
        "/var/run/wireguard?): stop it, or choose another wireguard.interface",
    )


def start_failure(name: str, prog: str, output: str) -> MeshError:
    """The error for a failed start, from what the program printed: its own error
    lines (never its banner about kernel support), with the fix that fits."""
    errors = _error_lines(output)
    if not errors:  # not wireguard-go's log format: its last line that is not the banner
        said = [line.strip() for line in output.splitlines() if line.strip(" \t\u2502")]
        errors = [line for line in said if line[:1] not in _BANNER][-1:] or ["no output"]
    text = "; ".join(errors)
    lowered = text.lower()
    if "uapi" in lowered and "in use" in lowered:
        return socket_in_use(name, prog)
    hint = None
    if "tun" in lowered and ("no such file" in lowered or "no such device" in lowered):
        hint = (
            "/dev/net/tun is missing: load the tun module (modprobe tun), or pass the "
            "device into the container"
        )
    elif "permission denied" in lowered or "operation not permitted" in lowered:
        hint = "creating a TUN device needs root (CAP_NET_ADMIN) and access to /dev/net/tun"
    return MeshError(f"WireGuard interface {name}: {prog} did not start: {text}", hint=hint,
                     detail=output)  # fmt: skip


# the box of wireguard-go's banner ("Running wireguard-go is not required..."), printed
# on every start whatever the kernel supports
_BANNER = "\u250c\u2502\u2514"


def _error_lines(output: str) -> list[str]:
    """wireguard-go's `ERROR: (name) date time message` lines, as `message`."""
    out = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("ERROR:"):
            continue
        words = line[len("ERROR:") :].split()
        if words and words[0].startswith("("):
            words = words[1:]
        # drop the log timestamp: 2024/01/02 15:04:05
        while words and words[0][:1].isdigit() and any(c in words[0] for c in "/:"):
            words = words[1:]
        out.append(" ".join(words))
    return out


# --- systemd ----------------------------------------------------------------------


def under_systemd() -> bool:
    """True when systemd is PID 1 and meshops shares its network and mount namespaces
    (a transient unit starts in PID 1's namespaces, so it must be the same ones)."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemd-run") is None:
        return False
    try:
        return all(
            os.stat(f"/proc/1/ns/{ns}").st_ino == os.stat(f"/proc/self/ns/{ns}").st_ino
            for ns in ("net", "mnt")
        )
    except OSError:
        # PID 1 hidden (ProtectProc=): a systemd service shares its namespaces
        return bool(os.environ.get("INVOCATION_ID"))


def unit_name(interface: str) -> str:
    """`meshops-wireguard-go-<interface>.service`, escaped as systemd-escape does."""
    escaped = "".join(
        c if (c.isascii() and c.isalnum()) or c in "_-:" or (c == "." and i) else f"\\x{ord(c):02x}"
        for i, c in enumerate(interface)
    )
    return f"meshops-wireguard-go-{escaped}.service"


def systemd_run_argv(unit: str, prog: str, name: str) -> list[str]:
    """Run `prog name` as the transient unit `unit`: Type=forking, because wireguard-go
    daemonizes and its parent exits once the device and socket exist; collected when
    it stops, so the next start can reuse the name."""
    path = shutil.which(prog) or prog
    return [
        "systemd-run", f"--unit={unit}", "--collect", "--quiet",
        f"--description=meshops: wireguard-go for {name}",
        "--property=Type=forking", "--", path, name,
    ]  # fmt: skip


def _journal(unit: str) -> str:
    """The unit's last log lines (the program's own error), or empty."""
    argv: Sequence[str] = ["journalctl", "--unit", unit, "--lines", "20", "--no-pager",
                           "--output", "cat"]  # fmt: skip
    try:
        return run(argv, what="journalctl", timeout=10, check=False).stdout.decode(errors="replace")
    except CommandFailed:
        return ""
