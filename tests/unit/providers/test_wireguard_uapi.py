"""UAPI requests and answers, parsed and built without a device.

`data/uapi_get_dump.txt` is a real `get=1` answer captured from wireguard-go in the
e2e test bed (private_key line removed; the PSK is the fixed test value 00..1f).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.providers.wireguard import PeerConfig, PeerState, generate_private_key, public_key_of
from meshops.providers.wireguard.uapi import (
    check_errno,
    device_request,
    parse_get,
    peer_request,
    remove_request,
)

DUMP = (Path(__file__).parent / "data" / "uapi_get_dump.txt").read_text()
H2 = "O2VtN028tYE3xA/yY3axPN3gDWYU/T2JqM8aCnVRWTc="
H3 = "ahscbn5bvbi1/6h+nhGsCETswVtCjUKZcHs/1+FS1hI="
TEST_PSK = bytes(range(32))


def test_captured_dump_parses_into_peers_with_handshakes_and_counters() -> None:
    state = parse_get(DUMP, name="wg-mesh")
    assert state.name == "wg-mesh"
    assert state.listen_port == 51820
    assert state.public_key is None  # the private key line was removed from the capture
    assert set(state.peers) == {H2, H3}
    h2 = state.peers[H2]
    assert h2.endpoint == "192.0.2.12:51820"
    assert h2.allowed_ips == ("10.42.0.2/32",)
    assert h2.last_handshake == pytest.approx(1795453152.742348918)
    assert (h2.rx_bytes, h2.tx_bytes) == (220, 276)
    assert h2.keepalive is None and h2.preshared_key is None


def test_captured_dump_reports_keepalive_psk_and_sorted_allowed_ips() -> None:
    h3 = parse_get(DUMP, name="wg-mesh").peers[H3]
    assert h3.keepalive == 25
    assert h3.preshared_key == TEST_PSK
    assert h3.allowed_ips == ("10.42.0.3/32", "10.99.0.0/24", "fd00:42::3/128")
    assert h3.last_handshake is None
    assert h3.config == PeerConfig(H3, "192.0.2.13:51820", h3.allowed_ips, 25, TEST_PSK)


def test_device_public_key_is_derived_from_the_private_key_line() -> None:
    private = generate_private_key()
    state = parse_get(f"private_key={private.hex()}\n{DUMP}", name="wg0")
    assert state.public_key == public_key_of(private)
    assert private.hex() not in repr(state)


def test_preshared_key_never_appears_in_repr() -> None:
    peer = parse_get(DUMP, name="wg-mesh").peers[H3]
    assert TEST_PSK.hex() not in repr(peer)
    assert repr(TEST_PSK) not in repr(peer)


@pytest.mark.parametrize("answer", ["errno=22\n\n", "errno=-22\n\n", "listen_port=1\n\n"])
def test_failed_or_truncated_answer_raises_an_error_naming_the_interface(answer: str) -> None:
    with pytest.raises(MeshError, match="WireGuard interface wg7"):
        check_errno(answer, name="wg7", op="set peer")


def test_peer_request_sets_every_field_explicitly_and_replaces_allowed_ips() -> None:
    peer = PeerConfig(H2, "[2001:db8::1]:51820", ("10.42.0.2", "10.0.0.0/8"), None)
    lines = peer_request(peer).decode().split("\n")
    assert lines[:2] == ["set=1", f"public_key={base64.b64decode(H2).hex()}"]
    assert "endpoint=[2001:db8::1]:51820" in lines
    assert "persistent_keepalive_interval=0" in lines
    assert f"preshared_key={'0' * 64}" in lines
    assert lines.index("replace_allowed_ips=true") < lines.index("allowed_ip=10.0.0.0/8")
    assert [x for x in lines if x.startswith("allowed_ip=")] == [
        "allowed_ip=10.0.0.0/8",
        "allowed_ip=10.42.0.2/32",
    ]
    assert lines[-2:] == ["", ""]


def test_peer_request_without_endpoint_leaves_the_learned_endpoint_alone() -> None:
    request = peer_request(PeerConfig(H2, None, (), 25)).decode()
    assert "endpoint=" not in request
    assert "persistent_keepalive_interval=25" in request


def test_device_and_remove_requests() -> None:
    private = generate_private_key()
    assert device_request(private_key=private, listen_port=51820) == (
        f"set=1\nprivate_key={private.hex()}\nlisten_port=51820\n\n".encode()
    )
    assert remove_request(H3).endswith(b"\nremove=true\n\n")
    with pytest.raises(MeshError, match="32 bytes"):
        device_request(private_key=b"short", listen_port=1)
    with pytest.raises(MeshError, match="not valid base64"):
        remove_request("not a key")


def _render_dump(peers: list[PeerState]) -> str:
    """The inverse of parse_get, written the way wireguard-go answers."""
    out = ["listen_port=51820"]
    for p in peers:
        # Whole seconds: the strategy draws them, and float nanoseconds would not round-trip.
        sec, nsec = (0, 0) if p.last_handshake is None else (int(p.last_handshake), 0)
        out += [
            f"public_key={base64.b64decode(p.public_key).hex()}",
            f"preshared_key={(p.preshared_key or bytes(32)).hex()}",
            "protocol_version=1",
            *([f"endpoint={p.endpoint}"] if p.endpoint else []),
            f"last_handshake_time_sec={sec}",
            f"last_handshake_time_nsec={nsec}",
            f"tx_bytes={p.tx_bytes}",
            f"rx_bytes={p.rx_bytes}",
            f"persistent_keepalive_interval={p.keepalive or 0}",
            *(f"allowed_ip={c}" for c in p.allowed_ips),
        ]
    return "\n".join([*out, "errno=0", "", ""])


keys = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
v4_cidrs = st.builds(
    lambda a, n: f"10.{a % 256}.{n}.0/24", st.integers(0, 255), st.integers(0, 255)
)
peer_states = st.builds(
    PeerState,
    public_key=keys,
    endpoint=st.one_of(
        st.none(),
        st.builds(lambda n, p: f"192.0.2.{n}:{p}", st.integers(1, 254), st.integers(1, 65535)),
    ),
    allowed_ips=st.lists(v4_cidrs, max_size=4, unique=True).map(
        lambda cs: tuple(sorted(cs, key=lambda c: tuple(int(x) for x in c[:-3].split("."))))
    ),
    keepalive=st.one_of(st.none(), st.integers(1, 65535)),
    preshared_key=st.one_of(st.none(), st.binary(min_size=32, max_size=32).filter(any)),
    last_handshake=st.one_of(st.none(), st.integers(1, 2**33).map(float)),
    rx_bytes=st.integers(0, 2**63),
    tx_bytes=st.integers(0, 2**63),
)


@given(st.lists(peer_states, max_size=5, unique_by=lambda p: p.public_key))
def test_any_rendered_dump_parses_back_to_the_same_peers(peers: list[PeerState]) -> None:
    state = parse_get(_render_dump(peers), name="wg0")
    assert state.peers == {p.public_key: p for p in peers}


def test_a_thousand_peer_dump_parses_quickly() -> None:
    peers = [
        PeerState(
            public_key=public_key_of(generate_private_key()),
            endpoint=f"192.0.2.{i % 250 + 1}:51820",
            allowed_ips=(f"10.42.{i // 250}.{i % 250}/32",),
            keepalive=25,
            last_handshake=1_700_000_000.0 + i,
            rx_bytes=i,
            tx_bytes=i,
        )
        for i in range(1000)
    ]
    dump = _render_dump(peers)
    best = min(_timed(lambda: parse_get(dump, name="wg0")) for _ in range(5))
    print(f"parse_get, 1000 peers: {best * 1000:.1f} ms")
    assert best < 0.25  # ~12 ms on the 2-core CI machine; generous for slow runners


def _timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start
