"""Interpreters of rendered proxy configs: would this request reach the upstream?

Each reads the config *text* a renderer produced (not the spec it came from) and
evaluates its matchers the way the proxy does, for the subset of each language the
renderers emit. Property tests compare their answers with the access table, so a
renderer that drifts from the table is caught without starting a proxy. Requests
carry an already canonical path (the proxies' own path normalization or refusal of
non-canonical paths is covered by the loopback tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class ClientCert:
    """What a proxy sees of a verified mesh client certificate."""

    uri: str  # the URI SAN, spiffe://<trust_domain>/<identity>
    cn: str  # the subject CN, the identity name


@dataclass(frozen=True)
class Request:
    cert: ClientCert | None  # None: no client certificate presented
    method: str
    path: str


Decide = Callable[[Request], bool]


class InterpretError(ValueError):
    """The config holds something these interpreters do not understand."""


# --- Caddy -------------------------------------------------------------------------

_CEL_TOKEN = re.compile(
    r"\s*(?:(?P<ph>\{[a-z0-9_.]+\})|'(?P<str>[^']*)'|(?P<op>==|&&|\|\||[()\[\],.])"
    r"|(?P<word>[A-Za-z_]+))"
)


class _Cel:
    """The CEL subset the Caddy renderer writes: ==, in [..], .startsWith/.endsWith/
    .contains, &&, ||, parentheses, string literals and placeholders."""

    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _CEL_TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise InterpretError(f"CEL: cannot read {text[pos:]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
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
            }
            if function not in methods:
                raise InterpretError(f"CEL: unknown function {function}")
            return methods[function](argument)
        raise InterpretError(f"CEL: unexpected {op!r}")


def _caddy_tokens(line: str) -> list[str]:
    return [
        m.group(1) if m.group(1) is not None else m.group(2)
        for m in re.finditer(r'"([^"]*)"|(\S+)', line)
    ]


@dataclass
class _CaddySite:
    client_auth: str = ""
    matchers: dict[str, list[list[str]]] | None = None
    route: list[list[str]] | None = None


def _parse_caddy_tls_site(text: str) -> _CaddySite:
    site = _CaddySite(matchers={}, route=[])
    assert site.matchers is not None and site.route is not None
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


def _caddy_matcher(lines: list[list[str]]) -> Matcher:
    """A named matcher: all its lines must match (one `vars` key each, see caddy.py)."""
    checks: list[Matcher] = []
    for tokens in lines:
        if tokens[0] == "vars" and len(tokens) == 3:
            checks.append(_vars_check(tokens[1], tokens[2]))
        elif tokens[0] == "expression" and len(tokens) == 2:
            checks.append(_Cel(tokens[1]).evaluate)
        else:
            raise InterpretError(f"caddy: unknown matcher {tokens}")
    return lambda values: all(check(values) for check in checks)


def caddy_interpreter(text: str) -> Decide:
    """Parse a rendered Caddyfile once; the returned function answers per request."""
    site = _parse_caddy_tls_site(text)
    assert site.matchers is not None and site.route is not None
    matchers = {name: _caddy_matcher(lines) for name, lines in site.matchers.items()}
    route: list[tuple[str, Matcher | None]] = []
    for tokens in site.route:
        if tokens[0] not in ("reverse_proxy", "respond"):
            raise InterpretError(f"caddy: unknown route directive {tokens[0]}")
        named = tokens[1] if len(tokens) > 1 and tokens[1].startswith("@") else None
        route.append((tokens[0], matchers[named] if named else None))
    optional = site.client_auth == "verify_if_given"
    return lambda request: _caddy_decide(route, optional, request)


def _caddy_decide(
    route: list[tuple[str, Matcher | None]], optional_cert: bool, request: Request
) -> bool:
    if request.cert is None and not optional_cert:
        return False  # require_and_verify: the handshake fails
    values = {
        "{http.request.tls.client.san.uris.0}": request.cert.uri if request.cert else "",
        "{http.request.tls.client.subject}": f"CN={request.cert.cn}" if request.cert else "",
        "{http.request.method}": request.method,
        "{http.request.uri.path}": request.path,
        "{http.request.uri}": request.path,
    }
    for directive, matcher in route:
        if matcher is None or matcher(values):
            return directive == "reverse_proxy"
    return False


# --- Envoy -------------------------------------------------------------------------


def _string_match(matcher: dict[str, Any], value: str) -> bool:
    if "exact" in matcher:
        return bool(value == matcher["exact"])
    if "prefix" in matcher:
        return value.startswith(matcher["prefix"])
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


def _principal(rule: dict[str, Any], request: Request) -> bool:
    if rule.get("any"):
        return True
    if "authenticated" in rule:
        if request.cert is None:
            return False
        name = rule["authenticated"].get("principal_name")
        return name is None or _string_match(name, request.cert.uri)
    if "not_id" in rule:
        return not _principal(rule["not_id"], request)
    if "or_ids" in rule:
        return any(_principal(r, request) for r in rule["or_ids"]["ids"])
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
            filters = chain["filters"][0]["typed_config"]["http_filters"]
            return lambda request: (
                (request.cert is not None or not required)
                and (_envoy_http_filters(filters, request))
            )
    raise InterpretError("envoy: no TLS listener")


def _envoy_http_filters(filters: list[dict[str, Any]], request: Request) -> bool:
    for http_filter in filters:
        config = http_filter["typed_config"]
        if config["@type"].endswith(".rbac.v3.RBAC"):
            rules = config["rules"]
            matched = any(
                any(_principal(p, request) for p in policy["principals"])
                and any(_permission(p, request) for p in policy["permissions"])
                for policy in rules.get("policies", {}).values()
            )
            if matched != (rules.get("action", "ALLOW") == "ALLOW"):
                return False
        elif config["@type"].endswith(".router.v3.Router"):
            return True
    return False


# --- nginx -------------------------------------------------------------------------

_NGINX_MAP = re.compile(r"^map\s+(\"[^\"]*\"|\S+)\s+\$(\w+)\s*\{\s*$")
_NGINX_ENTRY = re.compile(r'^("(?:[^"\\]|\\.)*"|\S+)\s+(\S+);$')


def _unquote(token: str) -> str:
    return token[1:-1] if token.startswith('"') else token


def _interpolate(template: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ""), template)


def _nginx_map(entries: list[tuple[str, str]], source: str) -> str:
    """nginx order: exact keys first, then regexes in order written, then default."""
    default = ""
    for key, value in entries:
        if key == "default":
            default = value
        elif not key.startswith("~") and key == source:
            return value
    for key, value in entries:
        if key.startswith("~"):
            match = re.search(key[1:].replace("\\z", "\\Z"), source)
            if match:
                return _captures(value, match)
    return default


def _captures(value: str, match: re.Match[str]) -> str:
    return re.sub(r"\$(\d)", lambda m: match.group(int(m.group(1))) or "", value)


@dataclass(frozen=True)
class _NginxMap:
    source: str
    target: str
    entries: list[tuple[str, str]]


def nginx_interpreter(text: str) -> Decide:
    """Parse a rendered nginx file (maps + server) once; answers per request."""
    maps: list[_NginxMap] = []
    verify = ""
    forbid_unless: str | None = None
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
                    entries.append((_unquote(entry.group(1)), _unquote(entry.group(2))))
                elif lines[index] and not lines[index].startswith("#"):
                    raise InterpretError(f"nginx: cannot read map entry {lines[index]!r}")
                index += 1
            maps.append(_NginxMap(_unquote(header.group(1)), header.group(2), entries))
        elif line.startswith("ssl_verify_client "):
            verify = line.split()[1].rstrip(";")
        elif line.startswith("if ("):
            condition = re.fullmatch(r"if \(\$(\w+) = 0\) \{", line)
            if condition is None or lines[index] != "return 403;":
                raise InterpretError(f"nginx: unknown if {line!r}")
            forbid_unless = condition.group(1)
    if forbid_unless is None:
        raise InterpretError("nginx: no access check found")
    return lambda request: _nginx_decide(maps, verify, forbid_unless, request)


def _nginx_decide(maps: list[_NginxMap], verify: str, check: str, request: Request) -> bool:
    if request.cert is None and verify != "optional":
        return False  # ssl_verify_client on: nginx answers 400
    variables = {
        "ssl_client_verify": "SUCCESS" if request.cert else "NONE",
        "ssl_client_s_dn": f"CN={request.cert.cn}" if request.cert else "",
        "request_method": request.method,
        "uri": request.path,
    }
    for table in maps:
        source = _interpolate(table.source, variables)
        variables[table.target] = _nginx_map(table.entries, source)
    return variables.get(check, "") != "0"


INTERPRETERS: dict[str, Callable[[str], Decide]] = {
    "caddy": caddy_interpreter,
    "envoy": envoy_interpreter,
    "nginx": nginx_interpreter,
}


def evaluate(kind: str, text: str, request: Request) -> bool:
    """Would the `kind` config `text` let `request` through to the upstream?"""
    return INTERPRETERS[kind](text)(request)
