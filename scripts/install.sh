#!/usr/bin/env bash
# Install everything meshops and its test suite need on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(wireguard-go wireguard-tools iproute2 iputils-ping age nginx caddy curl openssl git openssh-client procps graphviz nftables nebula)
missing=()
vm_missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx and caddy packages start system services; meshops tests run their own.
systemctl disable --now nginx caddy >/dev/null 2>&1 || true
pkill -x nginx >/dev/null 2>&1 || true
pip install -q --disable-pip-version-check -e '.[test,dev]'
# The kernel WireGuard test (tests/e2e/test_kernel_wireguard.py) boots Debian's kernel,
# which has the wireguard module, under QEMU with software emulation (virtme-ng).
for p in qemu-system-x86 kmod; do dpkg -s "$p" >/dev/null 2>&1 || vm_missing+=("$p"); done
if ((${#vm_missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${vm_missing[@]}" >/dev/null
fi
kernel_dir="${MESHOPS_TEST_KERNEL_DIR:-$HOME/.cache/meshops-test/kernel}"
if ! compgen -G "$kernel_dir/lib/modules/*/kernel/drivers/net/wireguard/wireguard.ko" >/dev/null; then
  image=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [[ -z "$image" ]]; then
    apt-get update -qq
    image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download -qq "$image" 2>/dev/null)
  rm -rf "$kernel_dir" && mkdir -p "$kernel_dir"
  dpkg-deb -x "$scratch"/*.deb "$kernel_dir"
  rm -rf "$scratch"
fi
