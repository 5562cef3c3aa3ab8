"""Signed state, attacked for real: push access to the mesh repository without the root
key, against two hosts in network namespaces with Caddy and nginx on n1 (see
test_host_proxies.py for the policies).

Each tampering is committed on top of a good, reviewed revision. `meshops review`
must fail naming the file (text, markdown and json), and every host must refuse the
revision: exit 1 with the file named, its files unchanged (trust bundle, CRL, peers,
snapshot, pins), the refusal in status and metrics, and mesh calls still passing
through both proxies on the last good material. A host that pulls refuses the revision
before checking it out. Root rotation still works with pinned hosts; a root the old
root never handed over to is refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from mesh_fixtures import BedMesh, git, openssl, pull_host, tree_digests
from proxy_binaries import CADDY_RELEASES
from test_host_proxies import CADDY_PORT, NGINX_PORT, Proxies, proxies_bed
from test_repo_support import KeyRing, keyring, make_age_key
from testbed import unavailable_reason

from meshops.resources.host.pack import read_pack

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]  # the session fixture, imported for pytest

HOSTS = ("n1", "n2")  # n3 is in mesh.yaml only (see test_host_proxies.py)
# what meshops manages on a host; the tree comparisons leave out what every apply
# rewrites, refused or not (the proxies' own state directories are not meshops'), and
# checkout.json, the record of what the last apply read of the checkout (a cache)
MANAGED = ("etc/", "var/lib/meshops/")
VOLATILE = ("var/lib/meshops/status.json", "var/lib/meshops/metrics.prom",
            "var/lib/meshops/last-applied.json", "var/lib/meshops/lock",
            "var/lib/meshops/checkout.json")  # fmt: skip


@dataclass
class Bed:
    proxies: Proxies
    directory: Path
    older: str  # a good revision whose state/ is an older signed version
    good: str  # the good revision every test starts from

    @property
    def mesh(self) -> BedMesh:
        return self.proxies.mesh

    def commit(self, message: str) -> str:
        git(self.mesh.repo.path, "add", "-A")
        who = ["-c", "user.name=mallory", "-c", "user.email=m@example.com"]
        git(self.mesh.repo.path, *who, "commit", "-q", "--no-gpg-sign", "-m", message)
        return git(self.mesh.repo.path, "rev-parse", "HEAD")

    def host_tree(self, node: str) -> dict[str, str]:
        digests = tree_digests(self.mesh.roots[node])
        return {p: d for p, d in digests.items() if p.startswith(MANAGED) and p not in VOLATILE}

    def apply_hosts(self) -> None:
        for node in HOSTS:
            self.mesh.apply(node)

    def calls(self) -> list[str]:
        """web's GET and batch's GET (not granted) through Caddy and nginx."""
        return [
            self.proxies.curl(service, port, "GET", "/v1/users", caller=caller)[1]
            for service, port in (("api", CADDY_PORT), ("ledger", NGINX_PORT))
            for caller in ("web", "batch")
        ]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[Bed]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("signed-state")
    with proxies_bed(keyring, CADDY_RELEASES[-1]) as proxies:
        mesh = proxies.mesh
        older = git(mesh.repo.path, "rev-parse", "HEAD")
        # a second reviewed change that re-signs state/ (n2's CA gets a name): the
        # rollback case has an older signed version to replay
        mesh.repo.data["nodes"]["n2"]["dns"] = ["n2.example.test"]
        proxies.apply("a name for n2")
        good = git(mesh.repo.path, "rev-parse", "HEAD")
        yield Bed(proxies, directory, older, good)


@pytest.fixture
def fresh(bed: Bed) -> Iterator[Bed]:
    """The good revision before and after the test (hosts applied to it)."""
    assert bed.calls() == ["200", "403", "200", "403"]
    yield bed
    git(bed.mesh.repo.path, "reset", "-q", "--hard", bed.good)
    git(bed.mesh.repo.path, "clean", "-qfdx", "--", "state")
    bed.apply_hosts()


# -- the tamperings: each changes the repository's state/ and names the file to blame ----


def _attacker_root(directory: Path, name: str = "evil") -> tuple[Any, Any]:
    from meshops.pki import generate_key, issue_root

    key = generate_key("ecdsa-p256")
    cert = issue_root(mesh_name=name, key=key, now=datetime.now(UTC), ttl_seconds=86400.0)
    return cert, key


def _empty_crl(cert: Any, key: Any) -> bytes:
    from meshops.pki import build_crl, crl_pem

    crl = build_crl(issuer_cert=cert, issuer_key=key, revoked=[], number=1,
                    now=datetime.now(UTC), next_update_seconds=86400.0)  # fmt: skip
    return crl_pem(crl)


def extra_root(bed: Bed, state: Path) -> str:
    """An extra CA appended to root.crt, with its CRL beside the real one."""
    from meshops.pki import cert_pem

    cert, key = _attacker_root(bed.directory)
    (state / "ca/root.crt").write_bytes((state / "ca/root.crt").read_bytes() + cert_pem(cert))
    (state / "ca/crl.pem").write_bytes((state / "ca/crl.pem").read_bytes() + _empty_crl(cert, key))
    return "state/ca/root.crt"


def wireguard_key_swapped(bed: Bed, state: Path) -> str:
    from meshops.providers.wireguard.keys import generate_private_key, public_key_of

    doc = yaml.safe_load((state / "state.yaml").read_text())
    doc["nodes"]["n1"]["wireguard"]["public_key"] = public_key_of(generate_private_key())
    (state / "state.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return "state/state.yaml"


def symlink_to_host_key(bed: Bed, state: Path) -> str:
    """crl.pem -> the hosts' SSH host key (an absolute path, as a host would see it)."""
    target = bed.mesh.keys["n2"].private_file
    (state / "ca/crl.pem").unlink()
    (state / "ca/crl.pem").symlink_to(target)
    return "state/ca/crl.pem"


