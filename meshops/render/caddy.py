"""Caddy: a Caddyfile terminating mTLS for one identity, RBAC from the access table.

Two shapes:
- `render_caddy(spec)`: a complete file for `caddy run --config F --adapter caddyfile`,
  with the global options that keep Caddy quiet and local (no admin endpoint, no
  automatic HTTPS or ACME, no autosaved config, storage in a directory we choose).
- `render_caddy_site(spec)`: the site block(s) only, for `import` into an existing
  Caddyfile whose global options the operator owns. Clients that connect by IP
  address send no SNI; Caddy's strict SNI/Host check then answers 421 unless that
  Caddyfile sets `servers :<port> { strict_sni_host insecure_off }`.

How the RBAC is expressed, and why (checked against Caddy 2.11):
- the caller is `{http.request.tls.client.san.uris.0}`, compared with the `vars`
  matcher (a plain string compare). CEL cannot read that placeholder (it is a
  *url.URL and the expression fails), and a `vars` matcher ORs its keys, so each
  named matcher holds exactly one `vars` line;
- method and path are one CEL `expression`: the `path` matcher is case-insensitive
  and would widen `/v1/*` to `/V1/x`; CEL `==` / `startsWith` are exact;
- Caddy does not clean request paths, so `/v1/../admin` would pass a `/v1/*` rule:
  paths with dot segments, empty segments or encoded slashes are refused with 400
  before any rule is looked at;
- everything sits in one `route` so it runs in the order written (Caddy otherwise
  sorts directives, which would put `reverse_proxy` before the 400).

Caddy has no CRL support: a revoked node CA is refused by nginx and Envoy but not
by Caddy until its leaves expire; the rendered file says so.
"""

from __future__ import annotations

from meshops.policy.table import ANY, CallerRule
from meshops.render.spec import ProxySpec, host_port

CALLER = "{http.request.tls.client.san.uris.0}"
METHOD = "{http.request.method}"
PATH = "{http.request.uri.path}"
URI = "{http.request.uri}"

BAD_PATH = " || ".join(
    [
        f"{PATH}.contains('//')",
        f"{PATH}.contains('/./')",
        f"{PATH}.contains('/../')",
        f"{PATH}.endsWith('/.')",
        f"{PATH}.endsWith('/..')",
        *(f"{URI}.contains('{code}')" for code in ("%2f", "%2F", "%5c", "%5C")),
    ]
)


def _cel_string(value: str) -> str:
    # Path patterns never hold quotes, backslashes or braces (model/types.py), so a
    # single-quoted CEL literal inside a double-quoted Caddyfile token is exact.
    return f"'{value}'"


def _path_clause(pattern: str) -> str:
    if pattern.endswith("*"):
        return f"{PATH}.startsWith({_cel_string(pattern[:-1])})"
    return f"{PATH} == {_cel_string(pattern)}"


def rule_expression(rule: CallerRule) -> str | None:
    """The CEL for `method in M && path in P`, or None when both are `*`."""
    clauses: list[str] = []
    if ANY not in rule.methods:
        listed = ", ".join(_cel_string(m) for m in rule.methods)
        clauses.append(f"{METHOD} in [{listed}]")
    if ANY not in rule.paths:
        paths = [_path_clause(p) for p in rule.paths]
        clauses.append(paths[0] if len(paths) == 1 else "(" + " || ".join(paths) + ")")
    return " && ".join(clauses) if clauses else None


def _matchers(spec: ProxySpec) -> list[str]:
    lines = [f'\t@meshops_bad_path expression "{BAD_PATH}"']
    if spec.mode == "permissive":
        # No client certificate: during a migration the request passes as before.
        lines.append('\t@meshops_anonymous vars {http.request.tls.client.subject} ""')
    for index, rule in enumerate(spec.rules):
        lines.append(f"\t@meshops_allow_{index} {{")
        lines.append(f"\t\tvars {CALLER} {spec.caller_id(rule.caller)}")
        expression = rule_expression(rule)
        if expression is not None:
            lines.append(f'\t\texpression "{expression}"')
        lines.append("\t}")
    return lines


def _route(spec: ProxySpec, upstream: str) -> list[str]:
    lines = ["\troute {", '\t\trespond @meshops_bad_path "meshops: path is not canonical" 400']
    if spec.mode == "permissive":
        lines.append(f"\t\treverse_proxy @meshops_anonymous {upstream}")
    for index, rule in enumerate(spec.rules):
        methods = ",".join(rule.methods)
        paths = ",".join(rule.paths)
        lines.append(f"\t\t# {rule.caller}: {methods} {paths}")
        lines.append(f"\t\treverse_proxy @meshops_allow_{index} {upstream}")
    lines.append('\t\trespond "meshops: forbidden" 403')
    lines.append("\t}")
    return lines


def render_caddy_site(spec: ProxySpec) -> str:
    """The site block(s) for `spec`: importable into a Caddyfile with its own options."""
    upstream = host_port(spec.upstream_host, spec.upstream_port)
    mode = "require_and_verify" if spec.mode == "strict" else "verify_if_given"
    lines = [
        f"# meshops: mTLS sidecar for identity {spec.identity} ({spec.spiffe_id})",
        "# Generated from mesh.yaml policies; edits are overwritten by `meshops apply`.",
        "# Caddy cannot check CRLs: a revoked node CA's leaves pass until they expire.",
        f"https://:{spec.listen} {{",
        f"\tbind {spec.listen_address}",
        f"\ttls {spec.cert_file} {spec.key_file} {{",
        f"\t\tprotocols tls{spec.min_tls}",
        "\t\tclient_auth {",
        f"\t\t\tmode {mode}",
        f"\t\t\ttrust_pool file {spec.ca_file}",
        "\t\t}",
        "\t}",
        *_matchers(spec),
        *_route(spec, upstream),
        "}",
    ]
    if spec.plaintext is not None:
        lines += [
            "",
            "# permissive mode: plaintext still accepted while callers migrate to mTLS",
            f"http://:{spec.plaintext} {{",
            f"\tbind {spec.listen_address}",
            f"\treverse_proxy {upstream}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def render_caddy(spec: ProxySpec) -> str:
    """A complete Caddyfile for `caddy run --config FILE --adapter caddyfile`.

    Reload it by restarting Caddy: the admin endpoint is off.
    """
    storage = spec.state_dir or spec.cert_file.rsplit("/", 1)[0] + "/caddy"
    options = [
        "{",
        "\tadmin off",
        "\tauto_https off",
        "\tpersist_config off",
        f"\tstorage file_system {storage}",
        # Every server in this file is ours, one policy per port: Host need not
        # equal SNI (clients dialling an IP address send no SNI at all).
        "\tservers {",
        "\t\tstrict_sni_host insecure_off",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(options) + render_caddy_site(spec)
