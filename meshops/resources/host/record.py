"""After a host apply: last-applied record, status.json and the metrics textfile."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from meshops.providers.files import clear_leftovers, write_atomic
from meshops.resources.host.scope import HostScope
from meshops.resources.host.status import collect, metrics_text

if TYPE_CHECKING:
    from meshops.engine.plan import Plan
    from meshops.engine.run import ApplyResult
    from meshops.engine.runtime import Runtime


def record_apply(
    scope: HostScope,
    plan: Plan,
    result: ApplyResult | None,
    plan_id: str | None,
    rt: Runtime,
    *,
    revision: str | None,
) -> None:
    last: dict[str, Any] = dict(scope.last)
    failures: list[dict[str, Any]] = []
    if result is None:
        outcome, error, count = "no-op", None, 0
    else:
        outcome = "ok" if result.ok else "failed"
        failures = [
            {"address": change.address, "error": str(exc)} for change, exc in result.failures
        ]
        error = f"{failures[0]['address']}: {failures[0]['error']}" if failures else None
        count = len(result.applied)
    peers = dict(last.get("peers", {}))
    for node, key in rt.shared.get("peers", {}).items():
        if key is None:
            peers.pop(node, None)
        else:
            peers[node] = key
    last["peers"] = {k: peers[k] for k in sorted(peers)}
    endpoints = dict(last.get("peer_endpoints", {}))
    for node, endpoint in rt.shared.get("peer_endpoints", {}).items():
        if endpoint is None:
            endpoints.pop(node, None)
        else:
            endpoints[node] = endpoint
    last["peer_endpoints"] = {k: endpoints[k] for k in sorted(endpoints)}
    if "interface_key" in rt.shared:  # the key meshops configured its interface with
        if rt.shared["interface_key"] is None:
            last.pop("interface_key", None)
        else:
            last["interface_key"] = rt.shared["interface_key"]
    if plan_id and result is not None and result.ok:
        last["plan_id"] = plan_id
    held = scope.trust.refused
    last["last_apply"] = {
        "time": rt.now.isoformat(timespec="seconds"),
        "revision": revision,
        "result": outcome,
        "error": error,  # the first failure; every one is in `failures`
        "failures": failures,
        "skipped": [c.address for c in result.skipped] if result else [],
        "changes": count,
        # the checkout's state/ or the pull was refused: this run used the last good
        # material (docs/security.md)
        "refused": held["reason"] if held else rt.shared.get("pull_refused"),
    }
    lib = scope.lib_dir
    clear_leftovers(lib)  # temp files of a killed run (we hold the lock)
    scope.owned.clear_temps()
    write_atomic(lib / "last-applied.json", _json(last), mode=0o644)
    scope.last = last
    scope.forget_wireguard()
    status = collect(scope, rt.now)
    # derived from the live system and rewritten by every run: atomic, but not worth
    # an fsync each (two per file, on every apply and every watch run)
    write_atomic(lib / "status.json", _json(status), mode=0o644, fsync=False)
    write_atomic(lib / "metrics.prom", metrics_text(status).encode(), mode=0o644, fsync=False)


def _json(data: Any) -> bytes:
    # compact on purpose: `indent` switches json to its pure-Python encoder, which took
    # ~50 ms per apply for a 1,000-peer status.json (`meshops status` pretty-prints)
    return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()
