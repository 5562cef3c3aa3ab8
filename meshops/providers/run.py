"""The one door for running external commands: logged (never secrets), typed errors."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from meshops.errors import CommandFailed

log = logging.getLogger("meshops.run")


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = 120,
    check: bool = True,
    what: str | None = None,
    secret_input: bool = False,
    pass_fds: Sequence[int] = (),
    clean_env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv`, capture output, raise CommandFailed with stderr on failure.

    `input` is never logged; set `secret_input` to make that explicit at call sites.
    `what` names the step for the error message ("caddy validate"). `env` is added to
    meshops' own environment; `clean_env` is the whole environment instead (commands
    from mesh.yaml get nothing of meshops'). `pass_fds` are inherited (pipes).
    `new_session` starts it in a session of its own (a daemon that must outlive our
    process group).
    """
    shown = shlex.join(argv)
    log.debug("run: %s%s", shown, " (with secret input)" if secret_input else "")
    full_env = None
    if env is not None:
        full_env = {**os.environ, **env}
    if clean_env is not None:
        full_env = dict(clean_env)
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            check=False,
            pass_fds=tuple(pass_fds),
            start_new_session=new_session,
        )
    except FileNotFoundError:
        raise CommandFailed(
            f"{what or argv[0]}: command not found: {argv[0]}",
            hint=f"install {argv[0]} or fix the command in mesh.yaml",
        ) from None
    except PermissionError:
        raise CommandFailed(
            f"{what or argv[0]}: {argv[0]} is not executable (permission denied)",
            hint=f"check the file and its mode (chmod +x {argv[0]}), or fix the command",
        ) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{what or shown}: timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        tail = "\n".join(stderr.splitlines()[-15:])
        raise CommandFailed(
            f"{what or shown} failed (exit {proc.returncode})" + (f":\n{tail}" if tail else ""),
            detail=stderr,
        )
    return proc
