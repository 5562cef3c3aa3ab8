"""Faults during a host (and repo) apply, as a user meets them (issue 8).

Every fault ends the same way: exit 1, one first stderr line that says what failed and
where, no traceback; every file under --root old or new (hashes before, during and
after), no temp file left; and once the fault is gone the next apply converges
(`plan --detailed-exitcode` exits 0).

One test-bed host (`node-1`) runs real wireguard-go; its peers exist only in mesh.yaml.
Decision for a proxy whose config check fails (issue 14): the run fails (exit 1) naming
it, the old config stays and its reload does not run, but every change that does not
need the refused config is made, security changes first: a revoked node's peer, the
CRL, /etc/hosts. Every failure is reported, on stderr and in status.json.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import yaml
from cryptography import x509
from mesh_fixtures import (
    CLEAN_ENV,
    BedMesh,
    clean_failure,
    leftover_files,
    one_host_mesh,
    tree_digests,
)
from test_repo_support import (
    MESHOPS,
    KeyRing,
    check_consistent,
    keyring,
    kill_mid_apply,
    new_repo,
)
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]

NODE = "node-1"
IDENTITIES = {"api": {"nodes": [NODE]}, "web": {"nodes": [NODE], "ttl": "24h"}}
# rewritten on every run (times), or as a run goes (the record of meshops' own files,
# claimed before each write): checked whole, not old-or-new
VOLATILE = ("var/lib/meshops/status.json", "var/lib/meshops/metrics.prom",
            "var/lib/meshops/last-applied.json", "var/lib/meshops/lock",
            "var/lib/meshops/owned.json")  # fmt: skip


@pytest.fixture
def mesh(tmp_path: Path, keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with one_host_mesh(tmp_path, keyring, identities=copy.deepcopy(IDENTITIES)) as built:
        built.apply_repo("initial state")
        built.apply(NODE)
        yield built


def peer_keys(mesh: BedMesh) -> set[str]:
    return {mesh.public_key(n) for n in mesh.nodes if n != NODE}


def assert_converges(mesh: BedMesh) -> None:
    mesh.apply(NODE)
    plan = mesh.plan(NODE)
    assert plan.returncode == 0, f"not converged:\n{plan}"
    assert mesh.wg_peers(NODE) == peer_keys(mesh)
    assert leftover_files(mesh.roots[NODE]) == []


def assert_old_or_new(old: dict[str, str], mid: dict[str, str], new: dict[str, str]) -> None:
    """Each file seen after the fault is the one from before or the one the converged
    run ended with (absent counts as a state too)."""
    for path in sorted(set(mid) | set(old)):
        if path in VOLATILE:
            continue
        assert mid.get(path) in (old.get(path), new.get(path)), f"{path} is neither old nor new"


def assert_files_whole(root: Path) -> None:
    """Every PEM parses, every identity's key matches its certificate, JSON loads."""
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    def spki(key: object) -> bytes:
        return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    tls = root / "etc/meshops/tls"
    for ident in sorted(tls.iterdir()) if tls.is_dir() else []:
        if ident.name.startswith("."):
            continue
        cert_pem, key_pem = ident / "cert.pem", ident / "key.pem"
        for pem in ("cert.pem", "ca.pem"):
            if (ident / pem).exists():
                assert x509.load_pem_x509_certificates((ident / pem).read_bytes())
        if (ident / "crl.pem").exists():
            assert b"-----END X509 CRL-----" in (ident / "crl.pem").read_bytes()
        if cert_pem.exists() and key_pem.exists():
            cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
            key = serialization.load_pem_private_key(key_pem.read_bytes(), password=None)
            assert spki(cert.public_key()) == spki(key.public_key()), (
                f"{ident.name}: key.pem does not match cert.pem"
            )
    for name in ("status.json", "last-applied.json"):
        path = root / "var/lib/meshops" / name
        if path.exists():
            json.loads(path.read_text())


def apply_argv(mesh: BedMesh, node: str = NODE) -> list[str]:
    return [MESHOPS, "--no-color", "-C", str(mesh.repo.path),
            "--identity", str(mesh.keys[node].private_file),
            "apply", "--auto-approve", "--node", node, "--root", str(mesh.roots[node])]  # fmt: skip


# -- 1. SIGKILL at random points ------------------------------------------------------------


