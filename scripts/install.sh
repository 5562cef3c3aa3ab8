#!/usr/bin/env bash
# Install everything meshops and its test suite need on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(wireguard-go wireguard-tools iproute2 iputils-ping age nginx caddy curl openssl git openssh-client procps graphviz nftables golang-go)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx and caddy packages start system services; meshops tests run their own.
systemctl disable --now nginx caddy >/dev/null 2>&1 || true
pkill -x nginx >/dev/null 2>&1 || true
pip install -q --disable-pip-version-check -e '.[test,dev]'
