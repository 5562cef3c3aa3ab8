"""nginx: the `map`s and `server {}` block of one identity's sidecar.

Two shapes (`spec.run`):
- import: maps + server, to `include` inside the operator's `http {}` (map blocks
  must live at http level, so they come first; every variable is named per identity,
  so several files can be included in one `http {}`);
- standalone: a complete nginx.conf around the same text (pid, error log, temp paths
  of its own), for one nginx master per sidecar.

nginx cannot see a certificate's URI SAN, so callers are identified by the subject CN,
which meshops leaf certificates set to the identity name (docs/layout.md). Only a
subject whose first RDN is `CN=<name>` counts: names are `[a-z0-9-]`, so no escaped
comma can fake the boundary. The caller is bound to its nodes by the issuer of its leaf
(`$ssl_client_i_dn`, RFC 2253 text): it must be the CA of a node where the caller runs.

    $ssl_client_s_dn                      -> $meshops_<id>_caller   (CN)
    $ssl_client_i_dn                      -> $meshops_<id>_issuer   (the node)
    "$meshops_<id>_caller $..._issuer"    -> $meshops_<id>_bound    (1: caller runs there)
    $request_uri                          -> $meshops_<id>_canonical
    "$ssl_client_verify$..._bound $..._caller $request_method $uri" -> $meshops_<id>_allow

Each allowed (caller, methods, path) is one anchored regex; exact paths end in `\\z`
(PCRE's end of subject; `$` would also match before a trailing newline). `$uri` is
nginx's normalized path (percent-decoded, dot segments resolved, slashes merged), but
`proxy_pass` forwards the request line as the client wrote it: a request whose raw path
is not canonical (dot segments, also percent-encoded, empty segments, `;` parameters,
backslashes, encoded `/` or `\\`) is refused with 400, so the path that was judged is the
path the upstream acts on. Every config parameter stays under nginx's limit of 4 KB.
"""

from __future__ import annotations

import re

from meshops.pki.specs import node_ca_subject
from meshops.policy.table import ANY, CallerRule
from meshops.render.spec import ProxySpec, host_port

_PLAIN = re.compile(r"[A-Za-z0-9/_-]")
# nginx refuses a parameter longer than its 4096-byte read buffer; keep well inside
MAX_PARAMETER = 3800

# on the raw request line, case-insensitive, before any `?` (`\x5c` is a backslash:
# nginx would unescape a `\\` in a quoted parameter before PCRE sees it)
NOT_CANONICAL = r"^[^?]*(%2f|%5c|\x5c|;|%3b|#|//|/(\.|%2e){1,2}(/|\?|\z))"


def var_prefix(identity: str) -> str:
    """`meshops_<identity>` with `-` as `_` (identity names never hold `_`)."""
    return "meshops_" + identity.replace("-", "_")


def pcre_literal(text: str) -> str:
    """`text` as a PCRE literal: every ASCII punctuation character backslash-escaped."""
    return "".join(c if _PLAIN.match(c) or ord(c) > 127 else "\\" + c for c in text)


def _path_regex(pattern: str) -> str:
    # Prefixes are left open (no `.*`, which would stop at a decoded newline).
    if pattern == ANY:
        return "/"
    if pattern.endswith("*"):
        return pcre_literal(pattern[:-1])
    return pcre_literal(pattern) + "\\z"


def alternations(items: list[str], *, budget: int) -> list[str]:
    """`(a|b|c)` groups of `items` (a bare item when alone), each under `budget` chars."""
    groups: list[list[str]] = [[]]
    size = 0
    for item in items:
        if groups[-1] and size + len(item) + 1 > budget:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += len(item) + 1
    return [g[0] if len(g) == 1 else "(" + "|".join(g) + ")" for g in groups if g]


def rule_regexes(rule: CallerRule) -> list[str]:
    """Anchored regexes over "<verify><bound> caller method uri" for one rule."""
    methods = r"\S+" if ANY in rule.methods else "(" + "|".join(rule.methods) + ")"
    head = f"^SUCCESS1 {rule.caller} {methods} "
    paths = [_path_regex(p) for p in rule.paths]
    return [head + group for group in alternations(paths, budget=MAX_PARAMETER - len(head))]


