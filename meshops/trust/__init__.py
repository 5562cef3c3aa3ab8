"""Signed state: what a host or a reviewer may believe of `state/` (pure).

Repo-scope apply signs a manifest of every `state/` file (sha256 and size) with the root
key, under a version that only grows (`manifest.py`, `signature.py`). A new root is
trusted only through a transition the outgoing root signed (`transitions.py`), so a
host pinned to any earlier root walks forward to the current one. `verify.py` checks a
revision's `state/` against pinned roots: the signature, the version, every file it
reads, and that nothing it reads is a symlink or anything but a regular file.

These modules take bytes and return values; reading files (with O_NOFOLLOW) and git
objects is done by their callers in `resources/` and `gitops/`.
"""
