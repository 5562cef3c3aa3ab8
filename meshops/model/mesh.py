"""mesh.yaml version 1 as pydantic models (CONTRACT.md section 2).

Shapes and field-level checks live here; checks that relate fields to each other
(references, overlaps, lifetimes) live in `checks.py` so they can report every problem
at once with its location.
"""

from __future__ import annotations

import typing
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from meshops.model.durations import Duration, RenewBefore
from meshops.model.port import Port
from meshops.model.types import (
    DnsName,
    Endpoint,
    HttpMethod,
    KeyType,
    Method,
    Name,
    PathPattern,
    Recipient,
    TrustDomain,
)

SUPPORTED_VERSION = 1


# Plain functions, not `list`/`dict`: pydantic inspects each factory's signature, and a
# builtin's costs a tokenizer run on its text signature, at every start-up.
def _list() -> list[Any]:
    return []


def _dict() -> dict[Any, Any]:
    return {}


def _as_list(value: Any) -> Any:
    """Accept a single value where a list is expected (`to: api` == `to: [api]`)."""
    return [value] if isinstance(value, str) else value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class MeshInfo(Strict):
    name: Name
    trust_domain: TrustDomain = Field(description="SPIFFE IDs are spiffe://<trust_domain>/<id>")
    domain: DnsName = Field(description="DNS suffix: <node>.<domain> in certs and /etc/hosts")


class Secrets(Strict):
    format: Literal["age", "sops"] = "age"


# host: born on the node (`meshops host init`), enrolled by a pull request; sealed: made
# by repo scope and sealed to the node's recipient in state/
KeysHeld = Literal["host", "sealed"]


class CA(Strict):
    key_type: KeyType = "ecdsa-p256"
    root_ttl: Duration = Duration.parse("87600h")
    node_ca_ttl: Duration = Duration.parse("720h")
    recipients: list[Recipient] = Field(
        default_factory=_list, description="who may unseal the root key"
    )
    node_keys: KeysHeld = Field(
        default="sealed",
        description="where node private keys are born and live, for nodes without their "
        "own `keys:` (docs/keys.md)",
    )


class Certs(Strict):
    key_type: KeyType = "ecdsa-p256"
    ttl: Duration = Duration.parse("48h")
    renew_before: RenewBefore = RenewBefore.parse("33%")


class WireGuard(Strict):
    enabled: bool = Field(
        default=True,
        description="false: no tunnel anywhere; certificates, proxies and /etc/hosts only "
        "(a node's own `wireguard:` overrides it)",
    )
    interface: str = Field(default="wg-mesh", pattern=r"^[A-Za-z0-9_=+.-]{1,15}$")
    port: int = Field(default=51820, ge=1, le=65535)
    network: IPv4Network = IPv4Network("10.42.0.0/16")
    network6: IPv6Network | None = None
    keepalive: Duration | None = Duration.parse("25s")
    mtu: int = Field(default=1420, ge=1280, le=9000)
    peers: Literal["all", "policy"] = Field(
        default="all",
        description="all: every node peers with every other; policy: only with the nodes "
        "its access table flows need (both directions) and nodes marked ops",
    )

    @field_validator("network6")
    @classmethod
    def _ula_64(cls, value: IPv6Network | None) -> IPv6Network | None:
        if value is not None:
            if value.prefixlen != 64:
                raise ValueError(f"network6 must be a /64, got /{value.prefixlen}")
            if not value.subnet_of(IPv6Network("fc00::/7")):
                raise ValueError(f"network6 must be a unique local (fd00::/8) prefix: {value}")
        return value

    @field_validator("network")
    @classmethod
    def _room(cls, value: IPv4Network) -> IPv4Network:
        if value.prefixlen > 30:
            raise ValueError(f"network {value} is too small for a mesh; use /30 or larger")
        return value


class Firewall(Strict):
    """nftables on the WireGuard interface, compiled from the access table (default deny)."""

    enabled: bool = Field(default=True, description="false: meshops manages no packet filter")
    icmp: bool = Field(default=True, description="accept ICMP echo requests on the overlay")
    log: bool = Field(default=False, description="log dropped packets (rate-limited)")


class MTLS(Strict):
    mode: Literal["strict", "permissive"] = "strict"
    min_tls: Literal["1.2", "1.3"] = "1.3"

    @field_validator("min_tls", mode="before")
    @classmethod
    def _float_version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value


