"""Proxy configs checked by the proxy itself before they replace the old ones.

- Caddy: `caddy validate --config F --adapter caddyfile`;
- nginx: `nginx -t` on a minimal nginx.conf that includes the rendered file inside
  `http {}`, with pid, logs and temp paths inside `workdir`;
- Envoy (no binary here): the YAML is parsed into Envoy's own API types from the
  `envoy-data-plane` package: every `typed_config` resolved to its real message
  class, unknown fields and unknown enum values refused.

Both binaries load the certificate and key files named in the config, so the host
scope writes `cert.pem`, `key.pem`, `ca.pem`, `crl.pem` and `node-cas.pem` before it
checks. `caddy_version()` tells the renderer which Caddy release it writes for (asked
once per binary and process).
"""

from __future__ import annotations

import functools
import importlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meshops.errors import CommandFailed
from meshops.providers.files import write_atomic
from meshops.providers.run import run
from meshops.render.spec import CaddyVersion, ProxyKind

log = logging.getLogger("meshops.proxies")

TYPE_PREFIX = "type.googleapis.com/"
ENVOY_TYPES_PACKAGE = "envoy_data_plane"


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def caddy_version() -> CaddyVersion | None:
    """The release of the `caddy` that checks (and should run) the rendered Caddyfile,
    asked once per binary and process; None when no Caddy is installed or it does not
    say (the newest syntax is rendered then)."""
    import os

    binary = _binary("caddy")
    if binary is None:
        return None
    try:
        stamp = os.stat(binary).st_mtime_ns
    except OSError:
        return None
    return _caddy_version(binary, stamp)


@functools.cache
def _caddy_version(binary: str, stamp: int) -> CaddyVersion | None:
    from meshops.render.caddy import caddy_version_of

    try:
        proc = run([binary, "version"], what="caddy version", timeout=30)
    except CommandFailed as exc:
        log.warning("%s; rendering for the newest Caddy", exc.message.splitlines()[0])
        return None
    version = caddy_version_of(proc.stdout.decode(errors="replace"))
    log.debug("caddy %s is %s", binary, version)
    return version


def check_config(
    kind: ProxyKind,
    text: str,
    *,
    workdir: Path,
    target: Path | None = None,
    binary: str | None = None,
) -> str | None:
    """Have the proxy check `text`; raise CommandFailed with its own message if refused.

    `target` is where the config will be installed: the error names it (and its line)
    instead of the scratch copy in `workdir`. `binary` is the proxy to ask (default: the
    one on PATH). Returns None when the config was checked, or the reason the check was
    skipped (only when the proxy binary is not installed); the reason is also logged.
    """
    workdir = Path(workdir)
    if kind == "envoy":
        validate_envoy(text)
        return None
    binary = binary or _binary(kind)
    if binary is None:
        reason = f"{kind} is not installed here: its config was not checked"
        log.warning(reason)
        return reason
    if kind == "caddy":
        _check_caddy(binary, text, workdir, target)
    else:
        _check_nginx(binary, text, workdir, target)
    return None


