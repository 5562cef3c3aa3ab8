"""Enrolment of host-held keys (docs/keys.md): a node's keys are born on it, and a small
request in `enroll/<node>.yaml` (public keys, a CSR, signatures by those keys) is what
the operator commits in a pull request; repo scope signs from it.

`request` is the file format and its signatures, `checks` relates requests to mesh.yaml
and to each other (pure), `make` builds a request on the host.
"""

from __future__ import annotations

ENROLL_DIR = "enroll"
