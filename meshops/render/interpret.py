"""Interpreters of rendered proxy configs: would this request reach the upstream, and
with which path?

Each reads the config *text* a renderer produced (not the spec it came from) and
evaluates it the way the proxy does, for the subset of each language the renderers
emit: Caddy's named matchers and route, nginx's maps and `if`s, Envoy's HTTP
connection manager path handling and RBAC filters. Property tests compare their
answers with the access table, so a renderer that drifts from the table is caught
without starting a proxy; for Envoy (no binary here) they are the evaluation of the
rendered matchers. What they do not model: certificate chain verification (a
`ClientCert` is one the proxy's trust settings accepted) and each proxy's own HTTP
parsing beyond the path handling written below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import yaml


@dataclass(frozen=True)
class ClientCert:
    """What a proxy sees of a verified client certificate."""

    uri: str  # the first URI SAN, spiffe://<trust_domain>/<identity>
    cn: str  # the subject CN, the identity name
    issuer: str = ""  # the issuer DN as RFC 2253 text: the node CA that signed it
    dns: tuple[str, ...] = ()  # DNS SANs
    more_uris: tuple[str, ...] = ()  # URI SANs after the first

    @property
    def uris(self) -> tuple[str, ...]:
        return (self.uri, *self.more_uris) if self.uri else self.more_uris


def mesh_leaf(trust_domain: str, domain: str, identity: str, node: str) -> ClientCert:
    """The certificate a node's CA issues to `identity` (docs/layout.md)."""
    from meshops.pki.specs import node_ca_subject

    return ClientCert(
        uri=f"spiffe://{trust_domain}/{identity}",
        cn=identity,
        issuer=node_ca_subject(node),
        dns=(f"{identity}.{domain}", f"{node}.{domain}"),
    )


@dataclass(frozen=True)
class Request:
    cert: ClientCert | None  # None: no client certificate presented
    method: str
    path: str  # the path as the client sent it (percent-escapes, dot segments and all)
    query: str = ""


@dataclass(frozen=True)
class Outcome:
    """`status` is what the proxy answers (0: the TLS handshake failed, 200: forwarded);
    `forwarded` the path the upstream receives, when it receives anything."""

    status: int
    forwarded: str | None = None

    @property
    def reached(self) -> bool:
        return self.forwarded is not None


Decide = Callable[[Request], Outcome]


class InterpretError(ValueError):
    """The config holds something these interpreters do not understand."""


def _target(request: Request) -> str:
    return request.path + (f"?{request.query}" if request.query else "")


# --- Caddy -------------------------------------------------------------------------

_CEL_TOKEN = re.compile(
    r"\s*(?:(?P<ph>\{[a-z0-9_.]+\})|'(?P<str>(?:[^'\\]|\\.)*)'|(?P<op>==|&&|\|\||[()\[\],.])"
    r"|(?P<word>[A-Za-z_]+))"
)


def _cel_unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class _Cel:
    """The CEL subset the Caddy renderer writes: ==, in [..], .startsWith/.endsWith/
    .contains/.matches, &&, ||, parentheses, string literals and placeholders."""

    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _CEL_TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise InterpretError(f"CEL: cannot read {text[pos:]!r}")
            kind = match.lastgroup or ""
            value = match.group(kind)
            self.tokens.append((kind, _cel_unescape(value) if kind == "str" else value))
            pos = match.end()
        self.values: dict[str, str] = {}
        self.pos = 0

    def evaluate(self, values: dict[str, str]) -> bool:
        self.values, self.pos = values, 0
        result = self._or()
        if self.pos != len(self.tokens):
            raise InterpretError(f"CEL: trailing {self.tokens[self.pos :]}")
        return result

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if value is not None and token[1] != value:
            raise InterpretError(f"CEL: expected {value!r}, got {token[1]!r}")
        self.pos += 1
        return token

    def _or(self) -> bool:
        result = self._and()
        while self._peek() == ("op", "||"):
            self._take()
            result = self._and() or result
        return result

    def _and(self) -> bool:
        result = self._primary()
        while self._peek() == ("op", "&&"):
            self._take()
            result = self._primary() and result
        return result

    def _operand(self) -> str:
        kind, text = self._take()
        if kind == "ph":
            if text not in self.values:
                raise InterpretError(f"CEL: unknown placeholder {text}")
            return self.values[text]
        if kind == "str":
            return text
        raise InterpretError(f"CEL: expected a value, got {text!r}")

    def _primary(self) -> bool:
        if self._peek() == ("op", "("):
            self._take()
            result = self._or()
            self._take(")")
            return result
        if self._peek() in (("word", "true"), ("word", "false")):
            return self._take()[1] == "true"
        left = self._operand()
        op = self._take()[1]
        if op == "==":
            return left == self._operand()
        if op == "in":
            self._take("[")
            items = [self._operand()]
            while self._peek() == ("op", ","):
                self._take()
                items.append(self._operand())
            self._take("]")
            return left in items
        if op == ".":
            function = self._take()[1]
            self._take("(")
            argument = self._operand()
            self._take(")")
            methods: dict[str, Callable[[str], bool]] = {
                "startsWith": left.startswith,
                "endsWith": left.endswith,
                "contains": left.__contains__,
                # CEL's matches() is RE2's unanchored search
                "matches": lambda pattern: re.search(pattern, left) is not None,
            }
            if function not in methods:
                raise InterpretError(f"CEL: unknown function {function}")
            return methods[function](argument)
        raise InterpretError(f"CEL: unexpected {op!r}")


