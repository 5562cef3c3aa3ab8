"""Host-scope scale benchmark: meshops on one host of an N-node mesh vs the bare tools.

    python bench/host_scale.py [--nodes 10,100,1000] [--runs 5] [--profile] [--keep-going]

For each N: an N-node repository (real keys, `bench/repo_scale.py`'s `make_repo`; node-1
is sealed to an SSH key we keep), one repo apply, then inside a fresh network namespace
with a private mount namespace (`tests/e2e/testbed.py`: /run/wireguard is per host),
under a temporary `--root`, the installed `meshops` CLI as a user runs it:

  host apply      first `apply --node node-1` (wireguard-go interface + N-1 peers)
                  vs `wg setconf` of the same peers on a second, fresh interface
  no-op plan      `plan --node node-1 --detailed-exitcode`
                  vs python start + yaml.CSafeLoader parse of mesh.yaml + `wg show dump`
  one-peer change one node's endpoint changed in mesh.yaml, `apply --node node-1`
                  vs `wg set <if> peer KEY endpoint IP:PORT`
  watch one peer  `meshops watch --node node-1 --no-pull` running; a commit changing one
                  node's endpoint, already fetched, is merged into the checkout
                  (`git merge --ff-only`): time until `wg show` lists the new endpoint,
                  vs `wg set` of that peer
  peak RSS        of the meshops process (wait4 rusage), vs the python+yaml floor

Every figure is the median of `--runs` runs (the first apply is redone on a fresh
interface and root each run). The markdown table and the machine line go to stdout,
ready for the README. Namespaces, wireguard-go processes and temporary files are
removed on exit, also on Ctrl-C and on failure. Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

NODE = "node-1"
FLOOR_IF = "wg-floor"
FLOOR_PORT = 51899
MESHOPS = "meshops"  # main() puts the console script beside this interpreter here
ENV = {"MESHOPS_IDENTITY": "", "MESHOPS_NODE": "", "SOPS_DISABLE_VERSION_CHECK": "1"}

# targets of issue 18: (metric, largest ratio to the floor), checked at N >= 1000
TARGETS = {"no-op plan": 3.0, "host apply": 1.5, "watch one peer": 20.0}
TARGET_FROM_NODES = 1000
LINEAR_EXPONENT = 1.15  # cost(N2)/cost(N1) <= (N2/N1)**this counts as linear


# --- measuring ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


def timed(argv: Sequence[str], *, env: dict[str, str] | None = None) -> Run:
    """Run `argv` to completion: wall time and the child's own peak RSS (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            # as an installation runs: output buffered, whatever this shell sets
            env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "PYTHONUNBUFFERED"},
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            seconds,
            usage.ru_maxrss,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def check(run: Run, what: str, *, ok: tuple[int, ...] = (0,)) -> Run:
    if run.returncode not in ok:
        raise SystemExit(
            f"{what} exited {run.returncode}\n--- stdout\n{run.stdout[-3000:]}"
            f"--- stderr\n{run.stderr[-3000:]}"
        )
    return run


@dataclass
class Row:
    nodes: int
    metric: str
    meshops: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.meshops)

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor)

    @property
    def ratio(self) -> float:
        return self.median / self.floor_median if self.floor_median else math.inf

    @property
    def target(self) -> float | None:
        return TARGETS.get(self.metric) if self.nodes >= TARGET_FROM_NODES else None


# --- the mesh and the host --------------------------------------------------------------


@dataclass(frozen=True)
class Mesh:
    repo: Path
    identity: Path  # node-1's private SSH key (outside the repository)
    nodes: int


