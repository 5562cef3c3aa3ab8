"""WireGuard configuration through the kernel module's generic netlink family,
via `pyroute2.WireGuard`.

Selected by `open_backend` when there is no UAPI socket, i.e. when the link is of
kind `wireguard`. It cannot run on machines without the module (the CI machine has
none), so the translation to and from netlink attributes is kept in small functions.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

from meshops.errors import MeshError
from meshops.providers.wireguard.keys import (
    ZERO_KEY,
    b64_to_bytes,
    bytes_to_b64,
    check_key_bytes,
)
from meshops.providers.wireguard.state import (
    DeviceState,
    PeerConfig,
    PeerState,
    join_endpoint,
    normalise_allowed_ips,
    split_endpoint,
)


class GenetlinkBackend:
    """Kernel WireGuard over generic netlink."""

    def read(self, name: str) -> DeviceState | None:
        try:
            messages = list(self._call(name, "get", lambda wg: wg.info(name)))
        except _NoDevice:
            return None
        return device_from_messages(name, messages)

    def configure_device(self, name: str, *, private_key: bytes, listen_port: int) -> None:
        key = bytes_to_b64(check_key_bytes(private_key, what="private key"))
        self._call(
            name, "set device", lambda wg: wg.set(name, private_key=key, listen_port=listen_port)
        )

    def set_peer(self, name: str, peer: PeerConfig) -> None:
        attrs = peer_attributes(peer)
        self._call(name, "set peer", lambda wg: wg.set(name, peer=attrs))

    def remove_peer(self, name: str, public_key: str) -> None:
        b64_to_bytes(public_key)
        attrs = {"public_key": public_key, "remove": True}
        self._call(name, "remove peer", lambda wg: wg.set(name, peer=attrs))

    def set_peers(
        self, name: str, peers: Sequence[PeerConfig], *, remove: Sequence[str] = ()
    ) -> None:
        # a kernel netlink call is cheap (no userspace daemon in between): one per peer
        for key in remove:
            self.remove_peer(name, key)
        for peer in peers:
            self.set_peer(name, peer)

    def _call(self, name: str, op: str, action: Any) -> Any:
        from pyroute2 import WireGuard
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with WireGuard() as wg:
                return action(wg)
        except NetlinkError as exc:
            if op == "get" and exc.code in (errno.ENODEV, errno.ENOENT):
                # ENOENT: no wireguard genetlink family, so no kernel device either.
                raise _NoDevice from None
            if exc.code == errno.ENODEV:
                raise MeshError(f"WireGuard interface {name} does not exist") from None
            raise MeshError(
                f"WireGuard interface {name}: {op} failed: {exc}",
                hint="is the wireguard kernel module loaded?" if exc.code == errno.ENOENT else None,
            ) from None


class _NoDevice(Exception):
    pass


def peer_attributes(peer: PeerConfig) -> dict[str, Any]:
    """pyroute2's peer structure: explicit keepalive and PSK, allowed IPs replaced."""
    b64_to_bytes(peer.public_key)
    psk = peer.preshared_key if peer.preshared_key is not None else ZERO_KEY
    attrs: dict[str, Any] = {
        "public_key": peer.public_key,
        "persistent_keepalive": peer.keepalive_seconds,
        "preshared_key": bytes_to_b64(psk),
        "replace_allowed_ips": True,
    }
    if peer.endpoint is not None:
        attrs["endpoint_addr"], attrs["endpoint_port"] = split_endpoint(peer.endpoint)
    cidrs = normalise_allowed_ips(peer.allowed_ips)
    if cidrs:
        attrs["allowed_ips"] = list(cidrs)
    return attrs


def device_from_messages(name: str, messages: list[Any]) -> DeviceState:
    """Merge a (possibly multi-part) device dump. The kernel splits large peer lists,
    and even one peer's allowed IPs, across messages; parts share the public key."""
    public_key: str | None = None
    listen_port: int | None = None
    parts: dict[str, list[Any]] = {}
    for msg in messages:
        if public_key is None and msg.get_attr("WGDEVICE_A_PUBLIC_KEY") is not None:
            public_key = _key_text(msg.get_attr("WGDEVICE_A_PUBLIC_KEY"))
        if listen_port is None and msg.get_attr("WGDEVICE_A_LISTEN_PORT") is not None:
            listen_port = int(msg.get_attr("WGDEVICE_A_LISTEN_PORT"))
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or []:
            parts.setdefault(_key_text(peer.get_attr("WGPEER_A_PUBLIC_KEY")), []).append(peer)
    peers = {key: _peer_from_parts(key, chunks) for key, chunks in parts.items()}
    return DeviceState(name=name, public_key=public_key, listen_port=listen_port, peers=peers)


def _peer_from_parts(public_key: str, chunks: list[Any]) -> PeerState:
    first = chunks[0]
    allowed: list[str] = []
    for chunk in chunks:
        for item in chunk.get_attr("WGPEER_A_ALLOWEDIPS") or []:
            if item.get("addr"):
                allowed.append(item["addr"])
    endpoint = first.get_attr("WGPEER_A_ENDPOINT")
    handshake = first.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
    seconds = int(handshake["tv_sec"]) if handshake else 0
    nanos = int(handshake["tv_nsec"]) if handshake else 0
    psk_attr = first.get_attr("WGPEER_A_PRESHARED_KEY")
    psk = _key_bytes(psk_attr) if psk_attr is not None else None
    return PeerState(
        public_key=public_key,
        endpoint=join_endpoint(endpoint["addr"], int(endpoint["port"])) if endpoint else None,
        allowed_ips=normalise_allowed_ips(allowed),
        keepalive=int(first.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0) or None,
        preshared_key=None if psk is None or psk == ZERO_KEY else psk,
        last_handshake=(seconds + nanos / 1e9) if seconds or nanos else None,
        rx_bytes=int(first.get_attr("WGPEER_A_RX_BYTES") or 0),
        tx_bytes=int(first.get_attr("WGPEER_A_TX_BYTES") or 0),
    )


def _key_bytes(value: Any) -> bytes:
    """pyroute2 decodes keys to an nla holding raw `key` and base64 `value`."""
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return bytes(value)
    raw = value.get("key") if hasattr(value, "get") else None
    if isinstance(raw, bytes | bytearray) and len(raw) == 32:
        return bytes(raw)
    text = value.get("value") if hasattr(value, "get") else value
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("ascii")
    return b64_to_bytes(str(text), what="key")


def _key_text(value: Any) -> str:
    return bytes_to_b64(_key_bytes(value))