def _check_caddy(binary: str, text: str, workdir: Path, target: Path | None) -> None:
    config = workdir / "Caddyfile"
    write_atomic(config, text.encode(), mode=0o644)
    # Keep Caddy's own files (autosave, default storage) inside workdir.
    env = {
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "HOME": str(workdir),
    }
    try:
        run(
            [binary, "validate", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            what=f"caddy validate {config}",
        )
    except CommandFailed as exc:
        reason = _caddy_error(exc.detail or exc.message)
        raise _refused("caddy validate", "caddy", exc, reason, config, target) from None


def _refused(
    check: str,
    proxy: str,
    exc: CommandFailed,
    reason: str,
    staged: Path,
    target: Path | None,
    *,
    shown: Path | None = None,
) -> CommandFailed:
    """The checker's refusal, naming the config's real path rather than the staged copy
    it checked (`shown` when there is no target)."""
    if target is not None:
        reason = reason.replace(str(staged), str(target))
    return CommandFailed(
        f"{check} rejected {target or shown or staged}: {reason}",
        hint=f"the old config stays in place and {proxy} was not reloaded",
        detail=exc.detail,
    )


def _caddy_error(stderr: str) -> str:
    """Caddy logs JSON lines; the reason is the last `error` message (or `Error:` line)."""
    import json

    reason = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    for line in stderr.splitlines():
        if line.startswith("Error:"):
            reason = line[len("Error:") :].strip()
        elif line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") == "error":
                reason = str(entry.get("msg", reason))
    return reason


def nginx_wrapper(include: Path, workdir: Path) -> str:
    """A minimal nginx.conf that runs `include` inside `http {}` with state in workdir."""
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    lines = [
        f'pid "{workdir / "nginx.pid"}";',
        f'error_log "{workdir / "error.log"}" warn;',
        "worker_processes 1;",
        "events { worker_connections 256; }",
        "http {",
        "\taccess_log off;",
        f'\tclient_body_temp_path "{temp["client_body"]}";',
        f'\tproxy_temp_path "{temp["proxy"]}";',
        f'\tfastcgi_temp_path "{temp["fastcgi"]}";',
        f'\tuwsgi_temp_path "{temp["uwsgi"]}";',
        f'\tscgi_temp_path "{temp["scgi"]}";',
        f'\tinclude "{include}";',
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_nginx_wrapper(text: str, workdir: Path) -> Path:
    """Write the rendered server file and its wrapper into workdir; the wrapper's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = workdir / "server.conf"
    write_atomic(server, text.encode(), mode=0o644)
    wrapper = workdir / "nginx.conf"
    write_atomic(wrapper, nginx_wrapper(server, workdir).encode(), mode=0o644)
    return wrapper


def _check_nginx(binary: str, text: str, workdir: Path, target: Path | None) -> None:
    wrapper = write_nginx_wrapper(text, workdir)
    try:
        _run_nginx_t(binary, wrapper, workdir)
    except CommandFailed as exc:
        reason = _nginx_error(exc.detail or exc.message)
        staged = workdir / "server.conf"
        raise _refused("nginx -t", "nginx", exc, reason, staged, target, shown=wrapper) from None


def _nginx_error(stderr: str) -> str:
    """nginx's reason: its first `[emerg]` (else last) line, without the `nginx:` tag."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    chosen = next((line for line in lines if "[emerg]" in line), lines[-1] if lines else "")
    for prefix in ("nginx: ", "[emerg] "):
        chosen = chosen.removeprefix(prefix)
    return chosen or "no message"


def _run_nginx_t(binary: str, wrapper: Path, workdir: Path) -> None:
    run(
        [
            binary,
            "-t",
            "-q",
            "-p",
            str(workdir),
            "-e",
            str(workdir / "error.log"),
            "-c",
            str(wrapper),
        ],
        what="nginx -t",
    )


def _type_urls(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        url = value.get("@type")
        if isinstance(url, str):
            yield url
        for item in value.values():
            yield from _type_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _type_urls(item)


def _register(url: str) -> None:
    """Import the module defining `url`'s message so `Any` can resolve it."""
    if not url.startswith(TYPE_PREFIX):
        raise CommandFailed(f"envoy config: @type {url!r} does not start with {TYPE_PREFIX}")
    package = url[len(TYPE_PREFIX) :].rpartition(".")[0]
    try:
        importlib.import_module(f"{ENVOY_TYPES_PACKAGE}.{package}")
    except ImportError:
        raise CommandFailed(f"envoy config: unknown @type {url!r}") from None


def validate_envoy(text: str) -> Any:
    """Parse an Envoy bootstrap YAML into `Bootstrap`; raise CommandFailed if it is not one.

    Returns the parsed `envoy.config.bootstrap.v3.Bootstrap` message.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandFailed(f"envoy config is not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CommandFailed("envoy config: the top level must be a mapping (a Bootstrap)")
    try:
        bootstrap_module = importlib.import_module(
            f"{ENVOY_TYPES_PACKAGE}.envoy.config.bootstrap.v3"
        )
    except ImportError:
        raise CommandFailed(
            "envoy config cannot be checked: the envoy-data-plane package is not installed",
            hint="pip install 'meshops[proxies]'",
        ) from None
    for url in set(_type_urls(data)):
        _register(url)
    try:
        return bootstrap_module.Bootstrap.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise CommandFailed(f"envoy config is not a valid Bootstrap: {message}") from None
