"""`ca.node["<node>"]`: a node's intermediate CA (pathlen 0, name-constrained), its key
sealed to the node's recipient. Removing the node revokes it (see `ca.crl`)."""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.model.durations import format_duration
from meshops.providers.files import prune_empty_dirs, read_bytes, remove
from meshops.resources.repo.scope import (
    RepoScope,
    recipients_fingerprint,
    sha256_hex,
)
from meshops.resources.repo.state import CertRecord, Revoked

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.enroll.request import Proven
    from meshops.pki import NodeCASpec


@dataclass(frozen=True)
class NodeCALive:
    cert_sha256: str | None
    key_sha256: str | None
    cert_fingerprint: str = ""  # of the first certificate in ca.crt; "" if unreadable
    crl_sha256: str | None = None


def pem_fingerprint(data: bytes) -> str:
    """`sha256:<hex>` of the first PEM certificate's DER, as `cert_fingerprint` gives,
    without parsing the certificate (a thousand parses dominate a no-op plan)."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = data.find(begin)
    stop = data.find(end, start)
    if start < 0 or stop < 0:
        return ""
    try:
        der = binascii.a2b_base64(data[start + len(begin) : stop])
    except binascii.Error:
        return ""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def names_fingerprint(spec: NodeCASpec) -> str:
    text = "|".join(
        [spec.trust_domain, spec.domain, *sorted(spec.permitted_dns), *sorted(map(str, spec.ips))]
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def names_of(spec: NodeCASpec) -> list[str]:
    return spec.constraint_names()


def superseded(scope: RepoScope) -> list[tuple[str, CertRecord]]:
    """Recorded node CAs that apply revokes: those of removed nodes, those sealed to a
    node recipient that mesh.yaml no longer names (a re-keyed, maybe stolen host), and
    those of a host-held node that enrolled another key (rotation, migration).

    A node CA replaced for any other reason (renewal, names, a new root) is not revoked:
    hosts that have not pulled the new one yet keep working until it expires.
    """
    out = []
    for name in sorted(scope.state.nodes):
        record = superseded_record(scope, name)
        if record is not None:
            out.append((name, record))
    return out


def superseded_record(scope: RepoScope, name: str) -> CertRecord | None:
    """Node `name`'s recorded node CA when apply revokes it (see `superseded`)."""
    rec = scope.state.nodes.get(name)
    if rec is None or rec.ca is None:
        return None
    node = scope.mesh.nodes.get(name)
    if node is None:
        return rec.ca
    if scope.mesh.host_held(name):  # a new key enrolled: a rotation, or leaving sealed keys
        proof = scope.enrolments.get(name)
        return rec.ca if proof is not None and rec.ca.public_key != proof.ca_key else None
    if rec.ca.recipients != recipients_fingerprint([node.recipient]):
        return rec.ca  # re-keyed, or leaving host-held keys (no recipient recorded)
    return None


