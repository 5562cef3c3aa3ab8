#!/usr/bin/env bash
# Install what meshops, its quick start and its test suite need on a Debian machine
# (as root). Safe on a machine that is not fresh: it adds what is missing and never
# stops, disables or kills a service that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# default-jre-headless, default-jdk-headless: keytool, java and javac check the PKCS#12 outputs;
# systemd: systemd-analyze checks the example units (nothing here runs it as init);
# nebula: bench/repo_scale.py measures a new mesh's apply against nebula-cert;
# golang-go: the tests compile a small Go crypto/x509 verifier (a referee for chains)
pkgs=(wireguard-go wireguard-tools iproute2 iputils-ping age nginx caddy curl openssl git
      openssh-client procps graphviz nftables util-linux systemd default-jre-headless
      default-jdk-headless nebula golang-go)
missing=()
vm_missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  # Packages installed now are not started (policy-rc.d answers "not now"): the tests
  # and the quick start run their own Caddy and nginx, and two packaged web servers
  # would race for port 80. Services that were here before are not touched.
  guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard"
    chmod 0755 "$guard"
    trap 'rm -f "$guard"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ -n "$guard" ]]; then rm -f "$guard"; fi
fi
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