class Node(Strict):
    endpoint: Endpoint | None = Field(
        default=None, description="host:port where peers reach this node (WireGuard nodes)"
    )
    recipient: Recipient | None = Field(
        default=None,
        description="the host key its sealed keys are sealed to (SSH or age X25519); "
        "needed with `keys: sealed`",
    )
    keys: KeysHeld | None = Field(
        default=None,
        description="host: the node's keys are born on it and enrolled by a request in "
        "enroll/<node>.yaml; sealed: repo scope makes them and seals them to `recipient` "
        "(default: ca.node_keys)",
    )
    wireguard: bool | None = Field(
        default=None,
        description="false: certificates, proxies and hosts only, no tunnel "
        "(default: wireguard.enabled)",
    )
    address: IPv4Address | None = None
    address6: IPv6Address | None = None
    labels: dict[str, str] = Field(default_factory=_dict)
    dns: list[DnsName] = Field(default_factory=_list)
    ips: list[IPv4Address | IPv6Address] = Field(default_factory=_list)
    ops: bool = Field(default=False, description="peered with every node (wireguard.peers)")


class Proxy(Strict):
    kind: Literal["caddy", "envoy", "nginx"]
    listen: int = Field(ge=1, le=65535)
    upstream: Endpoint
    config: str | None = Field(default=None, description="absolute path of the rendered config")
    reload: list[str] = Field(default_factory=_list, description="argv run after a change")
    run: Literal["standalone", "import"] | None = Field(
        default=None,
        description="standalone: the file is the proxy's whole config, one process per "
        "sidecar; import: a fragment for your own config (Caddyfile import, nginx include "
        "inside http {}). Default: standalone for caddy and envoy, import for nginx",
    )

    @field_validator("config")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"config must be an absolute path, got {value!r}")
        return value


# Java's own default keystore password: what a Java user tries first. A password that
# is written in mesh.yaml protects nothing (the bundle is 0600 like key.pem); Java
# needs one only because it ignores an unencrypted key (docs/outputs.md).
DEFAULT_P12_PASSWORD = "changeit"


class Outputs(Strict):
    dir: str | None = None
    p12: bool = False
    p12_password: str | None = Field(
        default=None,
        min_length=1,
        description=f"password of bundle.p12 and truststore.p12 (default {DEFAULT_P12_PASSWORD})",
    )
    p12_password_file: str | None = Field(
        default=None, description="absolute host path of a file holding the PKCS#12 password"
    )
    combined_pem: bool = False

    @field_validator("dir", "p12_password_file")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{info.field_name} must be an absolute path, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> Outputs:
        if self.p12_password is not None and self.p12_password_file is not None:
            raise ValueError("give p12_password or p12_password_file, not both")
        return self


# a POSIX group name, as useradd/groupadd accept it
GROUP_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


class TLS(Strict):
    group: str | None = Field(
        default=None,
        pattern=GROUP_PATTERN,
        description="group that may read the TLS files (key.pem 0640 root:<group>); keys "
        "are never world-readable",
    )


class Identity(Strict):
    nodes: list[Name] = Field(min_length=1)
    ttl: Duration | None = None
    key_type: KeyType | None = None
    renew_before: RenewBefore | None = None
    dns: list[DnsName] = Field(default_factory=_list)
    ips: list[IPv4Address | IPv6Address] = Field(default_factory=_list)
    proxy: Proxy | None = None
    ports: list[Port] = Field(
        default_factory=_list, description="plain L4 services on the overlay (5432/tcp)"
    )
    outputs: Outputs | None = None
    on_renew: list[list[str]] = Field(default_factory=_list)
    tls: TLS | None = Field(default=None, description="overrides the mesh-wide tls:")

    @field_validator("on_renew")
    @classmethod
    def _argv(cls, value: list[list[str]]) -> list[list[str]]:
        for argv in value:
            if not argv:
                raise ValueError("each on_renew command is a non-empty argv list")
        return value


def _any_method() -> list[HttpMethod]:
    return ["*"]


class Rule(Strict):
    # an empty list would silently allow nothing: say "*" for any, or leave it out
    methods: list[Method] = Field(default_factory=_any_method, min_length=1)
    paths: list[PathPattern] = Field(default_factory=lambda: ["*"], min_length=1)
    ports: list[Port] = Field(
        default_factory=_list, description="an L4 rule: these ports, instead of HTTP requests"
    )

    @model_validator(mode="after")
    def _one_layer(self) -> Rule:
        if self.ports and {"methods", "paths"} & self.model_fields_set:
            raise ValueError(
                "a rule allows HTTP requests (methods, paths) or ports, not both: "
                "split it into two rules"
            )
        return self

    @property
    def is_l4(self) -> bool:
        return bool(self.ports)


# `to: api` is short for `to: [api]`; the JSON Schema says so too.
Principals = Annotated[
    list[str],
    BeforeValidator(_as_list),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
            "description": "identity, group:<name> or *; one or a list",
        }
    ),
]


class Policy(Strict):
    name: str = Field(min_length=1)
    from_: Principals = Field(alias="from", min_length=1)
    to: Principals = Field(min_length=1)
    allow: list[Rule] = Field(default_factory=lambda: [Rule()])


_REQUEST_METHODS = frozenset(typing.get_args(HttpMethod)) - {"*"}