class NodeCAResource(Resource[NodeCALive]):
    def __init__(self, scope: RepoScope, node: str):
        self.scope = scope
        self.node = node
        self.address = f'ca.node["{node}"]'
        self.depends_on = ("ca.root", f'ipam.address["{node}"]')
        self.cert_path = scope.layout.node_ca_cert(node)
        self.key_path = scope.layout.node_ca_key(node)
        self.crl_path = scope.layout.node_crl(node)

    def _spec(self) -> NodeCASpec:
        from meshops.pki import NodeCASpec

        return NodeCASpec.for_node(
            self.scope.mesh, self.node, overlay=self.scope.overlay(self.node)
        )

    def read(self, rt: Runtime) -> Observed[NodeCALive]:
        cert = read_bytes(self.cert_path)
        key = read_bytes(self.key_path)
        crl = read_bytes(self.crl_path)
        live = NodeCALive(
            sha256_hex(cert) if cert is not None else None,
            sha256_hex(key) if key is not None else None,
            pem_fingerprint(cert) if cert is not None else "",
            sha256_hex(crl) if crl is not None else None,
        )
        rec = self.scope.state.nodes.get(self.node)
        recorded = vars(rec.ca) if rec and rec.ca else None
        proof = self.scope.enrolments.get(self.node)
        enrolled = proof.ca_key if proof else None
        return Observed(
            live,
            fingerprint_of(live.cert_sha256, live.key_sha256, live.crl_sha256, recorded, enrolled),
        )

    def plan(self, observed: Observed[NodeCALive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        rec = self.scope.state.nodes.get(self.node)
        record = rec.ca if rec else None
        before: dict[str, Any] | None = (
            {
                "serial": record.serial,
                "not_after": record.not_after,
                "fingerprint": record.fingerprint,
            }
            if record
            else None
        )
        if self.node not in self.scope.mesh.nodes:
            files = (live.cert_sha256, live.key_sha256, live.crl_sha256)
            if record is None and files == (None, None, None):
                return Change(self.address, Action.NOOP)
            serial = f" (serial {record.serial})" if record else ""
            return Change(
                self.address,
                Action.DELETE,
                f"node removed: node CA revoked{serial}",
                before,
                None,
                sensitive=True,
            )
        spec = self._spec()
        after = {"names": names_of(spec), "ttl": str(self.scope.mesh.ca.node_ca_ttl)}
        reason, action = self._reason(live, record, spec, rt.now)
        if action is Action.NOOP:
            return Change(self.address, Action.NOOP, "", before, before, sensitive=True)
        return Change(
            self.address,
            action,
            reason,
            before,
            after,
            sensitive=True,
            needs=self.scope.root_needs(),
            impact=Impact.NONE,
        )

    def _reason(
        self, live: NodeCALive, record: CertRecord | None, spec: NodeCASpec, now: datetime
    ) -> tuple[str, Action]:
        mesh = self.scope.mesh
        holder = self._host_reason if mesh.host_held(self.node) else self._sealed_reason
        why, action = holder(live, record)
        if action is not Action.NOOP:
            return why, action
        assert record is not None
        if record.key_type != mesh.ca.key_type:
            return f"key type changed: {record.key_type} -> {mesh.ca.key_type}", Action.REPLACE
        roots = self.scope.state.roots
        if self.scope.state.rotation is not None:  # re-issued in phase 2 only
            step = self.scope.rotation_step(now)
            if self.node in step.reissue:
                return f"{step.reason}: re-issued under the new root", Action.REPLACE
        elif roots and record.issuer and record.issuer != roots[-1].fingerprint:
            return "issued by a previous root CA", Action.REPLACE
        if record.names != names_fingerprint(spec):
            return self._names_reason(spec), Action.REPLACE
        not_after = datetime.fromisoformat(record.not_after)
        ttl = float(mesh.ca.node_ca_ttl)
        renew_before = mesh.certs.renew_before.before_expiry(ttl)
        remaining = (not_after - now).total_seconds()
        if remaining <= 0:
            return f"expired {format_duration(int(-remaining))} ago", Action.REPLACE
        if remaining < renew_before:
            return (
                f"expires in {format_duration(int(remaining))} < renew_before "
                f"{format_duration(int(renew_before))}",
                Action.REPLACE,
            )
        return "", Action.NOOP

    def _sealed_reason(self, live: NodeCALive, record: CertRecord | None) -> tuple[str, Action]:
        if record is None or live.cert_sha256 is None or live.key_sha256 is None:
            return ("new node" if record is None else "node CA files missing"), Action.CREATE
        if record.key_sha256 != live.key_sha256 or record.fingerprint != live.cert_fingerprint:
            return "files do not match state.yaml (interrupted apply or hand edit)", Action.REPLACE
        if record.crl_sha256 != live.crl_sha256:
            # only the node CA's key can sign its CRL, and repo scope holds it only
            # while issuing: a missing or altered CRL means issuing afresh
            what = "missing" if live.crl_sha256 is None else "does not match state.yaml"
            return f"node CA's CRL {what}", Action.REPLACE
        recipient = recipients_fingerprint([self.scope.mesh.nodes[self.node].recipient])
        if record.recipients != recipient:
            if not record.recipients:
                return "keys: sealed: a new key sealed to the node's recipient", Action.REPLACE
            return "node recipient changed: new key sealed to the new recipient", Action.REPLACE
        return "", Action.NOOP

    def _host_reason(self, live: NodeCALive, record: CertRecord | None) -> tuple[str, Action]:
        """keys: host: the node CA certifies the key of the node's enrolment request."""
        from meshops.enroll.checks import request_path

        proof = self.scope.enrolments[self.node]
        request = request_path(self.node)
        if record is None or live.cert_sha256 is None:
            why = f"enrols the key of {request}" if record is None else "node CA files missing"
            return why, Action.CREATE
        if record.public_key != proof.ca_key:
            if record.recipients or live.key_sha256 is not None:
                return (
                    f"keys: host: enrols the key born on the node ({request}); the sealed "
                    "key leaves state/ and the old node CA is revoked",
                    Action.REPLACE,
                )
            return f"new key in {request} (rotation): the old node CA is revoked", Action.REPLACE
        if record.fingerprint != live.cert_fingerprint or live.key_sha256 is not None:
            return "files do not match state.yaml (interrupted apply or hand edit)", Action.REPLACE
        if record.crl_sha256 != live.crl_sha256 or record.crl_sha256 != _request_crl_sha(proof):
            return f"node CA's CRL differs from the one in {request}", Action.REPLACE
        return "", Action.NOOP

    def _names_reason(self, spec: NodeCASpec) -> str:
        """What changed in the names the node CA may vouch for, from its certificate."""
        from meshops.pki.parse import load_certificates
        from meshops.pki.renewal import constraint_names, name_changes

        try:
            cert = load_certificates(self.cert_path.read_bytes())[0]
        except (OSError, MeshError):
            return "names changed (node or identity names, DNS names, addresses)"
        changed = name_changes(constraint_names(cert), names_of(spec)).split(", ")
        shown = ", ".join(changed[:6])
        more = f", and {len(changed) - 6} more" if len(changed) > 6 else ""
        return f"names changed: {shown}{more}" if changed != [""] else "names changed"

    def _revoke_superseded(self, rt: Runtime) -> None:
        """Record the current node CA as revoked (saved with this resource's change)."""
        record = superseded_record(self.scope, self.node)
        if record is not None:
            self.scope.state.crl.revoke(
                Revoked(
                    node=self.node,
                    serial=record.serial,
                    revoked_at=rt.now.isoformat(timespec="seconds"),
                    not_after=record.not_after,
                    issuer=record.issuer,
                )
            )

    def apply(self, change: Change, rt: Runtime) -> None:
        scope = self.scope
        if change.action is Action.DELETE:
            remove(self.key_path)
            remove(self.cert_path)
            remove(self.crl_path)
            rec = scope.state.nodes.get(self.node)
            prune_empty_dirs(self.scope.layout.node_dir(self.node), stop=self.scope.layout.dir)
            self._revoke_superseded(rt)
            if rec is not None:
                rec.ca = None
            scope.save()
            return
        from meshops.pki import (
            cert_pem,
            generate_key,
            issue_node_ca,
            private_pem,
        )
        from meshops.pki.crl import build_crl, crl_pem
        from meshops.pki.keys import public_fingerprint

        mesh = scope.mesh
        root_cert, root_key = scope.root_material(rt)
        spec = self._spec()
        if mesh.host_held(self.node):
            self._issue_enrolled(root_cert, root_key, spec, rt)
            return
        key = generate_key(mesh.ca.key_type)
        cert = issue_node_ca(
            root_cert=root_cert,
            root_key=root_key,
            public_key=key.public_key(),
            spec=spec,
            now=rt.now,
            ttl_seconds=float(mesh.ca.node_ca_ttl),
        )
        recipient = mesh.nodes[self.node].recipient
        sealed = scope.sealer.seal(private_pem(key), [recipient], self.key_path)
        # key first, then cert, then the record: an interruption anywhere leaves files
        # that do not match state.yaml, which the next plan replaces
        scope.write(self.key_path, sealed, mode=0o600)
        scope.write(self.cert_path, cert_pem(cert), mode=0o644)
        # the node CA revokes nothing (a leaf lives for hours), but verifiers that
        # check the whole chain want a CRL from it: one, valid for the CA's lifetime
        crl = crl_pem(
            build_crl(
                issuer_cert=cert,
                issuer_key=key,
                revoked=[],
                number=1,
                now=rt.now,
                next_update_seconds=(cert.not_valid_after_utc - rt.now).total_seconds(),
            )
        )
        scope.write(self.crl_path, crl, mode=0o644)
        self._revoke_superseded(rt)
        self._record(cert, spec, root_cert, crl, public_fingerprint(key.public_key()),
                     key_sha256=sha256_hex(sealed),
                     recipients=recipients_fingerprint([recipient]))  # fmt: skip

    def _issue_enrolled(self, root_cert: Any, root_key: Any, spec: NodeCASpec, rt: Runtime) -> None:
        """Sign the node CA for the public key of the node's request: no private key of
        the node is made, seen or sealed here; its CRL is the one the host signed."""
        from meshops.pki import cert_pem, issue_node_ca

        scope, mesh = self.scope, self.scope.mesh
        proof = scope.enrolments[self.node]
        cert = issue_node_ca(
            root_cert=root_cert,
            root_key=root_key,
            public_key=proof.public_key,
            spec=spec,
            now=rt.now,
            ttl_seconds=float(mesh.ca.node_ca_ttl),
        )
        crl = _request_crl(proof)
        previous = scope.state.node(self.node).ca
        if previous is not None and previous.public_key != proof.ca_key:
            key = previous.public_key or _key_of(read_bytes(self.cert_path))
            if key:
                scope.state.node(self.node).retire(f"ca:{key}")
        remove(self.key_path)  # a sealed key of the node's past (migration) leaves state/
        scope.write(self.cert_path, cert_pem(cert), mode=0o644)
        scope.write(self.crl_path, crl, mode=0o644)
        self._revoke_superseded(rt)
        self._record(cert, spec, root_cert, crl, proof.ca_key)

    def _record(self, cert: Any, spec: NodeCASpec, root_cert: Any, crl: bytes, public_key: str,
                *, key_sha256: str = "", recipients: str = "") -> None:  # fmt: skip
        """Record the issued node CA in state.yaml (with its sealed key's facts, if any)."""
        from meshops.pki.parse import cert_fingerprint

        self.scope.state.node(self.node).ca = CertRecord(
            fingerprint=cert_fingerprint(cert),
            serial=format(cert.serial_number, "x"),
            not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
            key_type=self.scope.mesh.ca.key_type,
            key_sha256=key_sha256,
            recipients=recipients,
            names=names_fingerprint(spec),
            issuer=cert_fingerprint(root_cert),
            crl_sha256=sha256_hex(crl),
            public_key=public_key,
        )
        self.scope.save()


def _key_of(cert: bytes | None) -> str:
    """sha256 of the public key of a node CA certificate (PEM), "" when unreadable."""
    from meshops.pki.keys import cert_public_key, public_fingerprint
    from meshops.pki.parse import load_certificates

    try:
        return public_fingerprint(cert_public_key(load_certificates(cert or b"")[0]))
    except MeshError:
        return ""


def _request_crl(proof: Proven) -> bytes:
    from meshops.pki.crl import crl_pem

    return crl_pem(proof.crl)


def _request_crl_sha(proof: Proven) -> str:
    return sha256_hex(_request_crl(proof))