def bound_regexes(spec: ProxySpec, caller: str) -> list[str]:
    """Regexes over "caller issuer-node" matching the nodes `caller` runs on."""
    head = f"^{caller} "
    nodes = alternations(list(spec.caller_nodes.get(caller, ())), budget=MAX_PARAMETER // 2)
    return [f"{head}{group}\\z" for group in nodes]


def _quote(value: str) -> str:
    return f'"{value}"'


def _summary(rule: CallerRule) -> str:
    text = f"{rule.caller}: {','.join(rule.methods)} {','.join(rule.paths)}"
    return text if len(text) <= 200 else text[:197] + "..."


def _maps(spec: ProxySpec) -> list[str]:
    prefix = var_prefix(spec.identity)
    caller, issuer = f"${prefix}_caller", f"${prefix}_issuer"
    bound, canonical = f"${prefix}_bound", f"${prefix}_canonical"
    lines = [
        f"map $ssl_client_s_dn {caller} {{",
        '\tdefault "";',
        '\t"~^CN=([a-z0-9-]+)(,|\\z)" $1;',
        "}",
        "",
        f"map $ssl_client_i_dn {issuer} {{",
        '\tdefault "";',
    ]
    for node in spec.issuer_nodes:
        subject = pcre_literal(node_ca_subject(node))
        lines.append(f'\t"~^{subject}\\z" {node};')
    lines += ["}", "", f"map {_quote(f'{caller} {issuer}')} {bound} {{", "\tdefault 0;"]
    for rule_caller in sorted({rule.caller for rule in spec.rules}):
        lines += [f'\t"~{regex}" 1;' for regex in bound_regexes(spec, rule_caller)]
    lines += [
        "}",
        "",
        f"map $request_uri {canonical} {{",
        "\tdefault 1;",
        f'\t"~*{NOT_CANONICAL}" 0;',
        "}",
        "",
    ]
    return lines


def _allow_map(spec: ProxySpec) -> list[str]:
    prefix = var_prefix(spec.identity)
    key = f"$ssl_client_verify${prefix}_bound ${prefix}_caller $request_method $uri"
    lines = [f"map {_quote(key)} ${prefix}_allow {{", "\tdefault 0;"]
    if spec.mode == "permissive":
        lines += [
            "\t# permissive: no client certificate (NONE) or plaintext (empty) still passes",
            '\t"~^NONE0 " 1;',
            '\t"~^0 " 1;',
        ]
    for rule in spec.rules:
        lines.append(f"\t# {_summary(rule)}")
        lines += [f"\t{_quote('~' + regex)} 1;" for regex in rule_regexes(rule)]
    return [*lines, "}", ""]


def _server(spec: ProxySpec) -> list[str]:
    prefix = var_prefix(spec.identity)
    protocols = "TLSv1.3" if spec.min_tls == "1.3" else "TLSv1.2 TLSv1.3"
    listen_host = f"[{spec.listen_address}]" if ":" in spec.listen_address else spec.listen_address
    lines = ["server {", f"\tlisten {listen_host}:{spec.listen} ssl;"]
    if spec.plaintext is not None:
        lines.append(f"\tlisten {listen_host}:{spec.plaintext};")
    lines += [
        f"\tssl_certificate {_quote(spec.cert_file)};",
        f"\tssl_certificate_key {_quote(spec.key_file)};",
        f"\tssl_protocols {protocols};",
        f"\tssl_client_certificate {_quote(spec.ca_file)};",
        f"\tssl_verify_client {'on' if spec.mode == 'strict' else 'optional'};",
        "\tssl_verify_depth 2;",
    ]
    if spec.crl_file:
        # nginx checks CRLs for every CA in the chain: crl.pem must hold the root's
        # CRL and one from each node CA.
        lines.append(f"\tssl_crl {_quote(spec.crl_file)};")
    lines += [
        "",
        f"\tif (${prefix}_canonical = 0) {{",
        "\t\treturn 400;",
        "\t}",
        f"\tif (${prefix}_allow = 0) {{",
        "\t\treturn 403;",
        "\t}",
        "\tlocation / {",
        f"\t\tproxy_pass http://{host_port(spec.upstream_host, spec.upstream_port)};",
        "\t}",
        "}",
    ]
    return lines


def render_nginx_include(spec: ProxySpec) -> str:
    """The maps and the server block for `spec`, for `include` inside `http {}`."""
    lines = [
        f"# meshops: mTLS sidecar for identity {spec.identity} ({spec.spiffe_id})",
        "# Generated from mesh.yaml policies; edits are overwritten by `meshops apply`.",
        "# Include inside http {}. Callers are identified by certificate subject CN,",
        "# bound to their nodes by the issuing node CA.",
        *_maps(spec),
        *_allow_map(spec),
        *_server(spec),
    ]
    return "\n".join(lines) + "\n"


def standalone_wrapper(body: str, *, run_dir: str, state_dir: str) -> str:
    """A complete nginx.conf around `body` (maps + server), with a pid file, logs and
    temp paths of its own, so it runs beside any other nginx."""
    temp = [
        f'\t{name}_temp_path "{state_dir.rstrip("/")}/{name}";'
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    head = [
        f'pid "{run_dir.rstrip("/")}/nginx.pid";',
        "error_log stderr warn;",
        "worker_processes auto;",
        "events {",
        "\tworker_connections 1024;",
        "}",
        "http {",
        "\taccess_log off;",
        *temp,
        "",
    ]
    indented = "\n".join(f"\t{line}" if line else "" for line in body.splitlines())
    return "\n".join(head) + "\n" + indented + "\n}\n"


def render_nginx(spec: ProxySpec) -> str:
    """The nginx text for `spec`: an include (import) or a whole nginx.conf (standalone)."""
    body = render_nginx_include(spec)
    if spec.run == "import":
        return body
    run_dir = spec.run_dir or f"/run/meshops-nginx/{spec.identity}"
    state_dir = spec.state_dir or f"/var/lib/meshops-nginx/{spec.identity}"
    return standalone_wrapper(body, run_dir=run_dir, state_dir=state_dir)
