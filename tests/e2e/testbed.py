"""A test bed of hosts, each in its own network and mount namespace, on one switch.

    with TestBed(3) as bed:
        h1, h2, h3 = bed.hosts
        h1.run(["ip", "-br", "addr"])
        assert h1.ping(h2.underlay_ip)

Layout: a "switch" namespace holds a bridge; host i (1-based) gets a veth pair whose
host end is `eth0` with 192.0.2.(10+i)/24. Each host has a holder process (`sleep
infinity`) living in the host's network namespace and in a private mount namespace
where `/run` is a fresh tmpfs (so `/var/run/wireguard`, pid files and sockets are per
host) and `/etc` and `/var` are overlays on the real ones with a per-host upper layer
(so `/etc/hosts`, `/etc/meshops`, `/var/lib/meshops` are per host and can be replaced
by rename). Commands run with `nsenter -t HOLDER -m -n`; files are also reachable from
outside through `host.path("/etc/hosts")` (`/proc/HOLDER/root/...`).

Namespace names carry a random per-bed prefix, so parallel pytest workers never
collide. Teardown kills every process in each namespace (`ip netns pids`), then
deletes the namespaces (which removes the veths and bridge), also after failures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

UNDERLAY_PREFIX = "192.0.2."
UNDERLAY_PREFIXLEN = 24
HOLDER_READY = "testbed-holder-ready"

_HOLDER_SCRIPT = """
set -e
mount -t tmpfs -o mode=0755 testbed-run /run
mkdir -p /run/wireguard /run/testbed/etc-upper /run/testbed/etc-work \
         /run/testbed/var-upper /run/testbed/var-work
mount -t overlay -o lowerdir=/etc,upperdir=/run/testbed/etc-upper,workdir=/run/testbed/etc-work \
      testbed-etc /etc
mount -t overlay -o lowerdir=/var,upperdir=/run/testbed/var-upper,workdir=/run/testbed/var-work \
      testbed-var /var