def _caddy_tokens(line: str) -> list[str]:
    return [
        m.group(1) if m.group(1) is not None else m.group(2)
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    ]


@dataclass
class _CaddySite:
    client_auth: str = ""
    matchers: dict[str, list[list[str]]] = field(default_factory=dict)
    route: list[list[str]] = field(default_factory=list)


def _parse_caddy_tls_site(text: str) -> _CaddySite:
    site = _CaddySite()
    in_site = False
    block: str | None = None  # the named matcher or "route" being read
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = _caddy_tokens(line)
        if not in_site:
            in_site = tokens[0].startswith("https://") and tokens[-1] == "{"
            continue
        if block is not None:
            if line == "}":
                block = None
            elif block == "route":
                site.route.append(tokens)
            else:
                site.matchers[block].append(tokens)
        elif tokens[0] == "mode":
            site.client_auth = tokens[1]
        elif tokens[0].startswith("@"):
            name = tokens[0]
            site.matchers[name] = []
            if tokens[1:] == ["{"]:
                block = name
            else:
                site.matchers[name].append(tokens[1:])
        elif tokens == ["route", "{"]:
            block = "route"
        elif raw.startswith("}"):
            break
    return site


Matcher = Callable[[dict[str, str]], bool]


def _vars_check(key: str, wanted: str) -> Matcher:
    return lambda values: values.get(key, "") == wanted


def _go_regexp(pattern: str) -> re.Pattern[str]:
    # RE2 without flags: `$` is the end of the text (Python's would also match before
    # a final newline)
    return re.compile(re.sub(r"\$$", r"\\Z", pattern))


def _vars_regexp_check(key: str, pattern: str) -> Matcher:
    compiled = _go_regexp(pattern)
    return lambda values: compiled.search(values.get(key, "")) is not None


def _caddy_matcher(lines: list[list[str]]) -> Matcher:
    """A named matcher: all its lines must match (one line per matcher type, see caddy.py)."""
    checks: list[Matcher] = []
    kinds = [tokens[0] for tokens in lines]
    if len(set(kinds)) != len(kinds):
        raise InterpretError(f"caddy: a matcher type twice in one set ORs its keys: {kinds}")
    for tokens in lines:
        if tokens[0] == "vars" and len(tokens) == 3:
            checks.append(_vars_check(tokens[1], tokens[2]))
        elif tokens[0] == "vars_regexp" and len(tokens) == 3:
            checks.append(_vars_regexp_check(tokens[1], _caddyfile_unquote(tokens[2])))
        elif tokens[0] == "expression" and len(tokens) == 2:
            checks.append(_Cel(_caddyfile_unquote(tokens[1])).evaluate)
        else:
            raise InterpretError(f"caddy: unknown matcher {tokens}")
    return lambda values: all(check(values) for check in checks)


def _caddyfile_unquote(token: str) -> str:
    """Inside a quoted Caddyfile token only `\\"` is an escape; other backslashes stay."""
    return token.replace('\\"', '"')


