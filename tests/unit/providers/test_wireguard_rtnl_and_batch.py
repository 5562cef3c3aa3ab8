"""rtnetlink answers (built by a small test-local stand-in for the kernel) parsed
offline, and the read path never importing pyroute2; batched UAPI requests; the
canonical fast paths agree with the slow, general ones."""

from __future__ import annotations

import base64
import ipaddress
import struct
import subprocess
import sys
from typing import Any

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


# --- a small kernel stand-in: answers as the kernel sends them (rtnl only reads) ---

AF_INET, AF_INET6 = 2, 10
RTPROT_BOOT, RT_SCOPE_LINK = 3, 253


def _reply(kind: int, body: bytes) -> bytes:
    """A kernel answer as `messages` sees it (header + body)."""
    return rtnl.request(kind, 0, 7, body)


def _family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


def _address_answer(index: int, address: str, *, local: str | None = None) -> bytes:
    """RTM_NEWADDR body: ifaddrmsg, IFA_LOCAL (first, as the kernel orders it), IFA_ADDRESS."""
    iface = ipaddress.ip_interface(address)
    body = struct.pack("=BBBBI", _family(iface.version), iface.network.prefixlen, 0, 0, index)
    if local is not None:
        body += rtnl.attribute(2, ipaddress.ip_address(local).packed)  # IFA_LOCAL
    return body + rtnl.attribute(rtnl.IFA_ADDRESS, iface.ip.packed)


def _route_answer(
    index: int, cidr: str, *, table: int = rtnl.MAIN_TABLE, kind: int = rtnl.RTN_UNICAST
) -> bytes:
    """RTM_NEWROUTE body: rtmsg (table byte capped at 255 as the kernel does), RTA_TABLE,
    RTA_DST unless it is a default route, RTA_OIF."""
    net = ipaddress.ip_network(cidr)
    header_table = table if table < 256 else 252  # RT_TABLE_COMPAT
    body = struct.pack(
        "=BBBBBBBBI", _family(net.version), net.prefixlen, 0, 0, header_table,
        RTPROT_BOOT, RT_SCOPE_LINK, kind, 0,
    )  # fmt: skip
    body += rtnl.attribute(rtnl.RTA_TABLE, struct.pack("=I", table))
    if net.prefixlen:
        body += rtnl.attribute(rtnl.RTA_DST, net.network_address.packed)
    return body + rtnl.attribute(rtnl.RTA_OIF, struct.pack("=I", index))


def _link_answer(index: int, *, mtu: int, up: bool, kind: str | None) -> bytes:
    """RTM_NEWLINK body: ifinfomsg, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO/IFLA_INFO_KIND."""
    body = struct.pack("=BxHiII", 0, 65534, index, 0x1 if up else 0, 0)
    body += rtnl.attribute(rtnl.IFLA_IFNAME, b"wg-mesh\0")
    body += rtnl.attribute(rtnl.IFLA_MTU, struct.pack("=I", mtu))
    if kind is not None:
        info = rtnl.attribute(rtnl.IFLA_INFO_KIND, kind.encode() + b"\0")
        body += rtnl.attribute(rtnl.IFLA_LINKINFO | 0x8000, info)  # NLA_F_NESTED set
    return body


addresses = st.one_of(ipv4.map(lambda a: (a, 32)), ipv6.map(lambda a: (a, 128)))


@given(addresses, st.data())
def test_address_messages_parse_back_to_the_address_on_that_link(
    address: tuple[str, int], data: st.DataObject
) -> None:
    ip, bits = address
    prefix = data.draw(st.integers(0, bits))
    body = _address_answer(12, f"{ip}/{prefix}", local=ip)
    [(kind, sequence, parsed)] = list(rtnl.messages(_reply(rtnl.RTM_NEWADDR, body)))
    assert (kind, sequence) == (rtnl.RTM_NEWADDR, 7)
    assert rtnl.parse_address(parsed, 12) == f"{ip}/{prefix}"
    assert rtnl.parse_address(parsed, 13) is None  # another link's address


@given(addresses, st.data())
def test_route_messages_parse_back_to_the_network_through_that_link(
    address: tuple[str, int], data: st.DataObject
) -> None:
    ip, bits = address
    network = str(ipaddress.ip_network(f"{ip}/{data.draw(st.integers(0, bits))}", strict=False))
    body = _route_answer(5, network)
    assert rtnl.parse_route(body, 5) == network
    assert rtnl.parse_route(body, 6) is None


