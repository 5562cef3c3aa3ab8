"""The overlay packet filter, end to end: three test-bed hosts with real wireguard-go,
real nft (`inet meshops` in each host's network namespace), a real Caddy in front of a
plain HTTP upstream, and TCP servers and clients that report what got through.

    n1: api (Caddy on 8443, upstream 8080 listening on every address), db (5432/tcp)
    n2: web    may GET api, may reach db on 5432/tcp
    n3: batch  may POST api /jobs; metrics (9100/tcp), called by nobody at first

`wireguard.peers: policy`, so n2 and n3 start without each other as peers. The tests
run in file order on one converged mesh, each leaving it converged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mesh_fixtures import BedMesh, bed_mesh, converged, start_caddy, wait_for_port
from test_repo_support import KeyRing, keyring
from testbed import Host, unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]  # the session fixture, imported for pytest

CADDY_PORT, UPSTREAM_PORT, DB_PORT, STRAY_PORT, METRICS_PORT = 8443, 8080, 5432, 7000, 9100
IDENTITIES = {
    "api": {"nodes": ["n1"], "proxy": {"kind": "caddy", "listen": CADDY_PORT,
                                       "upstream": f"127.0.0.1:{UPSTREAM_PORT}"}},
    "db": {"nodes": ["n1"], "ports": [f"{DB_PORT}/tcp"]},
    "web": {"nodes": ["n2"]},
    "batch": {"nodes": ["n3"]},
    "metrics": {"nodes": ["n3"], "ports": [f"{METRICS_PORT}/tcp"]},
}  # fmt: skip
POLICIES = [
    {"name": "web-reads-api", "from": "web", "to": "api", "allow": [{"methods": ["GET"]}]},
    {"name": "web-uses-db", "from": "web", "to": "db", "allow": [{"ports": [f"{DB_PORT}/tcp"]}]},
    {"name": "batch-submits", "from": "batch", "to": "api",
     "allow": [{"methods": ["POST"], "paths": ["/jobs"]}]},
]  # fmt: skip
BATCH_DB = {"name": "batch-uses-db", "from": "batch", "to": "db",
            "allow": [{"ports": [f"{DB_PORT}/tcp"]}]}  # fmt: skip
WEB_METRICS = {"name": "web-scrapes-metrics", "from": "web", "to": "metrics",
               "allow": [{"ports": [f"{METRICS_PORT}/tcp"]}]}  # fmt: skip
# tables that are not meshops': the same name in another family, and one of the host's
FOREIGN = """
table ip meshops {
    chain keep { type filter hook output priority 50; policy accept; ip daddr 203.0.113.9 drop; }
}
table inet host-rules {
    set blocked { type ipv4_addr; elements = { 203.0.113.7, 203.0.113.8 }; }
    chain out { type filter hook output priority 10; policy accept; ip daddr @blocked drop; }
}
"""

# Echo servers on the given ports (every address): each line comes back prefixed.
SERVER = """
import socket, sys, threading
def serve(conn):
    with conn:
        for line in conn.makefile("rb"):
            conn.sendall(b"echo " + line)
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
for port in sys.argv[1:-1]:
    threading.Thread(target=listen, args=(int(port),), daemon=True).start()
listen(int(sys.argv[-1]))
"""
# One try: connect (3 s) and echo one line: prints ok, timeout or refused.
PROBE = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    s.sendall(b"hi\\n"); print("ok" if s.recv(64) == b"echo hi\\n" else "garbled")
except socket.timeout: print("timeout")
except ConnectionRefusedError: print("refused")
"""
# A connection kept open: each line on stdin is sent; prints "ok" or "timeout" per line.
KEEP = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("connected", flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode()); got = s.recv(64)
        print("ok" if got == b"echo " + line.encode() else "garbled", flush=True)
    except OSError:
        print("timeout", flush=True)
