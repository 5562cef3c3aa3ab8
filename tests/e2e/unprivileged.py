"""Host-scope runs without privileges: `meshops ... --node N --root DIR` in this very
namespace, with every capability dropped (`setpriv`) when the tests run as root, so
nothing that needs CAP_NET_ADMIN (or any other capability) can succeed.

Only certificates-only nodes (`wireguard: false`) apply like this: the run touches
files under --root and nothing of the network.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from test_repo_support import MESHOPS, MeshRepo, Result

# drops every capability for good: bounding, inheritable (and so ambient) sets
NO_CAPABILITIES = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"]


def host_meshops(repo: MeshRepo, node: str, root: Path, *args: str) -> Result:
    """`meshops -C REPO --identity KEY <args> --node NODE --root ROOT`, unprivileged."""
    argv = [MESHOPS, "--no-color", "-C", str(repo.path),
            "--identity", str(repo.host_keys[node].private_file),
            *args, "--node", node, "--root", str(root)]  # fmt: skip
    wrapped = [*NO_CAPABILITIES, *argv] if os.geteuid() == 0 else argv
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    env.pop("MESHOPS_IDENTITY", None)
    env.pop("MESHOPS_NODE", None)
    proc = subprocess.run(wrapped, capture_output=True, text=True, env=env, timeout=120)
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    repo.outputs.append(result.output)
    return result
