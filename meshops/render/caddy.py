"""Caddy: a Caddyfile terminating mTLS for one identity, RBAC from the access table.

Two shapes (`spec.run`):
- standalone: a complete file for `caddy run --config F --adapter caddyfile`, one Caddy
  per sidecar, with global options that keep it local (admin API on a unix socket only,
  so `caddy reload --config F` works; no automatic HTTPS or ACME; no autosaved config;
  storage in a directory we choose);
- import: the site block(s) only, for `import` into an operator's Caddyfile whose global
  options they own (and whose admin API `caddy reload` / `systemctl reload caddy` uses).
  Clients that connect by IP address send no SNI; Caddy's strict SNI/Host check then
  answers 421 unless that Caddyfile sets `servers :<port> { strict_sni_host insecure_off }`.

Who may call (checked against Debian's Caddy 2.6.2 and Caddy 2.11):
- the client certificate must chain to `node-cas.pem`, the mesh's *current* node CAs
  (Go accepts an intermediate as a trust anchor). Caddy checks no CRL, so a removed
  node's CA is refused because it is no longer in that file;
- the caller is `{http.request.tls.client.san.uris.0}`, compared with the `vars`
  matcher (a plain string compare). CEL cannot read that placeholder (a *url.URL);
- the issuer of the caller's leaf (`{http.request.tls.client.issuer}`, Go's RFC 2253
  text) must be the CA of a node where that caller runs: a `vars_regexp` matcher, a
  different matcher type from `vars`, so Caddy ANDs the two (keys of one `vars`
  matcher are ORed, so each named matcher holds exactly one `vars` line);
- method and path are one CEL `expression`: the `path` matcher is case-insensitive
  and would widen `/v1/*` to `/V1/x`; CEL `==` / `startsWith` are exact. A rule with
  many paths is split over several matchers, each expression well under CEL's limit of
  100,000 code points;
- Caddy does not clean request paths and forwards them as they came, so a request whose
  path is not canonical (dot segments, empty segments, `;` parameters, backslashes,
  encoded `/` or `\\`, a `#`) is refused with 400 before any rule is looked at;
- everything sits in one `route` so it runs in the order written (Caddy otherwise
  sorts directives, which would put `reverse_proxy` before the 400).
"""

from __future__ import annotations

import re

from meshops.policy.table import ANY, CallerRule
from meshops.render.spec import CaddyVersion, ProxySpec, host_port

CALLER = "{http.request.tls.client.san.uris.0}"
ISSUER = "{http.request.tls.client.issuer}"
METHOD = "{http.request.method}"
PATH = "{http.request.uri.path}"  # percent-decoded
URI = "{http.request.uri}"  # as the client sent it, query included

# checked on the decoded path: a `%2e%2e` segment or a `%3b` shows up here too
_BAD_IN_PATH = ["//", "/./", "/../", ";", "\\\\", "#"]
BAD_PATH = " || ".join(
    [
        *(f"{PATH}.contains('{text}')" for text in _BAD_IN_PATH),
        f"{PATH}.endsWith('/.')",
        f"{PATH}.endsWith('/..')",
        # an encoded `/` or `\` decodes into a separator the rules never saw
        f"{URI}.matches('^[^?]*%(2[fF]|5[cC])')",
    ]
)

# Caddy releases that changed what the Caddyfile accepts (CADDY_FEATURES in docs)
PERSIST_CONFIG = (2, 6, 3)  # the `persist_config` global option
TRUST_POOL = (2, 8, 0)  # client_auth `trust_pool file` (replaces trusted_ca_cert_file)

# CEL counts code points after Caddy expands each placeholder into a function call
CEL_BUDGET = 20_000


def _cel_string(value: str) -> str:
    # Path patterns hold no quotes, backslashes or braces (model/types.py), so a
    # single-quoted CEL literal inside a double-quoted Caddyfile token is exact.
    return f"'{value}'"


def _path_clause(pattern: str) -> str:
    if pattern.endswith("*"):
        return f"{PATH}.startsWith({_cel_string(pattern[:-1])})"
    return f"{PATH} == {_cel_string(pattern)}"


def _method_clause(rule: CallerRule) -> str | None:
    if ANY in rule.methods:
        return None
    return f"{METHOD} in [{', '.join(_cel_string(m) for m in rule.methods)}]"


def _path_chunks(paths: tuple[str, ...]) -> list[list[str]]:
    """The rule's path clauses in groups whose CEL stays under CEL_BUDGET."""
    chunks: list[list[str]] = [[]]
    size = 0
    for clause in map(_path_clause, paths):
        if chunks[-1] and size + len(clause) > CEL_BUDGET:
            chunks.append([])
            size = 0
        chunks[-1].append(clause)
        size += len(clause) + 4
    return chunks


def rule_expressions(rule: CallerRule) -> list[str | None]:
    """The CEL for `method in M && path in P`, one per chunk of paths (None: both `*`)."""
    method = _method_clause(rule)
    if ANY in rule.paths:
        return [method]
    out: list[str | None] = []
    for chunk in _path_chunks(rule.paths):
        paths = chunk[0] if len(chunk) == 1 else "(" + " || ".join(chunk) + ")"
        out.append(f"{method} && {paths}" if method else paths)
    return out


