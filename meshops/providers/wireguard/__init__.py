"""The WireGuard provider: the only code that touches WireGuard.

Links, addresses and routes go through our own rtnetlink client; keys and peers
through a Backend:
the UAPI socket of a userspace implementation (wireguard-go) or the kernel's generic
netlink family. Changes are per peer and never reset a session that did not change.
Netlink is spoken with the `socket` module (`netlink.py`): no pyroute2. cryptography is
imported only when a function needs it.
"""

from meshops.providers.wireguard.keys import (
    b64_to_bytes,
    b64_to_hex,
    bytes_to_b64,
    generate_private_key,
    hex_to_b64,
    public_key_of,
)
from meshops.providers.wireguard.link import (
    add_address,
    change_addresses,
    delete_interface,
    ensure_interface,
    ensure_route,
    ensure_routes,
    open_backend,
    read_link,
    remove_address,
    remove_route,
    set_mtu,
    set_up,
)
from meshops.providers.wireguard.state import (
    Backend,
    DeviceState,
    LinkState,
    PeerConfig,
    PeerState,
    normalise_allowed_ips,
    peer_matches,
)

__all__ = [
    "Backend",
    "DeviceState",
    "LinkState",
    "PeerConfig",
    "PeerState",
    "add_address",
    "b64_to_bytes",
    "b64_to_hex",
    "bytes_to_b64",
    "change_addresses",
    "delete_interface",
    "ensure_interface",
    "ensure_route",
    "ensure_routes",
    "generate_private_key",
    "hex_to_b64",
    "normalise_allowed_ips",
    "open_backend",
    "peer_matches",
    "public_key_of",
    "read_link",
    "remove_address",
    "remove_route",
    "set_mtu",
    "set_up",
]
