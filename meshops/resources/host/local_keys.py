"""A host-held node's own private keys (docs/keys.md): born here by `meshops host init`,
never sent anywhere, 0600 in /etc/meshops/keys/ (0700):

    wg.key        the WireGuard private key, base64 as `wg genkey` prints it
    ca.key        the node CA key, PKCS#8 PEM
    wg.next.key   during a rotation (`meshops host rotate-keys`): the new keys, beside
    ca.next.key   the current ones until state/ carries them

Host scope uses whichever key matches what the root signed (the node CA certificate in
state/, the WireGuard public key in state.yaml), and `keys.local["<node>"]` makes a
new key current, removing the old one, once state/ carries it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from meshops.engine.plan import Action, Change
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.providers.files import write_atomic

if TYPE_CHECKING:
    from cryptography import x509

    from meshops.engine.runtime import Runtime
    from meshops.pki.keys import PrivateKey
    from meshops.resources.host.scope import HostScope

KEYS_DIR = "/etc/meshops/keys"
Kind = Literal["wg", "ca"]
Slot = Literal["current", "next"]
SLOTS: tuple[Slot, ...] = ("current", "next")
MAX_KEY_FILE = 16 * 1024


@dataclass(frozen=True)
class KeyStore:
    """The key files of one host, under `dir` (/etc/meshops/keys under --root)."""

    dir: Path

    def path(self, kind: Kind, slot: Slot = "current") -> Path:
        return self.dir / (f"{kind}.key" if slot == "current" else f"{kind}.next.key")

    def exists(self, kind: Kind, slot: Slot = "current") -> bool:
        return os.path.lexists(self.path(kind, slot))

    # -- reading ---------------------------------------------------------------------

    def read(self, kind: Kind, slot: Slot) -> bytes | None:
        """A key file's bytes, or None when absent. Refused (MeshError naming the file)
        when it is a symlink, not a regular file, or readable by group or others."""
        path = self.path(kind, slot)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MeshError(
                f"{path}: cannot open this host's key: {exc.strerror}",
                hint="a key file must be a regular file (not a symlink), mode 0600",
            ) from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise MeshError(f"{path}: not a regular file; refusing to use it as a key")
            if info.st_mode & 0o077:
                raise MeshError(
                    f"{path}: this host's private key is readable by others "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use it",
                    hint=f"chmod 600 {path}, and consider the key exposed: "
                    "`meshops host rotate-keys` makes new ones",
                )
            return f.read(MAX_KEY_FILE)

    def wireguard(self, slot: Slot) -> bytes | None:
        from meshops.providers.wireguard import b64_to_bytes

        data = self.read("wg", slot)
        if data is None:
            return None
        return b64_to_bytes(
            data.decode(errors="replace"), what=f"private key in {self.path('wg', slot)}"
        )

    def node_ca(self, slot: Slot) -> PrivateKey | None:
        from meshops.pki import load_private_pem

        data = self.read("ca", slot)
        if data is None:
            return None
        return load_private_pem(data, what=f"node CA key {self.path('ca', slot)}")

    def wireguard_for(self, public_key: str) -> tuple[Slot, bytes] | None:
        """The WireGuard private key (and its slot) whose public key is `public_key`."""
        from meshops.providers.wireguard import public_key_of

        for slot in SLOTS:
            key = self.wireguard(slot)
            if key is not None and public_key_of(key) == public_key:
                return slot, key
        return None

    def node_ca_for(self, cert: x509.Certificate) -> tuple[Slot, PrivateKey] | None:
        """The node CA key (and its slot) that `cert` certifies."""
        from meshops.pki import keys_match

        for slot in SLOTS:
            key = self.node_ca(slot)
            if key is not None and keys_match(key, cert):
                return slot, key
        return None

    # -- writing ---------------------------------------------------------------------

    def write(self, slot: Slot, *, wireguard: bytes | None, node_ca: PrivateKey) -> list[Path]:
        """Store new keys in `slot` (0600, atomically, the directory 0700); the paths."""
        from meshops.pki import private_pem
        from meshops.providers.files import ensure_dir
        from meshops.providers.wireguard.keys import bytes_to_b64

        ensure_dir(self.dir, mode=0o700)
        written = []
        if wireguard is not None:
            path = self.path("wg", slot)
            write_atomic(path, (bytes_to_b64(wireguard) + "\n").encode(), mode=0o600)
            written.append(path)
        path = self.path("ca", slot)
        write_atomic(path, private_pem(node_ca), mode=0o600)
        written.append(path)
        return written

    def promote(self, kind: Kind) -> None:
        """The next key becomes the current one; the current one is gone (one rename)."""
        os.replace(self.path(kind, "next"), self.path(kind, "current"))
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class KeysLive:
    waiting: tuple[Kind, ...]  # kinds with a next key
    carried: tuple[Kind, ...]  # of those, the ones state/ carries now


class LocalKeysResource(Resource[KeysLive]):
    """`keys.local["<node>"]`: after a rotation's enrolment is applied, the new keys
    become current and the old ones are removed (planned last: the interface and the
    leaves already use the new keys, found by matching)."""

    def __init__(self, scope: HostScope, *, after: list[str]):
        self.scope = scope
        self.address = f'keys.local["{scope.node}"]'
        self.depends_on = tuple(after)

    def read(self, rt: Runtime) -> Observed[KeysLive]:
        store = self.scope.keys
        kinds: tuple[Kind, ...] = ("wg", "ca")
        waiting = tuple(k for k in kinds if store.exists(k, "next"))
        carried = tuple(k for k in waiting if self._carried(k))
        live = KeysLive(waiting, carried)
        return Observed(live, fingerprint_of(list(waiting), list(carried)))

    def _carried(self, kind: Kind) -> bool:
        """Whether state/ (as the root signed it) carries this host's next `kind` key."""
        store, scope = self.scope.keys, self.scope
        if kind == "wg":
            rec = scope.record.wireguard
            found = store.wireguard_for(rec.public_key) if rec else None
            return found is not None and found[0] == "next"
        from meshops.pki.parse import load_certificates

        data = scope.state_bytes(scope.layout.node_ca_cert(scope.node))  # as it verified
        if data is None:
            return False
        found_ca = store.node_ca_for(load_certificates(data)[0])
        return found_ca is not None and found_ca[0] == "next"

    def plan(self, observed: Observed[KeysLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        names = {"wg": "WireGuard", "ca": "node CA"}
        before = {"rotation": [names[k] for k in live.waiting]}
        if not live.carried:
            return Change(self.address, Action.NOOP, "", before, before, sensitive=True)
        keys = " and ".join(f"{names[k]} key" for k in live.carried)
        after = {"rotation": [names[k] for k in live.waiting if k not in live.carried]}
        return Change(
            self.address, Action.UPDATE,
            f"rotation applied: state/ carries the new {keys}; the old one is removed",
            before, after, sensitive=True, needs=(self.scope.key_need,),
        )  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        live = self.read(rt).value
        assert live is not None
        for kind in live.carried:
            self.scope.keys.promote(kind)