def node_ca_replaced(bed: Bed, state: Path) -> str:
    from meshops.pki import cert_pem

    cert, _ = _attacker_root(bed.directory, "n1 node CA")
    (state / "nodes/n1/ca.crt").write_bytes(cert_pem(cert))
    return "state/nodes/n1/ca.crt"


def crl_replaced(bed: Bed, state: Path) -> str:
    """An empty CRL under the real root's name, signed by the attacker's key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from meshops.pki import crl_pem

    real = x509.load_pem_x509_certificates((state / "ca/root.crt").read_bytes())[0]
    _, key = _attacker_root(bed.directory)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(real.subject)
        .last_update(datetime.now(UTC))
        .next_update(datetime.now(UTC) + timedelta(days=1))
    )
    (state / "ca/crl.pem").write_bytes(crl_pem(builder.sign(key, hashes.SHA256())))
    return "state/ca/crl.pem"


def address_changed(bed: Bed, state: Path) -> str:
    doc = yaml.safe_load((state / "state.yaml").read_text())
    doc["nodes"]["n1"]["address"] = "10.42.255.254"
    (state / "state.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return "state/state.yaml"


def file_turned_into_symlink(bed: Bed, state: Path) -> str:
    """root.crt -> an identical copy beside state/: the content matches, the kind does not."""
    copy = state.parent / "root-copy.crt"
    shutil.copy(state / "ca/root.crt", copy)
    (state / "ca/root.crt").unlink()
    (state / "ca/root.crt").symlink_to("../../root-copy.crt")
    return "state/ca/root.crt"


def manifest_rolled_back(bed: Bed, state: Path) -> str:
    """state/ as an older apply signed it: every file matches that older manifest."""
    git(bed.mesh.repo.path, "checkout", bed.older, "--", "state")
    return "state/manifest.yaml"


ATTACKS: dict[str, Callable[[Bed, Path], str]] = {
    "extra-root-and-crl": extra_root,
    "wireguard-key-swapped": wireguard_key_swapped,
    "symlink-to-host-key": symlink_to_host_key,
    "node-ca-replaced": node_ca_replaced,
    "crl-replaced": crl_replaced,
    "address-changed": address_changed,
    "file-turned-into-symlink": file_turned_into_symlink,
    "manifest-rolled-back": manifest_rolled_back,
}


def _review(bed: Bed, fmt: str) -> subprocess.CompletedProcess[str]:
    argv = ["meshops", "--no-color", "-C", str(bed.mesh.repo.path), "review",
            "--base", bed.good, "--format", fmt]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _secret_line(path: Path) -> str:
    """The longest base64 line of a private key file: a needle for leak scans."""
    lines = [ln for ln in path.read_text().splitlines() if "-----" not in ln]
    return max(lines, key=len)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_tampered_state_fails_review_and_every_host_refuses_it(fresh: Bed, attack: str) -> None:
    bed, mesh = fresh, fresh.mesh
    before = {node: bed.host_tree(node) for node in HOSTS}
    blamed = ATTACKS[attack](bed, mesh.repo.path / "state")
    bed.commit(f"tampered: {attack}")

    reviewed = _review(bed, "json")
    assert reviewed.returncode == 1, reviewed.stdout + reviewed.stderr
    doc = json.loads(reviewed.stdout)
    assert not doc["ok"] and not doc["state"]["verified"]
    assert blamed in [e["file"] for e in doc["state"]["errors"]], doc["state"]["errors"]
    for fmt in ("text", "markdown"):
        shown = _review(bed, fmt)
        assert shown.returncode == 1 and blamed in shown.stdout, shown.stdout
        assert "changed outside meshops apply" in shown.stdout

    secret = _secret_line(mesh.keys["n2"].private_file)
    for node in HOSTS:
        refused = mesh.meshops(node, "apply", "--auto-approve", check=False)
        assert refused.returncode == 1, str(refused)
        assert "Traceback" not in refused.output
        assert blamed in refused.stderr, refused.stderr
        assert bed.host_tree(node) == before[node], f"[{node}] host files changed"
        status = mesh.status(node)
        assert blamed in (status["trust"]["refused"] or ""), status["trust"]
        metrics = mesh.host_path(node, "/var/lib/meshops/metrics.prom").read_text()
        assert f'meshops_state_refused{{node="{node}"}} 1' in metrics
        for path in mesh.roots[node].rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret not in path.read_text(errors="replace"), path
    # the test's curl finds n1 by the repository's state.yaml: restore it (hosts do not
    # apply again), then the hosts' proxies must still pass web and refuse batch
    git(mesh.repo.path, "checkout", bed.good, "--", "state")
    assert bed.calls() == ["200", "403", "200", "403"], "mesh calls on the last good material"


def test_an_untouched_repo_apply_reviews_clean(bed: Bed) -> None:
    reviewed = subprocess.run(
        ["meshops", "-C", str(bed.mesh.repo.path), "review", "--base", bed.older,
         "--head", bed.good, "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert reviewed.returncode == 0, reviewed.stdout + reviewed.stderr
    state = json.loads(reviewed.stdout)["state"]
    assert state["verified"] and not state["errors"]
    assert state["manifest"]["head_version"] > state["manifest"]["base_version"]
    assert any("node CA re-issued (its names changed)" in line and "n2" in line
               for line in state["summary"]), state["summary"]  # fmt: skip


def test_a_host_refusing_a_revision_keeps_renewing_its_leaves(
    fresh: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two days later on the host's clock the leaves are due: they are renewed by the
    node CA of the last good state/, while the new revision stays refused."""
    bed, mesh = fresh, fresh.mesh
    found = read_pack(mesh.host_path("n2", "/var/lib/meshops"))
    assert found is not None, "n2 keeps its verified material"
    node_ca = bed.directory / "n2-node-ca.pem"  # the node CA of the last good state/
    node_ca.write_bytes(found[1].files["nodes/n2/ca.crt"])
    old_leaf = (mesh.tls_dir("n2", "web") / "cert.pem").read_bytes()
    wireguard_key_swapped(bed, mesh.repo.path / "state")
    bed.commit("tampered")
    later = datetime.now(UTC) + timedelta(hours=40)
    monkeypatch.setenv("MESHOPS_TEST_NOW", later.isoformat(timespec="seconds"))
    renewed = mesh.meshops("n2", "apply", "--auto-approve", check=False)
    monkeypatch.delenv("MESHOPS_TEST_NOW")
    assert renewed.returncode == 1 and "state/state.yaml" in renewed.stderr, str(renewed)
    assert 'cert.leaf["web"]' in renewed.stdout, renewed.stdout
    leaf = mesh.tls_dir("n2", "web") / "cert.pem"
    assert leaf.read_bytes() != old_leaf
    checked = openssl("verify", "-attime", str(int(later.timestamp())), "-partial_chain",
                      "-CAfile", str(node_ca), str(leaf))  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # back to today's clock: the leaves issued "two days later" are not valid yet
    for identity in ("web", "batch"):
        shutil.rmtree(mesh.tls_dir("n2", identity))


