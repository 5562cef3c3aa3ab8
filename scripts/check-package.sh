#!/usr/bin/env bash
# The package as users install it: build the sdist and the wheel (the wheel from the
# sdist, so the sdist is proven complete), install the wheel in a fresh virtual
# environment, and run its CLI from outside the source tree. Then install it the way
# examples/ci/*.yml do (`pip install "$MESHOPS_PACKAGE"`, a pinned git URL, here this
# clone at HEAD) and run it again. Run by scripts/test.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/meshops-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH  # the installed package, never this checkout's
export SOPS_DISABLE_VERSION_CHECK=1 PIP_DISABLE_PIP_VERSION_CHECK=1

fail() { echo "check-package: $*" >&2; exit 1; }

# what is committed (as a clone has it), built outside the checkout: no build/ or
# egg-info left in it
mkdir "$work/src"
git -C "$repo" archive HEAD | tar -x -C "$work/src"
python -m build --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; fail "python -m build failed"; }
wheel=$(ls "$work"/dist/meshops-*-py3-none-any.whl)
sdist=$(ls "$work"/dist/meshops-*.tar.gz)
tar -tzf "$sdist" >"$work/sdist.txt"
grep -q '/meshops/data/starter-mesh.yaml$' "$work/sdist.txt" || fail "sdist lacks package data"
echo "built $(basename "$sdist") and $(basename "$wheel")"

python -m venv "$work/venv"
pip=("$work/venv/bin/pip" install -q --progress-bar off)
"${pip[@]}" "$wheel"
cd "$work"  # nothing of the checkout on sys.path

check() {
  local meshops="$work/venv/bin/meshops" version
  version=$(basename "$wheel" | cut -d- -f2)
  [[ "$("$meshops" --version)" == "meshops $version" ]] || fail "--version is not $version"
  "$meshops" validate -f "$repo/examples/mesh.yaml" | grep -q ': valid: ' ||
    fail "validate of examples/mesh.yaml failed"
  "$meshops" schema | cmp -s - "$repo/schemas/mesh.v1.schema.json" ||
    fail "the installed schema differs from schemas/mesh.v1.schema.json"
  rm -rf "$work/new-mesh"
  "$meshops" init "$work/new-mesh" >/dev/null  # the starter mesh.yaml is package data
  "$meshops" -C "$work/new-mesh" validate >/dev/null || fail "init's starter does not validate"
  "$work/venv/bin/python" - "$work/venv" <<'EOF' || fail "the package is not the installed one"
import pathlib, sys
import meshops
here = pathlib.Path(meshops.__file__).resolve()
assert here.is_relative_to(pathlib.Path(sys.argv[1]).resolve()), here
assert (here.parent / "py.typed").is_file() and (here.parent / "data/starter-mesh.yaml").is_file()
EOF
}

check
echo "the wheel works in a fresh venv: --version, validate, schema, init"

# as examples/ci/*.yml install it: a git URL pinned to a commit
"$work/venv/bin/pip" uninstall -q -y meshops
for example in "$repo"/examples/ci/*.yml; do
  grep -q 'pip install[^"]*"\$MESHOPS_PACKAGE"' "$example" ||
    fail "$(basename "$example") does not install \"\$MESHOPS_PACKAGE\""
done
# (`name @ git+file:///...` is not a valid requirement to pip's parser: no host)
MESHOPS_PACKAGE="git+file://$repo@$(git -C "$repo" rev-parse HEAD)"
"${pip[@]}" "$MESHOPS_PACKAGE"
check
echo "the CI examples' install line works: pip install \"$MESHOPS_PACKAGE\""
