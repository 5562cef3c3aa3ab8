"""Envoy: a complete bootstrap (`envoy -c FILE`) terminating mTLS for one identity.

One listener with a `DownstreamTlsContext` (client certificate required, trust
bundle, CRL, minimum TLS version), an HTTP connection manager that normalizes
paths (dot segments, merged slashes, encoded slashes refused) before any filter sees
them and forwards the normalized path, so the path judged is the path forwarded; a
DENY RBAC filter refusing what normalization keeps (`;` path parameters, also encoded,
and backslashes); an ALLOW RBAC filter with one policy per access-table rule; then the
router to one upstream cluster. No admin listener is rendered.
`meshops.providers.proxies.validate_envoy` checks the text against Envoy's own API types.

A caller is the `mtls_authenticated` principal (a validated client certificate) with
two SANs at once: the URI SAN `spiffe://<trust_domain>/<caller>` and the DNS SAN
`<node>.<domain>` of a node where the caller runs. Typed SAN matchers look at one SAN
type only (`authenticated.principal_name` would take any URI SAN, any DNS SAN or the
subject for either). Only that node's CA can issue a leaf carrying `<node>.<domain>`:
each node CA's DNS name constraints are narrowed to its own node's names, and
`meshops validate` refuses extra `dns:` names that reach into another node's name.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from meshops.policy.table import ANY, CallerRule
from meshops.render.spec import ProxySpec

TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
MTLS_PRINCIPAL = "envoy.rbac.principals.mtls_authenticated"
MTLS_CONFIG = "type.googleapis.com/envoy.extensions.rbac.principals.mtls_authenticated.v3.Config"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
CLUSTER = "upstream"

# Envoy's JSON/YAML is dynamically shaped; these dicts never leave this module.
Json = dict[str, Any]


def _or(matchers: list[Json], key: str) -> Json:
    return matchers[0] if len(matchers) == 1 else {key: {"rules": matchers}}


def _path_matcher(pattern: str) -> Json:
    if pattern.endswith("*"):
        return {"url_path": {"path": {"prefix": pattern[:-1]}}}
    return {"url_path": {"path": {"exact": pattern}}}


def rule_permission(rule: CallerRule) -> Json:
    """`method in M AND path in P` as an RBAC permission (`any` when both are `*`)."""
    parts: list[Json] = []
    if ANY not in rule.methods:
        methods = [
            {"header": {"name": ":method", "string_match": {"exact": m}}} for m in rule.methods
        ]
        parts.append(_or(methods, "or_rules"))
    if ANY not in rule.paths:
        parts.append(_or([_path_matcher(p) for p in rule.paths], "or_rules"))
    if not parts:
        return {"any": True}
    return parts[0] if len(parts) == 1 else {"and_rules": {"rules": parts}}


def _mtls(config: Json) -> Json:
    return {"custom": {"name": MTLS_PRINCIPAL, "typed_config": {"@type": MTLS_CONFIG, **config}}}


def _san(san_type: str, exact: str) -> Json:
    return _mtls({"san_matcher": {"san_type": san_type, "matcher": {"exact": exact}}})


def caller_principal(spec: ProxySpec, caller: str) -> Json:
    """`caller`'s URI SAN AND the DNS SAN of one of its nodes (see the module doc)."""
    nodes = [_san("DNS", name) for name in spec.caller_node_names(caller)]
    ids = [_san("URI", spec.caller_id(caller))]
    if nodes:
        ids.append(nodes[0] if len(nodes) == 1 else {"or_ids": {"ids": nodes}})
    else:
        ids.append({"not_id": {"any": True}})  # a caller on no node: nobody
    return {"and_ids": {"ids": ids}}


def rbac_policies(spec: ProxySpec) -> Json:
    policies: Json = {}
    if spec.mode == "permissive":
        # No client certificate: during a migration the request passes as before.
        policies["meshops-anonymous"] = {
            "permissions": [{"any": True}],
            "principals": [{"not_id": _mtls({"any_validated_client_certificate": True})}],
        }
    for index, rule in enumerate(spec.rules):
        policies[f"{rule.caller}-{index}"] = {
            "permissions": [rule_permission(rule)],
            "principals": [caller_principal(spec, rule.caller)],
        }
    return policies