def test_the_refused_revisions_mesh_yaml_is_held_back_with_its_state(fresh: Bed) -> None:
    """Outside pull mode the checkout moves anyway: a revision that tampers with state/
    and also grants batch a call in mesh.yaml changes no proxy config on any host."""
    bed, mesh = fresh, fresh.mesh
    before = {node: bed.host_tree(node) for node in HOSTS}
    mesh.repo.data["policies"].append(
        {"name": "mallory", "from": "batch", "to": "api", "allow": [{"methods": ["GET"]}]}
    )
    mesh.repo.write_mesh()
    mesh.repo.data["policies"].pop()  # the fixture's mesh stays as reviewed
    wireguard_key_swapped(bed, mesh.repo.path / "state")
    bed.commit("tampered, and batch may read api")
    for node in HOSTS:
        planned = mesh.meshops(node, "plan", check=False)
        assert planned.returncode == 1, str(planned)
        assert "the refused revision's mesh.yaml is not used either" in planned.stdout, str(planned)
        assert "mallory" not in planned.stdout
        refused = mesh.meshops(node, "apply", "--auto-approve", check=False)
        assert refused.returncode == 1 and "state/state.yaml" in refused.stderr, str(refused)
        assert bed.host_tree(node) == before[node], f"[{node}] host files changed"
    git(mesh.repo.path, "checkout", bed.good, "--", "state")
    assert bed.calls() == ["200", "403", "200", "403"], "batch still refused"