class PolicyTest(Strict):
    name: str | None = Field(default=None, description="optional, shown when the test fails")
    from_: str = Field(alias="from")
    to: str
    request: str = Field(description="'METHOD /path', or 'tcp/PORT' / 'udp/PORT'")
    expect: Literal["allow", "deny"]

    @field_validator("request")
    @classmethod
    def _request(cls, value: str) -> str:
        port = Port.parse_request(value)
        if port is not None:
            return port.request
        parts = value.split()
        if len(parts) != 2 or not parts[1].startswith("/"):
            raise ValueError(f"request must be 'METHOD /path' or 'tcp/PORT', got {value!r}")
        method = parts[0].upper()
        if method not in _REQUEST_METHODS:
            raise ValueError(
                f"request {value!r}: {parts[0]!r} is not an HTTP method "
                f"({', '.join(sorted(_REQUEST_METHODS))})"
            )
        return f"{method} {parts[1]}"

    @property
    def port(self) -> Port | None:
        """The L4 request (`tcp/5432`), None for an HTTP request."""
        return Port.parse_request(self.request)

    @property
    def method(self) -> str:
        return self.request.split()[0]

    @property
    def path(self) -> str:
        return self.request.split()[1]


class Mesh(Strict):
    """The whole desired state: what a mesh.yaml v1 holds."""

    version: int
    mesh: MeshInfo
    secrets: Secrets = Field(default_factory=Secrets)
    ca: CA = Field(default_factory=CA)
    certs: Certs = Field(default_factory=Certs)
    wireguard: WireGuard = Field(default_factory=WireGuard)
    mtls: MTLS = Field(default_factory=MTLS)
    tls: TLS = Field(default_factory=TLS)
    firewall: Firewall = Field(default_factory=Firewall)
    nodes: dict[Name, Node] = Field(default_factory=_dict)
    identities: dict[Name, Identity] = Field(default_factory=_dict)
    groups: dict[Name, list[Name]] = Field(default_factory=_dict)
    policies: list[Policy] = Field(default_factory=_list)
    tests: list[PolicyTest] = Field(default_factory=_list)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if value != SUPPORTED_VERSION or isinstance(value, bool):
            raise ValueError(
                f"this meshops understands mesh.yaml version {SUPPORTED_VERSION}, got {value!r}"
            )
        return value

    def spiffe_id(self, identity: str) -> str:
        return f"spiffe://{self.mesh.trust_domain}/{identity}"

    def leaf_ttl(self, identity: str) -> Duration:
        return self.identities[identity].ttl or self.certs.ttl

    def leaf_renew_before(self, identity: str) -> RenewBefore:
        return self.identities[identity].renew_before or self.certs.renew_before

    def leaf_key_type(self, identity: str) -> KeyType:
        return self.identities[identity].key_type or self.certs.key_type

    def tls_group(self, identity: str) -> str | None:
        """The group that may read `identity`'s TLS files (its own `tls:` first)."""
        own = self.identities[identity].tls
        return own.group if own is not None and own.group else self.tls.group

    def proxy_run(self, identity: str) -> Literal["standalone", "import"]:
        """How `identity`'s proxy config is used; see `Proxy.run` for the defaults."""
        proxy = self.identities[identity].proxy
        assert proxy is not None
        if proxy.run is not None:
            return proxy.run
        return "import" if proxy.kind == "nginx" else "standalone"

    def wireguard_on(self, node: str) -> bool:
        """Whether `node` runs WireGuard: its own `wireguard:`, else `wireguard.enabled`."""
        own = self.nodes[node].wireguard
        return self.wireguard.enabled if own is None else own

    def keys_of(self, node: str) -> KeysHeld:
        """Where `node`'s private keys live: its own `keys:`, else `ca.node_keys`."""
        own = self.nodes[node].keys
        return self.ca.node_keys if own is None else own

    def host_held(self, node: str) -> bool:
        return self.keys_of(node) == "host"

    def underlay_ips(self, node: str) -> list[IPv4Address | IPv6Address]:
        """Where `node` is reached without the overlay (certificates-only nodes publish
        these): its `ips`, else its endpoint's host when that is an IP address."""
        spec = self.nodes[node]
        if spec.ips:
            return list(spec.ips)
        if spec.endpoint is not None and spec.endpoint.is_ip:
            return [ip_address(spec.endpoint.host)]
        return []

    def identities_on(self, node: str) -> list[str]:
        """The identities that run on `node`, sorted (one index for every node: a plan
        asks for each node, and scanning every identity each time is quadratic)."""
        return list(self.identities_by_node.get(node, ()))

    @cached_property
    def identities_by_node(self) -> dict[str, tuple[str, ...]]:
        index: dict[str, list[str]] = {}
        for name in sorted(self.identities):
            for node in dict.fromkeys(self.identities[name].nodes):
                index.setdefault(node, []).append(name)
        return {node: tuple(names) for node, names in index.items()}
