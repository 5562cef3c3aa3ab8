"""Repo scope end to end: the installed `meshops` CLI on fresh mesh repositories.

Every check uses stock tools where one exists: `age -d` opens sealed files, `openssl`
reads certificates and the CRL, `wg pubkey` derives WireGuard public keys.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_repo_support import (
    KeyRing,
    MeshRepo,
    Unsealed,
    age_decrypt,
    assert_no_secret_leaked,
    check_consistent,
    keyring,
    new_repo,
    openssl,
)

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]  # the session fixture, imported for pytest


@pytest.fixture
def repo(tmp_path: Path, keyring: KeyRing) -> MeshRepo:
    return new_repo(tmp_path / "mesh", keyring, nodes=3)


@pytest.fixture
def applied(repo: MeshRepo) -> MeshRepo:
    repo.apply()
    return repo


NODES = ("node-1", "node-2", "node-3")


def test_first_plan_lists_every_addition_then_apply_converges(repo: MeshRepo) -> None:
    first = repo.plan()
    assert first.returncode == 2, str(first)
    lines = first.stdout.splitlines()
    expected = ["+ ca.root", "+ ca.crl"]
    for node in NODES:
        expected += [
            f'+ ipam.address["{node}"]',
            f'+ wireguard.key["{node}"]',
            f'+ ca.node["{node}"]',
        ]
    for prefix in expected:
        assert any(line.strip().startswith(prefix + ":") for line in lines), prefix
    assert "Plan: 12 to add, 0 to change, 0 to destroy." in first.stdout
    assert "(sensitive)" in first.stdout

    applied = repo.apply()
    assert "Apply complete! Resources: 12 added, 0 changed, 0 destroyed." in applied.stdout

    second = repo.plan()
    assert second.returncode == 0, str(second)
    assert "No changes." in second.stdout
    unsealed = Unsealed()
    check_consistent(repo, unsealed)

    before = repo.snapshot()
    again = repo.apply()
    assert "No changes" in again.stdout
    assert repo.snapshot() == before, "a no-op apply rewrote files"
    assert_no_secret_leaked(repo, unsealed)


def test_state_files_have_the_contract_layout_and_modes(applied: MeshRepo) -> None:
    state = applied.state()
    assert state["version"] == 1
    for node in NODES:
        rec = state["nodes"][node]
        assert rec["address"].startswith("10.42.")
        assert len(rec["wireguard"]["public_key"]) == 44
        assert rec["ca"]["fingerprint"].startswith("sha256:")
    addresses = [state["nodes"][n]["address"] for n in NODES]
    assert len(set(addresses)) == len(addresses)
    for sealed in applied.state_dir.rglob("*.age"):
        assert sealed.stat().st_mode & 0o777 == 0o600, sealed
        assert sealed.read_text().startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    crt = openssl("x509", "-noout", "-text", "-in", str(applied.state_dir / "nodes/node-1/ca.crt"))
    assert "CA:TRUE, pathlen:0" in crt.stdout
    assert "Permitted" in crt.stdout  # name constrained


def test_plan_json_is_valid_stable_and_has_the_documented_fields(
    repo: MeshRepo, tmp_path: Path
) -> None:
    first = repo.meshops("plan", "--format", "json")
    second = repo.meshops("plan", "--format", "json")
    assert first.returncode == second.returncode == 0, str(first)
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    a.pop("created_at")
    b.pop("created_at")
    assert a == b, "two plans of the same state differ"
    assert first.stdout == json.dumps(json.loads(first.stdout), indent=2, sort_keys=True) + "\n"

    assert a["format_version"] == "1.0"
    assert a["scope"] == "repo"
    assert re.fullmatch(r"[0-9a-f]{32}", a["live_fingerprint"])
    assert a["summary"] == {"add": 12, "change": 0, "destroy": 0}
    by_address = {rc["address"]: rc for rc in a["resource_changes"]}
    assert next(iter(by_address)) == "ca.root"
    assert list(by_address)[-2:] == ["ca.crl", "state.manifest"]
    for rc in a["resource_changes"]:
        assert set(rc) >= {
            "address",
            "type",
            "name",
            "change",
            "action_reason",
            "sensitive",
            "impact",
            "needs",
        }
        assert set(rc["change"]) == {"actions", "before", "after"}
        assert rc["change"]["actions"] == ["create"]
        assert rc["action_reason"]
    node_ca = by_address['ca.node["node-1"]']
    assert (node_ca["type"], node_ca["name"], node_ca["sensitive"]) == ("ca.node", "node-1", True)
    assert by_address['ipam.address["node-2"]']["change"]["after"]["address"].startswith("10.42.")

    plan_file = tmp_path / "first.plan"
    saved = repo.meshops("plan", "--out", str(plan_file), "--format", "json")
    assert saved.returncode == 0, str(saved)
    body = json.loads(plan_file.read_text())
    assert body["format_version"] == "1.0"
    assert set(body["planfile"]) >= {"plan_id", "mesh_sha256", "expires_at"}
    shown = repo.meshops("show", str(plan_file), "--format", "json")
    assert shown.returncode == 0, str(shown)
    assert json.loads(shown.stdout)["resource_changes"] == body["resource_changes"]

    repo.apply()
    clean = json.loads(repo.meshops("plan", "--format", "json").stdout)
    assert clean["summary"] == {"add": 0, "change": 0, "destroy": 0}
    assert {tuple(rc["change"]["actions"]) for rc in clean["resource_changes"]} == {("no-op",)}
    assert_no_secret_leaked(repo, Unsealed(), extra_files=[plan_file])


def test_markdown_plan_is_a_diff_fence(repo: MeshRepo) -> None:
    result = repo.meshops("plan", "--format", "markdown")
    assert result.returncode == 0, str(result)
    text = result.stdout
    assert "```diff\n" in text
    fence = text.split("```diff\n", 1)[1].split("\n```", 1)[0]
    assert all(line[0] in "+-~" for line in fence.splitlines()), fence
    assert '+ ca.node["node-1"]' in fence
    assert "Plan: 12 to add" in text


def test_no_secret_appears_in_any_output_or_plan_file(repo: MeshRepo, tmp_path: Path) -> None:
    plan_file = tmp_path / "p.plan"
    for fmt in ("text", "json", "markdown"):
        repo.meshops("plan", "--format", fmt)
    repo.meshops("plan", "--out", str(plan_file))
    assert repo.meshops("apply", str(plan_file), identity=True).returncode == 0
    # a change touching every kind of secret: re-seal the root, replace a node's keys
    repo.data["ca"]["recipients"] = [repo.keys.operators[1].recipient]
    repo.set_node("node-2", repo.keys.ssh_hosts[5], 2)
    repo.write_mesh()
    for fmt in ("text", "json", "markdown"):
        repo.meshops("plan", "--format", fmt)
    repo.meshops("plan", "--out", str(tmp_path / "q.plan"))
    repo.meshops("show", str(tmp_path / "q.plan"))
    repo.meshops("apply", str(tmp_path / "q.plan"), "--debug", identity=True)
    repo.meshops("status")
    unsealed = Unsealed()
    repo.root_key = repo.keys.operators[1]
    check_consistent(repo, unsealed)
    assert_no_secret_leaked(repo, unsealed, extra_files=[plan_file, tmp_path / "q.plan"])


def test_stock_age_opens_each_sealed_file_only_with_its_recipient(applied: MeshRepo) -> None:
    state = applied.state_dir
    operator = applied.operator.private_file
    root = age_decrypt(state / "ca/root.key.age", operator)
    assert root.returncode == 0 and b"PRIVATE KEY" in root.stdout
    for node in NODES:
        own = applied.host_keys[node].private_file
        assert age_decrypt(state / f"nodes/{node}/ca.key.age", operator).returncode != 0
        assert age_decrypt(state / "ca/root.key.age", own).returncode != 0
        for other in NODES:
            key = applied.host_keys[other].private_file
            for name in ("ca.key.age", "wg.key.age"):
                opened = age_decrypt(state / f"nodes/{node}/{name}", key)
                assert (opened.returncode == 0) == (other == node), (node, other, name)


def test_removed_node_is_revoked_in_the_crl_and_its_address_quarantined(
    applied: MeshRepo, tmp_path: Path
) -> None:
    state = applied.state()
    gone = state["nodes"]["node-2"]
    kept_ca = tmp_path / "node-2-ca.crt"
    shutil.copy(applied.state_dir / "nodes/node-2/ca.crt", kept_ca)

    applied.remove_node("node-2")
    applied.write_mesh()
    plan = applied.plan()
    assert plan.returncode == 2, str(plan)
    assert '- ca.node["node-2"]' in plan.stdout
    assert '- wireguard.key["node-2"]' in plan.stdout
    assert '- ipam.address["node-2"]' in plan.stdout
    assert re.search(r"~ ca\.crl: revokes node CA of node-2 \(serial [0-9a-f]+\)", plan.stdout)
    applied.apply()
    check_consistent(applied)

    root, crl = applied.state_dir / "ca/root.crt", applied.state_dir / "ca/crl.pem"
    text = openssl("crl", "-in", str(crl), "-noout", "-text").stdout
    assert gone["ca"]["serial"].upper().lstrip("0") in text.replace(":", "").upper()
    assert openssl("crl", "-in", str(crl), "-noout", "-CAfile", str(root)).returncode == 0
    check = ["verify", "-crl_check", "-CRLfile", str(crl), "-CAfile", str(root)]
    revoked = openssl(*check, str(kept_ca))
    assert revoked.returncode != 0
    assert "revoked" in (revoked.stdout + revoked.stderr)
    assert openssl(*check, str(applied.state_dir / "nodes/node-1/ca.crt")).returncode == 0
    assert not (applied.state_dir / "nodes/node-2").exists()
    released = applied.state()["released"]
    assert released[gone["address"]]["node"] == "node-2"

    # the same name again (so the same preferred slot) and a new node: neither gets it
    applied.set_node("node-2", applied.keys.ssh_hosts[6], 2)
    applied.set_node("node-4", applied.keys.ssh_hosts[3], 4)
    applied.write_mesh()
    applied.apply()
    check_consistent(applied)
    after = applied.state()
    assert after["nodes"]["node-2"]["address"] != gone["address"]
    assert after["nodes"]["node-4"]["address"] != gone["address"]
    assert gone["address"] in after["released"]
    assert after["nodes"]["node-2"]["ca"]["serial"] != gone["ca"]["serial"]
    assert openssl(*check, str(kept_ca)).returncode != 0, "re-adding un-revoked the old CA"


def test_ca_recipients_change_reseals_the_root_key_with_the_root_identity(
    applied: MeshRepo,
) -> None:
    new_operator = applied.keys.operators[1]
    root_crt = (applied.state_dir / "ca/root.crt").read_bytes()
    node_cas = {n: (applied.state_dir / f"nodes/{n}/ca.crt").read_bytes() for n in NODES}
    applied.data["ca"]["recipients"] = [new_operator.recipient]
    applied.write_mesh()

    plan = applied.plan()
    assert plan.returncode == 2
    assert "~ ca.root: ca.recipients changed: root key re-sealed" in plan.stdout
    assert "Needs: root CA key" in plan.stdout
    assert applied.actions() == {"ca.root": ["update"], "state.manifest": ["update"]}

    refused = applied.meshops("apply", "--auto-approve")
    assert refused.returncode == 1
    assert "no identity was given" in refused.stderr and "--identity" in refused.stderr

    applied.apply()
    sealed = applied.state_dir / "ca/root.key.age"
    assert age_decrypt(sealed, new_operator.private_file).returncode == 0
    assert age_decrypt(sealed, applied.operator.private_file).returncode != 0
    assert (applied.state_dir / "ca/root.crt").read_bytes() == root_crt
    for node in NODES:
        assert (applied.state_dir / f"nodes/{node}/ca.crt").read_bytes() == node_cas[node]
    assert applied.plan().returncode == 0


def test_node_recipient_change_replaces_its_wireguard_key_and_node_ca(applied: MeshRepo) -> None:
    old_key = applied.host_keys["node-1"]
    old_state = applied.state()["nodes"]["node-1"]
    applied.set_node("node-1", applied.keys.age_hosts[0], 1)
    applied.write_mesh()

    plan = applied.plan()
    assert plan.returncode == 2
    assert applied.actions() == {
        'wireguard.key["node-1"]': ["delete", "create"],
        'ca.node["node-1"]': ["delete", "create"],
        "ca.crl": ["update"],  # the old node CA may be in a stolen host's hands
        "state.manifest": ["update"],  # every change to state/ is signed
    }
    assert "node recipient changed" in plan.stdout
    assert f"revokes node CA of node-1 (serial {old_state['ca']['serial']})" in plan.stdout
    assert "[session-reset]" in plan.stdout
    applied.apply()
    check_consistent(applied)
    new_state = applied.state()["nodes"]["node-1"]
    assert new_state["wireguard"]["public_key"] != old_state["wireguard"]["public_key"]
    assert new_state["ca"]["serial"] != old_state["ca"]["serial"]
    assert new_state["address"] == old_state["address"]
    for name in ("ca.key.age", "wg.key.age"):
        sealed = applied.state_dir / "nodes/node-1" / name
        assert age_decrypt(sealed, old_key.private_file).returncode != 0
    crl = openssl("crl", "-in", str(applied.state_dir / "ca/crl.pem"), "-noout", "-text")
    listed = crl.stdout.replace(":", "").upper()
    assert old_state["ca"]["serial"].upper().lstrip("0") in listed
    assert new_state["ca"]["serial"].upper().lstrip("0") not in listed


def test_without_identity_plan_works_and_apply_fails_before_changing_anything(
    applied: MeshRepo,
) -> None:
    applied.set_node("node-4", applied.keys.ssh_hosts[3], 4)
    applied.write_mesh()
    before = applied.snapshot()

    plan = applied.plan()
    assert plan.returncode == 2, str(plan)
    assert '+ ca.node["node-4"]' in plan.stdout
    assert "Needs: root CA key" in plan.stdout

    refused = applied.meshops("apply", "--auto-approve")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ")
    assert "needs the root CA key" in refused.stderr
    assert "Traceback" not in refused.output
    assert applied.snapshot() == before, "apply changed files before failing"

    wrong = applied.meshops(
        "apply", "--auto-approve", identity=[applied.host_keys["node-1"].private_file]
    )
    assert wrong.returncode == 1
    assert "root.key.age" in wrong.stderr
    assert "Traceback" not in wrong.output
    assert applied.snapshot() == before, "apply with a wrong identity changed files"

    applied.apply()
    check_consistent(applied)


def test_status_without_a_node_shows_the_roots_node_cas_and_crl(applied: MeshRepo) -> None:
    result = applied.meshops("status", "--format", "json")
    assert result.returncode == 0, str(result)
    status = json.loads(result.stdout)
    state = applied.state()
    assert status["scope"] == "repo" and status["rotation"] is None
    assert [r["fingerprint"] for r in status["roots"]] == [
        r["fingerprint"] for r in state["ca"]["roots"]
    ]
    assert [(c["node"], c["status"]) for c in status["node_cas"]] == [(n, "ok") for n in NODES]
    assert {c["serial"] for c in status["node_cas"]} == {
        state["nodes"][n]["ca"]["serial"] for n in NODES
    }
    assert status["crl"]["number"] == state["crl"]["number"]
    signed = status["manifest"]
    assert signed["version"] == 1 and signed["signer"] == state["ca"]["roots"][-1]["fingerprint"]
    # a node added to mesh.yaml and not applied yet has no node CA
    applied.set_node("node-4", applied.keys.ssh_hosts[3], 4)
    applied.write_mesh()
    text = applied.meshops("status").stdout
    assert "node-4           MISSING" in text and "root CA:" in text
    assert "state/ signed: version 1 by sha256:" in text
