"""Repo-scope applies racing each other, and applies SIGKILLed at random points.

Both must leave a repository that the next apply converges, with every sealed key
matching its public half (checked with the stock `age`, `openssl` and `wg`).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_repo_support import (
    MESHOPS,
    KeyRing,
    MeshRepo,
    check_consistent,
    keyring,
    kill_mid_apply,
    new_repo,
    openssl,
)

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]


def _start_apply(repo: MeshRepo) -> subprocess.Popen[str]:
    argv = [MESHOPS, "--no-color", "-C", str(repo.path)]
    for key in repo.keys.operators:
        argv += ["--identity", str(key.private_file)]
    argv += ["apply", "--auto-approve"]
    # unbuffered, so progress lines arrive as each change is made
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_concurrent_applies_never_corrupt_state(tmp_path: Path, keyring: KeyRing) -> None:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=4)
    refused = 0
    for round_ in range(4):
        if round_:
            # new work for the next race: one node re-keyed, one node added
            repo.set_node(f"node-{round_}", keyring.age_hosts[round_], round_)
            repo.set_node(f"node-{4 + round_}", keyring.ssh_hosts[4 + round_ % 4], 4 + round_)
            repo.write_mesh()
        procs = [_start_apply(repo) for _ in range(3)]
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in outcomes)
        assert codes[0] == 0, outcomes
        for code, out, err in outcomes:
            assert "Traceback" not in out + err
            if code != 0:
                assert code == 1, (code, out, err)
                # the loser names the holder, one clear line
                assert re.search(r"another meshops run holds .*meshops\.lock: pid \d+ on ", err), (
                    err
                )
                refused += 1
        check_consistent(repo)
    assert refused, "no race was ever observed; the test did not test anything"


def _serials_on_disk(repo: MeshRepo, node: str) -> dict[str, str]:
    """The node CA serial that state.yaml currently records for `node` (if any), with
    the fingerprint of the root that signed it."""
    rec = (_state_or_empty(repo).get("nodes") or {}).get(node) or {}
    ca = rec.get("ca")
    return {ca["serial"]: ca.get("issuer", "")} if ca else {}


def converge(repo: MeshRepo) -> None:
    """Apply until plan shows nothing: a root rotation held 0s moves a phase per apply."""
    for _ in range(4):
        repo.apply()
        if repo.plan().returncode == 0:
            return
    raise AssertionError("four applies did not converge")


def _state_or_empty(repo: MeshRepo) -> dict[str, Any]:
    try:
        return repo.state()
    except FileNotFoundError:
        return {}


def _mutate(
    repo: MeshRepo, keys: KeyRing, rng: random.Random, must_revoke: dict[str, dict[str, str]]
) -> str:
    """One random change to mesh.yaml that gives apply real work."""
    nodes = repo.data["nodes"]
    kind = rng.choice(["rekey", "rekey", "root", "remove", "add", "rotate"])
    if kind == "rotate":
        # a root rotation with no hold: each later apply moves it a phase on
        if "rotation" in ((_state_or_empty(repo).get("ca")) or {}):
            return _mutate(repo, keys, rng, must_revoke)
        staged = repo.meshops("ca", "rotate", "--hold", "0s", identity=True)
        if staged.returncode != 0:  # no root yet (every apply so far was killed)
            assert "no root CA yet" in staged.stderr, str(staged)
        return kind
    if kind == "remove" and len(nodes) > 3:
        name = rng.choice(sorted(nodes))
        must_revoke.setdefault(name, {}).update(_serials_on_disk(repo, name))
        repo.remove_node(name)
    elif kind == "add" or (kind == "remove" and len(nodes) <= 3):
        free = [i for i in range(1, 9) if f"node-{i}" not in nodes]
        if not free:
            return _mutate(repo, keys, rng, must_revoke)
        i = rng.choice(free)
        # a name removed and added back before any apply finished the removal was
        # never removed as far as state/ knows: its node CA may stay (and later be
        # renewed without revocation), so it is no longer owed a CRL entry
        must_revoke.pop(f"node-{i}", None)
        repo.set_node(f"node-{i}", keys.ssh_hosts[i - 1], i)
    elif kind == "root":
        repo.root_key = keys.operators[1 - keys.operators.index(repo.root_key)]
        repo.data["ca"]["recipients"] = [repo.root_key.recipient]
    else:
        for name in rng.sample(sorted(nodes), k=min(3, len(nodes))):
            i = int(name.split("-")[1])
            current = repo.host_keys[name]
            pool = keys.age_hosts if current in keys.ssh_hosts else keys.ssh_hosts
            repo.set_node(name, pool[i - 1], i)
    repo.write_mesh()
    return kind


def test_apply_killed_at_random_points_converges_on_the_next_run(
    tmp_path: Path, keyring: KeyRing
) -> None:
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("MESHOPS_KILL_SEED", "4242")))
    repo = new_repo(tmp_path / "mesh", keyring, nodes=5)
    # removed node -> its node CA serials -> the root that signed each
    must_revoke: dict[str, dict[str, str]] = {}
    kills = trials = 0
    budget = float(os.environ.get("MESHOPS_KILL_BUDGET", "40"))
    while time.monotonic() - started < budget and trials < 60:
        trials += 1
        if trials > 1:
            _mutate(repo, keyring, rng, must_revoke)
        proc = _start_apply(repo)
        kills += kill_mid_apply(proc, rng, jitter=0.06, changes=8)
        _, err = proc.communicate()
        assert "Traceback" not in err
        if trials % 8 == 0:
            converge(repo)  # from whatever the kills left
            check_consistent(repo)
    converge(repo)
    check_consistent(repo)
    assert kills >= 8, f"only {kills} of {trials} applies were killed mid-way"
    # nodes removed along the way have their last node CA on the CRL
    crl = repo.state_dir / "ca/crl.pem"
    text = openssl("crl", "-in", str(crl), "-noout", "-text").stdout.replace(":", "").upper()
    listed = {x.lstrip("0") for x in re.findall(r"SERIAL NUMBER ([0-9A-F]+)", text)}
    live = {rec["ca"]["serial"] for rec in repo.state()["nodes"].values() if rec.get("ca")}
    # a retired root's CRL goes with it: what it signed chains to nothing trusted now
    roots = {r["fingerprint"] for r in repo.state()["ca"]["roots"]}
    owed = {s for entries in must_revoke.values() for s, root in entries.items()
            if not root or root in roots} - live  # fmt: skip
    missing = {s for s in owed if s.upper().lstrip("0") not in listed}
    assert not missing, f"removed nodes' CAs not revoked: {missing}"
    print(f"{trials} trials, {kills} killed, {time.monotonic() - started:.1f}s")


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")
            if p.is_file()}  # fmt: skip


def test_apply_killed_between_the_renames_and_the_sync_converges_with_nothing_lost(
    tmp_path: Path, keyring: KeyRing
) -> None:
    """Group commit: an apply renames every file into place, syncs the file system
    once, then writes state.yaml. Killed right before that sync (the test-only hook
    MESHOPS_TEST_KILL_BEFORE_SYNC), and then with a power loss emulated (every file the
    apply created emptied: its data was never synced), the next apply converges and
    nothing committed before is lost: the old nodes keep their keys, certificates and
    addresses; new nodes and a re-sealed node get keys that match their state."""
    repo = new_repo(tmp_path / "mesh", keyring, nodes=3)
    converge(repo)
    repo.commit("three nodes")
    before = _files(repo.state_dir)
    kept = {name: rec for name, rec in repo.state()["nodes"].items() if name != "node-2"}
    for i in (4, 5):
        repo.set_node(f"node-{i}", keyring.ssh_hosts[i], i)
    repo.set_node("node-2", keyring.age_hosts[2], 2)  # re-sealed: replaces node-2's files
    repo.write_mesh()
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "MESHOPS_TEST_KILL_BEFORE_SYNC": "1"}
    argv = [MESHOPS, "--no-color", "-C", str(repo.path), "--identity",
            str(repo.root_key.private_file), "apply", "--auto-approve"]  # fmt: skip
    killed = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -9, (killed.returncode, killed.stdout, killed.stderr)
    assert 'ca.node["node-5"]: created' in killed.stdout  # every node's files were written
    after = _files(repo.state_dir)
    assert after["state.yaml"] == before["state.yaml"], "the commit point was reached"
    created = sorted(set(after) - set(before))
    assert any(name.startswith("nodes/node-5/") for name in created), created
    for name in created:  # power loss: renamed, never synced
        (repo.state_dir / name).write_bytes(b"")
    converge(repo)
    check_consistent(repo)
    state = repo.state()["nodes"]
    assert {"node-4", "node-5"} <= set(state)
    for name, rec in kept.items():
        assert state[name] == rec, f"{name} lost what was committed before the crash"
        for part in ("ca.crt", "ca.key.age", "wg.key.age"):
            path = f"nodes/{name}/{part}"
            assert (repo.state_dir / path).read_bytes() == before[path], path
