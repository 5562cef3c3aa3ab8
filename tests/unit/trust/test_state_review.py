"""`review_state`: a state/ change is repo apply's signed output and agrees with
mesh.yaml at head, or an error naming the file. Real applies in process (the engine,
real keys); a signed but inconsistent state/ is made by re-signing with the root key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from factories import age_identity_pair, make_mesh, to_yaml
from trust_helpers import Root, signed

from meshops.engine.run import apply_plan, make_plan
from meshops.engine.runtime import Runtime
from meshops.gitops.revisions import Snapshot
from meshops.gitops.state_review import review_state
from meshops.model import load_text
from meshops.resources import open_repo
from meshops.trust.manifest import MANIFEST, SIGNATURE, Manifest

NOW = datetime.now(UTC)


class Repo:
    def __init__(self, path: Path, data: dict[str, Any]):
        path.mkdir()
        self.path, self.data = path, data
        self.identity = path.parent / "operator.key"
        self.identity.write_text(age_identity_pair(0)[0] + "\n")
        self.identity.chmod(0o600)  # an identity others may read is refused

    def apply(self) -> Snapshot:
        text = to_yaml(self.data)
        (self.path / "mesh.yaml").write_text(text)
        rt = Runtime(repo_dir=self.path, identity_files=[self.identity])
        scope = open_repo(load_text(text, "mesh.yaml"), self.path / "mesh.yaml", self.path, rt)
        plan = make_plan(scope.name, scope.resources, rt)
        result = apply_plan(plan, scope.resources, rt)
        assert result.ok, result.error
        scope.record(plan, result, None, rt)
        return self.snapshot()

    def snapshot(self, label: str = "rev") -> Snapshot:
        state = {
            str(p.relative_to(self.path / "state")): p.read_bytes()
            for p in sorted((self.path / "state").rglob("*"))
            if p.is_file()
        }
        return Snapshot(label, "0" * 40, "mesh.yaml", to_yaml(self.data).encode(), state)

    def root(self) -> Root:
        """The root and its key, unsealed with the operator identity (to forge consistency
        errors that still carry a valid signature)."""
        import pyrage
        from cryptography import x509

        from meshops.pki import load_private_pem

        cert = x509.load_pem_x509_certificates((self.path / "state/ca/root.crt").read_bytes())[-1]
        ident = pyrage.x25519.Identity.from_str(age_identity_pair(0)[0])
        pem = pyrage.decrypt((self.path / "state/ca/root.key.age").read_bytes(), [ident])
        return Root(cert, load_private_pem(pem))


def _mesh(snapshot: Snapshot) -> Any:
    assert snapshot.mesh is not None
    return load_text(snapshot.mesh.decode(), "mesh.yaml").mesh


def resigned(snapshot: Snapshot, root: Root, version: int, **changes: bytes) -> Snapshot:
    """`snapshot` with files replaced, signed again by the real root (as only someone
    holding the root key could)."""
    files = {p: d for p, d in snapshot.state.items() if p not in (MANIFEST, SIGNATURE)}
    files.update(changes)
    state = {p: d for p, d in signed(files, root, version=version).items() if isinstance(d, bytes)}
    return Snapshot("head", "1" * 40, "mesh.yaml", snapshot.mesh, state)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    data = make_mesh(nodes=3)
    data["ca"]["recipients"] = [age_identity_pair(0)[1]]
    return Repo(tmp_path / "mesh", data)


def test_a_removal_applied_by_meshops_verifies_and_reads_as_words(repo: Repo) -> None:
    base = repo.apply()
    del repo.data["nodes"]["node-3"]
    head = repo.apply()
    review = review_state(base, head, _mesh(head), NOW)
    assert review.verified, review.errors
    text = "\n".join(review.summary)
    assert "(version 1 -> 2)" in text
    assert "node CA removed and revoked for 1 node(s): node-3" in text
    assert "addresses: node-3 released" in text
    assert "CRL re-signed (number 1 -> 2): 1 node CA(s) revoked" in text


def test_an_unchanged_state_needs_no_review(repo: Repo) -> None:
    base = repo.apply()
    review = review_state(base, base, _mesh(base), NOW)
    assert not review.changed and not review.errors and not review.verified


def test_a_removed_node_left_off_the_crl_is_an_error_even_when_signed(repo: Repo) -> None:
    base = repo.apply()
    del repo.data["nodes"]["node-3"]
    head = repo.apply()
    forged = resigned(head, repo.root(), 3, **{"ca/crl.pem": base.state["ca/crl.pem"]})
    review = review_state(base, forged, _mesh(head), NOW)
    assert [e.file for e in review.errors] == ["state/ca/crl.pem"]
    assert "does not revoke the node CA of removed node node-3" in review.errors[0].message


def test_state_that_does_not_match_mesh_yaml_at_head_is_an_error(repo: Repo) -> None:
    base = repo.apply()
    repo.data["nodes"]["node-1"]["dns"] = ["n1.example.org"]  # mesh.yaml moved on, state/ did not
    repo.data["nodes"]["node-4"] = make_mesh(nodes=4)["nodes"]["node-4"]
    head = resigned(base, repo.root(), 2, **{"state.yaml": base.state["state.yaml"] + b"\n"})
    head = Snapshot("head", "1" * 40, "mesh.yaml", to_yaml(repo.data).encode(), head.state)
    review = review_state(base, head, _mesh(head), NOW)
    messages = [e.message for e in review.errors]
    assert any("node node-4 is in mesh.yaml at head" in m for m in messages), messages
    assert any(
        "state/nodes/node-1/ca.crt: its name constraints are not node node-1's names" in m
        and "missing: dns:n1.example.org" in m
        for m in messages
    ), messages


def test_a_pinned_address_changed_in_state_is_an_error(repo: Repo) -> None:
    repo.data["nodes"]["node-2"]["address"] = "10.42.0.22"
    base = repo.apply()
    state = base.state["state.yaml"].replace(b"10.42.0.22", b"10.42.0.99")
    head = resigned(base, repo.root(), 2, **{"state.yaml": state})
    review = review_state(base, head, _mesh(base), NOW)
    assert any("mesh.yaml pins 10.42.0.22" in e.message for e in review.errors), review.errors


def test_a_replayed_older_manifest_is_a_rollback(repo: Repo) -> None:
    first = repo.apply()
    del repo.data["nodes"]["node-3"]
    second = repo.apply()
    review = review_state(second, first, _mesh(first), NOW)
    assert [e.file for e in review.errors] == ["state/manifest.yaml"]
    assert Manifest.parse(first.state[MANIFEST]).version == 1
    assert "version 1 does not grow from version 2" in review.errors[0].message
