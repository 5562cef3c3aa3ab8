#!/usr/bin/env bash
# Set everything up, then run the main job on examples/mesh.yaml: validate it and plan it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export SOPS_DISABLE_VERSION_CHECK=1
meshops validate -f examples/mesh.yaml
demo=$(mktemp -d)
cp examples/mesh.yaml "$demo/mesh.yaml"
meshops -C "$demo" plan
meshops -f examples/mesh.yaml graph
