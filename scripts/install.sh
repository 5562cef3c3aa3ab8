#!/usr/bin/env bash
# Install what meshops, its quick start and its test suite need on a Debian machine
# (as root). Safe on a machine that is not fresh: it adds what is missing and never
# stops, disables or kills a service that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# default-jre-headless, default-jdk-headless: keytool, java and javac check the PKCS#12 outputs;
# systemd: systemd-analyze checks the example units (nothing here runs it as init)
# golang-go: the tests compile a small Go crypto/x509 verifier (a referee for chains)
pkgs=(wireguard-go wireguard-tools iproute2 iputils-ping age nginx caddy curl openssl git
      openssh-client procps graphviz nftables util-linux systemd default-jre-headless
      default-jdk-headless golang-go)
missing=()
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