def _mutate(mesh: BedMesh, rng: random.Random, trial: int) -> str:
    """A change to mesh.yaml that gives the host apply work, no repo apply needed."""
    data = mesh.repo.data
    kind = rng.choice(["dns", "ttl", "endpoint", "identity", "keepalive"])
    if kind == "dns":
        for name in rng.sample(["api", "web"], k=rng.randint(1, 2)):
            data["identities"][name]["dns"] = [f"{name}-{trial}.example.test"]
    elif kind == "ttl":
        data["identities"]["web"]["ttl"] = rng.choice(["12h", "24h", "36h"])
    elif kind == "endpoint":
        peer = rng.choice([n for n in data["nodes"] if n != NODE])
        data["nodes"][peer]["endpoint"] = (
            f"198.51.100.{rng.randint(20, 200)}:{rng.randint(50_000, 60_000)}"
        )
    elif kind == "identity":
        if "extra" in data["identities"]:
            del data["identities"]["extra"]
        else:
            data["identities"]["extra"] = {"nodes": [NODE], "outputs": {"combined_pem": True}}
    else:
        data.setdefault("wireguard", {})["keepalive"] = rng.choice(["15s", "25s", "40s"])
    mesh.repo.write_mesh()
    return kind


def test_host_apply_killed_at_random_points_leaves_whole_files_and_converges(
    mesh: BedMesh,
) -> None:
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("MESHOPS_KILL_SEED", "8080")))
    budget = float(os.environ.get("MESHOPS_HOST_KILL_BUDGET", "35"))
    root, host = mesh.roots[NODE], mesh.host(NODE)
    env = {**CLEAN_ENV, "PYTHONUNBUFFERED": "1"}
    trials = kills = 0
    kinds: set[str] = set()
    while (time.monotonic() - started < budget or trials < 12) and trials < 60:
        trials += 1
        kinds.add(_mutate(mesh, rng, trials))
        proc = cast("subprocess.Popen[str]", host.popen(apply_argv(mesh), env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
        kills += kill_mid_apply(proc, rng, jitter=0.03)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err
        assert_files_whole(root)  # right after the kill, before any recovery
        if trials % 4 == 0:
            assert_converges(mesh)
            assert_files_whole(root)
    assert_converges(mesh)
    assert kills >= 8, f"only {kills} of {trials} applies were killed mid-way"
    print(f"{trials} trials, {kills} killed, kinds {sorted(kinds)}, "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip


# -- 2. a full disk -----------------------------------------------------------------------


def _fill(path: Path, *, leave: int) -> None:
    """Write `path` until the file system is full, then give `leave` bytes back."""
    with open(path, "wb") as fh:
        chunk = b"\0" * 65536
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass
    size = path.stat().st_size
    os.truncate(path, max(0, size - leave))


def _tmpfs(mesh: BedMesh, where: str, size: str) -> Path:
    """A small tmpfs inside node-1's own mount namespace (gone with the test bed); its
    path as seen from outside."""
    host = mesh.host(NODE)
    host.run(["mkdir", "-p", where])
    host.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "meshops-test", where])
    return host.path(where)


@pytest.mark.parametrize("leave", [0, 24 * 1024], ids=["full", "nearly-full"])
def test_full_disk_during_host_apply_keeps_old_files_and_converges_once_freed(
    mesh: BedMesh, leave: int
) -> None:
    outside = _tmpfs(mesh, "/run/full", "1m")
    mesh.roots[NODE] = Path("/run/full/root")  # the --root the host sees
    view = outside / "root"
    mesh.apply(NODE)
    old = tree_digests(view)
    # work: both leaves re-issued, a new identity, a peer moved
    mesh.repo.data["identities"]["api"]["dns"] = ["api.example.test"]
    mesh.repo.data["identities"]["web"]["ttl"] = "12h"
    mesh.repo.data["identities"]["extra"] = {"nodes": [NODE], "outputs": {"p12": True}}
    mesh.repo.data["nodes"]["node-2"]["endpoint"] = "198.51.100.99:51820"
    mesh.repo.write_mesh()
    _fill(outside / "filler", leave=leave)

    failed = mesh.meshops(NODE, "apply", "--auto-approve", check=False)
    first = clean_failure(failed)
    # one failure, or a count and then each on its own line: every one says why, where
    lines = [first] if "changes failed" not in first else failed.stderr.splitlines()[1:]
    failures = [line for line in lines if not line.strip().startswith("hint:")]
    assert failures and all("No space left on device" in line for line in failures), first
    assert all(re.search(r"/run/full/root/\S+", line) for line in failures), first
    mid = tree_digests(view)
    assert leftover_files(view) == []
    assert_files_whole(view)

    (outside / "filler").unlink()
    assert_converges(mesh)
    assert_old_or_new(old, mid, tree_digests(view))
    assert leftover_files(view) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted under tmp_path (unmounted at teardown, pass or fail)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "meshops-test",
                    str(where)], check=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_during_repo_apply_keeps_state_old_or_new_and_converges_once_freed(
    small_disk: Path, keyring: KeyRing
) -> None:
    outside = small_disk
    repo = new_repo(outside / "mesh", keyring, nodes=3)
    repo.apply()
    repo.commit("state")
    old = repo.snapshot()
    repo.set_node("node-4", keyring.ssh_hosts[3], 4)
    repo.set_node("node-5", keyring.age_hosts[4], 5)
    repo.set_node("node-1", keyring.age_hosts[0], 1)  # re-keyed: new sealed keys
    repo.write_mesh()
    _fill(outside / "filler", leave=16 * 1024)  # a few 4 KiB pages: some writes land

    failed = repo.meshops("apply", "--auto-approve", identity=True)
    first = clean_failure(failed)
    assert "No space left on device" in first, first
    mid = repo.snapshot()
    assert not [p for p in mid if ".meshops-tmp-" in p]

    (outside / "filler").unlink()
    repo.apply()
    # Repo scope rewrites state.yaml as it goes and re-issues a node CA whose record
    # did not reach state.yaml, so "new" is not always the converged file: every file
    # the failed run left must be whole, and the next run must converge.
    for path, data in mid.items():
        if path.endswith(".crt"):
            assert x509.load_pem_x509_certificates(data), path
        elif path.endswith(".pem"):
            assert x509.load_pem_x509_crl(data) is not None, path
        elif path.endswith(".yaml"):
            assert isinstance(yaml.safe_load(data), dict), path
        elif path.endswith(".sig"):
            assert b"signature: " in data, path
        else:
            assert data.startswith((b"-----BEGIN AGE ENCRYPTED FILE-----", b"age-encryption")), path
    assert mid != old, "the full disk stopped the run before it wrote anything"
    check_consistent(repo)


