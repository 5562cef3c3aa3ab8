"""The nft text meshops renders and the JSON parser that reads it back, against the real
`nft` in a network namespace of its own: whatever the openings, the table nft holds
after `nft -f` parses back to exactly the table meshops compiled, a set update changes
only the sets, and a replacement keeps the counter."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testbed import unavailable_reason

from meshops.model.port import Port
from meshops.policy.flows import Opening
from meshops.render import nftables as nft
from meshops.render.nftables_json import parse_table

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

NODES = {f"n{i}": [f"10.42.{i // 250}.{i % 250 + 1}", f"fd42::{i + 1:x}"] for i in range(12)}


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"mo-nft-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def nft_in(netns: str, *args: str, script: str | None = None) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"nft {' '.join(args)}: {proc.stderr}\n{script or ''}"
    return proc.stdout


def live(netns: str) -> nft.Table | None:
    return parse_table(nft_in(netns, "-j", "list", "table", "inet", "meshops"),
                       family="inet", name="meshops")  # fmt: skip


identities = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20).filter(
    lambda s: s[0] != "-" and s[-1] != "-"
)
openings = st.lists(
    st.builds(
        Opening,
        identities,
        st.builds(Port, st.integers(1, 65535), st.sampled_from(["tcp", "udp"])),
        st.sampled_from(["proxy", "plaintext", "port"]),
        st.lists(st.sampled_from(sorted(NODES)), unique=True).map(lambda s: tuple(sorted(s))),
    ),
    max_size=6,
    unique_by=lambda o: (o.identity, o.port),
)
options = st.fixed_dictionaries(
    {
        "interface": st.sampled_from(["wg-mesh", "wg0", "mesh_1.x"]),
        "icmp": st.booleans(),
        "log": st.booleans(),
        "ipv6": st.booleans(),
    }
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(openings, options)
def test_what_nft_holds_after_a_replace_parses_back_to_the_compiled_table(
    netns: str, found: list[Opening], opts: dict[str, object]
) -> None:
    table = nft.compile_table(found, NODES, **opts)  # type: ignore[arg-type]
    nft_in(netns, "-f", "-", script=nft.replace_script(table))
    assert live(netns) == table


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(openings, st.data())
def test_a_set_update_changes_the_sets_and_keeps_rules_and_counters(
    netns: str, found: list[Opening], data: st.DataObject
) -> None:
    table = nft.compile_table(found, NODES, interface="wg-mesh", icmp=True, log=False, ipv6=True)
    with_count = nft.with_counters(table, _counted(table, 5, 300))
    nft_in(netns, "-f", "-", script=nft.replace_script(with_count))
    moved = [
        Opening(o.identity, o.port, o.kind, data.draw(st.lists(st.sampled_from(sorted(NODES)),
                                                               unique=True).map(tuple)))
        for o in found
    ]  # fmt: skip
    after = nft.compile_table(moved, NODES, interface="wg-mesh", icmp=True, log=False, ipv6=True)
    nft_in(netns, "-f", "-", script=nft.set_update_script(after.sets))
    now = live(netns)
    assert now == after
    assert now is not None
    chain = now.chain(nft.OVERLAY_CHAIN)
    assert chain is not None and chain.rules[-1].counter == nft.Counter(5, 300)
    assert (chain.rules[-1].counter.packets, chain.rules[-1].counter.bytes) == (5, 300)


def _counted(table: nft.Table, packets: int, size: int) -> nft.Table:
    """`table` as if its drop rule had counted `packets` packets of `size` bytes."""
    chains = []
    for chain in table.chains:
        rules = tuple(
            nft.Rule(r.name, r.matches, tuple(
                nft.Counter(packets, size) if isinstance(s, nft.Counter) else s
                for s in r.statements
            ))
            for r in chain.rules
        )  # fmt: skip
        chains.append(nft.Chain(chain.name, chain.hook, rules))
    return nft.Table(tuple(chains), table.sets)


def test_deleting_meshops_table_leaves_tables_of_another_family_or_name(netns: str) -> None:
    nft_in(netns, "-f", "-", script="table ip meshops {\n}\ntable inet other {\n\tset s {\n"
                                    "\t\ttype ipv4_addr\n\t}\n}\n")  # fmt: skip
    nft_in(netns, "-f", "-", script=nft.replace_script(nft.compile_table(
        [], NODES, interface="wg0", icmp=True, log=False, ipv6=False)))  # fmt: skip
    nft_in(netns, "-f", "-", script=nft.delete_script())
    listed = nft_in(netns, "list", "ruleset")
    assert "table ip meshops" in listed and "table inet other" in listed
    assert "table inet meshops" not in listed