def test_a_pulling_host_refuses_the_revision_before_checking_it_out(fresh: Bed) -> None:
    bed, mesh = fresh, fresh.mesh
    puller = pull_host(mesh, "n2")
    try:
        puller.meshops("apply", "--pull", "--auto-approve")
        before = bed.host_tree("n2")
        extra_root(bed, mesh.repo.path / "state")
        bad = bed.commit("tampered")
        refused = puller.meshops("apply", "--pull", "--auto-approve", check=False)
        assert refused.returncode == 1, str(refused)
        assert "state/ca/root.crt" in refused.stderr and "stays on" in refused.stderr
        assert puller.head() == bed.good != bad  # never checked out
        assert bed.host_tree("n2") == before
        status = json.loads(mesh.host_path("n2", "/var/lib/meshops/status.json").read_text())
        assert "state/ca/root.crt" in status["last_apply"]["refused"]
        assert "state/ca/root.crt" in mesh.status("n2")["trust"]["refused"]
    finally:
        mesh.host_path("n2", "/etc/meshops/host.yaml").unlink()
        shutil.rmtree(puller.checkout)


# -- root rotation with pinned hosts (last: it moves the mesh to a new root) ----------


def _root_fingerprints(mesh: BedMesh) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certs = x509.load_pem_x509_certificates((mesh.repo.state_dir / "ca/root.crt").read_bytes())
    return ["sha256:" + c.fingerprint(hashes.SHA256()).hex() for c in certs]