# -- 3. a proxy whose config check fails ----------------------------------------------------


def test_proxy_refused_by_nginx_keeps_old_config_skips_reload_and_fails_the_run(
    mesh: BedMesh, tmp_path: Path
) -> None:
    reloads = tmp_path / "reloads.log"
    mesh.repo.data["identities"]["api"]["proxy"] = {
        "kind": "nginx", "listen": 8443, "upstream": "127.0.0.1:8080",
        "reload": ["sh", "-c", f"echo reload >> {reloads}"],
    }  # fmt: skip
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    config = mesh.host_path(NODE, "/etc/meshops/proxy/api.conf")
    before, runs = config.read_bytes(), reloads.read_text().count("reload")
    assert runs == 1

    # nginx -t resolves proxy_pass hosts: one that does not resolve fails the real check
    mesh.repo.data["identities"]["api"]["proxy"]["upstream"] = "backend.invalid:8080"
    mesh.repo.data["nodes"]["node-2"]["endpoint"] = "198.51.100.77:51820"  # a later change
    mesh.repo.write_mesh()
    failed = mesh.meshops(NODE, "apply", "--auto-approve", check=False)
    first = clean_failure(failed)
    assert first.startswith(f'proxy.nginx["api"]: nginx -t rejected {config}: '), first
    assert f'host not found in upstream "backend.invalid" in {config}:' in first, first
    assert config.read_bytes() == before, "the refused config replaced the old one"
    assert reloads.read_text().count("reload") == runs, "reload ran after a refused config"
    endpoints = mesh.wg_table(NODE, "endpoints")  # the unrelated change was made
    assert endpoints[mesh.public_key("node-2")] == "198.51.100.77:51820"
    assert leftover_files(mesh.roots[NODE]) == []

    mesh.repo.data["identities"]["api"]["proxy"]["upstream"] = "127.0.0.1:8081"
    mesh.repo.write_mesh()
    assert_converges(mesh)
    assert b"127.0.0.1:8081" in config.read_bytes()
    assert reloads.read_text().count("reload") == runs + 1
    assert mesh.wg_table(NODE, "endpoints")[mesh.public_key("node-2")] == "198.51.100.77:51820"


