"""The live view of one host: certificates, node CA, WireGuard peers, last apply.

`collect` reads only; `meshops status` renders it, and apply writes it to
/var/lib/meshops/status.json (stable JSON, `format_version` "1.0"):

    {"format_version": "1.0", "node": str, "mesh": str, "generated_at": ISO,
     "identities": [{"name", "spiffe_id", "status": "ok"|"due"|"expired"|"missing",
                     "serial", "not_after", "expires_in_seconds", "renew_at"}],
     "node_ca": {"serial", "not_after", "expires_in_seconds"} | null,
     "wireguard": {"enabled": bool (false: certificates only), "interface", "present",
                   "public_key", "listen_port", "addresses",
                   "peers": [{"node", "public_key", "endpoint", "allowed_ips",
                              "latest_handshake", "handshake_age_seconds",
                              "rx_bytes", "tx_bytes",
                              "state": "ok"|"stale"|"never"|"missing"}]},
     "firewall": {"enabled": bool, "table": "inet meshops", "present": bool,
                  "dropped_packets": int, "dropped_bytes": int,
                  "openings": [{"name": "db:5432/tcp", "identity", "port", "kind":
                                "proxy"|"plaintext"|"port", "nodes": [str],
                                "addresses": [str]}]},
     "trust": {"source": "host.yaml"|"first apply"|"unsigned", "pinned": [str],
               "trusted": [str], "manifest_version": int | null, "signed_by": str | null,
               "revision": str | null, "refused": str | null},
     "crls": [{"issuer": str, "kind": "root"|"node CA", "number": int | null,
               "next_update": ISO, "expires_in_seconds": int,
               "status": "ok"|"warning"|"expired"}],
     "last_apply": {"time", "revision", "result", "error", "failures": [{"address",
                    "error"}], "skipped": [address], "changes", "refused"} | null}

`trust` is what the host verified state/ against (docs/security.md): its pinned roots
(`source`: where the pins came from), the roots trusted now, the signed manifest's
version and signer, the revision that material came from, and why the last revision
was refused, if it was (its state/ did not verify, or the pull was refused: the host
then runs on the last good material). `crls` are the CRLs in the trust material: a
CRL is `warning` once less than a quarter of its validity is left (repo apply re-signs
it at half), `expired` after its nextUpdate (verifiers that check CRLs then refuse).

`firewall.openings` lists the ports this node opens on the overlay and the nodes whose
addresses the live sets hold (`addresses` as the kernel has them, `nodes` their owners);
`dropped_*` is the counter of the drop rule, carried over when the table is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshops.resources.host.scope import HostScope

STATUS_FORMAT = "1.0"
STALE_HANDSHAKE = 180  # seconds: WireGuard re-handshakes every 2 minutes on a live session


# a node of the mesh that the device does not have: the same keys as a live peer
_MISSING_PEER: dict[str, Any] = {
    "endpoint": None, "allowed_ips": [], "latest_handshake": None,
    "handshake_age_seconds": None, "rx_bytes": 0, "tx_bytes": 0, "state": "missing",
}  # fmt: skip


def collect(scope: HostScope, now: datetime) -> dict[str, Any]:
    return {
        "format_version": STATUS_FORMAT,
        "node": scope.node,
        "mesh": scope.mesh.mesh.name,
        "generated_at": now.isoformat(timespec="seconds"),
        "identities": [
            _identity(scope, name, now) for name in scope.mesh.identities_on(scope.node)
        ],
        "node_ca": _node_ca(scope, now),
        "wireguard": _wireguard(scope, now),
        "firewall": _firewall(scope),
        "trust": _trust(scope),
        "crls": _crls(scope, now),
        "last_apply": scope.last.get("last_apply"),
    }


def _trust(scope: HostScope) -> dict[str, Any]:
    held = scope.trust
    last = scope.last.get("last_apply") or {}
    refused = held.refused["reason"] if held.refused else last.get("refused")
    return {
        "source": held.source,
        "pinned": list(held.pinned),
        "trusted": list(held.trusted),
        "manifest_version": held.version,
        "signed_by": held.signer,
        "revision": held.revision,
        "refused": refused,
    }


CRL_WARN_FRACTION = 0.25  # of a CRL's validity left: repo apply re-signs at one half


def _crls(scope: HostScope, now: datetime) -> list[dict[str, Any]]:
    """The root CRL(s) and every node CA's CRL, as this host hands them to proxies."""
    found = []
    layout = scope.layout
    used: dict[bytes, list[CrlFacts]] = {}
    paths: list[tuple[Path | str, str]] = [(layout.crl, "root")]
    paths += [(layout.node_crl_name(n), "node CA") for n in sorted(scope.state.nodes)]
    for path, kind in paths:
        data = scope.state_bytes(path)
        if not data:
            continue
        facts = _KNOWN_CRLS.get(data)
        if facts is None:
            facts = [_facts(crl) for crl in _load_crls(data)]
        used[data] = facts
        found += [_crl(fact, kind, now) for fact in facts]
    _KNOWN_CRLS.clear()  # only the CRLs of this run: never more than state/ holds
    _KNOWN_CRLS.update(used)
    return found


