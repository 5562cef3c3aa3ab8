"""Roots of every key type, made once per session (RSA keys are slow to make)."""

from __future__ import annotations

import pytest
from trust_helpers import Root

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072")


@pytest.fixture(scope="session", params=KEY_TYPES)
def any_root(request: pytest.FixtureRequest) -> Root:
    return Root.make(request.param)


@pytest.fixture(scope="session")
def root() -> Root:
    return Root.make("ecdsa-p256")


@pytest.fixture(scope="session")
def next_root() -> Root:
    return Root.make("ecdsa-p256", name="demo-next")


@pytest.fixture(scope="session")
def third_root() -> Root:
    return Root.make("ed25519", name="demo-third")
