"""Root rotation in three phases, with real chains checked by openssl at every phase."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from pki_factories import DAY, NOW, Issued, Pki, make_pki, node_ca_spec, openssl_verify

from meshops.errors import MeshError
from meshops.pki import (
    cert_public_key,
    generate_key,
    issue_node_ca,
    issue_root,
    key_type_of,
    next_rotation_step,
    root_rotation_reason,
)


def _new_root(key_type: str = "ecdsa-p256") -> Issued:
    key = generate_key(key_type)  # type: ignore[arg-type]
    later = NOW + timedelta(days=1)
    return Issued(issue_root(mesh_name="demo", key=key, now=later, ttl_seconds=3650 * DAY), key)


def _node_ca_under(root: Issued, node: str, index: int) -> Issued:
    key = generate_key("ecdsa-p256")
    ips = (ip_address(f"10.42.0.{11 + index}"), ip_address(f"fd42::{11 + index}"))
    cert = issue_node_ca(
        root_cert=root.cert,
        root_key=root.key,
        public_key=key.public_key(),
        spec=node_ca_spec(node, ips=ips),
        now=NOW + timedelta(days=1),
        ttl_seconds=30 * DAY,
    )
    return Issued(cert, key)


def test_no_rotation_without_a_new_root(p256: Pki) -> None:
    step = next_rotation_step(
        roots=[p256.root.cert], node_cas={n: i.cert for n, i in p256.node_cas.items()}
    )
    assert step.phase is None
    assert step.bundle == (p256.root.cert,)
    assert step.signing_root == p256.root.cert
    assert not step.ready(NOW)


def test_asking_for_the_current_root_is_no_rotation(p256: Pki) -> None:
    step = next_rotation_step(roots=[p256.root.cert], node_cas={}, new_root=p256.root.cert)
    assert step.phase is None


def test_three_phases_keep_every_leaf_verifiable_until_the_old_root_retires(
    tmp_path: Path,
) -> None:
    pki = make_pki("ecdsa-p256")
    old_leaf = pki.leaf(node="web-1")
    old_ca = pki.node_cas["web-1"].cert
    new = _new_root()
    node_cas = {n: i.cert for n, i in pki.node_cas.items()}

    # 1. add-new-root: both roots trusted, new node CAs signed by the new root
    step = next_rotation_step(roots=[pki.root.cert], node_cas=node_cas, new_root=new.cert)
    assert step.phase == "add-new-root"
    assert step.bundle == (pki.root.cert, new.cert)
    assert step.signing_root == new.cert
    bundle = list(step.bundle)
    when = NOW + timedelta(days=1, hours=1)
    verdict = openssl_verify(tmp_path, old_leaf.cert, roots=bundle, untrusted=[old_ca], attime=when)
    assert verdict.ok, verdict.output

    # 2. reissue: every node CA still under the old root is listed
    step = next_rotation_step(roots=bundle, node_cas=node_cas, new_root=new.cert)
    assert step.phase == "reissue"
    assert step.reissue == ("api-1", "web-1")
    assert step.bundle == (pki.root.cert, new.cert)
    index = {name: i for i, name in enumerate(pki.node_cas)}  # keeps each node's addresses
    reissued = {n: _node_ca_under(new, n, index[n]) for n in step.reissue}
    pki.node_cas["web-1"] = reissued["web-1"]
    new_leaf = pki.leaf(node="web-1", now=NOW + timedelta(days=1))
    for leaf, ca in ((old_leaf.cert, old_ca), (new_leaf.cert, reissued["web-1"].cert)):
        verdict = openssl_verify(tmp_path, leaf, roots=bundle, untrusted=[ca], attime=when)
        assert verdict.ok, verdict.output

    # halfway: only the remaining node is listed
    halfway = {"web-1": reissued["web-1"].cert, "api-1": node_cas["api-1"]}
    assert next_rotation_step(roots=bundle, node_cas=halfway).reissue == ("api-1",)

    # 3. retire-old-root: every node CA is under the new root
    done = {n: i.cert for n, i in reissued.items()}
    step = next_rotation_step(roots=bundle, node_cas=done)
    assert step.phase == "retire-old-root"
    assert step.bundle == (new.cert,)
    verdict = openssl_verify(
        tmp_path, new_leaf.cert, roots=list(step.bundle), untrusted=[done["web-1"]], attime=when
    )
    assert verdict.ok, verdict.output
    verdict = openssl_verify(
        tmp_path, old_leaf.cert, roots=list(step.bundle), untrusted=[old_ca], attime=when
    )
    assert not verdict.ok

    # after retiring, the mesh is steady on the new root
    assert next_rotation_step(roots=list(step.bundle), node_cas=done).phase is None


def test_phases_can_be_held_so_hosts_pull_each_bundle_first(p256: Pki) -> None:
    new = _new_root()
    step = next_rotation_step(
        roots=[p256.root.cert, new.cert],
        node_cas={n: i.cert for n, i in p256.node_cas.items()},
        phase_entered_at=NOW,
        min_phase_seconds=3600,
    )
    assert step.phase == "reissue"
    assert step.not_before == NOW + timedelta(hours=1)
    assert not step.ready(NOW + timedelta(minutes=59))
    assert step.ready(NOW + timedelta(hours=1))


def test_a_third_root_during_a_rotation_is_refused(p256: Pki) -> None:
    with pytest.raises(MeshError, match="already under way"):
        next_rotation_step(
            roots=[p256.root.cert, _new_root().cert], node_cas={}, new_root=_new_root().cert
        )


def test_more_than_two_roots_or_none_are_refused(p256: Pki) -> None:
    with pytest.raises(MeshError, match="two at most"):
        next_rotation_step(roots=[p256.root.cert] * 3, node_cas={})
    with pytest.raises(MeshError, match="no root CA yet"):
        next_rotation_step(roots=[], node_cas={})


def test_root_rotation_reasons(p256: Pki) -> None:
    root = p256.root.cert
    year = 365 * DAY
    kind, expiry = key_type_of(cert_public_key(root)), root.not_valid_after_utc
    assert (
        root_rotation_reason(
            kind, expiry, key_type="ecdsa-p256", rotate_before_seconds=year, now=NOW
        )
        is None
    )
    assert (
        root_rotation_reason(kind, expiry, key_type="ed25519", rotate_before_seconds=year, now=NOW)
        == "root key type changed: ecdsa-p256 -> ed25519"
    )
    soon = root.not_valid_after_utc - timedelta(hours=10)
    assert (
        root_rotation_reason(
            kind, expiry, key_type="ecdsa-p256", rotate_before_seconds=year, now=soon
        )
        == "root expires in 10h < 8760h"
    )
    gone = root.not_valid_after_utc + timedelta(hours=1)
    assert (
        root_rotation_reason(
            kind, expiry, key_type="ecdsa-p256", rotate_before_seconds=year, now=gone
        )
        == "root expired 1h ago"
    )