printf '%s' "$TESTBED_HOSTS" > /etc/hosts.testbed
mv /etc/hosts.testbed /etc/hosts
echo {ready}
exec sleep infinity
"""


def unavailable_reason() -> str | None:
    """Why a test bed cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "the network-namespace test bed needs root"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"the network-namespace test bed needs {tool}"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    """One host of the bed: a network namespace plus a private mount namespace."""

    name: str
    index: int
    netns: str
    underlay_ip: str
    holder: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.holder is None:
            raise RuntimeError(f"host {self.name} is not running")
        return self.holder.pid

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside this host's namespaces."""
        return ["nsenter", "-t", str(self.pid), "-m", "-n", "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host and wait; text output captured.

        `env` is added to the current environment. With `check`, a failure raises
        AssertionError showing the command, exit code and both outputs.
        """
        proc = subprocess.run(
            self.argv(argv),
            env={**os.environ, **env} if env is not None else None,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"[{self.name}] {' '.join(argv)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
            )
        return proc

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the host (a server). Teardown kills it
        with everything else in the namespace; stop it earlier yourself if you like."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(
            self.argv(argv),
            env={**os.environ, **env} if env is not None else None,
            **kwargs,
        )

    def ping(self, ip: str, *, count: int = 1, timeout: float = 2.0) -> bool:
        """True when `ip` answers a ping from this host within `timeout` seconds."""
        deadline = max(1, int(timeout))
        proc = self.run(
            ["ping", "-n", "-q", "-c", str(count), "-W", str(deadline), ip],
            check=False,
            timeout=timeout * count + 10,
        )
        return proc.returncode == 0

    def path(self, path: str) -> Path:
        """The host's view of an absolute `path`, readable and writable from outside.

        Symlinks on the way (`/var/run` -> `/run`) are resolved inside the host.
        """
        return _resolve_inside(Path(f"/proc/{self.pid}/root"), path)

    def pids(self) -> list[int]:
        """PIDs of every process in this host's network namespace."""
        return _netns_pids(self.netns)


def _resolve_inside(root: Path, path: str, *, depth: int = 0) -> Path:
    """`root`/`path` with every symlink resolved relative to `root`, not to `/`."""
    if depth > 40:
        raise OSError(f"too many symlinks resolving {path}")
    resolved = root
    parts = [p for p in path.split("/") if p and p != "."]
    for i, part in enumerate(parts):
        if part == "..":
            resolved = resolved.parent if resolved != root else root
            continue
        candidate = resolved / part
        if candidate.is_symlink():
            target = os.readlink(candidate)
            rest = "/".join(parts[i + 1 :])
            if target.startswith("/"):
                return _resolve_inside(root, f"{target}/{rest}", depth=depth + 1)
            relative = str(resolved.relative_to(root))
            return _resolve_inside(root, f"/{relative}/{target}/{rest}", depth=depth + 1)
        resolved = candidate
    return resolved


def _netns_pids(netns: str) -> list[int]:
    proc = _ip("netns", "pids", netns, check=False)
    return [int(word) for word in proc.stdout.split() if word.isdigit()]


class TestBed:
    """`n_hosts` hosts on a bridge; a context manager that always cleans up."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        n_hosts: int,
        *,
        names: Sequence[str] | None = None,
        prefix: str = "mo",
    ) -> None:
        if not 1 <= n_hosts <= 200:
            raise ValueError("a test bed has 1 to 200 hosts")
        if names is not None and len(names) != n_hosts:
            raise ValueError("give one name per host")
        self.id = f"{prefix}{os.getpid() % 10000}{secrets.token_hex(3)}"
        self.switch = f"{self.id}-sw"
        self.hosts = [
            Host(
                name=names[i] if names else f"h{i + 1}",
                index=i + 1,
                netns=f"{self.id}-h{i + 1}",
                underlay_ip=f"{UNDERLAY_PREFIX}{11 + i}",
            )
            for i in range(n_hosts)
        ]
        self._namespaces: list[str] = []

    def __enter__(self) -> TestBed:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getitem__(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *(h.netns for h in self.hosts)]

    # --- building ---------------------------------------------------------------

    def start(self) -> TestBed:
        self._add_netns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts:
            self._add_host(host)
        return self

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _add_host(self, host: Host) -> None:
        self._add_netns(host.netns)
        port = f"p{host.index}"
        _ip("-n", self.switch, "link", "add", port, "type", "veth",
            "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", host.netns, "addr", "add",
            f"{host.underlay_ip}/{UNDERLAY_PREFIXLEN}", "dev", "eth0")  # fmt: skip
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        host.holder = self._start_holder(host)

    def _start_holder(self, host: Host) -> subprocess.Popen[str]:
        hosts_file = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{host.underlay_ip}\t{host.name}\n"
        )
        holder = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--propagation",
             "private", "sh", "-c", _HOLDER_SCRIPT.format(ready=HOLDER_READY)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TESTBED_HOSTS": hosts_file},
        )  # fmt: skip
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        if line != HOLDER_READY:
            holder.kill()
            _, err = holder.communicate(timeout=10)
            raise RuntimeError(f"test bed host {host.name}: namespace setup failed: {err.strip()}")
        return holder

    # --- tearing down -----------------------------------------------------------

    def close(self) -> None:
        """Kill every process in every namespace of the bed, then delete them."""
        for netns in reversed(self._namespaces):
            _kill_all(netns)
        for host in self.hosts:
            if host.holder is not None:
                with contextlib.suppress(Exception):
                    host.holder.kill()
                    host.holder.communicate(timeout=5)
        for netns in reversed(self._namespaces):
            _ip("netns", "del", netns, check=False)
        self._namespaces.clear()


def _kill_all(netns: str) -> None:
    """TERM, then KILL, every process in the namespace, until none is left."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        pids = _netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _netns_pids(netns):
            time.sleep(0.05)


def existing_namespaces(prefix: str) -> list[str]:
    """Namespaces whose name starts with `prefix` (for leak checks)."""
    proc = _ip("netns", "list", check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.startswith(prefix)]