def caddy_interpreter(text: str) -> Decide:
    """Parse a rendered Caddyfile once; the returned function answers per request."""
    site = _parse_caddy_tls_site(text)
    matchers = {name: _caddy_matcher(lines) for name, lines in site.matchers.items()}
    route: list[tuple[list[str], Matcher | None]] = []
    for tokens in site.route:
        if tokens[0] not in ("reverse_proxy", "respond"):
            raise InterpretError(f"caddy: unknown route directive {tokens[0]}")
        named = tokens[1] if len(tokens) > 1 and tokens[1].startswith("@") else None
        route.append((tokens, matchers[named] if named else None))
    optional = site.client_auth == "verify_if_given"
    return lambda request: _caddy_decide(route, optional, request)


def _caddy_decide(
    route: list[tuple[list[str], Matcher | None]], optional_cert: bool, request: Request
) -> Outcome:
    cert = request.cert
    if cert is None and not optional_cert:
        return Outcome(0)  # require_and_verify: the handshake fails
    values = {
        "{http.request.tls.client.san.uris.0}": cert.uris[0] if cert and cert.uris else "",
        "{http.request.tls.client.subject}": f"CN={cert.cn}" if cert else "",
        "{http.request.tls.client.issuer}": cert.issuer if cert else "",
        "{http.request.method}": request.method,
        "{http.request.uri.path}": unquote(request.path),
        "{http.request.uri}": _target(request),
    }
    for tokens, matcher in route:
        if matcher is None or matcher(values):
            if tokens[0] == "reverse_proxy":
                return Outcome(200, request.path)  # Caddy forwards the path as it came
            return Outcome(int(tokens[-1]))
    return Outcome(404)


# --- Envoy -------------------------------------------------------------------------

_UNRESERVED = re.compile(r"%([0-9A-Fa-f]{2})")


