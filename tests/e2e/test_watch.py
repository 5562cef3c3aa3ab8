"""`meshops watch` and cron mode on hosts that pull: two test-bed hosts running real
wireguard-go, each with its own clone of the mesh repository as its checkout.

The mesh repository is the "remote": a commit there is what a push would bring. Each
host's host.yaml names its clone and a 1 s pull interval. One `watch --node n1` runs
in the background for the module (stopped by PID at teardown, also after failures);
the tests push changes and time how long the effect takes to show on n1. The tests do
not depend on each other's order (pytest-xdist may split a module): each one waits for
the state it needs.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mesh_fixtures import BedMesh, PullHost, bed_mesh, git_head, openssl, pull_host
from test_repo_support import KeyRing, Unsealed, assert_no_secret_leaked, keyring
from testbed import unavailable_reason

from meshops.cli.watch import (
    FIRST_BACKOFF,
    JITTER,
    MAX_BACKOFF,
    jittered,
    next_backoff,
    one_line,
    seconds_to_renewal,
)

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]  # the session fixture, imported for pytest

NODES = ("n1", "n2")
IDENTITIES = {"web": {"nodes": ["n1"]}}
PULL_INTERVAL = "1s"
LATENCY_LIMIT = 10.0  # seconds from a push to its effect; measured ~2 s (see the report)


# -- the schedule (pure) -----------------------------------------------------------------


@given(st.lists(st.booleans(), max_size=40))
def test_backoff_doubles_from_two_seconds_caps_at_five_minutes_and_resets_on_success(
    outcomes: list[bool],
) -> None:
    backoff = 0.0
    errors_in_a_row = 0
    for ok in outcomes:
        backoff = 0.0 if ok else next_backoff(backoff)
        errors_in_a_row = 0 if ok else errors_in_a_row + 1
        expected = 0.0 if ok else min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (errors_in_a_row - 1))
        assert backoff == expected


@given(st.floats(min_value=0.1, max_value=MAX_BACKOFF), st.integers(0, 2**32))
def test_jitter_stays_within_a_fifth_of_the_backoff(seconds: float, seed: int) -> None:
    value = jittered(seconds, random.Random(seed))
    assert seconds * (1 - JITTER) <= value <= seconds * (1 + JITTER)


def test_renewal_wait_is_the_soonest_future_deadline_and_skips_past_or_missing_ones() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: float) -> str:
        return (now + timedelta(seconds=seconds)).isoformat(timespec="seconds")

    status = {
        "identities": [
            {"name": "a", "renew_at": at(300)},
            {"name": "b", "renew_at": at(40)},
            {"name": "c", "renew_at": at(-5)},  # due but not renewable: never spin on it
            {"name": "d", "renew_at": None},
            {"name": "e", "renew_at": "not a time"},
        ]
    }
    assert seconds_to_renewal(status, now) == 41.0
    assert seconds_to_renewal({"identities": [status["identities"][2]]}, now) is None
    assert seconds_to_renewal({}, now) is None


def test_an_error_becomes_one_log_line() -> None:
    assert one_line("mesh.yaml:3:4: bad\n  hint: fix it\n") == "mesh.yaml:3:4: bad; hint: fix it"


# -- the namespace test bed --------------------------------------------------------------


@dataclass
class Watcher:
    """A background `meshops watch` and its log."""

    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def mark(self) -> int:
        return len(self.lines())

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 20.0) -> str:
        """The first log line after line `after` matching `pattern` (a regex)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines()[after:]:
                if re.search(pattern, line):
                    return line
            assert self.proc.poll() is None, f"watch exited {self.proc.returncode}:\n{self.text}"
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} in {timeout}s:\n{self.text}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Signal it by PID; (exit code, seconds it took to exit). Kills it if it hangs."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"watch did not exit within {timeout}s of {sig!r}") from None
        return code, time.monotonic() - started


@dataclass
class PullBed:
    mesh: BedMesh
    hosts: dict[str, PullHost]

    def push(self, message: str, *, repo_apply: bool = True) -> str:
        """Commit mesh.yaml (after a repo-scope apply) in the remote; the new revision."""
        if repo_apply:
            self.mesh.apply_repo(message)
        else:
            self.mesh.repo.write_mesh()
            self.mesh.repo.commit(message)
        return git_head(self.mesh.repo.path)

    def start_watch(self, node: str, log: Path) -> Watcher:
        watcher = Watcher(self.hosts[node].start(log, "watch"), log)
        watcher.wait_for(r"watch: (no changes|applied \d+ changes?) at ", timeout=60)
        return watcher


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[PullBed]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("watch")
    with bed_mesh(directory, keyring, NODES, identities=IDENTITIES) as mesh:
        mesh.apply_repo("initial state")
        hosts = {node: pull_host(mesh, node, interval=PULL_INTERVAL) for node in NODES}
        for host in hosts.values():
            host.meshops("apply", "--auto-approve")
        yield PullBed(mesh, hosts)


