"""Certificate files for proxy tests, from the test PKI that `meshops.pki` issues.

Shaped like CONTRACT.md section 5 (one URI SAN, CN = identity, serverAuth+clientAuth,
cert.pem = leaf + node CA, ca.pem = root, crl.pem = a CRL from every CA in the chain,
because nginx and Envoy check CRLs for the whole chain). The mesh PKI and a foreign one
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


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path
    crl: Path


@dataclass(frozen=True)
class Mesh:
    """The mesh's PKI (root, node CA of web-1) and a foreign one, for leaves per identity."""

    own: Pki
    foreign: Pki
    directory: Path

    def write_identity(self, identity: str, *, foreign: bool = False) -> TlsFiles:
        """cert.pem (leaf + node CA), key.pem 0600, ca.pem, crl.pem for `identity`.

        With `foreign`, the same SPIFFE identity issued by someone else's CAs.
        """
        pki = self.foreign if foreign else self.own
        directory = self.directory / (f"foreign-{identity}" if foreign else identity)
        leaf = pki.leaf(leaf_spec(identity, NODE, ips=node_ips(0)))
        node_ca = pki.node_cas[NODE]
        crls = empty_crl_pem(pki.root, now=pki.now) + empty_crl_pem(node_ca, now=pki.now)
        files = TlsFiles(
            directory / "cert.pem",
            directory / "key.pem",
            directory / "ca.pem",
            directory / "crl.pem",
        )
        write_atomic(files.cert, chain_pem(leaf.cert, node_ca.cert))
        write_atomic(files.key, private_pem(leaf.key), mode=0o600)
        write_atomic(files.ca, cert_pem(pki.root.cert))
        write_atomic(files.crl, crls)
        return files


def make_mesh(directory: Path) -> Mesh:
    """The mesh PKI and a foreign one, both P-256 and issued now."""
    now = datetime.now(UTC)
    placed = ("api", "web", "batch")  # every identity these tests issue runs on web-1
    own = make_pki("ecdsa-p256", nodes=(NODE,), now=now, identities=placed)
    foreign = make_pki(
        "ecdsa-p256", nodes=(NODE,), now=now, mesh_name="someone else's", identities=placed
    )
    return Mesh(own, foreign, directory)
