#!/usr/bin/env bash
# meshops working on this one machine, in under a minute (docs/quickstart.md):
#   0. the example mesh, examples/mesh.yaml: validated (its policy tests run) and its
#      access graph drawn;
#   1. an operator key and a mesh repository of two nodes, web-1 and api-1, applied at
#      repo scope (the root CA and a CA per node, sealed to their keys) and committed;
#   2. both hosts applied under --root directories with WireGuard off (certificates
#      only), with no privileges: certificates, the proxy config, /etc/hosts, status;
#   3. as root: WireGuard turned on in mesh.yaml, each host in a network namespace of
#      its own, a ping over the tunnel, and Caddy on api-1 letting web's mTLS call
#      through and refusing batch's.
# Everything lives in one temporary directory and two namespaces, removed at the end,
# also on failure or Ctrl-C.
#   --no-install   do not run scripts/install.sh for missing tools
#   --keep         keep the temporary directory (namespaces are removed anyway)
set -euo pipefail
cd "$(dirname "$0")/.."
install=yes keep=no
for arg in "$@"; do
  case "$arg" in
    --no-install) install=no ;;
    --keep) keep=yes ;;
    *) echo "usage: $0 [--no-install] [--keep]" >&2; exit 1 ;;
  esac
done
export SOPS_DISABLE_VERSION_CHECK=1
unset MESHOPS_IDENTITY MESHOPS_NODE

tools=(meshops age-keygen git curl caddy ip wireguard-go)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [[ $install == yes && $(id -u) == 0 ]]; then
    bash scripts/install.sh
  else
    echo "missing: ${missing[*]}; run scripts/install.sh as root first" >&2
    exit 1
  fi
fi

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/meshops-quickstart.XXXXXX")
prefix="qs$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
declare -A holder=()
repo=$work/mesh
domain=mesh.quickstart.internal

