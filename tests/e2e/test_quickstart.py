"""`bash scripts/quickstart.sh` as a new user runs it (issue 15): the mesh working on
this machine in under a minute, and nothing left behind, also when interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from testbed import unavailable_reason

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "quickstart.sh"
DOMAIN = "mesh.quickstart.internal"


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def leftovers(output: str) -> list[str]:
    """What a run left behind: its directory, namespaces, processes using its files."""
    work = re.search(r"== 1\. an operator key and a mesh repository \((\S+)\)", output)
    assert work, output
    found = [work[1]] if Path(work[1]).exists() else []
    named = re.search(r"namespaces: (\S+) (\S+)", output)
    if named:
        found += sorted({named[1], named[2]} & namespaces())
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and work[1] in (entry / "cmdline").read_text():
                found.append(f"pid {entry.name}")
        except OSError:
            continue
    return found


def run_quickstart(*wrapper: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*wrapper, "bash", str(SCRIPT), "--no-install"], capture_output=True,
                          text=True, env=env, timeout=180, check=False)  # fmt: skip


def test_the_quick_start_shows_certificates_wireguard_and_mtls_in_under_a_minute() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    done = run_quickstart()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # 0. the example mesh
    assert "examples/mesh.yaml: valid: 5 nodes, 5 identities, 4 policies" in out
    assert 'id_web -->|"GET,HEAD /v1/*"| id_api' in out  # its access graph
    # 1. the repository
    assert "valid: 2 nodes, 3 identities, 1 policy (1 grant), 2 policy tests passed" in out
    assert "committed mesh.yaml and state/ on branch main" in out
    # 2. both hosts, certificates only, without any capability
    assert "$ setpriv --bounding-set -all --inh-caps -all -- meshops --root" in out
    assert "  /etc/meshops/tls/api/key.pem" in out and "  /etc/meshops/proxy/api.caddy" in out
    assert f"  192.0.2.12\tapi-1.{DOMAIN} api.{DOMAIN}" in out  # underlay, no tunnel yet
    assert "wireguard: off (certificates only)" in out
    # 3. WireGuard and mTLS in namespaces
    assert re.search(r"web-1 -> api-1 \(10\.99\.0\.\d+\) over WireGuard: ping ok", out), out
    assert "web   -> api  GET /hello over mTLS: 200 (allowed" in out
    assert "batch -> api  GET /hello over mTLS: 403 (refused" in out
    assert re.search(r"  api-1 +ok +192\.0\.2\.12:51820 +handshake", out), out
    seconds = int(re.search(r"quick start done in (\d+)s", out)[1])  # type: ignore[index]
    assert seconds < 60, f"the quick start took {seconds}s"
    assert out.rstrip().endswith("cleaned up (exit 0)")
    assert leftovers(out) == []


def test_without_privileges_it_shows_the_certificates_and_skips_the_namespaces() -> None:
    wrapper = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"]
    done = run_quickstart(*wrapper) if os.geteuid() == 0 else run_quickstart()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "$ meshops --root" in out and "wireguard: off (certificates only)" in out
    assert "3. skipped: WireGuard in network namespaces needs root" in out
    assert "ping" not in out
    assert leftovers(out) == []


def test_an_interrupted_quick_start_removes_what_it_made() -> None:
    """Ctrl-C once the mesh is up (namespaces, wireguard-go and Caddy running).

    The script is stopped the moment Caddy has answered, so the interrupt lands before it ends
    however fast the machine is; the signal then reaches it as a terminal's Ctrl-C would.
    """
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--no-install"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "GET /hello over mTLS" in line:
            break
    os.kill(proc.pid, signal.SIGSTOP)  # the script waits where it is (its last step is status)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    os.kill(proc.pid, signal.SIGCONT)
    rest, _ = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert out.rstrip().endswith("cleaned up (exit 130)"), out
    assert leftovers(out) == []
