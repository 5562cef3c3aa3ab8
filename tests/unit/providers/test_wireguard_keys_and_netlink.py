"""Keys agree with wireguard-tools; our generic netlink messages agree with pyroute2's
encoder and decoder, used here as an independent referee (offline: the kernel module is
not available here; the VM test drives a real kernel)."""

from __future__ import annotations

import base64
import shutil
import socket
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.providers.wireguard import (
    PeerConfig,
    PeerState,
    b64_to_hex,
    generate_private_key,
    genetlink,
    hex_to_b64,
    peer_matches,
    public_key_of,
)
from meshops.providers.wireguard.netlink import attributes
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
def test_public_key_derivation_agrees_with_cryptography_for_any_scalar(raw: bytes) -> None:
    """pyrage derives the public key; cryptography is the referee (both clamp)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    public = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    assert public_key_of(raw) == base64.b64encode(public).decode()


@given(st.binary(max_size=64), st.sampled_from(["age", "age-secret-key-", "x"]))
def test_bech32_round_trips_and_speaks_ages_spelling(data: bytes, hrp: str) -> None:
    import pyrage

    from meshops.model.types import bech32_decode, bech32_encode

    assert bech32_decode(bech32_encode(hrp, data)) == (hrp, data)
    identity = pyrage.x25519.Identity.generate()
    hrp_, secret = bech32_decode(str(identity)) or ("", b"")
    assert hrp_ == "age-secret-key-" and len(secret) == 32
    assert bech32_encode(hrp_, secret).upper() == str(identity)


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


def _decoded(body: bytes) -> object:
    """A WG_CMD_SET_DEVICE body of ours, decoded by pyroute2."""
    from pyroute2.netlink.generic.wireguard import wgmsg

    data = struct.pack("=IHHII", 16 + len(body), 0x20, 1, 1, 0) + body
    msg = wgmsg(data)
    msg.decode()
    return msg


def _key(value: bytes) -> bytes:
    """pyroute2 decodes a key attribute to its base64 text."""
    return base64.b64decode(value)


def _peers_of(msg: object) -> list:
    return list(msg.get_attr("WGDEVICE_A_PEERS") or [])  # type: ignore[attr-defined]


def test_peer_message_is_explicit_and_pyroute2_reads_it_back() -> None:
    psk = bytes(range(32))
    peers = [
        PeerConfig(KEY_A, "[2001:db8::1]:51820", ("10.42.0.2",), None),
        PeerConfig(KEY_B, "192.0.2.7:4000", ("fd00::2/128", "10.42.0.3/32"), 25, psk),
    ]
    [body] = genetlink.peers_bodies("wg0", peers, remove=[KEY_B])
    msg = _decoded(body)
    assert msg.get_attr("WGDEVICE_A_IFNAME") == "wg0"  # type: ignore[attr-defined]
    removal, first, second = _peers_of(msg)
    assert removal.get_attr("WGPEER_A_PUBLIC_KEY") == KEY_B.encode()
    assert removal.get_attr("WGPEER_A_FLAGS") == genetlink.WGPEER_F_REMOVE_ME
    assert first.get_attr("WGPEER_A_FLAGS") == genetlink.WGPEER_F_REPLACE_ALLOWEDIPS
    assert first.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == 0  # cleared explicitly
    assert _key(first.get_attr("WGPEER_A_PRESHARED_KEY")) == bytes(32)  # cleared explicitly
    endpoint = first.get_attr("WGPEER_A_ENDPOINT")
    assert (endpoint["addr"], endpoint["port"]) == ("2001:db8::1", 51820)
    [allowed] = first.get_attr("WGPEER_A_ALLOWEDIPS")
    assert allowed["addr"] == "10.42.0.2/32"
    assert _key(second.get_attr("WGPEER_A_PRESHARED_KEY")) == psk
    assert second.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == 25
    assert second.get_attr("WGPEER_A_ENDPOINT")["addr"] == "192.0.2.7"
    cidrs = [a["addr"] for a in second.get_attr("WGPEER_A_ALLOWEDIPS")]
    assert cidrs == ["10.42.0.3/32", "fd00::2/128"]


def test_device_message_sets_key_and_port_explicitly() -> None:
    key = bytes(range(1, 33))
    msg = _decoded(genetlink.device_body("wg0", private_key=key, listen_port=51820))
    assert _key(msg.get_attr("WGDEVICE_A_PRIVATE_KEY")) == key  # type: ignore[attr-defined]
    assert msg.get_attr("WGDEVICE_A_LISTEN_PORT") == 51820  # type: ignore[attr-defined]
    assert msg.get_attr("WGDEVICE_A_PEERS") is None  # type: ignore[attr-defined]


def test_a_thousand_peers_split_into_bounded_messages_each_peer_once_in_order() -> None:
    keys = [base64.b64encode(i.to_bytes(2, "big") * 16).decode() for i in range(1000)]
    peers = [PeerConfig(k, "192.0.2.1:51820", ("10.42.0.2/32",), 25) for k in keys[1:]]
    bodies = genetlink.peers_bodies("wg0", peers, remove=[keys[0]])
    assert len(bodies) > 1
    assert all(len(b) <= genetlink.MESSAGE_LIMIT + 64 for b in bodies)
    seen = [
        p.get_attr("WGPEER_A_PUBLIC_KEY").decode()
        for body in bodies
        for p in _peers_of(_decoded(body))
    ]
    assert seen == keys


def _wg_message(attrs: list) -> bytes:
    """A WG_CMD_GET_DEVICE answer as the kernel would send it, encoded by pyroute2;
    the body after the netlink header, as our socket hands it over."""
    from pyroute2.netlink.generic.wireguard import wgmsg

    msg = wgmsg()
    msg["cmd"] = 0
    msg["version"] = 1
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data[16 : msg["header"]["length"]])


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
    state = genetlink.parse_device("wg0", [first, second])
    assert state.public_key == device_key
    assert state.listen_port == 51820
    a, b = state.peers[KEY_A], state.peers[KEY_B]
    assert a.endpoint == "192.0.2.12:51820"
    assert a.allowed_ips == ("10.42.0.2/32", "fd00::2/128")
    assert (a.keepalive, a.rx_bytes, a.tx_bytes) == (25, 7, 9)
    assert b == PeerState(KEY_B, None, (), None)


def test_endpoints_round_trip_through_sockaddr() -> None:
    for endpoint in ("192.0.2.1:51820", "[2001:db8::1]:1"):
        ip, port = split_endpoint(endpoint)
        assert genetlink.parse_sockaddr(genetlink.sockaddr(ip, port)) == endpoint


def test_kernel_answers_with_handshake_and_psk_parse() -> None:
    handshake = {"tv_sec": 1700000000, "tv_nsec": 500000000}
    body = _wg_message(
        [
            ["WGDEVICE_A_IFNAME", "wg0"],
            [
                "WGDEVICE_A_PEERS",
                [
                    {
                        "attrs": [
                            ["WGPEER_A_PUBLIC_KEY", KEY_A],
                            ["WGPEER_A_PRESHARED_KEY", base64.b64encode(bytes(range(32)))],
                            ["WGPEER_A_LAST_HANDSHAKE_TIME", handshake],
                            ["WGPEER_A_ENDPOINT", {"addr": "2001:db8::7", "port": 9}],
                        ]
                    }
                ],
            ],
        ]
    )
    peer = genetlink.parse_device("wg0", [body]).peers[KEY_A]
    assert peer.preshared_key == bytes(range(32))
    assert peer.last_handshake == 1700000000.5
    assert peer.endpoint == "[2001:db8::7]:9"
    assert dict(attributes(body[4:]))[genetlink.WGDEVICE_A_IFNAME] == b"wg0\0"


def test_reading_kernel_wireguard_does_not_import_pyroute2() -> None:
    """A no-op plan on the kernel path imports nothing more than on the UAPI path."""
    code = (
        "import sys; from meshops.providers.wireguard.genetlink import GenetlinkBackend; "
        "GenetlinkBackend().read('meshops-absent0'); "
        "assert 'pyroute2' not in sys.modules, 'pyroute2 imported'; "
        "assert 'cryptography' not in sys.modules, 'cryptography imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
