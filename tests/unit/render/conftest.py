"""Fixtures for proxy render tests: real certificate files from a throwaway PKI."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_pki import TlsFiles, make_mesh


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """Real cert.pem / key.pem / ca.pem / crl.pem for identity `api`."""
    return make_mesh(tmp_path / "pki").write_identity("api")