@dataclass(frozen=True)
class CrlFacts:
    """What status tells of one CRL: a function of its bytes alone."""

    issuer: str
    number: int | None
    this_update: datetime
    next_update: datetime | None


# `watch` records status after every run: each CRL's facts are read from its bytes once
# (parsing and describing 1,000 CRLs costs about 18 ms), not again while they are the same
_KNOWN_CRLS: dict[bytes, list[CrlFacts]] = {}


def _load_crls(data: bytes | None) -> list[Any]:
    from meshops.pki.parse import load_crls

    if not data:
        return []
    try:
        return load_crls(data)
    except Exception:  # an unreadable CRL: verified state/ never holds one
        return []


def _facts(crl: Any) -> CrlFacts:
    from cryptography.x509.oid import NameOID

    from meshops.pki import crl_number

    names = crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer = str(names[0].value) if names else crl.issuer.rfc4514_string()
    return CrlFacts(issuer, crl_number(crl), crl.last_update_utc, crl.next_update_utc)


def _crl(facts: CrlFacts, kind: str, now: datetime) -> dict[str, Any]:
    next_update = facts.next_update
    left = int((next_update - now).total_seconds()) if next_update else 0
    validity = (next_update - facts.this_update).total_seconds() if next_update else 0
    status = "expired" if left <= 0 else "warning" if left < CRL_WARN_FRACTION * validity else "ok"
    return {
        "issuer": facts.issuer,
        "kind": kind,
        "number": facts.number,
        "next_update": next_update.isoformat(timespec="seconds") if next_update else None,
        "expires_in_seconds": left,
        "status": status,
    }


def _identity(scope: HostScope, name: str, now: datetime) -> dict[str, Any]:
    from meshops.pki import renewal_time
    from meshops.pki.parse import load_certificates

    entry: dict[str, Any] = {"name": name, "spiffe_id": scope.mesh.spiffe_id(name)}
    path = scope.tls_dir(name) / "cert.pem"
    try:
        cert = load_certificates(path.read_bytes())[0]
    except Exception:
        return {**entry, "status": "missing", "serial": None, "not_after": None,
                "expires_in_seconds": None, "renew_at": None}  # fmt: skip
    not_after = cert.not_valid_after_utc
    renew_at = renewal_time(
        cert, scope.mesh.leaf_renew_before(name), float(scope.mesh.leaf_ttl(name))
    )
    remaining = (not_after - now).total_seconds()
    status = "expired" if remaining <= 0 else "due" if now >= renew_at else "ok"
    return {
        **entry,
        "status": status,
        "serial": format(cert.serial_number, "x"),
        "not_after": not_after.isoformat(timespec="seconds"),
        "expires_in_seconds": int(remaining),
        "renew_at": renew_at.isoformat(timespec="seconds"),
    }


