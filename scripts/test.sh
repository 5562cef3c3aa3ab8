#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, every test (unit and end-to-end,
# the quick start among them), then the package as users install it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export SOPS_DISABLE_VERSION_CHECK=1
ruff check .
ruff format --check .
mypy
python -m pytest -n 2 --dist loadfile -q "$@"
bash scripts/check-package.sh
