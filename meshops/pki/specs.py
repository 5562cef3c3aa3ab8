"""What a node CA or a leaf certificate should hold, as plain values.

These specs are what `compile` produces and what issuance and renewal read. They do not
import `cryptography`, so building a desired state (and `review`) stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING

from meshops.model.types import KeyType

if TYPE_CHECKING:
    from meshops.model.mesh import Mesh

IPAddress = IPv4Address | IPv6Address

# Certificates start this long before `now` so a peer whose clock is a little behind
# still accepts a freshly issued certificate.
CLOCK_SKEW_SECONDS = 300.0


def utc(now: datetime) -> datetime:
    """`now` as an aware UTC datetime; naive values are taken to be UTC already."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _unique_ips(items: Iterable[IPAddress | str]) -> tuple[IPAddress, ...]:
    return tuple(dict.fromkeys(ip_address(i) for i in items))


def node_ca_common_name(node: str) -> str:
    """The CN of `node`'s intermediate CA: unique per node within a mesh."""
    return f"{node} node CA"


def node_ca_subject(node: str) -> str:
    """The node CA's subject as RFC 2253 text: how OpenSSL (nginx's `$ssl_client_i_dn`)
    and Go (Caddy's `{http.request.tls.client.issuer}`) print the issuer of a leaf it
    signed. Proxies bind an identity to its nodes by this name (`meshops.render`)."""
    return f"CN={node_ca_common_name(node)}"


@dataclass(frozen=True)
class NodeCASpec:
    """A node's intermediate CA: which names its leaves may carry (name constraints).

    Only this node's own names (docs/security.md), so a stolen node CA cannot
    vouch for another node: DNS `<node>.<domain>`, `<identity>.<domain>` of each
    identity placed on it (`identities`), and the extra `dns` of the node and of those
    identities (`dns_names`); IP the node's overlay address(es) and the `ips` of the
    node and its identities (`ips`). There is no URI constraint: X.509 URI constraints
    cannot narrow a SPIFFE path, and strict verifiers reject them.
    """

    node: str
    trust_domain: str
    domain: str
    dns_names: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()
    key_type: KeyType = "ecdsa-p256"
    identities: tuple[str, ...] = ()

    @property
    def common_name(self) -> str:
        return node_ca_common_name(self.node)

    @property
    def permitted_dns(self) -> tuple[str, ...]:
        """DNS subtrees, in order: the node's name, its identities' names, then the
        extra names (a wildcard permits its parent); a name inside another is left out
        (a DNS constraint permits the whole subtree below it)."""
        names = [f"{self.node}.{self.domain}", *(f"{i}.{self.domain}" for i in self.identities)]
        names += [name[2:] if name.startswith("*.") else name for name in self.dns_names]
        unique = _unique(names)
        return tuple(n for n in unique if not any(o != n and _within(n, o) for o in unique))

    def constraint_names(self) -> list[str]:
        """The permitted subtrees as `dns:<name>` and `ip:<address>` (plans, reviews)."""
        return [*(f"dns:{name}" for name in self.permitted_dns), *(f"ip:{ip}" for ip in self.ips)]

    @classmethod
    def for_node(cls, mesh: Mesh, node: str, *, overlay: Sequence[IPAddress | str]) -> NodeCASpec:
        """The node CA spec for `node`; `overlay` are its allocated overlay address(es)."""
        spec = mesh.nodes[node]
        dns = list(spec.dns)
        ips: list[IPAddress | str] = [*overlay, *spec.ips]
        placed = mesh.identities_on(node)
        for name in placed:
            ident = mesh.identities[name]
            dns.extend(ident.dns)
            ips.extend(ident.ips)
        return cls(
            node=node,
            trust_domain=mesh.mesh.trust_domain,
            domain=mesh.mesh.domain,
            dns_names=_unique(dns),
            ips=_unique_ips(ips),
            key_type=mesh.ca.key_type,
            identities=tuple(sorted(placed)),
        )


@dataclass(frozen=True)
class LeafSpec:
    """A workload's X.509-SVID on one node (docs/layout.md).

    `dns` are the identity's extra names; `ips` are the node's overlay address(es) and
    the identity's `ips`.
    """

    identity: str
    node: str
    trust_domain: str
    domain: str
    ttl_seconds: float
    key_type: KeyType = "ecdsa-p256"
    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = field(default=())

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/{self.identity}"

    @property
    def dns_names(self) -> tuple[str, ...]:
        """Every DNS SAN, in order: `<identity>.<domain>`, `<node>.<domain>`, extras."""
        return _unique([f"{self.identity}.{self.domain}", f"{self.node}.{self.domain}", *self.dns])

    @classmethod
    def for_identity(
        cls, mesh: Mesh, identity: str, node: str, *, overlay: Sequence[IPAddress | str]
    ) -> LeafSpec:
        """The leaf spec of `identity` on `node`; `overlay` are the node's overlay addresses."""
        ident = mesh.identities[identity]
        return cls(
            identity=identity,
            node=node,
            trust_domain=mesh.mesh.trust_domain,
            domain=mesh.mesh.domain,
            ttl_seconds=float(mesh.leaf_ttl(identity)),
            key_type=mesh.leaf_key_type(identity),
            dns=_unique(ident.dns),
            ips=_unique_ips([*overlay, *ident.ips]),
        )


def _within(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)
