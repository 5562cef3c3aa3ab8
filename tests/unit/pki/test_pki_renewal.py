"""Renewal: the window with its jitter, and each reason a certificate must be re-issued."""

from __future__ import annotations

from datetime import datetime, timedelta
from ipaddress import ip_address

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st
from pki_factories import DAY, HOUR, NOW, Issued, Pki, leaf_spec, node_ca_spec

from meshops.model.durations import RenewBefore
from meshops.pki import (
    LeafSpec,
    generate_key,
    issue_leaf,
    issue_node_ca,
    jitter_seconds,
    renewal_reason,
    renewal_time,
)
from meshops.pki.renewal import JITTER_MAX_FRACTION

THIRD = RenewBefore.parse("33%")
SIXTEEN_HOURS = RenewBefore.parse("16h")


def _web1_spec(p: Pki, **kw: object) -> LeafSpec:
    fields: dict[str, object] = {
        "key_type": p.key_type,
        "ips": (ip_address("10.42.0.11"), ip_address("fd42::11")),
    }
    return leaf_spec(**{**fields, **kw})  # type: ignore[arg-type]


def _reason(
    p: Pki,
    leaf: Issued,
    *,
    now: datetime = NOW,
    renew_before: RenewBefore = THIRD,
    spec: LeafSpec | None = None,
    issuer: x509.Certificate | None = None,
) -> str | None:
    return renewal_reason(
        leaf.cert,
        desired=spec or _web1_spec(p),
        issuer_cert=issuer or p.node_cas["web-1"].cert,
        renew_before=renew_before,
        now=now,
    )


# -- the time window -------------------------------------------------------------------


def test_fresh_leaf_is_not_due(p256: Pki) -> None:
    assert _reason(p256, p256.leaf()) is None


def test_leaf_becomes_due_exactly_at_its_renewal_time(p256: Pki) -> None:
    leaf = p256.leaf()
    due = renewal_time(leaf.cert, THIRD, 48 * HOUR)
    assert _reason(p256, leaf, now=due - timedelta(seconds=1)) is None
    reason = _reason(p256, leaf, now=due)
    assert reason is not None
    assert reason.startswith("expires in ")
    assert "< renew_before 33% (15h50m)" in reason


def test_renewal_time_is_renew_before_ahead_of_expiry_plus_at_most_five_percent(
    p256: Pki,
) -> None:
    leaf = p256.leaf()
    before = 0.33 * 48 * HOUR
    due = renewal_time(leaf.cert, THIRD, 48 * HOUR)
    lead = (leaf.cert.not_valid_after_utc - due).total_seconds()
    assert before <= lead <= before * (1 + JITTER_MAX_FRACTION)


def test_duration_renew_before_reads_in_words(p256: Pki) -> None:
    leaf = p256.leaf()
    later = leaf.cert.not_valid_after_utc - timedelta(hours=3)
    assert _reason(p256, leaf, now=later, renew_before=SIXTEEN_HOURS) == (
        "expires in 3h < renew_before 16h"
    )


def test_inside_the_jitter_band_the_reason_names_the_jitter(p256: Pki) -> None:
    leaf = p256.leaf()
    due = renewal_time(leaf.cert, SIXTEEN_HOURS, 48 * HOUR)
    lead = (leaf.cert.not_valid_after_utc - due).total_seconds()
    if lead - 16 * HOUR < 1:
        pytest.skip("this serial drew almost no jitter")
    reason = _reason(p256, leaf, now=due, renew_before=SIXTEEN_HOURS)
    assert reason is not None and "< renew_before 16h + jitter" in reason


def test_expired_leaf_says_how_long_ago(p256: Pki) -> None:
    leaf = p256.leaf()
    later = leaf.cert.not_valid_after_utc + timedelta(hours=2)
    # the node CA is still valid then: the leaf's 48h is far inside its 30 days
    assert _reason(p256, leaf, now=later) == "expired 2h ago"


def test_certificate_from_the_future_is_renewed_and_the_clock_blamed(p256: Pki) -> None:
    leaf = p256.leaf(now=NOW + timedelta(hours=1))
    reason = _reason(p256, leaf, now=NOW)
    assert reason is not None and reason.startswith("not valid yet") and "clock" in reason


def test_leaf_clamped_to_its_node_ca_is_not_reissued_for_time_alone(p256: Pki) -> None:
    ca = p256.node_cas["web-1"].cert
    leaf = p256.leaf(now=ca.not_valid_after_utc - timedelta(hours=5))
    assert leaf.cert.not_valid_after_utc == ca.not_valid_after_utc
    # 1h left < 33% of 48h, but a new leaf would end at the same moment
    assert _reason(p256, leaf, now=ca.not_valid_after_utc - timedelta(hours=1)) is None
    after = _reason(p256, leaf, now=ca.not_valid_after_utc + timedelta(minutes=1))
    assert after == "expired 1m ago"


# -- mismatches ------------------------------------------------------------------------


def test_added_and_removed_names_are_listed(p256: Pki) -> None:
    leaf = p256.leaf()
    spec = leaf_spec(dns=("www.example.com", "api.internal"), ips=(ip_address("10.42.0.11"),))
    assert _reason(p256, leaf, spec=spec) == "SANs changed: +dns:api.internal, -ip:fd42::11"


def test_key_type_change_is_a_reason(p256: Pki) -> None:
    reason = _reason(p256, p256.leaf(), spec=_web1_spec(p256, key_type="ed25519"))
    assert reason == "key type changed: ecdsa-p256 -> ed25519"


