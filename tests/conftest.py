"""Shared test configuration. Area-specific fixtures live in each test folder's conftest."""

import os

os.environ.setdefault("SOPS_DISABLE_VERSION_CHECK", "1")
