"""The cross-platform UAPI of userspace WireGuard (wireguard-go), spoken over
`/var/run/wireguard/<name>.sock`.

A request is `get=1` or `set=1` followed by `key=value` lines and an empty line; the
answer ends with `errno=N` and an empty line. Keys travel as hex. Building requests
and parsing answers are pure functions; `UapiBackend` only moves bytes. Requests hold
private keys: they are written to the socket and nowhere else.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from meshops.errors import MeshError
from meshops.providers.wireguard.keys import (
    ZERO_KEY,
    b64_to_hex,
    check_key_bytes,
    hex_to_bytes,
    public_key_of,
)
from meshops.providers.wireguard.state import (
    DeviceState,
    PeerConfig,
    PeerState,
    normalise_allowed_ips,
    normalise_endpoint,
)

UAPI_DIR = Path("/var/run/wireguard")
TIMEOUT_SECONDS = 5.0
# wireguard-go answers a batched set only after configuring every peer, and a peer
# with a keepalive on an up device costs a handshake initiation (~0.5 ms; far more
# when its endpoint is on-link and never answers ARP)
TIMEOUT_PER_PEER_SECONDS = 0.01
_ZERO_HEX = ZERO_KEY.hex()


def socket_path(name: str) -> Path:
    return UAPI_DIR / f"{name}.sock"


# --- requests (pure) -------------------------------------------------------------


def device_request(*, private_key: bytes, listen_port: int) -> bytes:
    """`set` request for the device's own key and port, both always explicit."""
    check_key_bytes(private_key, what="private key")
    if not 0 <= listen_port < 65536:
        raise MeshError(f"WireGuard listen port {listen_port} is out of range")
    return f"set=1\nprivate_key={private_key.hex()}\nlisten_port={listen_port}\n\n".encode()


def peer_request(peer: PeerConfig) -> bytes:
    """`set` request updating one peer in place (see `peers_request`)."""
    return peers_request([peer])


def peers_request(peers: Sequence[PeerConfig], *, remove: Sequence[str] = ()) -> bytes:
    """One `set` request removing the peers keyed `remove`, then adding or updating
    each of `peers` in place: one round trip however many peers changed.

    Never `replace_peers`: peers not named are untouched. For each peer, allowed IPs
    are replaced, keepalive and preshared key always sent (0 and the zero key clear
    them), so the result never depends on what was there before. A peer's session
    survives: none of these keys makes wireguard-go drop its keypairs.
    """
    lines = ["set=1"]
    for key in remove:
        lines += [f"public_key={b64_to_hex(key)}", "remove=true"]
    for peer in peers:
        lines.append(f"public_key={b64_to_hex(peer.public_key)}")
        if peer.endpoint is not None:
            lines.append(f"endpoint={normalise_endpoint(peer.endpoint)}")
        lines.append(f"persistent_keepalive_interval={peer.keepalive_seconds}")
        psk = peer.preshared_key if peer.preshared_key is not None else ZERO_KEY
        lines.append(f"preshared_key={check_key_bytes(psk, what='preshared key').hex()}")
        lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={cidr}" for cidr in normalise_allowed_ips(peer.allowed_ips))
    return ("\n".join(lines) + "\n\n").encode()


def remove_request(public_key: str) -> bytes:
    return peers_request([], remove=[public_key])


# --- answers (pure) --------------------------------------------------------------


def check_errno(answer: str, *, name: str, op: str) -> None:
    """Raise when the answer's final `errno=` line reports a failure (or is missing)."""
    at = answer.rfind("errno=")
    if at < 0 or (at > 0 and answer[at - 1] != "\n"):
        raise MeshError(f"WireGuard interface {name}: {op}: the answer has no errno line")
    text = answer[at + 6 :].split("\n", 1)[0].strip()
    try:
        code = abs(int(text))
    except ValueError:
        raise MeshError(f"WireGuard interface {name}: {op}: bad errno line {text!r}") from None
    if code != 0:
        raise MeshError(
            f"WireGuard interface {name}: {op} failed: errno {code} ({os.strerror(code)})",
            hint="check the values sent (keys, endpoint, allowed IPs) and the wireguard-go log",
        )


def parse_get(answer: str, *, name: str) -> DeviceState:
    """Parse a `get=1` dump into a DeviceState.

    The private key is used only to derive the public key (wireguard-go does not
    report it) and is not kept. Written for speed: a 1,000-peer dump is ~330 kB.
    """
    check_errno(answer, name=name, op="get")
    head, *blocks = ("\n" + answer).split("\npublic_key=")
    device: dict[str, str] = {}
    for line in head.split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            device[key] = value
    private_hex = device.get("private_key")
    port = device.get("listen_port")
    peers: dict[str, PeerState] = {}
    for block in blocks:
        state = _peer_state(block)
        peers[state.public_key] = state
    return DeviceState(
        name=name,
        public_key=public_key_of(hex_to_bytes(private_hex, what="private key"))
        if private_hex
        else None,
        listen_port=int(port) if port else None,
        peers=peers,
    )


