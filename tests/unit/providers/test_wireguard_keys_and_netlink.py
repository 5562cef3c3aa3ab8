"""Keys agree with wireguard-tools; genetlink translation works on pyroute2 messages
built and decoded offline (the kernel module is not available here)."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.providers.wireguard import (
    PeerConfig,
    PeerState,
    b64_to_hex,
    generate_private_key,
    hex_to_b64,
    peer_matches,
    public_key_of,
)
from meshops.providers.wireguard.genetlink import device_from_messages, peer_attributes
from meshops.providers.wireguard.state import normalise_allowed_ips, split_endpoint

KEY_A = base64.b64encode(bytes([1] * 32)).decode()
KEY_B = base64.b64encode(bytes([2] * 32)).decode()


def test_generated_private_key_is_clamped() -> None:
    key = generate_private_key()
    assert len(key) == 32
    assert key[0] & 7 == 0 and key[31] & 128 == 0 and key[31] & 64 == 64


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools not installed")
def test_public_key_matches_wg_pubkey() -> None:
    private = generate_private_key()
    out = subprocess.run(
        ["wg", "pubkey"], input=base64.b64encode(private) + b"\n", capture_output=True, check=True
    )
    assert public_key_of(private) == out.stdout.decode().strip()


@given(st.binary(min_size=32, max_size=32))
def test_base64_and_hex_spellings_round_trip(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert b64_to_hex(text) == raw.hex()
    assert hex_to_b64(raw.hex()) == text


def test_bad_keys_are_errors_that_do_not_echo_the_value() -> None:
    with pytest.raises(MeshError, match="32 bytes"):
        public_key_of(b"x" * 31)
    with pytest.raises(MeshError) as info:
        hex_to_b64("zz-secret-zz", what="private key")
    assert "zz-secret-zz" not in str(info.value)


def test_endpoints_split_for_v4_and_bracketed_v6_and_reject_host_names() -> None:
    assert split_endpoint("192.0.2.11:51820") == ("192.0.2.11", 51820)
    assert split_endpoint("[2001:db8::1]:51820") == ("2001:db8::1", 51820)
    for bad in ("web-1.example.com:51820", "192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000"):
        with pytest.raises(MeshError):
            split_endpoint(bad)


def test_allowed_ips_are_canonical_deduplicated_and_sorted() -> None:
    got = normalise_allowed_ips(["fd00::1", "10.42.0.9/16", "10.42.0.0/16", "10.1.0.1"])
    assert got == ("10.1.0.1/32", "10.42.0.0/16", "fd00::1/128")


def test_peer_matches_ignores_counters_and_a_learned_endpoint() -> None:
    live = PeerState(
        KEY_A, "192.0.2.9:4000", ("10.42.0.2/32",), None, last_handshake=5.0, rx_bytes=9
    )
    assert peer_matches(live, PeerConfig(KEY_A, None, ("10.42.0.2",), 0))
    assert not peer_matches(live, PeerConfig(KEY_A, "192.0.2.9:4001", ("10.42.0.2/32",), None))
    assert not peer_matches(live, PeerConfig(KEY_A, None, ("10.42.0.2/32",), 25))
    assert not peer_matches(
        live, PeerConfig(KEY_A, None, ("10.42.0.2/32",), None, bytes(range(32)))
    )


def test_peer_attributes_for_genetlink_are_explicit() -> None:
    attrs = peer_attributes(PeerConfig(KEY_A, "[2001:db8::1]:51820", ("10.42.0.2",), None))
    assert attrs == {
        "public_key": KEY_A,
        "persistent_keepalive": 0,
        "preshared_key": base64.b64encode(bytes(32)).decode(),
        "replace_allowed_ips": True,
        "endpoint_addr": "2001:db8::1",
        "endpoint_port": 51820,
        "allowed_ips": ["10.42.0.2/32"],
    }


def _wg_message(attrs: list) -> object:
    """A WG_CMD_GET_DEVICE answer as the kernel would send it, decoded by pyroute2."""
    from pyroute2.netlink.generic.wireguard import wgmsg

    msg = wgmsg()
    msg["cmd"] = 0
    msg["version"] = 1
    msg["attrs"] = attrs
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def _allowed(cidr: str) -> dict:
    address, prefix = cidr.split("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, address)],
            ["WGALLOWEDIP_A_CIDR_MASK", int(prefix)],
        ]
    }


def test_kernel_dump_split_over_messages_merges_into_one_device() -> None:
    device_key = base64.b64encode(bytes([3] * 32)).decode()
    first = _wg_message(
        [
            ["WGDEVICE_A_IFNAME", "wg0"],
            ["WGDEVICE_A_PUBLIC_KEY", device_key],
            ["WGDEVICE_A_LISTEN_PORT", 51820],
            [
                "WGDEVICE_A_PEERS",
                [
                    {
                        "attrs": [
                            ["WGPEER_A_PUBLIC_KEY", KEY_A],
                            ["WGPEER_A_ENDPOINT", {"addr": "192.0.2.12", "port": 51820}],
                            ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 25],
                            ["WGPEER_A_RX_BYTES", 7],
                            ["WGPEER_A_TX_BYTES", 9],
                            ["WGPEER_A_ALLOWEDIPS", [_allowed("10.42.0.2/32")]],
                        ]
                    }
                ],
            ],
        ]
    )
    second = _wg_message(
        [
            ["WGDEVICE_A_IFNAME", "wg0"],
            [
                "WGDEVICE_A_PEERS",
                [
                    {
                        "attrs": [
                            ["WGPEER_A_PUBLIC_KEY", KEY_A],
                            ["WGPEER_A_ALLOWEDIPS", [_allowed("fd00::2/128")]],
                        ]
                    },
                    {"attrs": [["WGPEER_A_PUBLIC_KEY", KEY_B]]},
                ],
            ],
        ]
    )
    state = device_from_messages("wg0", [first, second])
    assert state.public_key == device_key
    assert state.listen_port == 51820
    a, b = state.peers[KEY_A], state.peers[KEY_B]
    assert a.endpoint == "192.0.2.12:51820"
    assert a.allowed_ips == ("10.42.0.2/32", "fd00::2/128")
    assert (a.keepalive, a.rx_bytes, a.tx_bytes) == (25, 7, 9)
    assert b == PeerState(KEY_B, None, (), None)
