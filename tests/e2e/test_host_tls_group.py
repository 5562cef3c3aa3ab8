"""`tls: {group: NAME}`: a proxy that runs as its own user reads its identity's key.

Keys become 0640 root:NAME (never world-readable), mesh-wide or per identity; a change
of group is fixed in place without a new key; a group the host lacks is a clear error.
"""

from __future__ import annotations

import copy
import grp
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_fixtures import BedMesh, clean_failure, one_host_mesh
from test_repo_support import KeyRing, keyring
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]

NODE = "node-1"
IDENTITIES = {
    "api": {"nodes": [NODE], "outputs": {"combined_pem": True}},
    "db": {"nodes": [NODE], "tls": {"group": "www-data"}},
    "plain": {"nodes": [NODE], "tls": {}},
    "site": {
        "nodes": [NODE],
        "proxy": {"kind": "caddy", "listen": 8443, "upstream": "127.0.0.1:8080"},
    },
}
POLICIES = [{"name": "p", "from": ["api"], "to": ["site"]}]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp_path = tmp_path_factory.mktemp("tls-group")
    sections = {"identities": copy.deepcopy(IDENTITIES), "policies": copy.deepcopy(POLICIES)}
    with one_host_mesh(tmp_path, keyring, peers=1, tls={"group": "caddy"}, **sections) as built:
        built.apply_repo("initial state")
        built.apply(NODE)
        yield built


def _access(path: Path) -> tuple[int, int, str]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_uid, grp.getgrgid(info.st_gid).gr_name


def test_keys_are_readable_by_the_named_group_only(mesh: BedMesh) -> None:
    assert _access(mesh.tls_dir(NODE, "api") / "key.pem") == (0o640, 0, "caddy")
    assert _access(mesh.tls_dir(NODE, "api") / "combined.pem") == (0o640, 0, "caddy")
    assert _access(mesh.tls_dir(NODE, "api") / "cert.pem")[0] == 0o644
    assert _access(mesh.tls_dir(NODE, "db") / "key.pem") == (0o640, 0, "www-data")
    assert _access(mesh.tls_dir(NODE, "plain") / "key.pem") == (0o640, 0, "caddy")
    assert mesh.plan(NODE).returncode == 0


def test_a_standalone_caddy_gets_directories_its_group_may_write(mesh: BedMesh) -> None:
    """Caddy running as the group's user keeps storage and its admin socket there."""
    for path in ("/var/lib/meshops-caddy/site", "/run/meshops-caddy/site"):
        assert _access(mesh.host_path(NODE, path)) == (0o770, 0, "caddy"), path
    text = mesh.host_path(NODE, "/etc/meshops/proxy/site.caddy").read_text()
    assert f"admin unix/{mesh.host_path(NODE, '/run/meshops-caddy/site')}/admin.sock" in text


def test_a_new_group_is_given_in_place_and_no_group_means_0600(mesh: BedMesh) -> None:
    key = mesh.tls_dir(NODE, "db") / "key.pem"
    before = key.read_bytes()
    mesh.repo.data["identities"]["db"]["tls"] = {"group": "caddy"}
    mesh.repo.data["identities"]["plain"]["tls"] = {}
    del mesh.repo.data["tls"]
    mesh.apply_repo("db's key to caddy; no mesh-wide group")
    plan = mesh.plan(NODE)
    assert 'cert.leaf["db"]: key file group www-data is not caddy' in plan.stdout, plan.stdout
    assert 'cert.leaf["api"]: key file mode 0o640 is not 0o600' in plan.stdout, plan.stdout
    mesh.apply(NODE)
    assert key.read_bytes() == before  # the same key, handed over
    assert _access(key) == (0o640, 0, "caddy")
    assert _access(mesh.tls_dir(NODE, "api") / "key.pem")[0] == 0o600
    assert _access(mesh.tls_dir(NODE, "api") / "combined.pem")[0] == 0o600
    assert mesh.plan(NODE).returncode == 0


def test_a_group_this_host_lacks_is_a_clear_error(mesh: BedMesh) -> None:
    mesh.repo.data["tls"] = {"group": "no-such-group"}
    mesh.apply_repo("a group nobody created")
    failed = mesh.meshops(NODE, "plan", check=False)
    first = clean_failure(failed)
    assert "group 'no-such-group' (tls.group in mesh.yaml) does not exist on node" in first
    assert "groupadd no-such-group" in failed.stderr