def build_mesh(directory: Path, nodes: int) -> tuple[Mesh, float]:
    """An N-node repository applied once at repo scope; node-1 sealed to a key we hold."""
    import yaml
    from factories import to_yaml
    from repo_scale import make_repo

    repo = make_repo(directory, nodes)
    keys = directory / "keys"
    data = yaml.safe_load((repo / "mesh.yaml").read_text())
    pub = (keys / "ssh-0.pub").read_text().split()
    data["nodes"][NODE]["recipient"] = f"{pub[0]} {pub[1]}"
    (repo / "mesh.yaml").write_text(to_yaml(data))
    run = timed(
        [MESHOPS, "--no-color", "-C", str(repo), "--identity", str(keys / "operator"),
         "apply", "--auto-approve"],
        env=ENV,
    )  # fmt: skip
    check(run, f"repo apply of {nodes} nodes")
    for argv in (["add", "-A"], ["commit", "-q", "-m", "mesh"]):
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@invalid",
             *argv],
            check=True, capture_output=True,
        )  # fmt: skip
    return Mesh(repo, keys / "ssh-0", nodes), run.seconds


class Host:
    """One network + private mount namespace (a test-bed host) to run commands in.

    The underlay is routed through a gateway with a permanent neighbour entry, as on a
    real host: peers' endpoints are not on-link, so sending a handshake never waits
    for ARP (hundreds of unresolvable on-link endpoints make wireguard-go crawl, for
    `wg setconf` and meshops alike).
    """

    def __init__(self, stack: contextlib.ExitStack) -> None:
        from testbed import TestBed

        self.bed = stack.enter_context(TestBed(1, prefix="hb"))
        self.host = self.bed.hosts[0]
        check(self.sh(ROUTED_UNDERLAY), "underlay routing")

    def run(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> Run:
        return timed(self.host.argv(argv), env=env)

    def meshops(self, mesh: Mesh, root: Path, *args: str) -> Run:
        argv = [MESHOPS, "--no-color", "-C", str(mesh.repo), *args, "--node", NODE,
                "--root", str(root), "--identity", str(mesh.identity)]  # fmt: skip
        return self.run(argv, env=ENV)

    def sh(self, script: str) -> Run:
        return self.run(["sh", "-c", script])

    def delete_interface(self, name: str) -> None:
        """Delete the link and wait for its wireguard-go to exit (it frees the port)."""
        self.sh(f"ip link del {name} 2>/dev/null; true")
        deadline = time.monotonic() + 10
        while self._userspace(name):
            if time.monotonic() > deadline:
                for pid in self._userspace(name):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        self.sh(f"rm -f /run/wireguard/{name}.sock")

    def _userspace(self, name: str) -> list[int]:
        found = []
        for pid in self.host.pids():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if argv[0].endswith(b"wireguard-go") and name.encode() in argv[1:]:
                    found.append(pid)
        return found

    def fresh_interface(self, name: str) -> None:
        """A new wireguard-go interface, up, with no key and no peers."""
        self.delete_interface(name)
        check(self.run(["wireguard-go", name]), f"wireguard-go {name}")
        deadline = time.monotonic() + 10
        while self.run(["wg", "show", name, "public-key"]).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"wireguard-go {name}: no UAPI socket after 10 s")
            time.sleep(0.02)
        check(self.run(["ip", "link", "set", name, "up"]), f"ip link set {name} up")


# eth0 keeps one address; everything else goes through a gateway that always resolves
ROUTED_UNDERLAY = """
set -e
ip addr flush dev eth0
ip addr add 192.0.2.254/32 dev eth0
ip route add 198.51.100.254/32 dev eth0
ip neigh replace 198.51.100.254 lladdr 02:00:00:00:00:fe dev eth0 nud permanent
ip route add default via 198.51.100.254 dev eth0
"""


# --- floors -------------------------------------------------------------------------


