"""nginx: a `server {}` block (with the `map`s it needs) to include inside `http {}`.

nginx cannot see a certificate's URI SAN, so callers are identified by the subject
CN, which meshops leaf certificates set to the identity name (CONTRACT section 5).
Only a subject whose first RDN is `CN=<name>` counts: names are `[a-z0-9-]`, so
no escaped comma can fake the boundary.

The RBAC is two maps, named per identity so several files can be included in one
`http {}` (map blocks must live at http level, so they come first in the file):

    $ssl_client_s_dn                                         -> $meshops_<id>_caller
    "$ssl_client_verify $meshops_<id>_caller $request_method $uri" -> $meshops_<id>_allow

Each allowed (caller, methods, paths) is one anchored regex; exact paths end in
`\\z` (PCRE's end of subject; `$` would also match before a trailing newline).
`$uri` is nginx's normalized path (percent-decoded, dot segments resolved, slashes
merged), so `/v1/../admin` is judged as `/admin`.
"""

from __future__ import annotations

import re

from meshops.policy.table import ANY, CallerRule
from meshops.render.spec import ProxySpec, host_port

_PLAIN = re.compile(r"[A-Za-z0-9/_-]")


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


def rule_regex(rule: CallerRule) -> str:
    """The anchored regex over "verify caller method uri" for one rule."""
    methods = r"\S+" if ANY in rule.methods else "(" + "|".join(rule.methods) + ")"
    paths = [_path_regex(p) for p in rule.paths]
    path = paths[0] if len(paths) == 1 else "(" + "|".join(paths) + ")"
    return f"^SUCCESS {rule.caller} {methods} {path}"


def _quote(value: str) -> str:
    return f'"{value}"'


def render_nginx(spec: ProxySpec) -> str:
    """The maps and the server block for `spec`, for `include` inside `http {}`."""
    prefix = var_prefix(spec.identity)
    caller, allow = f"${prefix}_caller", f"${prefix}_allow"
    key = f"$ssl_client_verify {caller} $request_method $uri"
    lines = [
        f"# meshops: mTLS sidecar for identity {spec.identity} ({spec.spiffe_id})",
        "# Generated from mesh.yaml policies; edits are overwritten by `meshops apply`.",
        "# Include inside http {}. Callers are identified by certificate subject CN.",
        f"map $ssl_client_s_dn {caller} {{",
        '\tdefault "";',
        '\t"~^CN=([a-z0-9-]+)(,|\\z)" $1;',
        "}",
        "",
        f"map {_quote(key)} {allow} {{",
        "\tdefault 0;",
    ]
    if spec.mode == "permissive":
        lines += [
            "\t# permissive: no client certificate (NONE) or plaintext (empty) still passes",
            '\t"~^NONE " 1;',
            '\t"~^ " 1;',
        ]
    for rule in spec.rules:
        lines.append(f"\t# {rule.caller}: {','.join(rule.methods)} {','.join(rule.paths)}")
        lines.append(f"\t{_quote('~' + rule_regex(rule))} 1;")
    protocols = "TLSv1.3" if spec.min_tls == "1.3" else "TLSv1.2 TLSv1.3"
    listen_host = f"[{spec.listen_address}]" if ":" in spec.listen_address else spec.listen_address
    lines += [
        "}",
        "",
        "server {",
        f"\tlisten {listen_host}:{spec.listen} ssl;",
    ]
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
        f"\tif ({allow} = 0) {{",
        "\t\treturn 403;",
        "\t}",
        "\tlocation / {",
        f"\t\tproxy_pass http://{host_port(spec.upstream_host, spec.upstream_port)};",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