"""


@dataclass
class Kept:
    """A TCP connection held open by a client process inside a host."""

    proc: subprocess.Popen[bytes]

    def exchange(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"ping\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().decode().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@dataclass
class Bed:
    mesh: BedMesh
    foreign_before: dict[str, str]
    directory: Path

    def host(self, node: str) -> Host:
        return self.mesh.host(node)

    def probe(self, src: str, dst: str, port: int) -> str:
        ip = self.mesh.overlay_ip(dst)
        proc = self.host(src).run([sys.executable, "-c", PROBE, ip, str(port)], timeout=30)
        return proc.stdout.strip()

    def keep(self, src: str, dst: str, port: int) -> Kept:
        ip = self.mesh.overlay_ip(dst)
        proc = self.host(src).popen([sys.executable, "-c", KEEP, ip, str(port)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        kept = Kept(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"connected"
        return kept

    def nft(self, node: str, *args: str) -> str:
        return self.host(node).run(["nft", *args]).stdout

    def dropped(self, node: str) -> int:
        return int(self.mesh.status(node)["firewall"]["dropped_packets"])

    def peers(self, node: str) -> set[str]:
        return {self.mesh.node_of_key(k) for k in self.mesh.wg_peers(node)}

    def change(self, message: str, **policies: Any) -> None:
        """Add (`name=dict`) or remove (`name=None`) policies, apply the repo."""
        current = {p["name"]: p for p in self.mesh.repo.data["policies"]}
        for name, policy in policies.items():
            if policy is None:
                current.pop(name.replace("_", "-"), None)
            else:
                current[policy["name"]] = policy
        self.mesh.repo.data["policies"] = list(current.values())
        self.mesh.apply_repo(message)

    def curl(self, src: str, port: int, scheme: str, caller: str | None) -> str:
        """HTTP status code of GET / on api over the overlay ("000": no answer)."""
        name = f"api.{self.mesh.domain}"
        argv = ["curl", "-s", "--max-time", "4", "-o", "/dev/null", "-w", "%{http_code}",
                "--resolve", f"{name}:{port}:{self.mesh.overlay_ip('n1')}"]  # fmt: skip
        if caller is not None:
            tls = self.mesh.tls_dir(src, caller)
            argv += ["--cacert", str(tls / "ca.pem"), "--cert", str(tls / "cert.pem"),
                     "--key", str(tls / "key.pem")]  # fmt: skip
        argv.append(f"{scheme}://{name}:{port}/")
        return self.host(src).run(argv, check=False, timeout=30).stdout.strip()


def foreign_tables(host: Host) -> dict[str, str]:
    return {
        name: host.run(["nft", "list", "table", *name.split()]).stdout
        for name in ("ip meshops", "inet host-rules")
    }


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[Bed]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("firewall")
    with bed_mesh(directory, keyring, ["n1", "n2", "n3"], identities=IDENTITIES,
                  policies=POLICIES, wireguard={"peers": "policy"}) as mesh:  # fmt: skip
        n1 = mesh.host("n1")
        n1.run(["nft", "-f", "-"], input=FOREIGN)
        before = foreign_tables(n1)
        converged(mesh)
        servers = n1.popen([sys.executable, "-c", SERVER, str(DB_PORT), str(STRAY_PORT)])
        wait_for_port(n1, STRAY_PORT, proc=servers)
        metrics = mesh.host("n3").popen([sys.executable, "-c", SERVER, str(METRICS_PORT)])
        wait_for_port(mesh.host("n3"), METRICS_PORT, proc=metrics)
        # the upstream listens on every address, as services too often do: only the
        # packet filter keeps the overlay away from it
        upstream = n1.popen([sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
                             str(UPSTREAM_PORT)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=str(directory))  # fmt: skip
        wait_for_port(n1, UPSTREAM_PORT, proc=upstream)
        start_caddy(n1, mesh.host_path("n1", "/etc/meshops/proxy/api.caddy"), directory,
                    CADDY_PORT)  # fmt: skip
        yield Bed(mesh, before, directory)


def test_an_allowed_l4_flow_passes_and_a_port_not_in_the_table_times_out_and_is_counted(
    bed: Bed,
) -> None:
    assert bed.probe("n2", "n1", DB_PORT) == "ok"
    before = bed.dropped("n1")
    assert bed.probe("n2", "n1", STRAY_PORT) == "timeout"  # listening, but not in the table
    assert bed.probe("n3", "n1", DB_PORT) == "timeout"  # batch may call api, not db
    assert bed.dropped("n1") > before
    listed = bed.nft("n1", "list", "table", "inet", "meshops")
    assert f"ip saddr @allow_db_{DB_PORT}_tcp tcp dport {DB_PORT} accept" in listed
    assert bed.mesh.overlay_ip("n2") in bed.nft("n1", "list", "set", "inet", "meshops",
                                                 f"allow_db_{DB_PORT}_tcp")  # fmt: skip


def test_an_upstream_port_behind_a_strict_proxy_is_unreachable_while_the_proxied_call_passes(
    bed: Bed,
) -> None:
    assert bed.curl("n2", CADDY_PORT, "https", "web") == "200"
    assert bed.curl("n2", UPSTREAM_PORT, "http", None) == "000"  # dropped: no answer at all
    # the upstream does answer on n1 itself, even at its overlay address: only packets
    # arriving through the tunnel are filtered
    assert bed.curl("n1", UPSTREAM_PORT, "http", None) == "200"
    # batch on n3 reaches the proxy (its RBAC refuses GET /) but not the upstream
    assert bed.curl("n3", CADDY_PORT, "https", "batch") == "403"
    assert bed.curl("n3", UPSTREAM_PORT, "http", None) == "000"


def test_ping_follows_the_icmp_setting(bed: Bed) -> None:
    assert bed.host("n2").ping(bed.mesh.overlay_ip("n1"), count=2)
    bed.mesh.repo.data["firewall"] = {"icmp": False}
    bed.mesh.apply_repo("no ping")
    plan = bed.mesh.plan("n1")
    assert '- firewall.rule["icmp"]' in plan.stdout, plan.stdout
    bed.mesh.apply("n1")
    assert not bed.host("n2").ping(bed.mesh.overlay_ip("n1"), count=2)
    assert bed.probe("n2", "n1", DB_PORT) == "ok"  # only ping went
    bed.mesh.repo.data["firewall"] = {"icmp": True}
    bed.mesh.apply_repo("ping again")
    bed.mesh.apply("n1")
    assert bed.host("n2").ping(bed.mesh.overlay_ip("n1"), count=2)


# UDP datagrams to one port, sent without waiting: what a scan looks like to the filter
BURST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
"""
ALL_NETNS_LOG = Path("/proc/sys/net/netfilter/nf_log_all_netns")


