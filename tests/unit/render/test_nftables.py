"""The nftables table: compiled from a node's openings, rendered for `nft -f`, and read
back from `nft -j` output (a real one, captured from nft 1.0.6 in `data/`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.model.port import Port
from meshops.policy.flows import Opening
from meshops.render import nftables as nft
from meshops.render.nftables_json import parse_table

DATA = Path(__file__).parent / "data" / "nft_list_table.json"
ADDRESSES = {"node-1": ["10.42.0.1", "fd42::1"], "node-2": ["10.42.0.2", "fd42::2"]}
# what data/nft_list_table.json was made from (plus a drop counter of 7 packets, 420 bytes)
CAPTURED = [
    Opening("api", Port(8443, "tcp"), "proxy", ("node-1",)),
    Opening("db", Port(5432, "tcp"), "port", ("node-1", "node-2")),
    Opening("dns", Port(53, "udp"), "port", ()),
]


def table(openings: list[Opening], **options: Any) -> nft.Table:
    settings = {"interface": "wg-mesh", "icmp": True, "log": False, "ipv6": False, **options}
    return nft.compile_table(openings, ADDRESSES, **settings)


def overlay_names(t: nft.Table) -> list[str]:
    chain = t.chain(nft.OVERLAY_CHAIN)
    assert chain is not None
    return [r.name for r in chain.rules]


def test_real_nft_json_parses_back_to_the_table_it_was_loaded_from() -> None:
    parsed = parse_table(DATA.read_text(), family="inet", name="meshops")
    assert parsed == table(CAPTURED, log=True, ipv6=True)
    chain = parsed.chain(nft.OVERLAY_CHAIN) if parsed else None
    assert chain is not None
    drop = chain.rules[-1].counter
    assert drop is not None and (drop.packets, drop.bytes) == (7, 420)


def test_the_table_is_default_deny_on_the_interface_with_one_rule_and_set_per_opening() -> None:
    t = table(CAPTURED)
    entry = t.chain(nft.INPUT_CHAIN)
    assert entry is not None and entry.hook == nft.Hook("filter", "input", 0, "accept")
    assert [r.text(comment=False) for r in entry.rules] == ['iifname "wg-mesh" jump overlay']
    assert overlay_names(t) == [
        "established", "related", "api:8443/tcp", "db:53/udp", "db:5432/tcp", "icmp", "drop",
    ] or overlay_names(t) == [
        "established", "related", "api:8443/tcp", "db:5432/tcp", "dns:53/udp", "icmp", "drop",
    ]  # fmt: skip
    assert t.set("allow_db_5432_tcp") == nft.NamedSet(
        "allow_db_5432_tcp", "ipv4_addr", ("10.42.0.1", "10.42.0.2")
    )
    assert t.set("allow_dns_53_udp") == nft.NamedSet("allow_dns_53_udp", "ipv4_addr", ())
    chain = t.chain(nft.OVERLAY_CHAIN)
    assert chain is not None
    assert chain.rules[-1].text() == 'counter drop comment "drop"'
    db = next(r for r in chain.rules if r.name == "db:5432/tcp")
    assert db.text(comment=False) == "ip saddr @allow_db_5432_tcp tcp dport 5432 accept"


def test_settings_add_or_remove_the_icmp_log_and_ipv6_rules() -> None:
    names = overlay_names(table(CAPTURED[:1], icmp=False, log=True, ipv6=True))
    assert names == [
        "established", "related", "api:8443/tcp", "api:8443/tcp:v6", "log", "drop"
    ]  # fmt: skip
    v6 = table(CAPTURED[:1], ipv6=True).set("allow6_api_8443_tcp")
    assert v6 == nft.NamedSet("allow6_api_8443_tcp", "ipv6_addr", ("fd42::1",))
    assert "icmpv6" in overlay_names(table(CAPTURED[:1], ipv6=True))


def test_a_node_without_an_address_yet_is_left_out_of_the_sets() -> None:
    t = table([Opening("db", Port(5432, "tcp"), "port", ("node-1", "node-9"))])
    assert t.set("allow_db_5432_tcp") == nft.NamedSet(
        "allow_db_5432_tcp", "ipv4_addr", ("10.42.0.1",)
    )


sources = st.lists(st.sampled_from([*sorted(ADDRESSES), "node-9"]), unique=True).map(
    lambda s: tuple(sorted(s))
)
opening_keys = st.lists(
    st.tuples(
        st.sampled_from(["api", "db", "x-1"]), st.sampled_from([Port(5432, "tcp"), Port(53, "udp")])
    ),
    unique=True,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(opening_keys, st.data(), st.booleans(), st.booleans(), st.booleans())
def test_who_may_connect_changes_only_the_sets_never_the_rules(
    keys: list[tuple[str, Port]], data: st.DataObject, icmp: bool, log: bool, ipv6: bool
) -> None:
    before = [Opening(i, p, "port", data.draw(sources)) for i, p in keys]
    after = [Opening(i, p, "port", data.draw(sources)) for i, p in keys]
    one = table(before, icmp=icmp, log=log, ipv6=ipv6)
    two = table(after, icmp=icmp, log=log, ipv6=ipv6)
    assert one.chains == two.chains
    assert [s.name for s in one.sets] == [s.name for s in two.sets]
    # and each set holds exactly the addresses of its opening's nodes, per IP version
    for opening in after:
        for version, named in (
            (4, two.set(nft.set_name(opening, 4))),
            (6, two.set(nft.set_name(opening, 6))),
        ):
            if version == 6 and not ipv6:
                assert named is None
                continue
            assert named is not None
            want = {
                a
                for n in opening.sources
                for a in ADDRESSES.get(n, ())
                if (":" in a) == (version == 6)
            }
            assert set(named.elements) == want


@settings(max_examples=100, deadline=None)
@given(opening_keys.map(lambda keys: [Opening(i, p, "port", ("node-1",)) for i, p in keys]))
def test_rendering_is_deterministic_and_names_every_rule_and_set(openings: list[Opening]) -> None:
    t = table(openings, ipv6=True, log=True)
    text = nft.render_table(t)
    assert text == nft.render_table(table(list(reversed(openings)), ipv6=True, log=True))
    for named in t.sets:
        assert f"\tset {named.name} {{" in text
    for name in overlay_names(t):
        assert f'comment "{name}"' in text
    script = nft.replace_script(t)
    assert script.splitlines()[:3] == [
        "table inet meshops", "delete table inet meshops", "table inet meshops {",
    ]  # fmt: skip


def test_a_set_update_touches_only_the_named_sets() -> None:
    script = nft.set_update_script(
        [nft.NamedSet("allow_db_5432_tcp", "ipv4_addr", ("10.42.0.1", "10.42.0.2")),
         nft.NamedSet("allow_db_53_udp", "ipv4_addr", ())]
    )  # fmt: skip
    assert script.splitlines() == [
        "flush set inet meshops allow_db_5432_tcp",
        "add element inet meshops allow_db_5432_tcp { 10.42.0.1, 10.42.0.2 }",
        "flush set inet meshops allow_db_53_udp",
    ]


def test_a_replacement_carries_the_live_counters_over() -> None:
    live = parse_table(DATA.read_text(), family="inet", name="meshops")
    carried = nft.with_counters(table(CAPTURED), live)
    chain = carried.chain(nft.OVERLAY_CHAIN)
    assert chain is not None
    assert chain.rules[-1].text(comment=False) == "counter packets 7 bytes 420 drop"
    assert nft.with_counters(table(CAPTURED), None) == table(CAPTURED)


def _document(rule_exprs: list[Any], **set_fields: Any) -> str:
    items: list[Any] = [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "meshops", "handle": 1}},
        {"set": {"family": "inet", "table": "meshops", "name": "s", "type": "ipv4_addr",
                 **set_fields}},
        {"chain": {"family": "inet", "table": "meshops", "name": "overlay", "handle": 2}},
        {"rule": {"family": "inet", "table": "meshops", "chain": "overlay", "comment": "x",
                  "expr": rule_exprs}},
        {"table": {"family": "inet", "name": "other", "handle": 9}},
        {"chain": {"family": "inet", "table": "other", "name": "overlay", "handle": 3}},
    ]  # fmt: skip
    return json.dumps({"nftables": items})


def test_what_meshops_never_writes_is_read_as_unknown_and_never_equals_a_rule_of_ours() -> None:
    negated = {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "wg-mesh"}}
    parsed = parse_table(_document([negated, {"accept": None}]), family="inet", name="meshops")
    assert parsed is not None
    rule = parsed.chains[0].rules[0]
    assert isinstance(rule.statements[0], nft.Unknown)
    assert rule != nft.Rule("x", (nft.Match("iifname", "wg-mesh"),), (nft.Verdict("accept"),))
    assert [c.name for c in parsed.chains] == ["overlay"]  # the other table's chain is not ours


def test_an_interval_set_is_read_as_a_different_type() -> None:
    doc = _document([], flags=["interval"], elem=[{"prefix": {"addr": "10.0.0.0", "len": 8}}])
    parsed = parse_table(doc, family="inet", name="meshops")
    assert parsed is not None and parsed.sets[0].type != "ipv4_addr"


def test_an_absent_table_reads_as_none_and_garbage_as_a_clear_error() -> None:
    assert parse_table('{"nftables": [{"metainfo": {}}]}', family="inet", name="meshops") is None
    with pytest.raises(MeshError, match="not its JSON ruleset"):
        parse_table("Error: something", family="inet", name="meshops")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "match",
                    "op",
                    "left",
                    "right",
                    "meta",
                    "key",
                    "payload",
                    "protocol",
                    "field",
                    "counter",
                    "packets",
                    "limit",
                    "rate",
                    "log",
                    "prefix",
                    "jump",
                    "target",
                    "accept",
                    "ct",
                ]
            ),
            children,
            max_size=3,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=5), json_values)
def test_the_parser_survives_any_json_in_rules_and_set_elements(
    exprs: list[Any], elem: Any
) -> None:
    with contextlib.suppress(MeshError):
        parse_table(_document(exprs, elem=elem), family="inet", name="meshops")
