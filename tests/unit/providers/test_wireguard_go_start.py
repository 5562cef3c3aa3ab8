"""Starting wireguard-go: what is reported when it cannot run, and how a systemd unit
for it is named and started (pure parts; the real starts are in tests/e2e)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshops.providers.wireguard import userspace

# what wireguard-go 0.0.2023 prints on stderr when another one serves the socket
BANNER = """\
┌──────────────────────────────────────────────────────┐
│                                                      │
│   Running wireguard-go is not required because this  │
│   kernel has first class support for WireGuard. For  │
│   information on installing the kernel module,       │
│   please visit:                                      │
│         https://www.wireguard.com/install/           │
│                                                      │
└──────────────────────────────────────────────────────┘
"""
IN_USE = BANNER + "ERROR: (wg-mesh) 2026/12/01 22:09:01 UAPI listen error: unix socket in use\n"
NO_TUN = BANNER + (
    "ERROR: (wg-mesh) 2026/12/01 22:09:01 Failed to create TUN device: "
    "open /dev/net/tun: no such file or directory\n"
)


def test_a_socket_in_use_is_named_with_the_way_out_and_without_the_banner() -> None:
    error = userspace.start_failure("wg-mesh", "wireguard-go", IN_USE)
    assert error.message.startswith(
        "WireGuard interface wg-mesh: wireguard-go cannot start: its control socket "
        "/var/run/wireguard/wg-mesh.sock is already served by another process"
    )
    assert error.hint is not None and "choose another wireguard.interface" in error.hint
    assert "first class support" not in str(error)


def test_a_missing_tun_device_says_so_and_how_to_get_one() -> None:
    error = userspace.start_failure("wg-mesh", "wireguard-go", NO_TUN)
    assert error.message == (
        "WireGuard interface wg-mesh: wireguard-go did not start: Failed to create TUN "
        "device: open /dev/net/tun: no such file or directory"
    )
    assert error.hint is not None and "modprobe tun" in error.hint


def test_output_of_another_program_is_reported_by_its_last_line() -> None:
    error = userspace.start_failure("wg0", "boringtun", "starting\nfatal: bad things\n")
    assert error.message == "WireGuard interface wg0: boringtun did not start: fatal: bad things"


def test_a_program_that_is_missing_or_not_executable_is_a_problem(tmp_path: Path) -> None:
    script = tmp_path / "wg-go"
    assert userspace.program_problem(str(script)) == f"{script} is not installed on PATH"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    assert userspace.program_problem(str(script)) == f"{script} is not executable"
    script.chmod(0o755)
    assert userspace.program_problem(str(script)) is None
    assert userspace.program_problem(str(tmp_path)) == f"{tmp_path} is not executable"


def test_the_program_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(userspace.PROGRAM_ENV, raising=False)
    assert userspace.program() == "wireguard-go"
    monkeypatch.setenv(userspace.PROGRAM_ENV, "/opt/wg/wireguard-go")
    assert userspace.program() == "/opt/wg/wireguard-go"
    problem = userspace.program_problem()
    assert problem == "/opt/wg/wireguard-go is not installed ($MESHOPS_WIREGUARD_GO)"


UNIT = re.compile(r"^[A-Za-z0-9:_.\\-]+\.service$")  # systemd's unit name alphabet


@pytest.mark.parametrize("name", ["wg-mesh", "wg0", "wg.mesh", "a=b+c", "_x", "wg:1"])
def test_unit_names_are_valid_and_distinct(name: str) -> None:
    unit = userspace.unit_name(name)
    assert UNIT.match(unit), unit
    assert unit.startswith("meshops-wireguard-go-")
    assert userspace.unit_name("wg-mesh") == "meshops-wireguard-go-wg-mesh.service"
    others = {"wg-mesh", "wg0", "wg.mesh", "a=b+c", "_x", "wg:1"} - {name}
    assert unit not in {userspace.unit_name(o) for o in others}


def test_a_transient_unit_runs_the_daemonizing_program_as_a_forking_service() -> None:
    argv = userspace.systemd_run_argv("meshops-wireguard-go-wg0.service", "/usr/bin/wg-go", "wg0")
    assert argv[0] == "systemd-run"
    assert "--unit=meshops-wireguard-go-wg0.service" in argv
    assert "--property=Type=forking" in argv and "--collect" in argv
    assert argv[-3:] == ["--", "/usr/bin/wg-go", "wg0"]


def test_a_kernel_without_a_wireguard_module_is_recognised() -> None:
    present = Path("/sys/module/wireguard").is_dir()
    assert userspace.kernel_module_present("0.0.0-no-such-kernel") is present
