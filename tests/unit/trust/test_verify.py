"""`verify_state`: signature by a trusted root, version, files, roots (pure)."""

from __future__ import annotations

import pytest
from trust_helpers import NOW, Root, base_files, signed

from meshops.trust import transitions
from meshops.trust.verify import NotRegular, StateRefused, Trust, verify_state

AT = NOW.isoformat()


def _refused(entries: dict, trust: Trust, **kw: object) -> StateRefused:  # type: ignore[type-arg]
    with pytest.raises(StateRefused) as caught:
        verify_state(entries, trust, **kw)  # type: ignore[arg-type]
    return caught.value


def test_state_signed_by_a_pinned_root_verifies(any_root: Root) -> None:
    entries = signed(base_files(any_root), any_root, version=4)
    verified = verify_state(entries, Trust(frozenset({any_root.fingerprint}), min_version=4))
    assert verified.version == 4 and verified.signer == any_root.fingerprint
    assert verified.roots == (any_root.fingerprint,)


def test_trust_on_first_use_takes_the_roots_of_the_revision(root: Root) -> None:
    verified = verify_state(signed(base_files(root), root), Trust(None))
    assert verified.trusted == {root.fingerprint}


@pytest.mark.parametrize("path", ["ca/root.crt", "state.yaml", "nodes/web-1/wg.key.age"])
def test_a_file_changed_after_signing_is_named(root: Root, path: str) -> None:
    entries = signed(base_files(root), root)
    entries[path] = bytes(entries[path]) + b"tampered"  # type: ignore[arg-type]
    refused = _refused(entries, Trust(frozenset({root.fingerprint})))
    assert refused.file == f"state/{path}"
    assert f"state/{path} changed outside meshops apply" in refused.message


def test_every_changed_file_is_named_and_the_first_blamed(root: Root) -> None:
    entries = signed(base_files(root), root)
    for path in ("ca/crl.pem", "ca/root.crt"):
        entries[path] = bytes(entries[path]) + b"\n"  # type: ignore[arg-type]
    refused = _refused(entries, Trust(frozenset({root.fingerprint})))
    assert refused.file == "state/ca/crl.pem"
    assert "state/ca/crl.pem, state/ca/root.crt changed outside meshops apply" in refused.message


def test_an_unlisted_file_a_missing_one_and_a_symlink_are_refused(root: Root) -> None:
    trust = Trust(frozenset({root.fingerprint}))
    extra = signed(base_files(root), root) | {"nodes/evil/ca.crt": b"x"}
    assert "does not list it" in _refused(extra, trust).message
    missing = signed(base_files(root), root)
    del missing["nodes/web-1/crl.pem"]
    assert "listed in the signed manifest but missing" in _refused(missing, trust).message
    linked = signed(base_files(root), root)
    linked["ca/crl.pem"] = NotRegular("a symlink")
    refused = _refused(linked, trust)
    assert (
        refused.file == "state/ca/crl.pem" and "is a symlink, not a regular file" in refused.message
    )


def test_a_host_checks_only_what_it_reads(root: Root) -> None:
    entries = signed(base_files(root), root) | {"nodes/other/junk": b"x"}
    trust = Trust(frozenset({root.fingerprint}))
    verify_state(entries, trust, paths=["state.yaml", "ca/root.crt", "ca/transitions.yaml"])


def test_state_signed_by_a_root_nobody_handed_over_to_is_refused(
    root: Root, next_root: Root
) -> None:
    entries = signed(base_files(next_root), next_root)
    refused = _refused(entries, Trust(frozenset({root.fingerprint})))
    assert refused.file == "state/manifest.sig" and "not trusted here" in refused.message


def test_a_manifest_below_the_applied_version_is_a_rollback(root: Root) -> None:
    entries = signed(base_files(root), root, version=3)
    refused = _refused(entries, Trust(frozenset({root.fingerprint}), min_version=4))
    assert refused.file == "state/manifest.yaml" and "rollback" in refused.message


def test_a_missing_manifest_says_state_is_not_signed(root: Root) -> None:
    refused = _refused(base_files(root), Trust(frozenset({root.fingerprint})))  # type: ignore[arg-type]
    assert refused.file == "state/manifest.yaml" and "not signed" in refused.message


def test_a_manifest_edited_after_signing_does_not_verify(root: Root) -> None:
    entries = signed(base_files(root), root)
    entries["manifest.yaml"] = bytes(entries["manifest.yaml"]).replace(b"version: 1", b"version: 9")  # type: ignore[arg-type]
    assert "does not verify" in _refused(entries, Trust(frozenset({root.fingerprint}))).message


def test_a_rotation_is_followed_through_the_old_roots_hand_over(
    root: Root, next_root: Root
) -> None:
    hand_over = transitions.render(
        [transitions.make_transition(root.cert, root.key, next_root.cert, AT)]
    )
    files = base_files(next_root, root) | {"ca/transitions.yaml": hand_over}  # both roots
    verified = verify_state(signed(files, next_root), Trust(frozenset({root.fingerprint})))
    assert verified.trusted == {root.fingerprint, next_root.fingerprint}
    # phase 3: only the new root is left, and the old one is still the pin
    files = base_files(next_root) | {"ca/transitions.yaml": hand_over}
    verify_state(signed(files, next_root), Trust(frozenset({root.fingerprint})))


def test_an_extra_root_in_the_bundle_needs_a_hand_over(root: Root, next_root: Root) -> None:
    """Even a manifest the pinned root signed cannot slip in a root nobody handed over to."""
    entries = signed(base_files(root, next_root), root)
    refused = _refused(entries, Trust(frozenset({root.fingerprint})))
    assert (
        refused.file == "state/ca/root.crt" and "no trusted root handed over to" in refused.message
    )


def test_a_forged_hand_over_does_not_make_the_attackers_root_trusted(
    root: Root, next_root: Root
) -> None:
    forged = transitions.render(
        [transitions.make_transition(root.cert, next_root.key, next_root.cert, AT)]
    )
    files = base_files(next_root) | {"ca/transitions.yaml": forged}
    refused = _refused(signed(files, next_root), Trust(frozenset({root.fingerprint})))
    assert "not trusted here" in refused.message
