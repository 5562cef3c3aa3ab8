"""mesh.yaml version 1 as pydantic models (docs/mesh-yaml.md).

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
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from meshops.model.durations import Duration, RenewBefore
from meshops.model.port import Port
from meshops.model.types import (
    REQUEST,
    AbsoluteDir,
    AbsoluteFile,
    AnyIP,
    Argument,
    Command,
    DnsName,
    DomainName,
    Endpoint,
    HttpMethod,
    IPv4,
    IPv4Net,
    IPv6,
    KeyType,
    LabelKey,
    LabelValue,
    Method,
    Name,
    PathPattern,
    PolicyName,
    PortNumber,
    Principal,
    Recipient,
    TestName,
    TextRule,
    TrustDomain,
    Ula64,
    principal_schema,
    rule_check,
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
    name: Name = Field(description="the mesh's name")
    trust_domain: TrustDomain = Field(description="SPIFFE IDs are spiffe://<trust_domain>/<id>")
    domain: DomainName = Field(description="DNS suffix: <node>.<domain> in certs and /etc/hosts")


class Secrets(Strict):
    format: Literal["age", "sops"] = Field(
        default="age", description="how sealed files in state/ are written: age or sops"
    )


_KEY_TYPE = "key algorithm: ecdsa-p256, ecdsa-p384, ed25519 or rsa-3072"


# host: born on the node (`meshops host init`), enrolled by a pull request; sealed: made
# by repo scope and sealed to the node's recipient in state/
KeysHeld = Literal["host", "sealed"]


class CA(Strict):
    key_type: KeyType = Field(default="ecdsa-p256", description=f"the root's {_KEY_TYPE}")
    root_ttl: Duration = Field(
        default=Duration.parse("87600h"), description="lifetime of the root CA"
    )
    node_ca_ttl: Duration = Field(
        default=Duration.parse("720h"), description="lifetime of each node's intermediate CA"
    )
    recipients: list[Recipient] = Field(
        default_factory=_list, description="who may unseal the root key"
    )
    node_keys: KeysHeld = Field(
        default="sealed",
        description="where node private keys are born and live, for nodes without their "
        "own `keys:` (docs/keys.md)",
    )


class Certs(Strict):
    key_type: KeyType = Field(default="ecdsa-p256", description=f"leaf certificates' {_KEY_TYPE}")
    ttl: Duration = Field(default=Duration.parse("48h"), description="leaf certificate lifetime")
    renew_before: RenewBefore = Field(
        default=RenewBefore.parse("33%"),
        description="renew this long (or share) before expiry",
        json_schema_extra={"default": "33%"},  # as written in mesh.yaml, not the dataclass
    )


# Linux interface names: 1-15 characters, not `.` or `..`, no `/`, `:` or spaces
INTERFACE = TextRule(r"(?!\.\.?$)[A-Za-z0-9_=+.-]{1,15}")


class WireGuard(Strict):
    enabled: StrictBool = Field(
        default=True,
        description="false: no tunnel anywhere; certificates, proxies and /etc/hosts only "
        "(a node's own `wireguard:` overrides it)",
    )
    interface: Annotated[
        str,
        AfterValidator(
            rule_check(INTERFACE, "a valid interface name (1-15 of A-Z a-z 0-9 _ = + . -)")
        ),
        WithJsonSchema(INTERFACE.schema("the WireGuard interface name (1-15 characters)")),
    ] = "wg-mesh"
    port: PortNumber = Field(default=51820, description="WireGuard listen port on every node")
    network: IPv4Net = Field(
        default=IPv4Network("10.42.0.0/16"), description="the IPv4 overlay network, /30 or larger"
    )
    network6: Ula64 | None = Field(
        default=None, description="optional IPv6 overlay: a unique local (fd00::/8) /64"
    )
    keepalive: Duration | None = Field(
        default=Duration.parse("25s"), description="persistent keepalive; null for none"
    )
    mtu: StrictInt = Field(default=1420, ge=1280, le=9000, description="the interface MTU")
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

    enabled: StrictBool = Field(default=True, description="false: meshops manages no packet filter")
    icmp: StrictBool = Field(default=True, description="accept ICMP echo requests on the overlay")
    log: StrictBool = Field(default=False, description="log dropped packets (rate-limited)")


class MTLS(Strict):
    mode: Literal["strict", "permissive"] = Field(
        default="strict",
        description="strict: mTLS only; permissive: plaintext accepted too (migration)",
    )
    min_tls: Annotated[
        Literal["1.2", "1.3"],
        WithJsonSchema(
            {"enum": ["1.2", "1.3", 1.2, 1.3], "description": "lowest TLS version accepted"}
        ),
    ] = "1.3"

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
        description="the key this node's sealed keys are sealed to (SSH or age X25519); "
        "needed with `keys: sealed`",
    )
    keys: KeysHeld | None = Field(
        default=None,
        description="host: the node's keys are born on it and enrolled by a request in "
        "enroll/<node>.yaml; sealed: repo scope makes them and seals them to `recipient` "
        "(default: ca.node_keys)",
    )
    wireguard: StrictBool | None = Field(
        default=None,
        description="false: certificates, proxies and hosts only, no tunnel "
        "(default: wireguard.enabled)",
    )
    address: IPv4 | None = Field(default=None, description="overlay address; allocated if unset")
    address6: IPv6 | None = Field(default=None, description="IPv6 overlay address, in network6")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=_dict, description="free labels (Kubernetes syntax)"
    )
    dns: list[DnsName] = Field(default_factory=_list, description="extra DNS SANs")
    ips: list[AnyIP] = Field(default_factory=_list, description="extra IP SANs")
    ops: StrictBool = Field(default=False, description="peered with every node (wireguard.peers)")


class Proxy(Strict):
    kind: Literal["caddy", "envoy", "nginx"] = Field(description="which proxy the config is for")
    listen: PortNumber = Field(description="the mTLS port the proxy listens on")
    upstream: Endpoint = Field(description="where the proxy forwards allowed requests")
    config: AbsoluteFile | None = Field(
        default=None,
        description="where the rendered config is written "
        "(default /etc/meshops/proxy/<identity>.<ext>)",
    )
    reload: list[Argument] = Field(
        default_factory=_list, description="argv run after the config or certificates changed"
    )
    run: Literal["standalone", "import"] | None = Field(
        default=None,
        description="standalone: the file is the proxy's whole config, one process per "
        "sidecar; import: a fragment for your own config (Caddyfile import, nginx include "
        "inside http {}). Default: standalone for caddy and envoy, import for nginx",
    )


# Java's own default keystore password: what a Java user tries first. A password that
# is written in mesh.yaml protects nothing (the bundle is 0600 like key.pem); Java
# needs one only because it ignores an unencrypted key (docs/outputs.md).
DEFAULT_P12_PASSWORD = "changeit"


class Outputs(Strict):
    dir: AbsoluteDir | None = Field(
        default=None, description="also write cert.pem, key.pem and ca.pem into this directory"
    )
    p12: StrictBool = Field(default=False, description="write bundle.p12")
    p12_password: str | None = Field(
        default=None,
        min_length=1,
        description=f"password of bundle.p12 and truststore.p12 (default {DEFAULT_P12_PASSWORD})",
    )
    p12_password_file: AbsoluteFile | None = Field(
        default=None, description="absolute host path of a file holding the PKCS#12 password"
    )
    combined_pem: StrictBool = Field(
        default=False, description="write combined.pem (chain and key in one file)"
    )

    @model_validator(mode="after")
    def _one_password(self) -> Outputs:
        if self.p12_password is not None and self.p12_password_file is not None:
            raise ValueError("give p12_password or p12_password_file, not both")
        return self


# a POSIX group name, as useradd/groupadd accept it
GROUP = TextRule(r"[a-z_][a-z0-9_-]{0,31}")


class TLS(Strict):
    group: (
        Annotated[
            str,
            AfterValidator(rule_check(GROUP, "a POSIX group name (a-z, 0-9, _ and -)")),
            WithJsonSchema(GROUP.schema("a POSIX group name")),
        ]
        | None
    ) = Field(
        default=None,
        description="group that may read the TLS files (key.pem 0640 root:<group>); keys "
        "are never world-readable",
    )


class Identity(Strict):
    nodes: list[Name] = Field(min_length=1, description="the nodes this workload runs on")
    ttl: Duration | None = Field(default=None, description="leaf lifetime (default certs.ttl)")
    key_type: KeyType | None = Field(default=None, description=f"leaf {_KEY_TYPE}")
    renew_before: RenewBefore | None = Field(default=None, description="default certs.renew_before")
    dns: list[DnsName] = Field(default_factory=_list, description="extra DNS SANs")
    ips: list[AnyIP] = Field(default_factory=_list, description="extra IP SANs")
    proxy: Proxy | None = Field(default=None, description="an mTLS sidecar config to render")
    ports: list[Port] = Field(
        default_factory=_list, description="plain L4 services on the overlay (5432/tcp)"
    )
    outputs: Outputs | None = Field(default=None, description="extra files for other consumers")
    on_renew: list[Command] = Field(
        default_factory=_list, description="commands (argv lists) run after the leaf renews"
    )
    tls: TLS | None = Field(default=None, description="overrides the mesh-wide tls:")


def _any_method() -> list[HttpMethod]:
    return ["*"]


class Rule(Strict):
    # an empty list would silently allow nothing: say "*" for any, or leave it out
    methods: list[Method] = Field(
        default_factory=_any_method, min_length=1, description="HTTP methods; default any"
    )
    paths: list[PathPattern] = Field(
        default_factory=lambda: ["*"], min_length=1, description="path patterns; default any"
    )
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


def _principals_schema() -> dict[str, Any]:
    one = principal_schema()
    return {
        "anyOf": [one, {"type": "array", "items": one, "minItems": 1}],
        "description": "identity, group:<name> or *; one or a list",
    }


# `to: api` is short for `to: [api]`; the JSON Schema says so too.
Principals = Annotated[
    list[Principal], BeforeValidator(_as_list), WithJsonSchema(_principals_schema())
]


class Policy(Strict):
    name: PolicyName = Field(description="unique; shown in review, graph and errors")
    from_: Principals = Field(alias="from", min_length=1)
    to: Principals = Field(min_length=1)
    allow: list[Rule] = Field(
        default_factory=lambda: [Rule()], description="what is allowed; default everything"
    )


_REQUEST_METHODS = frozenset(typing.get_args(HttpMethod)) - {"*"}


class PolicyTest(Strict):
    name: TestName | None = Field(default=None, description="optional, shown when the test fails")
    from_: Name = Field(alias="from", description="the calling identity")
    to: Name = Field(description="the called identity")
    request: Annotated[
        str, WithJsonSchema(REQUEST.schema("'METHOD /path', or 'tcp/PORT' / 'udp/PORT'"))
    ]
    expect: Literal["allow", "deny"] = Field(description="allow or deny")

    @field_validator("request")
    @classmethod
    def _request(cls, value: str) -> str:
        port = Port.parse_request(value)
        if port is not None:
            return port.request
        parts = value.split()
        if len(parts) != 2 or not parts[1].startswith("/"):
            raise ValueError(f"request must be 'METHOD /path' or 'tcp/PORT', got {value!r}")
        method = parts[0].upper() if parts[0].isascii() else parts[0]
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

    version: int = Field(description="the mesh.yaml format version: 1")
    mesh: MeshInfo = Field(description="the mesh's name and naming domains")
    secrets: Secrets = Field(default_factory=Secrets, description="how secrets are sealed")
    ca: CA = Field(default_factory=CA, description="the root CA and node CAs")
    certs: Certs = Field(default_factory=Certs, description="defaults for leaf certificates")
    wireguard: WireGuard = Field(default_factory=WireGuard, description="the overlay network")
    mtls: MTLS = Field(default_factory=MTLS, description="what the proxies accept")
    tls: TLS = Field(default_factory=TLS, description="who may read the TLS files on hosts")
    firewall: Firewall = Field(
        default_factory=Firewall, description="nftables on the overlay, from the access table"
    )
    nodes: dict[Name, Node] = Field(default_factory=_dict, description="hosts, by name")
    identities: dict[Name, Identity] = Field(
        default_factory=_dict, description="workloads, by name; each gets an X.509-SVID"
    )
    groups: dict[Name, list[Name]] = Field(
        default_factory=_dict, description="named sets of identities (group:<name>)"
    )
    policies: list[Policy] = Field(
        default_factory=_list, description="who may call whom; default deny"
    )
    tests: list[PolicyTest] = Field(
        default_factory=_list, description="expected outcomes, checked by validate"
    )

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