def kernel_log_lines(marker: str) -> list[str]:
    out = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if marker in line]


def test_log_drops_writes_rate_limited_kernel_log_lines(bed: Bed) -> None:
    """firewall.log: a scan of a closed port leaves at most the burst of 5 lines."""
    if not ALL_NETNS_LOG.exists():
        pytest.fail("the kernel has no nf_log_all_netns (netfilter logging from namespaces)")
    was = ALL_NETNS_LOG.read_text()
    ALL_NETNS_LOG.write_text("1\n")  # the kernel logs from network namespaces only so
    try:
        bed.mesh.repo.data["firewall"] = {"log": True}
        bed.mesh.apply_repo("log drops")
        assert '+ firewall.rule["log"]' in bed.mesh.plan("n1").stdout
        bed.mesh.apply("n1")
        port = 20000 + int(time.time() * 1000) % 40000  # this run's lines only
        src, dst = bed.mesh.overlay_ip("n2"), bed.mesh.overlay_ip("n1")
        bed.host("n2").run([sys.executable, "-c", BURST, dst, str(port), "40"])
        marker = f"SRC={src} DST={dst} "
        deadline = time.monotonic() + 10
        while not (lines := [x for x in kernel_log_lines(f"DPT={port} ") if marker in x]):
            assert time.monotonic() < deadline, "no kernel log line for the dropped datagrams"
            time.sleep(0.2)
        time.sleep(0.5)  # the rest of the burst, if any, is written by now
        lines = [x for x in kernel_log_lines(f"DPT={port} ") if marker in x]
        assert all("meshops drop: " in x and "PROTO=UDP" in x for x in lines), lines
        assert 1 <= len(lines) <= 6, lines  # 40 dropped, at most the burst (+1 refill) logged
    finally:
        ALL_NETNS_LOG.write_text(was)
        bed.mesh.repo.data.pop("firewall", None)
        bed.mesh.apply_repo("no log")
        bed.mesh.apply("n1")
    assert "meshops drop" not in bed.nft("n1", "list", "table", "inet", "meshops")


