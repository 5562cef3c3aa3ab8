"""The network-namespace test bed itself: connectivity, isolation, clean teardown."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from testbed import TestBed, existing_namespaces

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


def test_hosts_ping_each_other_on_the_underlay(testbed: Callable[..., TestBed]) -> None:
    bed = testbed(3)
    assert [h.underlay_ip for h in bed.hosts] == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    for src in bed.hosts:
        for dst in bed.hosts:
            assert src.ping(dst.underlay_ip), f"{src.name} cannot reach {dst.name}"


def test_run_wireguard_etc_and_var_are_private_per_host(testbed: Callable[..., TestBed]) -> None:
    h1, h2 = testbed(2).hosts
    h1.run(["sh", "-c", "echo one > /var/run/wireguard/marker && mkdir -p /etc/meshops"])
    h1.run(["sh", "-c", "mkdir -p /var/lib/meshops && echo x > /var/lib/meshops/f"])
    assert h1.run(["cat", "/var/run/wireguard/marker"]).stdout == "one\n"
    assert h2.run(["ls", "-A", "/var/run/wireguard"]).stdout == ""
    assert h2.run(["test", "-e", "/etc/meshops"], check=False).returncode == 1
    assert h2.run(["test", "-e", "/var/lib/meshops/f"], check=False).returncode == 1
    assert h1.path("/var/run/wireguard/marker").read_text() == "one\n"


def test_each_host_has_its_own_replaceable_etc_hosts(testbed: Callable[..., TestBed]) -> None:
    h1, h2 = testbed(2, names=["web-1", "api-1"]).hosts
    assert "192.0.2.11\tweb-1" in h1.run(["cat", "/etc/hosts"]).stdout
    # Replaced by rename, as write_atomic does: works because /etc is an overlay.
    h1.run(
        ["sh", "-c", "echo '10.42.0.2 api-1' > /etc/.hosts.tmp && mv /etc/.hosts.tmp /etc/hosts"]
    )
    assert h1.run(["getent", "hosts", "api-1"]).stdout.split()[0] == "10.42.0.2"
    assert "api-1" in h2.run(["cat", "/etc/hosts"]).stdout
    assert "10.42.0.2" not in h2.run(["cat", "/etc/hosts"]).stdout


def test_teardown_kills_processes_and_leaves_no_namespace_behind() -> None:
    with TestBed(2) as bed:
        server = bed.hosts[0].popen(["sleep", "300"])
        bed.hosts[1].run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        assert len(bed.hosts[1].pids()) >= 2
        namespaces = bed.namespaces
        assert set(namespaces) <= set(existing_namespaces(bed.id))
    assert existing_namespaces(bed.id) == []
    assert server.wait(timeout=5) is not None
    assert not any(ns in existing_namespaces("") for ns in namespaces)


def test_teardown_also_runs_when_the_test_body_fails() -> None:
    bed_id = ""
    with pytest.raises(RuntimeError, match="boom"), TestBed(1) as bed:
        bed_id = bed.id
        raise RuntimeError("boom")
    assert bed_id
    assert existing_namespaces(bed_id) == []
