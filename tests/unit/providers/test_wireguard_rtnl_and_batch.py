"""rtnetlink messages built and parsed offline; batched UAPI requests; the canonical
fast paths agree with the slow, general ones."""

from __future__ import annotations

import base64
import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from meshops.providers.wireguard import PeerConfig, rtnl
from meshops.providers.wireguard.state import (
    join_endpoint,
    normalise_allowed_ips,
    normalise_endpoint,
    split_endpoint,
)
from meshops.providers.wireguard.uapi import peer_request, peers_request

KEY_A = base64.b64encode(bytes([1] * 32)).decode()
KEY_B = base64.b64encode(bytes([2] * 32)).decode()
KEY_C = base64.b64encode(bytes([3] * 32)).decode()

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


def _reply(kind: int, body: bytes) -> bytes:
    """A kernel answer as `messages` sees it (header + body)."""
    return rtnl.request(kind, 0, 7, body)


@given(st.one_of(ipv4.map(lambda a: (a, 32)), ipv6.map(lambda a: (a, 128))), st.data())
def test_address_messages_parse_back_to_the_address_on_that_link(
    address: tuple[str, int], data: st.DataObject
) -> None:
    ip, bits = address
    prefix = data.draw(st.integers(0, bits))
    body = rtnl.address_body(12, f"{ip}/{prefix}")
    [(kind, sequence, parsed)] = list(rtnl.messages(_reply(rtnl.RTM_NEWADDR, body)))
    assert (kind, sequence) == (rtnl.RTM_NEWADDR, 7)
    assert rtnl.parse_address(parsed, 12) == f"{ip}/{prefix}"
    assert rtnl.parse_address(parsed, 13) is None  # another link's address


@given(st.one_of(ipv4.map(lambda a: (a, 32)), ipv6.map(lambda a: (a, 128))), st.data())
def test_route_messages_parse_back_to_the_network_through_that_link(
    address: tuple[str, int], data: st.DataObject
) -> None:
    ip, bits = address
    network = str(ipaddress.ip_network(f"{ip}/{data.draw(st.integers(0, bits))}", strict=False))
    body = rtnl.route_body(5, network)
    assert rtnl.parse_route(body, 5) == network
    assert rtnl.parse_route(body, 6) is None
    assert rtnl.parse_route(rtnl.route_body(5, network, delete=True), 5) == network


def test_a_route_in_another_table_or_of_another_type_is_not_ours() -> None:
    body = bytearray(rtnl.route_body(5, "10.42.0.0/16"))
    body[4] = 100  # rtm_table
    assert rtnl.parse_route(bytes(body), 5) is None
    body = bytearray(rtnl.route_body(5, "10.42.0.0/16"))
    body[7] = 6  # RTN_PROHIBIT
    assert rtnl.parse_route(bytes(body), 5) is None
    # tables above 255 travel in RTA_TABLE, which overrides the header byte
    wide = rtnl.route_body(5, "10.42.0.0/16") + rtnl.attribute(
        rtnl.RTA_TABLE, struct.pack("=I", 1000)
    )
    assert rtnl.parse_route(wide, 5) is None


@given(st.integers(1, 2**31 - 1), st.integers(68, 65535), st.booleans())
def test_link_settings_parse_back(index: int, mtu: int, up: bool) -> None:
    body = rtnl.set_link_body(index, mtu=mtu, up=up)
    body += rtnl.attribute(rtnl.IFLA_LINKINFO, rtnl.attribute(rtnl.IFLA_INFO_KIND, b"tun\0"))
    assert rtnl.parse_link(body) == rtnl.Link(index=index, kind="tun", mtu=mtu, up=up)


def test_new_link_asks_for_the_name_and_kind() -> None:
    body = rtnl.new_link_body("wg-mesh", "wireguard")
    attrs = dict(rtnl.attributes(body[16:]))
    assert attrs[rtnl.IFLA_IFNAME] == b"wg-mesh\0"
    assert dict(rtnl.attributes(attrs[rtnl.IFLA_LINKINFO])) == {rtnl.IFLA_INFO_KIND: b"wireguard"}


@given(st.binary(max_size=64))
def test_truncated_or_garbage_input_never_raises_while_walking(data: bytes) -> None:
    list(rtnl.attributes(data))
    list(rtnl.messages(data))


def test_error_answers_carry_a_positive_errno() -> None:
    assert rtnl.error_code(struct.pack("=i", -19) + bytes(16)) == 19
    assert rtnl.error_code(struct.pack("=i", 0) + bytes(16)) == 0


def _peer(key: str, endpoint: str | None = "192.0.2.1:51820") -> PeerConfig:
    return PeerConfig(key, endpoint, ("10.42.0.2/32",), 25)


def test_batched_request_removes_first_then_sets_each_peer_without_replacing_the_set() -> None:
    text = peers_request([_peer(KEY_A), _peer(KEY_B, None)], remove=[KEY_C]).decode()
    lines = text.split("\n")
    assert text.endswith("\n\n") and lines[0] == "set=1"
    assert "replace_peers=true" not in text
    keys = [line for line in lines if line.startswith("public_key=")]
    assert keys == [
        f"public_key={bytes([3] * 32).hex()}",
        f"public_key={bytes([1] * 32).hex()}",
        f"public_key={bytes([2] * 32).hex()}",
    ]
    assert lines[2] == "remove=true"
    assert text.count("replace_allowed_ips=true") == 2
    assert text.count("endpoint=") == 1  # a peer without endpoint keeps the learned one


def test_one_peer_request_is_the_batch_of_one() -> None:
    assert peer_request(_peer(KEY_A)) == peers_request([_peer(KEY_A)])


@given(ipv4, st.integers(1, 65535))
def test_endpoint_fast_path_agrees_with_the_general_one(ip: str, port: int) -> None:
    endpoint = f"{ip}:{port}"
    assert normalise_endpoint(endpoint) == join_endpoint(*split_endpoint(endpoint))


@given(st.one_of(ipv4.map(lambda a: f"{a}/32"), ipv4.map(lambda a: f"{a}/24")))
def test_allowed_ips_fast_path_agrees_with_the_general_one(cidr: str) -> None:
    general = str(ipaddress.ip_network(cidr, strict=False))
    assert normalise_allowed_ips([cidr]) == (general,)