def _peer_state(block: str) -> PeerState:
    """One peer's lines; the block starts right after `public_key=`."""
    lines = block.split("\n")
    fields: dict[str, str] = {}
    allowed: list[str] = []
    for line in lines[1:]:
        key, _, value = line.partition("=")
        if key == "allowed_ip":
            allowed.append(value)
        else:
            fields[key] = value
    psk_hex = fields.get("preshared_key")
    seconds = fields.get("last_handshake_time_sec", "0")
    nanos = fields.get("last_handshake_time_nsec", "0")
    if len(allowed) > 1:
        # wireguard-go prints canonical CIDRs already; only the order is ours.
        allowed.sort(key=_cidr_order)
    return PeerState(
        public_key=base64.b64encode(bytes.fromhex(lines[0])).decode("ascii"),
        endpoint=fields.get("endpoint") or None,
        allowed_ips=tuple(allowed),
        keepalive=int(fields.get("persistent_keepalive_interval") or 0) or None,
        preshared_key=None if not psk_hex or psk_hex == _ZERO_HEX else bytes.fromhex(psk_hex),
        last_handshake=None if seconds == "0" and nanos == "0" else int(seconds) + int(nanos) / 1e9,
        rx_bytes=int(fields.get("rx_bytes") or 0),
        tx_bytes=int(fields.get("tx_bytes") or 0),
    )


def _cidr_order(cidr: str) -> tuple[int, bytes, int]:
    # Same order as normalise_allowed_ips, without building ip_network objects: a
    # 1,000-peer dump has to parse in milliseconds.
    address, _, prefix = cidr.partition("/")
    if ":" in address:
        import ipaddress

        return (6, ipaddress.IPv6Address(address).packed, int(prefix or 128))
    return (4, socket.inet_aton(address), int(prefix or 32))


# --- the backend (I/O) -----------------------------------------------------------


class UapiBackend:
    """WireGuard configuration through a userspace implementation's UAPI socket."""

    def __init__(self, directory: Path = UAPI_DIR) -> None:
        self.directory = directory

    def read(self, name: str) -> DeviceState | None:
        answer = self._exchange(name, b"get=1\n\n", op="get", missing_ok=True)
        return None if answer is None else parse_get(answer, name=name)

    def configure_device(self, name: str, *, private_key: bytes, listen_port: int) -> None:
        self._set(
            name, device_request(private_key=private_key, listen_port=listen_port), "set device"
        )

    def set_peer(self, name: str, peer: PeerConfig) -> None:
        self._set(name, peer_request(peer), "set peer")

    def remove_peer(self, name: str, public_key: str) -> None:
        self._set(name, remove_request(public_key), "remove peer")

    def set_peers(
        self, name: str, peers: Sequence[PeerConfig], *, remove: Sequence[str] = ()
    ) -> None:
        if peers or remove:
            request = peers_request(peers, remove=remove)
            extra = TIMEOUT_PER_PEER_SECONDS * (len(peers) + len(remove))
            self._set(name, request, "set peers", timeout=TIMEOUT_SECONDS + extra)

    def _set(self, name: str, request: bytes, op: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        answer = self._exchange(name, request, op=op, missing_ok=False, timeout=timeout)
        assert answer is not None
        check_errno(answer, name=name, op=op)

    def _exchange(
        self,
        name: str,
        request: bytes,
        *,
        op: str,
        missing_ok: bool,
        timeout: float = TIMEOUT_SECONDS,
    ) -> str | None:
        path = self.directory / f"{name}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
            except FileNotFoundError:
                if missing_ok:
                    return None
                raise MeshError(
                    f"WireGuard interface {name} does not exist (no {path})",
                    hint="create the interface first (ensure_interface)",
                ) from None
            except OSError as exc:
                raise MeshError(
                    f"WireGuard interface {name}: cannot connect to {path}: {exc.strerror}",
                    hint="the userspace process may have died; delete and recreate the interface",
                ) from None
            try:
                sock.sendall(request)
                return _receive(sock).decode("utf-8", errors="replace")
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise MeshError(f"WireGuard interface {name}: {op} over {path}: {reason}") from None


def _receive(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    tail = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        tail = (tail + chunk)[-2:]
        if tail == b"\n\n":
            break
    return b"".join(chunks)
