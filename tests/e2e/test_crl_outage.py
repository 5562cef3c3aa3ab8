"""A host whose mesh repository does not move for more than a week keeps passing mesh
calls through nginx, which checks the root's and the node CAs' CRLs on every call.

The repository is applied eight days in the past (MESHOPS_TEST_NOW, the test clock),
the hosts apply today: a CRL that lived a week would have expired, and nginx would
refuse every client. CRLs now live twice the node CA lifetime and are re-signed at
half of it; hosts report each CRL's nextUpdate and warn long before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from mesh_fixtures import BedMesh
from proxy_binaries import CADDY_RELEASES
from test_host_proxies import CADDY_PORT, NGINX_PORT, Proxies, proxies_bed
from test_repo_support import KeyRing, keyring
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]  # the session fixture, imported for pytest

NODE_CA_TTL = timedelta(hours=720)  # make_mesh's ca.node_ca_ttl


@pytest.fixture(scope="module")
def stale(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[Proxies]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)

    def eight_days_ago(built: Proxies) -> None:
        with pytest.MonkeyPatch.context() as patch:
            then = datetime.now(UTC) - timedelta(days=8)
            patch.setenv("MESHOPS_TEST_NOW", then.isoformat(timespec="seconds"))
            built.mesh.apply_repo("applied eight days ago; nobody has applied since")
        for node in ("n1", "n2"):  # the hosts, today: their leaves are issued now
            built.mesh.apply(node)

    with proxies_bed(keyring, CADDY_RELEASES[-1], first_apply=eight_days_ago) as built:
        yield built


def _crls(mesh: BedMesh, path: str) -> list[x509.CertificateRevocationList]:
    data = (mesh.repo.state_dir / path).read_bytes()
    marker = b"-----BEGIN X509 CRL-----"
    return [x509.load_pem_x509_crl(marker + part) for part in data.split(marker)[1:]]


def test_calls_pass_through_nginx_with_a_crl_signed_eight_days_ago(stale: Proxies) -> None:
    mesh = stale.mesh
    now = datetime.now(UTC)
    (root_crl,) = _crls(mesh, "ca/crl.pem")
    assert root_crl.last_update_utc < now - timedelta(days=7, hours=23)
    assert root_crl.next_update_utc is not None
    assert root_crl.next_update_utc - root_crl.last_update_utc >= 2 * NODE_CA_TTL
    node_crl = _crls(mesh, "nodes/n1/crl.pem")[0]
    assert node_crl.next_update_utc is not None and node_crl.next_update_utc > now
    for service, port in (("ledger", NGINX_PORT), ("api", CADDY_PORT)):
        assert stale.curl(service, port, "GET", "/v1/users", caller="web")[1] == "200", service
        assert stale.curl(service, port, "GET", "/v1/users", caller="batch")[1] == "403", service
    assert mesh.repo.plan().returncode == 0, "not due yet: more than half its validity left"


def test_hosts_report_every_crls_next_update(stale: Proxies) -> None:
    mesh = stale.mesh
    status = mesh.status("n2")
    kinds = sorted({c["kind"] for c in status["crls"]})
    assert kinds == ["node CA", "root"]
    assert len([c for c in status["crls"] if c["kind"] == "node CA"]) == 3  # n1, n2, n3
    assert all(c["status"] == "ok" and c["expires_in_seconds"] > 20 * 86400 for c in status["crls"])
    metrics = mesh.host_path("n2", "/var/lib/meshops/metrics.prom").read_text()
    lines = [ln for ln in metrics.splitlines() if ln.startswith("meshops_crl_next_update")]
    assert len(lines) == 4 and all('kind="' in ln for ln in lines)
    text = mesh.meshops("n2", "status", identity=False).stdout
    assert "CRLs:" in text and "next update in" in text


def test_hosts_warn_long_before_a_crl_expires_and_repo_apply_re_signs_it(
    stale: Proxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    mesh = stale.mesh
    later = datetime.now(UTC) + timedelta(days=40)  # the root CRL: 12 days left of 60
    monkeypatch.setenv("MESHOPS_TEST_NOW", later.isoformat(timespec="seconds"))
    crls = mesh.status("n2")["crls"]
    root = next(c for c in crls if c["kind"] == "root")
    assert root["status"] == "warning", root
    assert {c["status"] for c in crls if c["kind"] == "node CA"} == {"expired"}
    text = mesh.meshops("n2", "status", identity=False).stdout
    assert "WARNING" in text and "EXPIRED" in text
    plan = mesh.repo.plan()
    assert (
        "~ ca.crl: next update in" in plan.stdout and "less than half its validity" in plan.stdout
    )