def _node_ca(scope: HostScope, now: datetime) -> dict[str, Any] | None:
    rec = scope.record.ca
    if rec is None:
        return None
    not_after = datetime.fromisoformat(rec.not_after)
    return {
        "serial": rec.serial,
        "not_after": rec.not_after,
        "expires_in_seconds": int((not_after - now).total_seconds()),
    }


def _wireguard(scope: HostScope, now: datetime) -> dict[str, Any]:
    name = scope.mesh.wireguard.interface
    if not scope.tunnelled:  # certificates only: nothing of WireGuard is read or expected
        return {"enabled": False, "interface": name, "present": False, "public_key": None,
                "listen_port": None, "addresses": [], "peers": []}  # fmt: skip
    link, device = scope.link(), scope.device()
    by_key = {
        rec.wireguard.public_key: node
        for node, rec in scope.state.nodes.items()
        if rec.wireguard is not None
    }
    peers = []
    seen = set()
    for key, peer in sorted((device.peers if device else {}).items()):
        seen.add(key)
        when = peer.last_handshake
        age = int(now.timestamp() - when) if when else None
        state = "never" if when is None else "stale" if (age or 0) > STALE_HANDSHAKE else "ok"
        peers.append({
            "node": by_key.get(key),
            "public_key": key,
            "endpoint": peer.endpoint,
            "allowed_ips": list(peer.allowed_ips),
            "latest_handshake": (
                datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds") if when else None
            ),
            "handshake_age_seconds": age,
            "rx_bytes": peer.rx_bytes,
            "tx_bytes": peer.tx_bytes,
            "state": state,
        })  # fmt: skip
    from meshops.resources.host import wanted_peers

    for node in wanted_peers(scope):
        rec = scope.state.nodes.get(node)
        if rec and rec.wireguard and rec.wireguard.public_key not in seen:
            peers.append({**_MISSING_PEER, "node": node, "public_key": rec.wireguard.public_key})
    peers.sort(key=lambda p: (p["node"] or "~", p["public_key"]))
    return {
        "enabled": True,
        "interface": name,
        "present": link is not None,
        "public_key": device.public_key if device else None,
        "listen_port": device.listen_port if device else None,
        "addresses": list(link.addresses) if link else [],
        "peers": peers,
    }


def _firewall(scope: HostScope) -> dict[str, Any]:
    from meshops.errors import MeshError
    from meshops.render import nftables as nft
    from meshops.resources.host.firewall import read_live

    enabled = scope.mesh.firewall.enabled and scope.tunnelled  # it filters the overlay
    try:
        live = read_live(scope.lib_dir) if enabled else None  # afresh: the counters
    except MeshError:
        live = None  # no nft here, or no right to read it: shown as absent
    owners = {
        ip: n for n, rec in scope.state.nodes.items() for ip in (rec.address, rec.address6) if ip
    }
    chain = live.chain(nft.OVERLAY_CHAIN) if live else None
    drop = next((r.counter for r in (chain.rules if chain else ()) if r.name == "drop"), None)
    openings = []
    for opening in scope.flows.openings(scope.node) if enabled else ():
        found = [live.set(nft.set_name(opening, v)) if live else None for v in (4, 6)]
        addresses = [a for named in found if named for a in named.elements]
        openings.append({
            "name": opening.name, "identity": opening.identity, "port": str(opening.port),
            "kind": opening.kind, "addresses": addresses,
            "nodes": sorted({owners.get(a, "?") for a in addresses}),
        })  # fmt: skip
    return {
        "enabled": enabled,
        "table": f"{nft.FAMILY} {nft.TABLE}",
        "present": live is not None,
        "dropped_packets": drop.packets if drop else 0,
        "dropped_bytes": drop.bytes if drop else 0,
        "openings": openings,
    }