def test_a_route_in_another_table_or_of_another_type_is_not_ours() -> None:
    assert rtnl.parse_route(_route_answer(5, "10.42.0.0/16", table=100), 5) is None
    assert rtnl.parse_route(_route_answer(5, "10.42.0.0/16", kind=6), 5) is None  # prohibit
    # tables above 255 travel in RTA_TABLE, which overrides the header byte
    assert rtnl.parse_route(_route_answer(5, "10.42.0.0/16", table=1000), 5) is None


def test_a_default_route_has_no_destination_attribute_and_reads_as_the_zero_network() -> None:
    assert rtnl.parse_route(_route_answer(5, "0.0.0.0/0"), 5) == "0.0.0.0/0"
    assert rtnl.parse_route(_route_answer(5, "::/0"), 5) == "::/0"


@given(
    st.integers(1, 2**31 - 1),
    st.integers(68, 65535),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from(["tun", "wireguard"])),
)
def test_link_answers_parse_back_to_index_kind_mtu_and_state(
    index: int, mtu: int, up: bool, kind: str | None
) -> None:
    [(_, _, body)] = rtnl.messages(
        _reply(rtnl.RTM_NEWLINK, _link_answer(index, mtu=mtu, up=up, kind=kind))
    )
    assert rtnl.parse_link(body) == rtnl.Link(index=index, kind=kind, mtu=mtu, up=up)


def test_the_link_request_asks_for_one_link_by_its_name() -> None:
    body = rtnl.link_body("wg-mesh")
    attrs = dict(rtnl.attributes(body[16:]))
    assert attrs == {rtnl.IFLA_IFNAME: b"wg-mesh\0"}


@given(st.binary(max_size=64))
def test_truncated_or_garbage_input_never_raises_while_walking(data: bytes) -> None:
    list(rtnl.attributes(data))
    list(rtnl.messages(data))


def test_error_answers_carry_a_positive_errno() -> None:
    assert rtnl.error_code(struct.pack("=i", -19) + bytes(16)) == 19
    assert rtnl.error_code(struct.pack("=i", 0) + bytes(16)) == 0


def test_reading_a_link_does_not_import_pyroute2() -> None:
    """The no-op plan path: reads go over our own socket, never through pyroute2."""
    code = (
        "import sys; from meshops.providers.wireguard import read_link; "
        "assert read_link('meshops-absent0') is None; "
        "assert read_link('lo') is not None; "
        "assert 'pyroute2' not in sys.modules, 'pyroute2 imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


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


def _decoded(message_class: type, request: rtnl.Request) -> Any:
    """One of our change requests, framed and decoded by pyroute2 (the referee)."""
    data = rtnl.request(request.kind, 0x5 | request.flags, 1, request.body)
    msg = message_class(data)
    msg.decode()
    return msg


def test_change_requests_read_back_through_pyroute2() -> None:
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    link = _decoded(ifinfmsg, rtnl.create_wireguard_link("wg-mesh", 1420))
    assert link.get_attr("IFLA_IFNAME") == "wg-mesh"
    assert link.get_attr("IFLA_MTU") == 1420
    assert link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "wireguard"
    up = _decoded(ifinfmsg, rtnl.set_link(7, up=True))
    assert (up["index"], up["flags"] & 1, up["change"] & 1) == (7, 1, 1)
    mtu = _decoded(ifinfmsg, rtnl.set_link(7, mtu=1380))
    assert (mtu["change"], mtu.get_attr("IFLA_MTU")) == (0, 1380)
    for text in ("10.42.0.11/16", "fd00:42::b/64"):
        addr = _decoded(ifaddrmsg, rtnl.add_address(7, text))
        iface = ipaddress.ip_interface(text)
        assert (addr["index"], addr["prefixlen"]) == (7, iface.network.prefixlen)
        assert addr.get_attr("IFA_ADDRESS") == str(iface.ip)
        assert addr.get_attr("IFA_LOCAL") == str(iface.ip)
    route = _decoded(rtmsg, rtnl.replace_route(7, "10.42.0.0/16"))
    assert (route["dst_len"], route["table"], route["proto"], route["scope"]) == (16, 254, 3, 253)
    assert route.get_attr("RTA_DST") == "10.42.0.0" and route.get_attr("RTA_OIF") == 7
    gone = _decoded(rtmsg, rtnl.delete_route(7, "fd00:42::/64"))
    assert (gone["dst_len"], gone["scope"], gone.get_attr("RTA_OIF")) == (64, 255, 7)
