"""The access table as nodes: what each node opens on the overlay, to whom, and which
peers it needs. Properties are checked against a direct reading of the grants."""

from __future__ import annotations

from dataclasses import dataclass, field

from factories import identity, make_mesh, proxy, to_yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.model import load_text
from meshops.model.port import Port
from meshops.policy import AccessTable, Grant, PortGrant
from meshops.policy.flows import Flows, Opening

NODES = ("n1", "n2", "n3", "n4")
NAMES = ("a", "b", "c", "d", "e")


@dataclass(frozen=True)
class _Proxy:
    listen: int


@dataclass(frozen=True)
class _Identity:
    nodes: tuple[str, ...]
    ports: tuple[Port, ...] = ()
    proxy: _Proxy | None = None


@dataclass
class World:
    identities: dict[str, _Identity]
    table: AccessTable
    ops: set[str] = field(default_factory=set)

    def flows(self, *, permissive: bool = False) -> Flows:
        return Flows(self.identities, self.table, nodes=NODES, ops=self.ops, permissive=permissive)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    identities = {}
    for index, name in enumerate(NAMES):
        nodes = draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=3, unique=True))
        ports = draw(
            st.lists(st.sampled_from([Port(5432, "tcp"), Port(53, "udp")]), max_size=2, unique=True)
        )
        listen = _Proxy(8000 + index) if draw(st.booleans()) else None
        identities[name] = _Identity(tuple(nodes), tuple(ports), listen)
    grants = {
        Grant(caller, callee, "GET", "*", "p")
        for caller, callee in draw(
            st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)))
        )
    }
    l4 = set()
    for caller, callee in draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)))):
        for port in identities[callee].ports:
            if draw(st.booleans()):
                l4.add(PortGrant(caller, callee, port, "q"))
    ops = set(draw(st.lists(st.sampled_from(NODES), max_size=1)))
    return World(identities, AccessTable(tuple(sorted(grants)), tuple(sorted(l4))), ops)


def _nodes_of(world: World, callers: set[str], but: str) -> tuple[str, ...]:
    return tuple(sorted({n for c in callers for n in world.identities[c].nodes} - {but}))


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_each_opening_admits_exactly_the_nodes_of_its_allowed_callers(world: World) -> None:
    flows = world.flows()
    for node in NODES:
        expected = set()
        for name, ident in world.identities.items():
            if node not in ident.nodes:
                continue
            if ident.proxy is not None:
                callers = {g.caller for g in world.table.grants if g.callee == name}
                port = Port(ident.proxy.listen, "tcp")
                expected.add(Opening(name, port, "proxy", _nodes_of(world, callers, node)))
            for port in ident.ports:
                callers = {
                    g.caller for g in world.table.ports if (g.callee, g.port) == (name, port)
                }
                expected.add(Opening(name, port, "port", _nodes_of(world, callers, node)))
        assert set(flows.openings(node)) == expected


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_policy_peers_are_symmetric_cover_every_opening_and_every_ops_node(world: World) -> None:
    flows = world.flows()
    for node in NODES:
        peers = flows.peers(node)
        assert node not in peers
        assert {s for o in flows.openings(node) for s in o.sources} <= peers
        for other in peers:
            assert node in flows.peers(other), (node, other)
        if node in world.ops:
            assert peers == set(NODES) - {node}
        else:
            assert world.ops - {node} <= peers


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_a_node_without_flows_or_ops_needs_no_peer(world: World) -> None:
    flows = world.flows()
    for node in NODES:
        hosted = [n for n, i in world.identities.items() if node in i.nodes]
        talks = any(
            g.caller in hosted or g.callee in hosted
            for g in (*world.table.grants, *world.table.ports)
        )
        if not talks and node not in world.ops and not world.ops:
            assert flows.peers(node) == set()


def test_permissive_mode_also_opens_the_plaintext_port_to_the_same_nodes() -> None:
    world = World(
        {"api": _Identity(("n1",), (), _Proxy(8443)), "web": _Identity(("n2",))},
        AccessTable((Grant("web", "api", "GET", "*", "p"),)),
    )
    assert world.flows(permissive=True).openings("n1") == [
        Opening("api", Port(8443, "tcp"), "proxy", ("n2",)),
        Opening("api", Port(8444, "tcp"), "plaintext", ("n2",)),
    ]
    assert [o.kind for o in world.flows().openings("n1")] == ["proxy"]


def test_an_http_grant_to_an_identity_without_proxy_opens_and_peers_nothing() -> None:
    world = World(
        {"db": _Identity(("n1",), (Port(5432, "tcp"),)), "web": _Identity(("n2",))},
        AccessTable((Grant("web", "db", "*", "*", "p"),)),
    )
    assert world.flows().openings("n1") == [Opening("db", Port(5432, "tcp"), "port", ())]
    assert world.flows().peers("n1") == set() == world.flows().peers("n2")


def test_flows_of_a_loaded_mesh_follow_its_policies_and_ops_flag() -> None:
    data = make_mesh(
        nodes=4,
        identities={
            "api": identity("node-1", proxy=proxy()),
            "db": identity("node-2", ports=["5432/tcp"]),
            "web": identity("node-3"),
        },
        policies=[
            {"name": "web-api", "from": "web", "to": "api"},
            {"name": "api-db", "from": "api", "to": "db", "allow": [{"ports": ["5432/tcp"]}]},
        ],
        wireguard={"peers": "policy"},
    )
    data["nodes"]["node-4"]["ops"] = True
    loaded = load_text(to_yaml(data))
    flows = Flows.of(loaded.mesh, loaded.access)
    assert flows.openings("node-2") == [Opening("db", Port(5432, "tcp"), "port", ("node-1",))]
    assert flows.peers("node-1") == {"node-2", "node-3", "node-4"}
    assert flows.peers("node-2") == {"node-1", "node-4"}
    assert flows.peers("node-3") == {"node-1", "node-4"}
    assert flows.peers("node-4") == {"node-1", "node-2", "node-3"}