def wg_config(mesh: Mesh, directory: Path) -> Path:
    """The peers node-1 gets, as a `wg setconf` file (throwaway private key, 0600):
    same keys, endpoints, allowed IPs and keepalive (the model's default included)."""
    import yaml

    from meshops.model import load_file

    loaded = load_file(mesh.repo / "mesh.yaml")
    keepalive = int(loaded.mesh.wireguard.keepalive or 0)
    state = yaml.load((mesh.repo / "state/state.yaml").read_text(), Loader=yaml.CSafeLoader)
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    lines = ["[Interface]", f"PrivateKey = {private.strip()}", f"ListenPort = {FLOOR_PORT}"]
    for name, node in sorted(loaded.mesh.nodes.items()):
        record = state["nodes"].get(name) or {}
        if name == NODE or not record.get("wireguard"):
            continue
        lines += ["", "[Peer]", f"PublicKey = {record['wireguard']['public_key']}",
                  f"Endpoint = {node.endpoint.host}:{node.endpoint.port}",
                  f"AllowedIPs = {record['address']}/32"]  # fmt: skip
        if keepalive:
            lines.append(f"PersistentKeepalive = {keepalive}")
    path = directory / "floor.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def plan_floor(host: Host, mesh: Mesh, interface: str) -> Run:
    """python start + CSafeLoader parse of mesh.yaml + `wg show dump`, back to back."""
    parse = "import sys, yaml; yaml.load(open(sys.argv[1]).read(), Loader=yaml.CSafeLoader)"
    first = check(host.run([sys.executable, "-c", parse, str(mesh.repo / "mesh.yaml")]), "floor")
    second = check(host.run(["wg", "show", interface, "dump"]), "wg show dump")
    return Run(first.seconds + second.seconds, max(first.max_rss_kib, second.max_rss_kib), 0,
               "", "")  # fmt: skip


# --- one size ----------------------------------------------------------------------------