def _pin(mesh: BedMesh, node: str, fingerprints: list[str]) -> None:
    path = mesh.host_path(node, "/etc/meshops/host.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"node": node, "trust": fingerprints}))


def _attackers_own_state(bed: Bed) -> None:
    """What push access without the root key can make: a whole state/ signed by a root
    of the attacker's, from a copy of the repository with the attacker as ca.recipients."""
    evil = bed.directory / "evil-repo"
    shutil.rmtree(evil, ignore_errors=True)
    shutil.copytree(bed.mesh.repo.path, evil, ignore=shutil.ignore_patterns(".git", "state"))
    attacker = make_age_key(bed.directory, "attacker.key")
    data = yaml.safe_load((evil / "mesh.yaml").read_text())
    data["ca"]["recipients"] = [attacker.recipient]
    (evil / "mesh.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    made = subprocess.run(
        ["meshops", "-C", str(evil), "--identity", str(attacker.private_file), "apply",
         "--auto-approve"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    shutil.rmtree(bed.mesh.repo.path / "state")
    shutil.copytree(evil / "state", bed.mesh.repo.path / "state")


def test_root_rotation_with_pinned_hosts_and_a_root_the_old_one_never_signed(bed: Bed) -> None:
    mesh = bed.mesh
    (old_root,) = _root_fingerprints(mesh)
    for node in HOSTS:
        _pin(mesh, node, [old_root])
        mesh.apply(node)
        trust = mesh.status(node)["trust"]
        assert trust["source"] == "host.yaml" and trust["pinned"] == [old_root]
    staged = mesh.repo.meshops("ca", "rotate", "--hold", "0s", identity=True)
    assert staged.returncode == 0, str(staged)
    mesh.repo.commit("stage a new root")
    for phase, roots in ((1, 2), (2, 2), (3, 1)):
        applied = mesh.apply_repo(f"root rotation, phase {phase}")
        assert f"rotation {phase}/3" in applied.stdout, applied.stdout
        bed.apply_hosts()
        assert len(_root_fingerprints(mesh)) == roots
        assert bed.calls() == ["200", "403", "200", "403"], f"after phase {phase}"
        reviewed = subprocess.run(
            ["meshops", "-C", str(mesh.repo.path), "review", "--base", "HEAD~1"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert reviewed.returncode == 0, reviewed.stdout
    (new_root,) = _root_fingerprints(mesh)
    for node in HOSTS:
        trust = mesh.status(node)["trust"]
        assert trust["pinned"] == [old_root] and trust["trusted"] == [new_root], trust
    transitions = yaml.safe_load((mesh.repo.state_dir / "ca/transitions.yaml").read_text())
    assert [(t["from"], t["to"]) for t in transitions["transitions"]] == [(old_root, new_root)]

    # a root the old one never handed over to: the attacker's own, fully signed state/
    good = git(mesh.repo.path, "rev-parse", "HEAD")
    before = {node: bed.host_tree(node) for node in HOSTS}
    _attackers_own_state(bed)
    bed.commit("a new root, without the old one's consent")
    reviewed = subprocess.run(
        ["meshops", "-C", str(mesh.repo.path), "review", "--base", good, "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert reviewed.returncode == 1
    errors = json.loads(reviewed.stdout)["state"]["errors"]
    assert errors[0]["file"] == "state/manifest.sig" and "not trusted" in errors[0]["message"]
    for node in HOSTS:
        refused = mesh.meshops(node, "apply", "--auto-approve", check=False)
        assert refused.returncode == 1 and "not trusted here" in refused.stderr, str(refused)
        assert bed.host_tree(node) == before[node]
    assert bed.calls() == ["200", "403", "200", "403"]


def test_no_private_key_reached_any_output(bed: Bed) -> None:
    from test_repo_support import Unsealed, assert_no_secret_leaked

    assert_no_secret_leaked(bed.mesh.repo, Unsealed())