def test_other_issuer_is_a_reason(p256: Pki) -> None:
    reason = _reason(p256, p256.leaf(), issuer=p256.node_cas["api-1"].cert)
    assert reason == "issuer changed"


def test_reissued_node_ca_with_the_same_name_but_a_new_key_is_a_new_issuer(p256: Pki) -> None:
    new_key = generate_key("ecdsa-p256")
    reissued = issue_node_ca(
        root_cert=p256.root.cert,
        root_key=p256.root.key,
        public_key=new_key.public_key(),
        spec=node_ca_spec("web-1", ips=(ip_address("10.42.0.11"), ip_address("fd42::11"))),
        now=NOW,
        ttl_seconds=30 * DAY,
    )
    assert reissued.subject == p256.node_cas["web-1"].cert.subject
    assert _reason(p256, p256.leaf(), issuer=reissued) == "issuer changed"


def test_ttl_change_reads_old_and_new(p256: Pki) -> None:
    reason = _reason(p256, p256.leaf(), spec=_web1_spec(p256, ttl_seconds=24 * HOUR))
    assert reason == "ttl changed: 48h -> 24h"


def test_several_mismatches_are_all_reported(p256: Pki) -> None:
    spec = _web1_spec(p256, key_type="ecdsa-p384", ttl_seconds=72 * HOUR)
    reason = _reason(p256, p256.leaf(), spec=spec)
    assert reason == "key type changed: ecdsa-p256 -> ecdsa-p384; ttl changed: 48h -> 72h"


def test_node_ca_name_constraint_change_is_a_reason(p256: Pki) -> None:
    ca = p256.node_cas["web-1"].cert
    spec = node_ca_spec("web-1", ips=(ip_address("10.42.0.11"), ip_address("fd42::11")))
    common = {"issuer_cert": p256.root.cert, "renew_before": THIRD, "now": NOW}
    assert renewal_reason(ca, desired=spec, ttl_seconds=30 * DAY, **common) is None  # type: ignore[arg-type]
    grown = node_ca_spec(
        "web-1",
        dns_names=("www.example.com", "api.internal"),
        ips=(ip_address("10.42.0.11"), ip_address("fd42::11")),
    )
    reason = renewal_reason(ca, desired=grown, ttl_seconds=30 * DAY, **common)  # type: ignore[arg-type]
    assert reason == "name constraints changed: +dns:api.internal"


def test_node_ca_due_in_its_window(p256: Pki) -> None:
    ca = p256.node_cas["web-1"].cert
    spec = node_ca_spec("web-1", ips=(ip_address("10.42.0.11"), ip_address("fd42::11")))
    reason = renewal_reason(
        ca,
        desired=spec,
        issuer_cert=p256.root.cert,
        renew_before=SIXTEEN_HOURS,
        ttl_seconds=30 * DAY,
        now=ca.not_valid_after_utc - timedelta(hours=3),
    )
    assert reason == "expires in 3h < renew_before 16h"


def test_node_ca_needs_its_ttl(p256: Pki) -> None:
    with pytest.raises(TypeError, match="ttl_seconds"):
        renewal_reason(
            p256.node_cas["web-1"].cert,
            desired=node_ca_spec(),
            issuer_cert=p256.root.cert,
            renew_before=THIRD,
            now=NOW,
        )


def test_leaf_issued_after_a_fresh_node_ca_is_not_mistaken_for_a_ttl_change(p256: Pki) -> None:
    """The node CA starts at now-5min; a leaf issued before that instant is clamped to it."""
    ca = p256.node_cas["web-1"]
    leaf_key = generate_key("ecdsa-p256")
    early = NOW - timedelta(minutes=3)
    cert = issue_leaf(
        node_ca_cert=ca.cert,
        node_ca_key=ca.key,
        public_key=leaf_key.public_key(),
        spec=_web1_spec(p256),
        now=early,
    )
    assert cert.not_valid_before_utc == ca.cert.not_valid_before_utc
    reason = renewal_reason(
        cert, desired=_web1_spec(p256), issuer_cert=ca.cert, renew_before=THIRD, now=NOW
    )
    assert reason is None


# -- jitter properties -----------------------------------------------------------------


@given(
    seed=st.binary(min_size=1, max_size=20),
    ttl=st.floats(min_value=60, max_value=10 * 365 * DAY),
    fraction=st.floats(min_value=0.01, max_value=0.99),
)
def test_jitter_only_ever_moves_renewal_earlier_and_is_deterministic(
    seed: bytes, ttl: float, fraction: float
) -> None:
    before = ttl * fraction
    jitter = jitter_seconds(seed, before, ttl)
    assert jitter == jitter_seconds(seed, before, ttl)
    assert 0 <= jitter <= before * JITTER_MAX_FRACTION
    # a fresh certificate is never due at once: renewal stays after issuance
    assert before + jitter < ttl


def test_jitter_spreads_a_fleet_over_the_band() -> None:
    before = 16 * HOUR
    values = [jitter_seconds(i.to_bytes(8, "big"), before, 48 * HOUR) for i in range(2000)]
    assert len(set(values)) > 1900
    assert max(values) > 0.9 * before * JITTER_MAX_FRACTION
    assert min(values) < 0.1 * before * JITTER_MAX_FRACTION


def test_renewal_time_is_stable_for_one_certificate_and_differs_across_serials(
    p256: Pki,
) -> None:
    a, b = p256.leaf(), p256.leaf()
    assert renewal_time(a.cert, THIRD, 48 * HOUR) == renewal_time(a.cert, THIRD, 48 * HOUR)
    assert renewal_time(a.cert, THIRD, 48 * HOUR) != renewal_time(b.cert, THIRD, 48 * HOUR)