# path normalization keeps these; an upstream may read them as path parameters
# (`/v1/..;/admin` is `/admin` to Tomcat) or as separators
NOT_CANONICAL = [
    {"contains": ";"},
    {"contains": "%3b", "ignore_case": True},
    {"contains": "\\"},
    {"contains": "%5c", "ignore_case": True},
]


def refusal_filter() -> Json:
    """A DENY RBAC filter for paths the ALLOW rules must never judge."""
    matchers = [{"url_path": {"path": matcher}} for matcher in NOT_CANONICAL]
    return {
        "name": "meshops.refuse_non_canonical_paths",
        "typed_config": {
            "@type": RBAC,
            "rules": {
                "action": "DENY",
                "policies": {
                    "meshops-non-canonical-path": {
                        "permissions": [{"or_rules": {"rules": matchers}}],
                        "principals": [{"any": True}],
                    }
                },
            },
        },
    }


def _address(host: str, port: int) -> Json:
    return {"socket_address": {"address": host, "port_value": port}}


def _http_manager(spec: ProxySpec, *, name: str, rbac: bool) -> Json:
    filters: list[Json] = []
    if rbac:
        filters.append(refusal_filter())
        filters.append(
            {
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": RBAC,
                    "rules": {"action": "ALLOW", "policies": rbac_policies(spec)},
                },
            }
        )
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}})
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": name,
            "normalize_path": True,
            "merge_slashes": True,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            # The upstream learns the caller's URI SAN; whatever a client sent is dropped.
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"uri": True},
            "route_config": {
                "name": name,
                "virtual_hosts": [
                    {
                        "name": name,
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": CLUSTER}}],
                    }
                ],
            },
            "http_filters": filters,
        },
    }


def _tls_socket(spec: ProxySpec) -> Json:
    validation: Json = {"trusted_ca": {"filename": spec.ca_file}}
    if spec.crl_file:
        # Envoy checks CRLs for every CA in the chain: crl.pem holds the root's and
        # each node CA's.
        validation["crl"] = {"filename": spec.crl_file}
    version = "TLSv1_3" if spec.min_tls == "1.3" else "TLSv1_2"
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": TLS_CONTEXT,
            "require_client_certificate": spec.mode == "strict",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": version},
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": spec.cert_file},
                        "private_key": {"filename": spec.key_file},
                    }
                ],
                "validation_context": validation,
            },
        },
    }


def _cluster(spec: ProxySpec) -> Json:
    host, port = spec.upstream_host, spec.upstream_port
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    return {
        "name": CLUSTER,
        "type": kind,
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
    }


def bootstrap(spec: ProxySpec) -> Json:
    """The bootstrap as plain data (what `render_envoy` dumps)."""
    name = f"meshops_{spec.identity.replace('-', '_')}"
    listeners: list[Json] = [
        {
            "name": name,
            "address": _address(spec.listen_address, spec.listen),
            "filter_chains": [
                {
                    "transport_socket": _tls_socket(spec),
                    "filters": [_http_manager(spec, name=name, rbac=True)],
                }
            ],
        }
    ]
    if spec.plaintext is not None:
        listeners.append(
            {
                "name": f"{name}_plaintext",
                "address": _address(spec.listen_address, spec.plaintext),
                "filter_chains": [
                    {"filters": [_http_manager(spec, name=f"{name}_plaintext", rbac=False)]}
                ],
            }
        )
    return {
        "node": {"id": f"meshops-{spec.identity}", "cluster": "meshops"},
        "static_resources": {"listeners": listeners, "clusters": [_cluster(spec)]},
    }


def render_envoy(spec: ProxySpec) -> str:
    """A complete Envoy bootstrap in YAML for `envoy -c FILE`."""
    import yaml  # deferred: `meshops --version` must stay fast

    header = (
        f"# meshops: mTLS sidecar for identity {spec.identity} ({spec.spiffe_id})\n"
        "# Generated from mesh.yaml policies; edits are overwritten by `meshops apply`.\n"
    )
    return header + yaml.safe_dump(bootstrap(spec), sort_keys=False, default_flow_style=False)
