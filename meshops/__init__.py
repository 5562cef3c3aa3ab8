"""meshops: a WireGuard + mTLS service mesh run from one reviewed mesh.yaml."""

__version__ = "0.1.0"