def test_adding_a_policy_opens_exactly_that_flow_without_disturbing_open_connections(
    bed: Bed,
) -> None:
    kept = bed.keep("n2", "n1", DB_PORT)
    assert kept.exchange() == "ok"
    dropped = bed.dropped("n1")
    handles = rule_handles(bed, "n1")
    bed.change("batch may use db", batch_uses_db=BATCH_DB)
    plan = bed.mesh.plan("n1").stdout
    # a membership change: one set, no rule, no peer
    assert f'~ firewall.set["allow_db_{DB_PORT}_tcp"]: who may reach db on {DB_PORT}/tcp: +n3' in (
        plan
    ), plan
    assert "firewall.rule" not in plan and "wireguard.peer" not in plan, plan
    bed.mesh.apply_all()
    assert kept.exchange() == "ok"  # the open connection never noticed
    assert bed.probe("n3", "n1", DB_PORT) == "ok"
    assert bed.probe("n3", "n1", STRAY_PORT) == "timeout"  # exactly that flow
    assert bed.dropped("n1") > dropped  # the set update kept the counter
    assert rule_handles(bed, "n1") == handles  # and never touched a rule
    kept.close()


def rule_handles(bed: Bed, node: str) -> list[str]:
    """The kernel's handles of the overlay chain's rules (a replaced rule gets a new one)."""
    listed = bed.nft(node, "-a", "list", "chain", "inet", "meshops", "overlay")
    return re.findall(r"# handle (\d+)", listed)


def test_removing_the_policy_closes_the_flow_and_its_open_connections(bed: Bed) -> None:
    kept = bed.keep("n3", "n1", DB_PORT)
    web = bed.keep("n2", "n1", DB_PORT)
    assert kept.exchange() == "ok"
    bed.change("batch no longer uses db", batch_uses_db=None)
    bed.mesh.apply_all()
    assert kept.exchange() == "timeout"
    assert bed.probe("n3", "n1", DB_PORT) == "timeout"
    assert web.exchange() == "ok"
    assert bed.mesh.overlay_ip("n3") not in bed.nft(
        "n1", "list", "set", "inet", "meshops", f"allow_db_{DB_PORT}_tcp"
    )
    assert bed.peers("n3") == {"n1"}  # batch still calls api: the tunnel stays
    kept.close()
    web.close()


def transfer(bed: Bed, node: str) -> dict[str, int]:
    """Received bytes per peer node (a peer removed and added again starts at 0)."""
    table = bed.mesh.wg_table(node, "transfer")
    return {bed.mesh.node_of_key(k): int(v.split("\t")[0]) for k, v in table.items()}


def test_policy_peers_are_exactly_the_needed_nodes_and_a_new_policy_adds_one_in_place(
    bed: Bed,
) -> None:
    assert bed.peers("n1") == {"n2", "n3"}
    assert bed.peers("n2") == {"n1"}
    assert bed.peers("n3") == {"n1"}
    assert bed.probe("n2", "n3", METRICS_PORT) == "timeout"  # no tunnel at all
    kept = bed.keep("n2", "n1", DB_PORT)
    assert kept.exchange() == "ok"
    handshakes = bed.mesh.wg_table("n2", "latest-handshakes")
    received = transfer(bed, "n2")
    bed.change("web scrapes metrics", web_scrapes_metrics=WEB_METRICS)
    plan = bed.mesh.plan("n2").stdout
    assert '+ wireguard.peer["n3"]: new peer' in plan, plan
    assert 'wireguard.peer["n1"]' not in plan, plan
    bed.mesh.apply_all()
    assert bed.peers("n2") == {"n1", "n3"}
    assert bed.peers("n3") == {"n1", "n2"}
    assert bed.peers("n1") == {"n2", "n3"}
    assert bed.probe("n2", "n3", METRICS_PORT) == "ok"
    assert kept.exchange() == "ok"
    key = bed.mesh.public_key("n1")
    # the n1 peer was never reset: its counters kept growing, its session stayed up
    assert transfer(bed, "n2")["n1"] > received["n1"]
    assert int(bed.mesh.wg_table("n2", "latest-handshakes")[key]) >= int(handshakes[key]) > 0
    kept.close()


