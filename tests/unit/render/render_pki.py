"""Certificate files for proxy tests, from the test PKI that `meshops.pki` issues.

Shaped like a meshops leaf (docs/layout.md) (one URI SAN, CN = identity, serverAuth+clientAuth,
cert.pem = leaf + node CA, ca.pem = root, crl.pem = a CRL from every CA in the chain,
because nginx and Envoy check CRLs for the whole chain, node-cas.pem = every node CA,
Caddy's trust pool). The mesh PKI (nodes web-1 and web-2) and a foreign one
come from `pki_factories.make_pki`, issued at the real time because Caddy, nginx and
curl check certificates against the clock. Test-only: keys are written 0600 into a
temporary directory that the test owns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "pki"))

from pki_factories import Pki, empty_crl_pem, leaf_spec, make_pki, node_ips

from meshops.pki import cert_pem, chain_pem, private_pem
from meshops.providers.files import write_atomic

NODE = "web-1"
NODES = ("web-1", "web-2")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path
    crl: Path
    node_cas: Path


@dataclass(frozen=True)
class Mesh:
    """The mesh's PKI (root, node CA of web-1) and a foreign one, for leaves per identity."""

    own: Pki
    foreign: Pki
    directory: Path

    def write_identity(
        self, identity: str, *, node: str = NODE, foreign: bool = False, name: str = ""
    ) -> TlsFiles:
        """cert.pem (leaf + node CA), key.pem 0600, ca.pem, crl.pem and node-cas.pem for
        `identity`, its leaf issued by `node`'s CA, into the directory `name` (default:
        the identity's name).

        With `foreign`, the same SPIFFE identity issued by someone else's CAs.
        """
        pki = self.foreign if foreign else self.own
        label = name or (f"foreign-{identity}" if foreign else identity)
        directory = self.directory / label
        index = NODES.index(node)
        leaf = pki.leaf(leaf_spec(identity, node, ips=node_ips(index)))
        node_ca = pki.node_cas[node]
        crls = empty_crl_pem(pki.root, now=pki.now) + b"".join(
            empty_crl_pem(ca, now=pki.now) for ca in pki.node_cas.values()
        )
        files = TlsFiles(
            directory / "cert.pem",
            directory / "key.pem",
            directory / "ca.pem",
            directory / "crl.pem",
            directory / "node-cas.pem",
        )
        write_atomic(files.cert, chain_pem(leaf.cert, node_ca.cert))
        write_atomic(files.key, private_pem(leaf.key), mode=0o600)
        write_atomic(files.ca, cert_pem(pki.root.cert))
        write_atomic(files.crl, crls)
        write_atomic(files.node_cas, b"".join(cert_pem(ca.cert) for ca in pki.node_cas.values()))
        return files


def make_mesh(directory: Path) -> Mesh:
    """The mesh PKI and a foreign one, both P-256 and issued now."""
    now = datetime.now(UTC)
    # every node CA may vouch for each identity these tests issue (its name constraints
    # list them), so a leaf from the wrong node's CA verifies and the RBAC must refuse it
    placed = ("api", "web", "batch")
    own = make_pki("ecdsa-p256", nodes=NODES, now=now, identities=placed)
    foreign = make_pki(
        "ecdsa-p256", nodes=NODES, now=now, mesh_name="someone else's", identities=placed
    )
    return Mesh(own, foreign, directory)