cleanup() {
  local code=$? ns pid
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not leave the namespaces' processes behind
  for ns in "$prefix-web-1" "$prefix-api-1"; do
    [[ -e /run/netns/$ns ]] || continue
    for signal in TERM KILL; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "-$signal" "$pid" 2>/dev/null || true; done
      sleep 0.2
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$prefix-a" 2>/dev/null || true  # made, not yet moved into a namespace
  if [[ $keep == yes ]]; then echo "kept $work"; else rm -rf "$work"; fi
  echo "cleaned up (exit $code)"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# -- 0. the example mesh -----------------------------------------------------------------
step "0. the example mesh: examples/mesh.yaml"
run meshops -f examples/mesh.yaml validate
run meshops -f examples/mesh.yaml graph

# -- 1. repository ----------------------------------------------------------------------
step "1. an operator key and a mesh repository ($work)"
age-keygen -o "$work/operator.key" 2>/dev/null
operator=$(age-keygen -y "$work/operator.key")
echo "operator recipient: $operator"
run meshops init "$repo" --name quickstart --recipient "$operator"
declare -A recipient=()
for node in web-1 api-1; do
  # each host makes its own identity and host.yaml (node, repository, identity); this
  # quick start seals node keys to it (docs/keys.md has the host-held way)
  recipient[$node]=$(meshops host init --node "$node" --keys sealed --repo "$repo" \
    --root "$work/$node" 2>/dev/null |
    sed -n 's/^recipient: //p')
  echo "$node recipient: ${recipient[$node]}"
done
cat >"$repo/mesh.yaml" <<EOF
version: 1
mesh: {name: quickstart, trust_domain: quickstart.internal, domain: $domain}
ca:
  recipients: [$operator]
wireguard:
  enabled: false          # step 3 turns it on
  network: 10.99.0.0/24
nodes:
  web-1: {endpoint: "192.0.2.11:51820", recipient: ${recipient[web-1]}}
  api-1: {endpoint: "192.0.2.12:51820", recipient: ${recipient[api-1]}}
identities:
  web: {nodes: [web-1]}
  batch: {nodes: [web-1]}
  api:
    nodes: [api-1]
    proxy: {kind: caddy, listen: 8443, upstream: "127.0.0.1:8080"}
policies:
  - {name: web-reads-api, from: web, to: api, allow: [{methods: [GET], paths: [/hello]}]}
tests:
  - {from: web, to: api, request: GET /hello, expect: allow}
  - {from: batch, to: api, request: GET /hello, expect: deny}
EOF
run meshops -C "$repo" validate
run meshops -C "$repo" apply --auto-approve --identity "$work/operator.key"
git -C "$repo" add -A
git -C "$repo" -c user.name=quickstart -c user.email=quickstart@example.com commit -qm "web-1 and api-1"
echo "committed mesh.yaml and state/ on branch $(git -C "$repo" symbolic-ref --short HEAD)"

# -- 2. hosts, certificates only, unprivileged -------------------------------------------
step "2. both hosts, certificates only, without privileges"
unprivileged=()
if setpriv --bounding-set -all --inh-caps -all -- true 2>/dev/null; then
  unprivileged=(setpriv --bounding-set -all --inh-caps -all --)  # every capability dropped
fi
for node in web-1 api-1; do
  run "${unprivileged[@]}" meshops --root "$work/$node" apply --auto-approve
done
echo "files on api-1:"
(cd "$work/api-1" && find etc var -type f | sort | sed 's/^/  \//')
echo "/etc/hosts block on web-1:"
sed 's/^/  /' "$work/web-1/etc/hosts"
run meshops --root "$work/web-1" status

if [[ $(id -u) != 0 ]] || ! unshare -n true 2>/dev/null; then
  step "3. skipped: WireGuard in network namespaces needs root; rerun as root to see it"
  echo "quick start done in $((SECONDS - started))s"
  exit 0
fi

# -- 3. WireGuard and mTLS, each host in its own network namespace ----------------------
step "3. WireGuard on: two hosts in network namespaces, ping and mTLS"
sed -i 's/^  enabled: false .*/  enabled: true/' "$repo/mesh.yaml"
run meshops -C "$repo" apply --auto-approve --identity "$work/operator.key"
git -C "$repo" -c user.name=quickstart -c user.email=quickstart@example.com commit -qam "WireGuard on"

echo "namespaces: $prefix-web-1 $prefix-api-1 (underlay 192.0.2.11 and .12 on a veth pair)"
ip link add "$prefix-a" type veth peer name "$prefix-b"
i=11
for node in web-1 api-1; do
  ns=$prefix-$node
  ip netns add "$ns"
  end=$prefix-a; [[ $node == api-1 ]] && end=$prefix-b
  ip link set "$end" netns "$ns"
  ip -n "$ns" link set "$end" name eth0
  ip -n "$ns" addr add "192.0.2.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  i=$((i + 1))
  # a private /run per host: wireguard-go's control socket /run/wireguard/wg-mesh.sock
  ip netns exec "$ns" unshare --mount --propagation private sh -c \
    'mount -t tmpfs quickstart /run && mkdir /run/wireguard && exec sleep infinity' &
  holder[$node]=$!
  until [[ -d /proc/${holder[$node]}/root/run/wireguard ]]; do sleep 0.05; done
done
in_host() { local node=$1; shift; nsenter -t "${holder[$node]}" -m -n -- "$@"; }

for node in web-1 api-1; do
  printf '$ [%s] meshops --root %s apply --auto-approve\n' "$node" "$work/$node"
  in_host "$node" meshops --root "$work/$node" apply --auto-approve
done
api_ip=$(awk -v name="api-1.$domain" '$0 ~ name {print $1}' "$work/web-1/etc/hosts")
for _ in 1 2 3; do in_host web-1 ping -n -q -c 1 -W 2 "$api_ip" >/dev/null && break; done
in_host web-1 ping -n -q -c 1 -W 2 "$api_ip" >/dev/null ||
  { echo "web-1 cannot ping api-1 at $api_ip over WireGuard" >&2; exit 1; }
echo "web-1 -> api-1 ($api_ip) over WireGuard: ping ok"
in_host web-1 wg show wg-mesh | sed 's/^/  /'

mkdir -p "$work/www"
echo "hello from api-1" >"$work/www/hello"
in_host api-1 python3 -m http.server 8080 --bind 127.0.0.1 --directory "$work/www" \
  >"$work/upstream.log" 2>&1 &
in_host api-1 env HOME="$work/caddy" XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" \
  caddy run --config "$work/api-1/etc/meshops/proxy/api.caddy" --adapter caddyfile \
  >"$work/caddy.log" 2>&1 &
for _ in $(seq 200); do
  [[ -n $(in_host api-1 ss -Htln 'sport = :8443') && -n $(in_host api-1 ss -Htln 'sport = :8080') ]] && break
  sleep 0.05
done

call() {  # call CALLER: GET /hello on api through Caddy with CALLER's certificate
  local tls=$work/web-1/etc/meshops/tls/$1
  in_host web-1 curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$tls/ca.pem" \
    --cert "$tls/cert.pem" --key "$tls/key.pem" --resolve "api.$domain:8443:$api_ip" \
    "https://api.$domain:8443/hello" || true
}
web=$(call web)
batch=$(call batch)
echo "web   -> api  GET /hello over mTLS: $web (allowed by policy web-reads-api)"
echo "batch -> api  GET /hello over mTLS: $batch (refused: no policy allows it)"
if [[ $web != 200 || $batch != 403 ]]; then
  echo "unexpected answers; Caddy's log:" >&2
  cat "$work/caddy.log" >&2
  exit 1
fi
printf '$ [web-1] meshops --root %s status\n' "$work/web-1"
in_host web-1 meshops --root "$work/web-1" status
echo "quick start done in $((SECONDS - started))s"