def test_status_shows_the_drop_counter_and_who_each_opening_admits(bed: Bed) -> None:
    status = bed.mesh.status("n1")["firewall"]
    assert status["enabled"] and status["present"] and status["table"] == "inet meshops"
    assert status["dropped_packets"] > 0 and status["dropped_bytes"] > 0
    openings = {o["name"]: o for o in status["openings"]}
    assert openings[f"db:{DB_PORT}/tcp"]["nodes"] == ["n2"]
    assert openings[f"db:{DB_PORT}/tcp"]["kind"] == "port"
    assert openings[f"api:{CADDY_PORT}/tcp"]["nodes"] == ["n2", "n3"]
    text = bed.mesh.meshops("n1", "status", identity=False).stdout
    assert "firewall inet meshops: default deny, dropped" in text
    bed.mesh.apply("n1")
    metrics = bed.mesh.host_path("n1", "/var/lib/meshops/metrics.prom").read_text()
    assert 'meshops_firewall_dropped_packets_total{node="n1"}' in metrics
    recorded = json.loads(bed.mesh.host_path("n1", "/var/lib/meshops/status.json").read_text())
    assert recorded["firewall"]["dropped_packets"] >= status["dropped_packets"]


def test_a_hand_edited_table_is_planned_back_and_a_second_plan_is_empty(bed: Bed) -> None:
    n1 = bed.host("n1")
    n1.run(["nft", "add", "rule", "inet", "meshops", "overlay", "tcp", "dport", "22", "accept"])
    n1.run(["nft", "add", "element", "inet", "meshops", f"allow_db_{DB_PORT}_tcp",
            "{ 10.42.99.99 }"])  # fmt: skip
    plan = bed.mesh.plan("n1").stdout
    assert f'~ firewall.set["allow_db_{DB_PORT}_tcp"]' in plan, plan
    assert "rule(s) without a meshops name" in plan, plan
    bed.mesh.apply("n1")
    listed = bed.nft("n1", "list", "table", "inet", "meshops")
    assert "dport 22" not in listed and "10.42.99.99" not in listed
    for node in ("n1", "n2", "n3"):
        result = bed.mesh.plan(node)
        assert result.returncode == 0 and "No changes." in result.stdout, result.stdout


def test_a_plan_sees_a_hand_edit_made_after_the_view_it_kept(bed: Bed) -> None:
    """Plans keep the table's text by the ruleset's generation (not running nft while
    nothing changed): any change, a set element deleted or a rule added in another
    table, advances the generation, and the next plan reads the table again."""
    n1 = bed.host("n1")
    kept = bed.mesh.host_path("n1", "/var/lib/meshops/firewall.json")
    assert "No changes." in bed.mesh.plan("n1").stdout
    generation = json.loads(kept.read_text())["generation"]
    assert "No changes." in bed.mesh.plan("n1").stdout  # from the kept view
    n1.run(["nft", "delete", "element", "inet", "meshops", f"allow_db_{DB_PORT}_tcp",
            f"{{ {bed.mesh.overlay_ip('n2')} }}"])  # fmt: skip
    plan = bed.mesh.plan("n1").stdout
    assert f'~ firewall.set["allow_db_{DB_PORT}_tcp"]' in plan and "+n2" in plan, plan
    assert json.loads(kept.read_text())["generation"] != generation
    bed.mesh.apply("n1")
    assert "No changes." in bed.mesh.plan("n1").stdout


def test_tables_that_are_not_meshops_are_left_byte_for_byte(bed: Bed) -> None:
    time.sleep(0.1)
    assert foreign_tables(bed.host("n1")) == bed.foreign_before
