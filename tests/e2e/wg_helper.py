"""Run WireGuard provider calls inside a test-bed host and print the results as JSON.

Usage (from a test): `host.run([sys.executable, HELPER], input=json.dumps(ops))`, where
ops is a list of {"op": NAME, ...}. Keys arrive on stdin, never on the command line.
Results are printed as one JSON list; preshared keys are reported only as present or
not, and `raw_get` drops the private_key line.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from meshops.providers import wireguard as wg
from meshops.providers.wireguard.uapi import UapiBackend


def _peer(spec: dict[str, Any]) -> wg.PeerConfig:
    psk = spec.get("preshared_key")
    return wg.PeerConfig(
        public_key=spec["public_key"],
        endpoint=spec.get("endpoint"),
        allowed_ips=tuple(spec.get("allowed_ips", ())),
        keepalive=spec.get("keepalive"),
        preshared_key=base64.b64decode(psk) if psk else None,
    )


def _state(state: wg.DeviceState | None) -> Any:
    if state is None:
        return None
    peers = {}
    for key, peer in state.peers.items():
        fields = asdict(peer)
        fields["preshared_key"] = peer.preshared_key is not None
        peers[key] = fields
    return {
        "name": state.name,
        "public_key": state.public_key,
        "listen_port": state.listen_port,
        "peers": peers,
    }


def _raw_get(name: str) -> str:
    answer = UapiBackend()._exchange(name, b"get=1\n\n", op="get", missing_ok=False)
    assert answer is not None
    return "".join(
        line for line in answer.splitlines(keepends=True) if not line.startswith("private_key=")
    )


def _many_peers(backend: wg.Backend, name: str, count: int) -> None:
    for i in range(count):
        public = wg.public_key_of(wg.generate_private_key())
        endpoint = f"198.51.100.{i % 250 + 1}:{51820 + i // 250}"
        allowed = (f"10.43.{i // 250}.{i % 250}/32",)
        backend.set_peer(name, wg.PeerConfig(public, endpoint, allowed, 25))


def _read_timing(backend: wg.Backend, name: str) -> dict[str, float]:
    """Best of 7 wall-clock times for a full `read`, in milliseconds."""
    times = []
    peers = 0
    for _ in range(7):
        start = time.perf_counter()
        state = backend.read(name)
        times.append((time.perf_counter() - start) * 1000)
        peers = len(state.peers) if state else 0
    return {"best_ms": min(times), "median_ms": sorted(times)[3], "peers": peers}


def run_op(op: dict[str, Any]) -> Any:
    name = op["name"]
    kind = op["op"]
    if kind == "ensure_interface":
        return wg.ensure_interface(name, mtu=op["mtu"])
    if kind == "delete_interface":
        return wg.delete_interface(name)
    if kind == "set_up":
        return wg.set_up(name)
    if kind == "add_address":
        return wg.add_address(name, op["address"])
    if kind == "ensure_route":
        return wg.ensure_route(op["cidr"], name)
    if kind == "read_link":
        link = wg.read_link(name)
        return None if link is None else asdict(link)
    backend = wg.open_backend(name)
    if kind == "configure_device":
        private = base64.b64decode(op["private_key"])
        return backend.configure_device(name, private_key=private, listen_port=op["listen_port"])
    if kind == "set_peer":
        return backend.set_peer(name, _peer(op["peer"]))
    if kind == "remove_peer":
        return backend.remove_peer(name, op["public_key"])
    if kind == "read":
        return _state(backend.read(name))
    if kind == "raw_get":
        return _raw_get(name)
    if kind == "many_peers":
        return _many_peers(backend, name, op["count"])
    if kind == "read_timing":
        return _read_timing(backend, name)
    raise SystemExit(f"unknown op {kind!r}")


if __name__ == "__main__":
    ops = json.load(sys.stdin)
    print(json.dumps([run_op(op) for op in ops]))