def metrics_text(status: dict[str, Any]) -> str:
    """A node_exporter textfile: certificate expiry, handshakes, last apply."""
    node = status["node"]
    lines = [
        "# HELP meshops_cert_expiry_timestamp_seconds Workload certificate notAfter.",
        "# TYPE meshops_cert_expiry_timestamp_seconds gauge",
    ]
    for ident in status["identities"]:
        if ident.get("not_after"):
            ts = datetime.fromisoformat(ident["not_after"]).timestamp()
            lines.append(
                f'meshops_cert_expiry_timestamp_seconds{{node="{node}",identity="{ident["name"]}"}}'
                f" {ts:.0f}"
            )
    if status["node_ca"]:
        ts = datetime.fromisoformat(status["node_ca"]["not_after"]).timestamp()
        lines += [
            "# HELP meshops_node_ca_expiry_timestamp_seconds Node CA notAfter.",
            "# TYPE meshops_node_ca_expiry_timestamp_seconds gauge",
            f'meshops_node_ca_expiry_timestamp_seconds{{node="{node}"}} {ts:.0f}',
        ]
    lines += [
        "# HELP meshops_wireguard_peer_last_handshake_timestamp_seconds Latest handshake.",
        "# TYPE meshops_wireguard_peer_last_handshake_timestamp_seconds gauge",
    ]
    for peer in status["wireguard"]["peers"]:
        if peer.get("latest_handshake"):
            ts = datetime.fromisoformat(peer["latest_handshake"]).timestamp()
            lines.append(
                "meshops_wireguard_peer_last_handshake_timestamp_seconds"
                f'{{node="{node}",peer="{peer["node"] or peer["public_key"]}"}} {ts:.0f}'
            )
    firewall = status.get("firewall")
    if firewall and firewall["present"]:
        dropped = firewall["dropped_packets"]
        lines += [
            "# HELP meshops_firewall_dropped_packets_total Packets dropped on the overlay.",
            "# TYPE meshops_firewall_dropped_packets_total counter",
            f'meshops_firewall_dropped_packets_total{{node="{node}"}} {dropped}',
            "# HELP meshops_firewall_dropped_bytes_total Bytes dropped on the overlay.",
            "# TYPE meshops_firewall_dropped_bytes_total counter",
            f'meshops_firewall_dropped_bytes_total{{node="{node}"}} {firewall["dropped_bytes"]}',
        ]
    lines += [
        "# HELP meshops_crl_next_update_timestamp_seconds CRL nextUpdate: verifiers that "
        "check CRLs refuse every client after it.",
        "# TYPE meshops_crl_next_update_timestamp_seconds gauge",
    ]
    for crl in status.get("crls") or []:
        if crl.get("next_update"):
            ts = datetime.fromisoformat(crl["next_update"]).timestamp()
            lines.append(
                f'meshops_crl_next_update_timestamp_seconds{{node="{node}",'
                f'kind="{crl["kind"]}",issuer="{_label(crl["issuer"])}"}} {ts:.0f}'
            )
    trust = status.get("trust") or {}
    lines += [
        "# HELP meshops_state_refused 1 if the last revision was refused (its state/ did "
        "not verify, or the pull was refused): the host runs on the last good material.",
        "# TYPE meshops_state_refused gauge",
        f'meshops_state_refused{{node="{node}"}} {1 if trust.get("refused") else 0}',
    ]
    if trust.get("manifest_version") is not None:
        lines += [
            "# HELP meshops_state_manifest_version Version of the signed state/ in use.",
            "# TYPE meshops_state_manifest_version gauge",
            f'meshops_state_manifest_version{{node="{node}"}} {trust["manifest_version"]}',
        ]
    last = status.get("last_apply")
    if last:
        ts = datetime.fromisoformat(last["time"]).timestamp()
        ok = 1 if last["result"] in ("ok", "no-op") else 0
        lines += [
            "# HELP meshops_last_apply_timestamp_seconds Time of the last apply.",
            "# TYPE meshops_last_apply_timestamp_seconds gauge",
            f'meshops_last_apply_timestamp_seconds{{node="{node}"}} {ts:.0f}',
            "# HELP meshops_last_apply_success 1 if the last apply succeeded.",
            "# TYPE meshops_last_apply_success gauge",
            f'meshops_last_apply_success{{node="{node}"}} {ok}',
        ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