def go_regexp_literal(text: str) -> str:
    """`text` as a literal inside a Go (RE2) regexp: its metacharacters escaped."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def issuer_regexp(spec: ProxySpec, caller: str) -> str:
    """Anchored RE2 matching exactly the subjects of `caller`'s node CAs."""
    issuers = [go_regexp_literal(dn) for dn in spec.caller_issuers(caller)]
    if not issuers:
        return "^$.$"  # no node: nothing may match (`$.` never matches)
    return "^(" + "|".join(issuers) + ")$"


def _allow_matchers(spec: ProxySpec) -> list[tuple[str, CallerRule]]:
    """(matcher name, rule) for every allow matcher, in route order."""
    out = []
    for index, rule in enumerate(spec.rules):
        for part in range(len(rule_expressions(rule))):
            suffix = f"_{part}" if part else ""
            out.append((f"@meshops_allow_{index}{suffix}", rule))
    return out


def _matchers(spec: ProxySpec) -> list[str]:
    lines = [f'\t@meshops_bad_path expression "{BAD_PATH}"']
    if spec.mode == "permissive":
        # No client certificate: during a migration the request passes as before.
        lines.append('\t@meshops_anonymous vars {http.request.tls.client.subject} ""')
    for index, rule in enumerate(spec.rules):
        for part, expression in enumerate(rule_expressions(rule)):
            suffix = f"_{part}" if part else ""
            lines.append(f"\t@meshops_allow_{index}{suffix} {{")
            lines.append(f"\t\tvars {CALLER} {spec.caller_id(rule.caller)}")
            lines.append(f'\t\tvars_regexp {ISSUER} "{issuer_regexp(spec, rule.caller)}"')
            if expression is not None:
                lines.append(f'\t\texpression "{expression}"')
            lines.append("\t}")
    return lines


def _summary(rule: CallerRule) -> str:
    text = f"{rule.caller}: {','.join(rule.methods)} {','.join(rule.paths)}"
    return text if len(text) <= 200 else text[:197] + "..."


def _route(spec: ProxySpec, upstream: str) -> list[str]:
    lines = ["\troute {", '\t\trespond @meshops_bad_path "meshops: path is not canonical" 400']
    if spec.mode == "permissive":
        lines.append(f"\t\treverse_proxy @meshops_anonymous {upstream}")
    shown: set[CallerRule] = set()
    for name, rule in _allow_matchers(spec):
        if rule not in shown:
            lines.append(f"\t\t# {_summary(rule)}")
            shown.add(rule)
        lines.append(f"\t\treverse_proxy {name} {upstream}")
    lines.append('\t\trespond "meshops: forbidden" 403')
    lines.append("\t}")
    return lines


def _client_auth(spec: ProxySpec) -> list[str]:
    mode = "require_and_verify" if spec.mode == "strict" else "verify_if_given"
    pool = spec.node_ca_file or spec.ca_file
    if spec.caddy_version >= TRUST_POOL:
        trust = [f"trust_pool file {pool}"]
    elif spec.node_ca_ders:
        # before 2.8 the Caddyfile adapter reads only a file's first certificate
        trust = [f"trusted_ca_cert {der}" for der in spec.node_ca_ders]
    else:
        trust = [f"trusted_ca_cert_file {pool}"]
    return [
        "\t\tclient_auth {",
        f"\t\t\tmode {mode}",
        *(f"\t\t\t{line}" for line in trust),
        "\t\t}",
    ]


def render_caddy_site(spec: ProxySpec) -> str:
    """The site block(s) for `spec`: importable into a Caddyfile with its own options."""
    upstream = host_port(spec.upstream_host, spec.upstream_port)
    lines = [
        f"# meshops: mTLS sidecar for identity {spec.identity} ({spec.spiffe_id})",
        "# Generated from mesh.yaml policies; edits are overwritten by `meshops apply`.",
        "# Callers must chain to a current node CA (node-cas.pem): Caddy checks no CRL.",
        f"https://:{spec.listen} {{",
        f"\tbind {spec.listen_address}",
        f"\ttls {spec.cert_file} {spec.key_file} {{",
        f"\t\tprotocols tls{spec.min_tls}",
        *_client_auth(spec),
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


def admin_socket(spec: ProxySpec) -> str | None:
    """Where a standalone Caddy listens for `caddy reload` (None: no admin API)."""
    return f"{spec.run_dir.rstrip('/')}/admin.sock" if spec.run_dir else None


def global_options(spec: ProxySpec) -> list[str]:
    """The global options block of a standalone Caddyfile, for `spec.caddy_version`."""
    storage = spec.state_dir or spec.cert_file.rsplit("/", 1)[0] + "/caddy"
    socket = admin_socket(spec)
    lines = ["{", f"\tadmin unix/{socket}" if socket else "\tadmin off", "\tauto_https off"]
    if spec.caddy_version >= PERSIST_CONFIG:
        lines.append("\tpersist_config off")
    lines += [
        f"\tstorage file_system {storage}",
        # Every server in this file is ours, one policy per port: Host need not
        # equal SNI (clients dialling an IP address send no SNI at all).
        "\tservers {",
        "\t\tstrict_sni_host insecure_off",
        "\t}",
        "}",
        "",
    ]
    return lines


def render_caddy(spec: ProxySpec) -> str:
    """The Caddyfile for `spec`: complete (standalone) or the site block (import)."""
    if spec.run == "import":
        return render_caddy_site(spec)
    return "\n".join(global_options(spec)) + render_caddy_site(spec)


def caddy_version_of(text: str) -> CaddyVersion | None:
    """Parse `caddy version` output (`v2.11.7 h1:...`, `2.6.2`)."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)
