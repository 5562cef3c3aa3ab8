"""Overlay address allocation: unique, inside the network, stable, pins win, quarantine."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.resources.repo.ipam import allocate_all

NETWORKS = st.sampled_from(
    [IPv4Network("10.42.0.0/28"), IPv4Network("10.9.0.0/27"), IPv4Network("10.42.0.0/16")]
)
NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), unique=True, max_size=10)


def hosts(network: IPv4Network) -> st.SearchStrategy[IPv4Address]:
    first, last = int(network.network_address) + 1, int(network.broadcast_address) - 1
    return st.integers(first, last).map(IPv4Address)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[IPv4Network, dict[str, IPv4Address | None], list[str]]:
    network = draw(NETWORKS)
    names = draw(NAMES)
    pins = draw(st.lists(hosts(network), unique=True, max_size=len(names)))
    pinned: dict[str, IPv4Address | None] = dict.fromkeys(names)
    for name, ip in zip(draw(st.permutations(names)), pins, strict=False):
        pinned[name] = ip
    quarantined = draw(st.lists(hosts(network), unique=True, max_size=3))
    quarantined = [str(ip) for ip in quarantined if ip not in pins]
    assume(len(names) + len(quarantined) <= network.num_addresses - 2)
    return network, pinned, quarantined


def _check(network: IPv4Network, result: dict[str, IPv4Address]) -> None:
    assert len(set(result.values())) == len(result), "two nodes share an address"
    for ip in result.values():
        assert ip in network
        assert ip not in (network.network_address, network.broadcast_address)


@given(scenarios())
def test_allocations_are_unique_inside_the_network_and_pins_win(
    scenario: tuple[IPv4Network, dict[str, IPv4Address | None], list[str]],
) -> None:
    network, pinned, quarantined = scenario
    result = allocate_all(network, pinned, {}, quarantined)
    assert set(result) == set(pinned)
    _check(network, result)
    for name, ip in pinned.items():
        if ip is not None:
            assert result[name] == ip
        else:
            assert str(result[name]) not in quarantined, "a quarantined address was handed out"


@given(scenarios(), NAMES)
@settings(max_examples=200)
def test_allocations_are_stable_when_nodes_are_added(
    scenario: tuple[IPv4Network, dict[str, IPv4Address | None], list[str]], more: list[str]
) -> None:
    network, pinned, quarantined = scenario
    first = allocate_all(network, pinned, {}, quarantined)
    recorded: dict[str, str | None] = {n: str(ip) for n, ip in first.items()}
    grown = {**pinned, **{n: None for n in more if n not in pinned}}
    assume(len(grown) + len(quarantined) <= network.num_addresses - 2)
    second = allocate_all(network, grown, recorded, quarantined)
    _check(network, second)
    assert {n: second[n] for n in first} == first, "an existing node moved"
    for name in set(grown) - set(pinned):
        assert str(second[name]) not in quarantined


@given(scenarios())
def test_allocation_does_not_depend_on_node_order(
    scenario: tuple[IPv4Network, dict[str, IPv4Address | None], list[str]],
) -> None:
    network, pinned, quarantined = scenario
    forward = allocate_all(network, pinned, {}, quarantined)
    backward = allocate_all(network, dict(reversed(pinned.items())), {}, quarantined)
    assert forward == backward


def test_a_pin_takes_a_recorded_address_and_its_old_holder_moves() -> None:
    network = IPv4Network("10.42.0.0/24")
    recorded: dict[str, str | None] = {"a": "10.42.0.5", "b": "10.42.0.6"}
    result = allocate_all(network, {"a": None, "b": IPv4Address("10.42.0.5")}, recorded)
    assert result["b"] == IPv4Address("10.42.0.5")
    assert result["a"] != IPv4Address("10.42.0.5")


def test_recorded_address_outside_a_new_network_is_reallocated() -> None:
    result = allocate_all(IPv4Network("10.7.0.0/24"), {"a": None}, {"a": "10.42.0.5"})
    assert result["a"] in IPv4Network("10.7.0.0/24")


def test_full_network_is_a_clear_error() -> None:
    network = IPv4Network("10.42.0.0/30")  # two usable addresses
    with pytest.raises(MeshError, match=r"10\.42\.0\.0/30 is full: no address left for node"):
        allocate_all(network, {"a": None, "b": None, "c": None}, {})
    with pytest.raises(MeshError, match="is full"):
        allocate_all(network, {"a": None, "b": None}, {}, ["10.42.0.1"])