def _decode_unreserved(path: str) -> str:
    """RFC 3986 normalization: percent-escapes of unreserved characters decoded."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char.isascii() and (char.isalnum() or char in "-._~") else match.group(0)

    return _UNRESERVED.sub(one, path)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(out) + ("/" if trailing and out else "")


def _envoy_path(path: str, manager: dict[str, Any]) -> str | None:
    """The path Envoy's HTTP connection manager hands to filters and forwards
    (None: it answers 400 itself)."""
    if "#" in path:
        return None  # a fragment in the request line is refused by default
    escaped = re.search(r"%(2f|5c)", path, re.IGNORECASE)
    if escaped and manager.get("path_with_escaped_slashes_action") == "REJECT_REQUEST":
        return None
    if manager.get("normalize_path"):
        path = remove_dot_segments(_decode_unreserved(path))
    if manager.get("merge_slashes"):
        path = re.sub("/{2,}", "/", path)
    return path


def _string_match(matcher: dict[str, Any], value: str) -> bool:
    if matcher.get("ignore_case"):
        value = value.lower()
        matcher = {k: v.lower() if isinstance(v, str) else v for k, v in matcher.items()}
    if "exact" in matcher:
        return bool(value == matcher["exact"])
    if "prefix" in matcher:
        return value.startswith(matcher["prefix"])
    if "contains" in matcher:
        return matcher["contains"] in value
    raise InterpretError(f"envoy: unknown string matcher {matcher}")


def _permission(rule: dict[str, Any], request: Request) -> bool:
    if rule.get("any"):
        return True
    if "and_rules" in rule:
        return all(_permission(r, request) for r in rule["and_rules"]["rules"])
    if "or_rules" in rule:
        return any(_permission(r, request) for r in rule["or_rules"]["rules"])
    if "not_rule" in rule:
        return not _permission(rule["not_rule"], request)
    if "header" in rule and rule["header"]["name"] == ":method":
        return _string_match(rule["header"]["string_match"], request.method)
    if "url_path" in rule:
        return _string_match(rule["url_path"]["path"], request.path)
    raise InterpretError(f"envoy: unknown permission {rule}")


def _mtls_principal(config: dict[str, Any], cert: ClientCert | None) -> bool:
    """envoy.rbac.principals.mtls_authenticated: a validated certificate, and when a
    SAN matcher is set, a SAN *of that type* matching it."""
    if cert is None:
        return False
    san = config.get("san_matcher")
    if san is None:
        if config.get("any_validated_client_certificate") is not True:
            raise InterpretError("envoy: mtls_authenticated without a check")
        return True
    sans = {"URI": cert.uris, "DNS": cert.dns}.get(san["san_type"])
    if sans is None:
        raise InterpretError(f"envoy: unknown SAN type {san['san_type']}")
    return any(_string_match(san["matcher"], value) for value in sans)


def _principal(rule: dict[str, Any], request: Request) -> bool:
    if rule.get("any"):
        return True
    if "custom" in rule:
        custom = rule["custom"]
        if custom["name"] != "envoy.rbac.principals.mtls_authenticated":
            raise InterpretError(f"envoy: unknown custom principal {custom['name']}")
        return _mtls_principal(custom["typed_config"], request.cert)
    if "authenticated" in rule:
        if request.cert is None:
            return False
        name = rule["authenticated"].get("principal_name")
        if name is None:
            return True
        names = [*request.cert.uris, *request.cert.dns, f"CN={request.cert.cn}"]
        return any(_string_match(name, value) for value in names)
    if "not_id" in rule:
        return not _principal(rule["not_id"], request)
    if "or_ids" in rule:
        return any(_principal(r, request) for r in rule["or_ids"]["ids"])
    if "and_ids" in rule:
        return all(_principal(r, request) for r in rule["and_ids"]["ids"])
    raise InterpretError(f"envoy: unknown principal {rule}")


def envoy_interpreter(text: str) -> Decide:
    """Parse a rendered Envoy bootstrap once; answers for its TLS listener."""
    data = yaml.safe_load(text)
    for listener in data["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            socket = chain.get("transport_socket")
            if socket is None:
                continue
            required = bool(socket["typed_config"].get("require_client_certificate", False))
            manager = chain["filters"][0]["typed_config"]
            return lambda request: _envoy_decide(manager, required, request)
    raise InterpretError("envoy: no TLS listener")


def _envoy_decide(manager: dict[str, Any], required: bool, request: Request) -> Outcome:
    if request.cert is None and required:
        return Outcome(0)
    path = _envoy_path(request.path, manager)
    if path is None:
        return Outcome(400)
    judged = Request(request.cert, request.method, path, request.query)
    for http_filter in manager["http_filters"]:
        config = http_filter["typed_config"]
        if config["@type"].endswith(".rbac.v3.RBAC"):
            rules = config["rules"]
            matched = any(
                any(_principal(p, judged) for p in policy["principals"])
                and any(_permission(p, judged) for p in policy["permissions"])
                for policy in rules.get("policies", {}).values()
            )
            if matched != (rules.get("action", "ALLOW") == "ALLOW"):
                return Outcome(403)
        elif config["@type"].endswith(".router.v3.Router"):
            return Outcome(200, path)
        else:
            raise InterpretError(f"envoy: unknown filter {config['@type']}")
    return Outcome(404)


# --- nginx -------------------------------------------------------------------------

_NGINX_MAP = re.compile(r"^map\s+(\"[^\"]*\"|\S+)\s+\$(\w+)\s*\{\s*$")
_NGINX_ENTRY = re.compile(r'^("(?:[^"\\]|\\.)*"|\S+)\s+(\S+);$')


def _nginx_unquote(token: str) -> str:
    """A quoted nginx parameter: `\\"`, `\\'` and `\\\\` are escapes; other backslashes
    stay for PCRE."""
    if not token.startswith('"'):
        return token
    return re.sub(r"\\([\"'\\])", r"\1", token[1:-1])


def _interpolate(template: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ""), template)


def _pcre(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern.replace("\\z", "\\Z"), flags)


def _captures(value: str, match: re.Match[str]) -> str:
    return re.sub(r"\$(\d)", lambda m: match.group(int(m.group(1))) or "", value)


@dataclass(frozen=True)
class _NginxMap:
    source: str
    target: str
    default: str
    regexes: list[tuple[re.Pattern[str], str]]
    exact: dict[str, str]

    def lookup(self, value: str) -> str:
        """nginx order: exact keys first, then regexes in order written, then default."""
        if value.lower() in self.exact:  # map hashes compare case-insensitively
            return self.exact[value.lower()]
        for pattern, result in self.regexes:
            match = pattern.search(value)
            if match:
                return _captures(result, match)
        return self.default


def _nginx_map(source: str, target: str, entries: list[tuple[str, str]]) -> _NginxMap:
    default, regexes, exact = "", [], {}
    for key, value in entries:
        if key == "default":
            default = value
        elif key.startswith("~*"):
            regexes.append((_pcre(key[2:], re.IGNORECASE), value))
        elif key.startswith("~"):
            regexes.append((_pcre(key[1:], 0), value))
        else:
            exact[key.lower()] = value
    return _NginxMap(source, target, default, regexes, exact)


def nginx_interpreter(text: str) -> Decide:
    """Parse rendered nginx text (maps + server, or a whole nginx.conf) once."""
    maps: list[_NginxMap] = []
    verify = ""
    checks: list[tuple[str, int]] = []  # `if ($var = 0) { return N; }`, in order
    lines = [line.strip() for line in text.splitlines()]
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        header = _NGINX_MAP.match(line)
        if header:
            entries: list[tuple[str, str]] = []
            while lines[index] != "}":
                entry = _NGINX_ENTRY.match(lines[index])
                if entry:
                    entries.append((_nginx_unquote(entry.group(1)), entry.group(2)))
                elif lines[index] and not lines[index].startswith("#"):
                    raise InterpretError(f"nginx: cannot read map entry {lines[index]!r}")
                index += 1
            maps.append(_nginx_map(_nginx_unquote(header.group(1)), header.group(2), entries))
        elif line.startswith("ssl_verify_client "):
            verify = line.split()[1].rstrip(";")
        elif line.startswith("if ("):
            condition = re.fullmatch(r"if \(\$(\w+) = 0\) \{", line)
            answer = re.fullmatch(r"return (\d+);", lines[index])
            if condition is None or answer is None:
                raise InterpretError(f"nginx: unknown if {line!r}")
            checks.append((condition.group(1), int(answer.group(1))))
    if not checks:
        raise InterpretError("nginx: no access check found")
    return lambda request: _nginx_decide(maps, verify, checks, request)


def nginx_uri(path: str) -> str | None:
    """nginx's `$uri`: percent-decoded, slashes merged, dot segments resolved (None:
    nginx answers 400, for a NUL or a `..` above the root)."""
    decoded = unquote(path, errors="surrogateescape")
    if "\0" in decoded:
        return None
    merged = re.sub("/{2,}", "/", decoded)
    depth = 0
    for segment in merged.split("/")[1:]:
        depth += -1 if segment == ".." else 0 if segment in (".", "") else 1
        if depth < 0:
            return None
    return remove_dot_segments(merged)


def _nginx_decide(
    maps: list[_NginxMap], verify: str, checks: list[tuple[str, int]], request: Request
) -> Outcome:
    cert = request.cert
    if cert is None and verify != "optional":
        return Outcome(400)  # ssl_verify_client on: nginx answers 400
    uri = nginx_uri(request.path)
    if uri is None:
        return Outcome(400)
    variables = {
        "ssl_client_verify": "SUCCESS" if cert else "NONE",
        "ssl_client_s_dn": f"CN={cert.cn}" if cert else "",
        "ssl_client_i_dn": cert.issuer if cert else "",
        "request_method": request.method,
        "uri": uri,
        "request_uri": _target(request),
    }
    for table in maps:
        variables[table.target] = table.lookup(_interpolate(table.source, variables))
    for variable, status in checks:
        if variables.get(variable, "") == "0":
            return Outcome(status)
    return Outcome(200, request.path)  # proxy_pass without a URI: the path as it came


INTERPRETERS: dict[str, Callable[[str], Decide]] = {
    "caddy": caddy_interpreter,
    "envoy": envoy_interpreter,
    "nginx": nginx_interpreter,
}


def outcome(kind: str, text: str, request: Request) -> Outcome:
    """What the `kind` config `text` does with `request`."""
    return INTERPRETERS[kind](text)(request)


def evaluate(kind: str, text: str, request: Request) -> bool:
    """Would the `kind` config `text` let `request` through to the upstream?"""
    return outcome(kind, text, request).reached