def test_a_refused_proxy_and_a_broken_hook_do_not_keep_a_revoked_node_in_place(
    mesh: BedMesh, tmp_path: Path
) -> None:
    """Failure isolation (issue 14): node-3 is removed (its CA revoked) in the same change
    that breaks a proxy config and a hook; the host still drops node-3's peer, writes
    the new CRL and its /etc/hosts block, and reports both failures."""
    api, web = mesh.repo.data["identities"]["api"], mesh.repo.data["identities"]["web"]
    api["proxy"] = {"kind": "nginx", "listen": 8443, "upstream": "127.0.0.1:8080"}
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    revoked_key = mesh.public_key("node-3")
    hosts = mesh.host_path(NODE, "/etc/hosts")
    crl = mesh.tls_dir(NODE, "web") / "crl.pem"
    assert revoked_key in mesh.wg_peers(NODE) and "node-3." in hosts.read_text()
    crl_before = crl.read_bytes()

    del mesh.repo.data["nodes"]["node-3"]
    api["proxy"]["upstream"] = "backend.invalid:8080"  # nginx -t refuses it
    web["on_renew"] = [["sh", "-c", "echo broken hook >&2; exit 3"]]
    web["dns"] = ["web.example.test"]  # a new leaf: the hook runs, and fails
    mesh.apply_repo("remove node-3, break a proxy and a hook")
    failed = mesh.meshops(NODE, "apply", "--auto-approve", "--format", "json", check=False)
    first = clean_failure(failed)
    assert first == "2 changes failed:", failed.stderr
    report = json.loads(failed.stdout)
    assert report["result"] == "failed"
    assert sorted(f["address"] for f in report["failures"]) == [
        'hook.on_renew["web"]',
        'proxy.nginx["api"]',
    ]
    applied = [c["address"] for c in report["applied"]]
    assert 'wireguard.peer["node-3"]' in applied and "hosts.block" in applied
    security = {'wireguard.peer["node-3"]', 'tls.crl["api"]', 'tls.crl["web"]'}
    assert set(applied[:3]) == security  # before anything else
    assert 'proxy.nginx["api"]: nginx -t rejected' in failed.stderr
    assert 'hook.on_renew["web"]: ' in failed.stderr and "exit 3" in failed.stderr
    assert revoked_key not in mesh.wg_peers(NODE)  # the revoked node is gone
    assert "node-3." not in hosts.read_text()
    assert crl.read_bytes() != crl_before
    last = mesh.status(NODE)["last_apply"]
    assert last["result"] == "failed"
    assert sorted(f["address"] for f in last["failures"]) == [
        'hook.on_renew["web"]',
        'proxy.nginx["api"]',
    ]
    assert leftover_files(mesh.roots[NODE]) == []

    api["proxy"]["upstream"] = "127.0.0.1:8080"
    del web["on_renew"]
    mesh.repo.write_mesh()
    assert_converges(mesh)


# -- 4. an unreachable git remote -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/nonexistent/mesh.git", "git://127.0.0.1:9/mesh"], ids=["no-such-path", "closed-port"]
)
def test_apply_pull_from_unreachable_remote_fails_clearly_and_stays_on_its_revision(
    mesh: BedMesh, url: str
) -> None:
    """The checkout does not move and nothing new is applied; the kept revision is
    still applied (renewals must go on while the remote is down), here a no-op."""
    import json

    git = ["git", "-C", str(mesh.repo.path)]
    subprocess.run([*git, "remote", "add", "origin", url], check=True)
    last_file = mesh.host_path(NODE, "/var/lib/meshops/last-applied.json")
    applied = json.loads(last_file.read_text())["last_apply"]["revision"]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    before = tree_digests(mesh.roots[NODE])
    endpoints = mesh.wg_table(NODE, "endpoints")

    started = time.monotonic()
    failed = mesh.meshops(NODE, "apply", "--pull", "--auto-approve", check=False, timeout=60)
    first = clean_failure(failed)
    assert time.monotonic() - started < 30
    assert re.match(rf"cannot fetch branch '\w+' from origin \({re.escape(url)}\): ", first), first
    why = "does not appear to be a git repository" if url.startswith("/") else "Connection refused"
    assert why in first, first
    after = tree_digests(mesh.roots[NODE])
    assert {p: h for p, h in after.items() if p not in VOLATILE} == {
        p: h for p, h in before.items() if p not in VOLATILE
    }
    assert mesh.wg_table(NODE, "endpoints") == endpoints
    assert json.loads(last_file.read_text())["last_apply"]["revision"] == applied
    now = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert now == head

    subprocess.run([*git, "remote", "remove", "origin"], check=True)
    assert_converges(mesh)


# -- 5. an identity that cannot unseal ----------------------------------------------------


def test_identity_that_cannot_unseal_lists_what_was_tried_and_changes_nothing(
    mesh: BedMesh, keyring: KeyRing
) -> None:
    stranger = keyring.ssh_hosts[6]  # a real host key, but not node-1's recipient
    mesh.repo.data["identities"]["api"]["dns"] = ["api.example.test"]  # needs the node CA
    mesh.repo.write_mesh()
    before = tree_digests(mesh.roots[NODE])
    own = mesh.keys[NODE]
    mesh.keys[NODE] = stranger
    try:
        failed = mesh.meshops(NODE, "apply", "--auto-approve", check=False)
    finally:
        mesh.keys[NODE] = own
    first = clean_failure(failed)
    assert (
        first == "cannot unseal state/nodes/node-1/ca.key.age: the identity given does not open it"
    )
    assert "tried:" in failed.stderr and str(stranger.private_file) in failed.stderr
    assert "not a recipient" in failed.stderr or "matches no stanza" in failed.stderr
    assert tree_digests(mesh.roots[NODE]) == before
    assert_converges(mesh)
