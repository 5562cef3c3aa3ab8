"""What host status reports of each CRL (resources/host/status.py): issuer, number and
next update as the CRL says, its state by the time left, and the same report when the
CRL's facts come from what an earlier run (watch) read of the same bytes."""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from pki_factories import DAY, NOW, Pki

from meshops.pki import build_crl, crl_pem
from meshops.resources.host import status
from meshops.resources.host.scope import HostScope
from meshops.resources.host.trust import StateFiles
from meshops.resources.repo.state import NodeRecord, StateDoc, StateLayout


def _scope(tmp_path: Path, files: dict[Path, bytes], nodes: list[str]) -> SimpleNamespace:
    """What `status._crls` reads of a host scope: the layout, state.yaml's nodes and
    the verified bytes of state/ files (read as HostScope reads them)."""
    layout = StateLayout(tmp_path)
    verified = {p.relative_to(layout.dir).as_posix(): d for p, d in files.items()}
    scope = SimpleNamespace(
        layout=layout,
        state=StateDoc(nodes={n: NodeRecord() for n in nodes}),
        files=StateFiles(verified, layout.dir),
    )
    scope.state_bytes = functools.partial(HostScope.state_bytes, scope)  # type: ignore[arg-type]
    return scope


def test_each_crl_is_reported_and_a_watch_run_reports_the_same(p256: Pki, tmp_path: Path) -> None:
    root_crl = build_crl(issuer_cert=p256.root.cert, issuer_key=p256.root.key, revoked=[],
                         number=4, now=NOW, next_update_seconds=8 * DAY)  # fmt: skip
    layout = StateLayout(tmp_path)
    files = {layout.crl: crl_pem(root_crl)}
    for node, ca in p256.node_cas.items():
        crl = build_crl(issuer_cert=ca.cert, issuer_key=ca.key, revoked=[], number=1,
                        now=NOW, next_update_seconds=8 * DAY)  # fmt: skip
        files[layout.node_crl(node)] = crl_pem(crl)
    scope = _scope(tmp_path, files, sorted(p256.node_cas))
    status._KNOWN_CRLS.clear()
    first = status._crls(scope, NOW + timedelta(days=1))  # type: ignore[arg-type]
    assert [c["kind"] for c in first] == ["root"] + ["node CA"] * len(p256.node_cas)
    assert first[0]["number"] == 4 and first[0]["status"] == "ok"
    assert first[0]["expires_in_seconds"] == 7 * DAY
    assert first[0]["next_update"] == (NOW + timedelta(days=8)).isoformat(timespec="seconds")
    assert len(status._KNOWN_CRLS) == len(files)
    again = status._crls(scope, NOW + timedelta(days=1))  # type: ignore[arg-type]
    assert again == first
    late = status._crls(scope, NOW + timedelta(days=7))  # type: ignore[arg-type]
    assert {c["status"] for c in late} == {"warning"}  # a day of eight left
    gone = status._crls(scope, NOW + timedelta(days=9))  # type: ignore[arg-type]
    assert {c["status"] for c in gone} == {"expired"}
    # a node gone from state/: its CRL is no longer reported nor kept
    fewer = _scope(tmp_path, files, sorted(p256.node_cas)[1:])
    assert len(status._crls(fewer, NOW)) == len(first) - 1  # type: ignore[arg-type]
    assert len(status._KNOWN_CRLS) == len(files) - 1