@pytest.fixture(scope="module")
def watcher(bed: PullBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watcher]:
    """`meshops watch --node n1`, for the whole module; stopped by PID at the end."""
    log = tmp_path_factory.mktemp("watch-log") / "n1.log"
    started = bed.hosts["n1"].start(log, "watch")
    watching = Watcher(started, log)
    try:
        watching.wait_for(r"watch: (no changes|applied \d+ changes?) at ", timeout=60)
        yield watching
    finally:
        if started.poll() is None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=15)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=10)
        bed.mesh.repo.outputs.append(watching.text)


def wait_until(what: str, check: Callable[[], Any], *, timeout: float = 20.0) -> float:
    """Poll `check` every 20 ms until it returns something true; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s")


def serial(path: Path) -> str | None:
    if not path.exists():
        return None
    out = openssl("x509", "-noout", "-serial", "-in", str(path)).stdout.strip()
    return out or None


def report(request: pytest.FixtureRequest, name: str, value: float) -> None:
    """A measured figure: printed (visible with -s) and in the JUnit properties."""
    request.node.user_properties.append((name, round(value, 2)))
    print(f"\n[measured] {name}: {value:.2f}s")


def peer_view(mesh: BedMesh, node: str) -> tuple[dict[str, str], ...]:
    """What apply configures on each peer (not handshakes, counters or roamed endpoints)."""
    return tuple(mesh.wg_table(node, what) for what in ("allowed-ips", "persistent-keepalive"))


# -- watch ----------------------------------------------------------------------------------


@pytest.mark.netns
def test_watch_applies_a_pushed_commit_within_seconds(
    bed: PullBed, watcher: Watcher, request: pytest.FixtureRequest
) -> None:
    mesh = bed.mesh
    cert = mesh.tls_dir("n1", "api") / "cert.pem"
    assert not cert.exists()
    mark = watcher.mark()
    mesh.repo.data["identities"]["api"] = {"nodes": ["n1"]}
    revision = bed.push("place api on n1")
    latency = wait_until("api's certificate on n1", cert.exists)
    report(request, "push_to_new_cert_on_disk", latency)
    line = watcher.wait_for(rf"watch: applied \d+ changes? at {revision[:12]} in ", after=mark)
    assert "error" not in line
    assert bed.hosts["n1"].head() == revision
    assert latency < LATENCY_LIMIT

    # a peer change: a keepalive for every peer (in place; roaming cannot undo it)
    key = mesh.public_key("n2")
    mesh.repo.data["wireguard"]["keepalive"] = "7s"
    bed.push("keep sessions alive")

    def changed() -> bool:
        return mesh.wg_table("n1", "persistent-keepalive").get(key) == "7"

    latency = wait_until("the keepalive in n1's `wg show`", changed)
    report(request, "push_to_wg_peer_change", latency)
    assert latency < LATENCY_LIMIT
    status = mesh.status("n1")
    assert status["last_apply"]["revision"] == git_head(mesh.repo.path)


@pytest.mark.netns
def test_watch_renews_a_certificate_at_its_deadline_without_any_commit(
    bed: PullBed, watcher: Watcher, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    mesh = bed.mesh
    hook_log = tmp_path / "ticker-renewals.log"
    cert = mesh.tls_dir("n1", "ticker") / "cert.pem"
    # renews 8 s after issuance (ttl - renew_before, less up to 0.6 s of jitter)
    mesh.repo.data["identities"]["ticker"] = {
        "nodes": ["n1"],
        "ttl": "20s",
        "renew_before": "12s",
        "on_renew": [["sh", "-c", f"echo renewed >> {hook_log}"]],
    }
    bed.push("add ticker on n1")

    def runs() -> int:
        return len(hook_log.read_text().splitlines()) if hook_log.exists() else 0

    wait_until("ticker issued and its hook run", lambda: serial(cert) and runs() == 1)
    first = serial(cert)
    remote_head, checkout_head = git_head(mesh.repo.path), bed.hosts["n1"].head()

    def due() -> datetime | None:
        for ident in mesh.status("n1")["identities"]:
            if ident["name"] == "ticker" and ident["serial"]:
                return datetime.fromisoformat(ident["renew_at"])
        return None

    renew_at = due()
    assert renew_at is not None
    wait_until("ticker renewed", lambda: serial(cert) not in (None, first), timeout=30)
    lateness = (datetime.now(UTC) - renew_at).total_seconds()
    report(request, "renewal_after_deadline", lateness)
    assert -1.0 <= lateness < 4.0, "renewed away from its deadline"
    wait_until("on_renew ran for the renewal", lambda: runs() >= 2, timeout=5)
    time.sleep(0.5)
    assert runs() == 2, "on_renew runs exactly once per renewal"
    assert git_head(mesh.repo.path) == remote_head, "no commit was made"
    assert bed.hosts["n1"].head() == checkout_head
    assert "Traceback" not in watcher.text

    # leave no 8-second ticker behind for the other tests
    del mesh.repo.data["identities"]["ticker"]
    revision = bed.push("remove ticker")
    watcher.wait_for(rf"watch: applied \d+ changes? at {revision[:12]}")


@pytest.mark.netns
def test_watch_survives_a_broken_commit_keeps_the_last_good_state_and_recovers(
    bed: PullBed, watcher: Watcher, request: pytest.FixtureRequest
) -> None:
    mesh, n1 = bed.mesh, bed.hosts["n1"]
    revision = git_head(mesh.repo.path)
    wait_until("n1 at the remote's revision", lambda: n1.applied_revision() == revision)
    web = mesh.tls_dir("n1", "web")
    files_before = {p.name: p.read_bytes() for p in web.iterdir()}
    peers_before = peer_view(mesh, "n1")
    good = n1.head()

    mark = watcher.mark()
    mesh.repo.data["identities"]["broken"] = {"nodes": ["ghost"]}  # a dangling reference
    broken = bed.push("place broken on a node that does not exist", repo_apply=False)
    line = watcher.wait_for(r"watch: error: ", after=mark)
    assert f"revision {broken[:12]} is not applied: its mesh.yaml is invalid" in line
    assert "ghost" in line and f"stays on {good[:12]}" in line
    assert re.search(r"\(retry in about \d+s\)$", line)
    time.sleep(1.5)  # a retry or two: the state must hold through them
    assert watcher.proc.poll() is None, "watch must keep running"
    assert n1.head() == good, "a broken revision is never checked out"
    assert n1.applied_revision() == good
    assert {p.name: p.read_bytes() for p in web.iterdir()} == files_before
    assert peer_view(mesh, "n1") == peers_before
    assert "Traceback" not in watcher.text

    del mesh.repo.data["identities"]["broken"]
    mesh.repo.data["identities"]["fixed"] = {"nodes": ["n1"]}
    fixed = bed.push("fix: place fixed on n1 instead")
    cert = mesh.tls_dir("n1", "fixed") / "cert.pem"
    latency = wait_until("fixed's certificate on n1", cert.exists)
    report(request, "broken_then_fixed_push_to_cert", latency)
    assert latency < LATENCY_LIMIT
    watcher.wait_for(rf"watch: applied \d+ changes? at {fixed[:12]}", after=mark)
    assert n1.head() == fixed


@pytest.mark.netns
def test_sigterm_and_sigint_stop_watch_cleanly_and_promptly(
    bed: PullBed, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        log = tmp_path / f"watch-{sig.name}.log"
        watching = bed.start_watch("n2", log)
        time.sleep(0.3)  # inside its wait between runs
        code, took = watching.stop(sig)
        report(request, f"{sig.name.lower()}_to_exit", took)
        bed.mesh.repo.outputs.append(watching.text)
        assert code == 0, watching.text
        assert took < 3.0
        assert watching.lines()[-1].endswith("watch: stopped"), watching.text
        assert "Traceback" not in watching.text and "error" not in watching.text


# -- cron mode ------------------------------------------------------------------------------


@pytest.mark.netns
def test_cron_mode_apply_pull_is_silent_without_changes_and_prints_applied_changes(
    bed: PullBed,
) -> None:
    mesh, n2 = bed.mesh, bed.hosts["n2"]
    n2.meshops("apply", "--pull", "--auto-approve")  # catch up with earlier tests' commits
    quiet = n2.meshops("apply", "--pull", "--auto-approve")
    assert (quiet.stdout, quiet.stderr) == ("", ""), str(quiet)

    mesh.repo.data["identities"]["db"] = {"nodes": ["n2"]}
    revision = bed.push("place db on n2")
    applied = n2.meshops("apply", "--pull", "--auto-approve")
    assert '+ cert.leaf["db"]: no certificate yet' in applied.stdout, str(applied)
    assert 'cert.leaf["db"]: created' in applied.stdout
    assert re.search(r"Apply complete! Resources: \d+ added", applied.stdout)
    assert applied.stderr == ""
    assert n2.head() == revision and n2.applied_revision() == revision
    assert (mesh.tls_dir("n2", "db") / "cert.pem").exists()

    again = n2.meshops("apply", "--pull", "--auto-approve")
    assert (again.stdout, again.stderr) == ("", ""), str(again)


@pytest.mark.netns
def test_no_private_key_reached_any_output_or_log(bed: PullBed) -> None:
    assert_no_secret_leaked(bed.mesh.repo, Unsealed())
