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
    """`set` request updating one peer in place.

    Allowed IPs are replaced, keepalive and preshared key always sent (0 and the zero
    key clear them), so the result never depends on what was there before. The peer's
    session survives: none of these keys makes wireguard-go drop its keypairs.
    """
    lines = ["set=1", f"public_key={b64_to_hex(peer.public_key)}"]
    if peer.endpoint is not None:
        lines.append(f"endpoint={normalise_endpoint(peer.endpoint)}")
    lines.append(f"persistent_keepalive_interval={peer.keepalive_seconds}")
    psk = peer.preshared_key if peer.preshared_key is not None else ZERO_KEY
    lines.append(f"preshared_key={check_key_bytes(psk, what='preshared key').hex()}")
    lines.append("replace_allowed_ips=true")
    lines.extend(f"allowed_ip={cidr}" for cidr in normalise_allowed_ips(peer.allowed_ips))
    return ("\n".join(lines) + "\n\n").encode()


def remove_request(public_key: str) -> bytes:
    return f"set=1\npublic_key={b64_to_hex(public_key)}\nremove=true\n\n".encode()


# --- answers (pure) --------------------------------------------------------------


def check_errno(answer: str, *, name: str, op: str) -> None:
    """Raise when the answer's `errno=` line reports a failure (or is missing)."""
    for line in reversed(answer.splitlines()):
        if line.startswith("errno="):
            code = abs(int(line[6:]))
            if code == 0:
                return
            raise MeshError(
                f"WireGuard interface {name}: {op} failed: errno {code} ({os.strerror(code)})",
                hint="check the values sent (keys, endpoint, allowed IPs) and the wireguard-go log",
            )
    raise MeshError(f"WireGuard interface {name}: {op}: the answer has no errno line")


def parse_get(answer: str, *, name: str) -> DeviceState:
    """Parse a `get=1` dump into a DeviceState. The private key is only used to derive
    the public key (wireguard-go does not report it) and is not kept."""
    check_errno(answer, name=name, op="get")
    public_key: str | None = None
    listen_port: int | None = None
    peers: dict[str, PeerState] = {}
    peer: dict[str, str] | None = None
    allowed: list[str] = []

    def flush() -> None:
        if peer is not None:
            state = _peer_state(peer, allowed)
            peers[state.public_key] = state

    for line in answer.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "public_key":
            flush()
            peer, allowed = {"public_key": value}, []
        elif peer is not None:
            if key == "allowed_ip":
                allowed.append(value)
            else:
                peer[key] = value
        elif key == "private_key":
            public_key = public_key_of(hex_to_bytes(value, what="private key"))
        elif key == "listen_port":
            listen_port = int(value)
    flush()
    return DeviceState(name=name, public_key=public_key, listen_port=listen_port, peers=peers)


def _peer_state(fields: dict[str, str], allowed: list[str]) -> PeerState:
    psk_hex = fields.get("preshared_key")
    psk = bytes.fromhex(psk_hex) if psk_hex else None
    seconds = int(fields.get("last_handshake_time_sec", "0"))
    nanos = int(fields.get("last_handshake_time_nsec", "0"))
    keepalive = int(fields.get("persistent_keepalive_interval", "0"))
    endpoint = fields.get("endpoint") or None
    return PeerState(
        public_key=base64.b64encode(bytes.fromhex(fields["public_key"])).decode("ascii"),
        endpoint=endpoint,
        # wireguard-go reports allowed IPs in canonical form already; sort only.
        allowed_ips=tuple(sorted(allowed, key=_cidr_order)),
        keepalive=keepalive or None,
        preshared_key=None if psk is None or psk == ZERO_KEY else psk,
        last_handshake=(seconds + nanos / 1e9) if seconds or nanos else None,
        rx_bytes=int(fields.get("rx_bytes", "0")),
        tx_bytes=int(fields.get("tx_bytes", "0")),
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

    def _set(self, name: str, request: bytes, op: str) -> None:
        answer = self._exchange(name, request, op=op, missing_ok=False)
        assert answer is not None
        check_errno(answer, name=name, op=op)

    def _exchange(self, name: str, request: bytes, *, op: str, missing_ok: bool) -> str | None:
        path = self.directory / f"{name}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_SECONDS)
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
