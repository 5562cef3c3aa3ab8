"""PKI fixtures: one PKI per key type, built once per session."""

from __future__ import annotations

import pytest
from pki_factories import KEY_TYPES, Pki, make_pki


@pytest.fixture(scope="session", params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> Pki:
    """One PKI per key type (RSA key generation is slow, so built once per session)."""
    return make_pki(request.param)


@pytest.fixture(scope="session")
def p256() -> Pki:
    return make_pki("ecdsa-p256")