def measure(mesh: Mesh, work: Path, runs: int, *, profile: bool) -> list[Row]:
    import yaml
    from factories import to_yaml

    apply_row = Row(mesh.nodes, "host apply")
    plan_row = Row(mesh.nodes, "no-op plan")
    change_row = Row(mesh.nodes, "one-peer change")
    rss_row = Row(mesh.nodes, "peak RSS", unit="MiB")
    interface = yaml.safe_load((mesh.repo / "mesh.yaml").read_text())["wireguard"]["interface"]
    config = wg_config(mesh, work)
    peers = mesh.nodes - 1
    rss: list[int] = []
    with contextlib.ExitStack() as stack:
        host = Host(stack)
        root = work / "root"
        for i in range(runs):
            host.delete_interface(interface)
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            run = check(host.meshops(mesh, root, "apply", "--auto-approve"), "host apply")
            apply_row.meshops.append(run.seconds)
            rss.append(run.max_rss_kib)
            host.fresh_interface(FLOOR_IF)
            floor = check(host.run(["wg", "setconf", FLOOR_IF, str(config)]), "wg setconf")
            apply_row.floor.append(floor.seconds)
            if i == 0:
                _check_peers(host, interface, peers)
        for _ in range(runs):
            run = check(host.meshops(mesh, root, "plan", "--detailed-exitcode"), "no-op plan")
            plan_row.meshops.append(run.seconds)
            rss.append(run.max_rss_kib)
            floor = plan_floor(host, mesh, interface)
            plan_row.floor.append(floor.seconds)
            rss_row.floor.append(floor.max_rss_kib / 1024)
        if profile:
            _profile(host, mesh, root, work)
        data = yaml.safe_load((mesh.repo / "mesh.yaml").read_text())
        state = yaml.safe_load((mesh.repo / "state/state.yaml").read_text())
        for i in range(runs):
            other = f"node-{2 + i % max(1, mesh.nodes - 1)}"
            endpoint = f"198.51.100.{200 + i}:{52000 + i}"
            data["nodes"][other]["endpoint"] = endpoint
            (mesh.repo / "mesh.yaml").write_text(to_yaml(data))
            run = check(host.meshops(mesh, root, "apply", "--auto-approve"), "one-peer apply")
            if f'wireguard.peer["{other}"]: updated' not in run.stdout:
                raise SystemExit(f"one-peer apply did not update {other}:\n{run.stdout}")
            change_row.meshops.append(run.seconds)
            rss.append(run.max_rss_kib)
            key = state["nodes"][other]["wireguard"]["public_key"]
            floor = check(
                host.run(["wg", "set", FLOOR_IF, "peer", key, "endpoint", endpoint]), "wg set"
            )
            change_row.floor.append(floor.seconds)
        subprocess.run(["git", "-C", str(mesh.repo), "checkout", "-q", "mesh.yaml"], check=True)
        watch_row = measure_watch(host, mesh, root, work, runs)
    rss_row.meshops = [max(rss) / 1024]
    return [apply_row, plan_row, change_row, watch_row, rss_row]


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@invalid",
         *args],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:  # say why: a bare CalledProcessError loses git's message
        raise SystemExit(f"git {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def measure_watch(host: Host, mesh: Mesh, root: Path, work: Path, runs: int) -> Row:
    """`watch` running on node-1's checkout; per run, a commit that moves one node's
    endpoint is fetched first (nothing in the working tree changes), then the clock
    starts, the checkout fast-forwards to it, and `wg show` is polled until the peer
    has the new endpoint. Floor: `wg set` of that one peer."""
    import yaml
    from factories import to_yaml

    row = Row(mesh.nodes, "watch one peer")
    upstream = work / "upstream"
    _git(work, "clone", "-q", str(mesh.repo), str(upstream))
    _git(mesh.repo, "remote", "add", "upstream", str(upstream))
    state = yaml.safe_load((mesh.repo / "state/state.yaml").read_text())
    interface = yaml.safe_load((mesh.repo / "mesh.yaml").read_text())["wireguard"]["interface"]
    log = work / "watch.log"
    argv = [
        MESHOPS,
        "--no-color",
        "-C",
        str(mesh.repo),
        "watch",
        "--node",
        NODE,
        "--root",
        str(root),
        "--identity",
        str(mesh.identity),
        "--no-pull",
        "--interval",
        "3600",
    ]
    with log.open("wb") as out:
        proc = host.host.popen(argv, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for_log(log, proc, "watch: ", count=2)  # started, then the first run
            data = yaml.safe_load((upstream / "mesh.yaml").read_text())
            for i in range(runs):
                other = f"node-{2 + (i + 7) % max(1, mesh.nodes - 1)}"
                endpoint = f"198.51.100.{150 + i}:{53000 + i}"
                data["nodes"][other]["endpoint"] = endpoint
                (upstream / "mesh.yaml").write_text(to_yaml(data))
                _git(upstream, "commit", "-qam", f"move {other}")
                _git(mesh.repo, "fetch", "-q", "upstream", "HEAD")  # FETCH_HEAD: for merge
                time.sleep(0.5)  # watch is idle again
                key = state["nodes"][other]["wireguard"]["public_key"]
                started = time.perf_counter()
                _git(mesh.repo, "merge", "-q", "--ff-only", "FETCH_HEAD")
                _wait_for_endpoint(host, interface, key, endpoint, proc, log)
                row.meshops.append(time.perf_counter() - started)
                floor = check(
                    host.run(["wg", "set", FLOOR_IF, "peer", key, "endpoint", endpoint]), "wg set"
                )
                row.floor.append(floor.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return row


def _wait_for_log(log: Path, proc: subprocess.Popen[bytes], text: str, *, count: int) -> None:
    deadline = time.monotonic() + 120
    while log.read_text(errors="replace").count(text) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"watch did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def _wait_for_endpoint(
    host: Host, interface: str, key: str, endpoint: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while True:
        shown = host.run(["wg", "show", interface, "endpoints"]).stdout
        if f"{key}\t{endpoint}" in shown:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"watch never set {endpoint}:\n{log.read_text(errors='replace')}")


def _check_peers(host: Host, interface: str, peers: int) -> None:
    dump = check(host.run(["wg", "show", interface, "dump"]), "wg show dump").stdout
    found = len(dump.splitlines()) - 1
    if found != peers:
        raise SystemExit(f"{interface} has {found} peers after the host apply, want {peers}")


PROFILE = (
    "import cProfile, sys\n"
    "from meshops.cli.main import main\n"
    "cProfile.run('main(sys.argv[2:])', sys.argv[1])\n"
)


def _profile(host: Host, mesh: Mesh, root: Path, work: Path) -> None:
    """The no-op plan in process under cProfile (inside the namespace)."""
    out = work / "plan.prof"
    argv = [sys.executable, "-c", PROFILE, str(out), "--no-color", "-C", str(mesh.repo), "plan",
            "--node", NODE, "--root", str(root), "--identity", str(mesh.identity)]  # fmt: skip
    check(host.run(argv, env=ENV), "profiled plan")
    import pstats

    print(f"\n### cProfile: no-op plan, {mesh.nodes} nodes\n", file=sys.stderr)
    pstats.Stats(str(out), stream=sys.stderr).sort_stats("cumulative").print_stats(30)


# --- report --------------------------------------------------------------------------------


def machine_line() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return (
        f"Machine: {model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {python}, wireguard-go (userspace)"
    )


def table(rows: list[Row], runs: int) -> str:
    out = [
        f"| N | metric (median of {runs}) | meshops | floor | ratio | target | met? |",
        "| ---: | --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for row in rows:
        if row.unit == "MiB":
            mine, floor = f"{row.median:.0f} MiB", f"{row.floor_median:.0f} MiB"
        else:
            mine, floor = _ms(row.median), _ms(row.floor_median)
        target = f"≤ {row.target:g}x" if row.target else "—"
        met = "—" if row.target is None else ("yes" if row.ratio <= row.target else "**no**")
        out.append(
            f"| {row.nodes:,} | {row.metric} | {mine} | {floor} | {row.ratio:.1f}x | {target} "
            f"| {met} |"
        )
    return "\n".join(out)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def growth(rows: list[Row]) -> list[str]:
    """Per metric, cost growth between consecutive sizes as an exponent of N."""
    lines = []
    by_metric: dict[str, list[Row]] = {}
    for row in rows:
        if row.unit == "s":
            by_metric.setdefault(row.metric, []).append(row)
    for metric, series in by_metric.items():
        series.sort(key=lambda r: r.nodes)
        parts = []
        worst = 0.0
        for small, big in itertools.pairwise(series):
            exponent = math.log(big.median / small.median) / math.log(big.nodes / small.nodes)
            worst = max(worst, exponent)
            per_node = (big.median - small.median) / (big.nodes - small.nodes) * 1000
            parts.append(
                f"{small.nodes:,}→{big.nodes:,}: N^{exponent:.2f}, {per_node:+.2f} ms per node"
            )
        if parts:
            verdict = "linear or better" if worst <= LINEAR_EXPONENT else "**superlinear**"
            lines.append(f"- {metric}: {', '.join(parts)} ({verdict})")
    return lines


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def interrupt_on_term() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every `with` cleans up."""

    def handler(signum: int, frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the clean-up finish
        raise KeyboardInterrupt

    old = {
        sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10,100,1000", help="comma-separated mesh sizes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the no-op plans")
    args = parser.parse_args()
    sizes = sorted({int(n) for n in args.nodes.split(",")})
    if any(n < 2 for n in sizes) or args.runs < 1:
        parser.error("every size needs at least 2 nodes, and --runs at least 1")
    from testbed import unavailable_reason

    reason = unavailable_reason()
    if reason or not shutil.which("wireguard-go"):
        raise SystemExit(reason or "needs wireguard-go on PATH")
    from startup import compile_package, meshops_exe

    global MESHOPS
    MESHOPS = meshops_exe()  # not a pyenv shim: it alone costs ~50 ms a run
    compile_package()
    rows: list[Row] = []
    with interrupt_on_term():
        for nodes in sizes:
            work = Path(tempfile.mkdtemp(prefix="meshops-hostbench-"))
            try:
                mesh, seconds = build_mesh(work, nodes)
                print(f"{nodes:,} nodes: repo apply {seconds:.1f} s", file=sys.stderr)
                rows_before = len(rows)
                rows += measure(mesh, work, args.runs, profile=args.profile)
                for row in rows[rows_before:]:
                    print(
                        f"  {row.metric}: {row.median * (1 if row.unit == 'MiB' else 1000):.1f}"
                        f" {'MiB' if row.unit == 'MiB' else 'ms'} (x{row.ratio:.1f})",
                        file=sys.stderr,
                    )
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print(table(rows, args.runs))
    print()
    print("Growth with N (meshops wall time):")
    print("\n".join(growth(rows)))
    print()
    print(machine_line())
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted; namespaces and processes cleaned up", file=sys.stderr)
        raise SystemExit(130) from None
