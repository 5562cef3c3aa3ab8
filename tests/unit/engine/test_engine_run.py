"""The engine's pure steps: dependency order, plans, apply (stopping at the first failure,
or keeping going past it on a host, security changes first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops.engine.plan import Action, Change, Plan
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.engine.run import apply_plan, live_fingerprint, make_plan, order
from meshops.engine.runtime import Runtime
from meshops.errors import MeshError


@dataclass
class World:
    """A fake live system: values by address, and a log of applies."""

    values: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)


class Item(Resource[str]):
    def __init__(self, world: World, address: str, want: str, deps: tuple[str, ...] = ()):
        self.world, self.address, self.want, self.depends_on = world, address, want, deps

    def read(self, rt: Runtime) -> Observed[str]:
        value = self.world.values.get(self.address)
        return Observed(value, fingerprint_of(value))

    def plan(self, observed: Observed[str], rt: Runtime) -> Change:
        if observed.value == self.want:
            return Change(self.address, Action.NOOP)
        action = Action.CREATE if observed.value is None else Action.UPDATE
        return Change(self.address, action, "differs", depends_on=self.depends_on)

    def apply(self, change: Change, rt: Runtime) -> None:
        self.world.log.append(self.address)
        if self.address in self.world.fail:
            raise MeshError(f"{self.address} broke")
        self.world.values[self.address] = self.want


def test_order_puts_dependencies_first_and_keeps_the_rest_stable() -> None:
    w = World()
    items = [Item(w, "c", "1", ("a",)), Item(w, "b", "1"), Item(w, "a", "1", ("b",))]
    assert [r.address for r in order(items)] == ["b", "a", "c"]


def test_order_ignores_dependencies_outside_the_set() -> None:
    w = World()
    assert [r.address for r in order([Item(w, "x", "1", ("gone",))])] == ["x"]


def test_order_rejects_cycles_and_duplicates() -> None:
    w = World()
    with pytest.raises(MeshError, match="cycle"):
        order([Item(w, "a", "1", ("b",)), Item(w, "b", "1", ("a",))])
    with pytest.raises(MeshError, match="duplicate"):
        order([Item(w, "a", "1"), Item(w, "a", "2")])


@st.composite
def dags(draw: Any) -> list[tuple[str, tuple[str, ...]]]:
    n = draw(st.integers(1, 12))
    names = [f"r{i}" for i in range(n)]
    nodes = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        nodes.append((name, tuple(deps)))
    return draw(st.permutations(nodes))


@given(dags())
def test_order_is_a_topological_order_of_any_dag(graph: list[tuple[str, tuple[str, ...]]]) -> None:
    w = World()
    ordered = [r.address for r in order([Item(w, a, "1", deps) for a, deps in graph])]
    assert sorted(ordered) == sorted(a for a, _ in graph)
    position = {a: i for i, a in enumerate(ordered)}
    for address, deps in graph:
        assert all(position[d] < position[address] for d in deps)


def test_plan_is_in_dependency_order_and_lists_no_ops() -> None:
    w = World(values={"b": "1"})
    items = [Item(w, "a", "1", ("b",)), Item(w, "b", "1")]
    plan = make_plan("repo", items, Runtime())
    assert [(c.address, c.action) for c in plan.changes] == [
        ("b", Action.NOOP),
        ("a", Action.CREATE),
    ]
    assert plan.counts() == {"add": 1, "change": 0, "destroy": 0}
    assert plan.has_changes


def test_live_fingerprint_changes_with_any_observed_value() -> None:
    w = World(values={"a": "1"})
    items = [Item(w, "a", "1"), Item(w, "b", "1")]
    first = make_plan("repo", items, Runtime()).fingerprint
    assert make_plan("repo", items, Runtime()).fingerprint == first
    w.values["b"] = "x"
    assert make_plan("repo", items, Runtime()).fingerprint != first
    assert live_fingerprint({}) == live_fingerprint({})


def test_apply_stops_at_the_first_failure_and_reports_what_was_skipped() -> None:
    w = World(fail={"b"})
    items = [Item(w, "a", "1"), Item(w, "b", "1", ("a",)), Item(w, "c", "1", ("b",))]
    plan = make_plan("repo", items, Runtime())
    events: list[tuple[str, str]] = []
    result = apply_plan(
        plan, items, Runtime(), progress=lambda e, c, i, n: events.append((e, c.address))
    )
    assert not result.ok
    assert [c.address for c in result.applied] == ["a"]
    assert result.failed is not None and result.failed.address == "b"
    assert result.error is not None and "b broke" in result.error.message
    assert [c.address for c in result.skipped] == ["c"]
    assert w.log == ["a", "b"], "a change after the failure ran"
    assert events == [("start", "a"), ("done", "a"), ("start", "b"), ("failed", "b")]


def test_apply_then_plan_again_is_a_no_op_and_a_stopped_apply_converges() -> None:
    w = World(fail={"b"})
    items = [Item(w, "a", "1"), Item(w, "b", "1", ("a",)), Item(w, "c", "1", ("b",))]
    assert not apply_plan(make_plan("repo", items, Runtime()), items, Runtime()).ok
    w.fail.clear()
    replan = make_plan("repo", items, Runtime())
    assert [c.address for c in replan.actionable] == ["b", "c"]
    assert apply_plan(replan, items, Runtime()).ok
    assert not make_plan("repo", items, Runtime()).has_changes


def test_apply_skips_no_ops() -> None:
    w = World(values={"a": "1"})
    items = [Item(w, "a", "1"), Item(w, "b", "1")]
    result = apply_plan(make_plan("repo", items, Runtime()), items, Runtime())
    assert w.log == ["b"] and result.ok


def test_plan_counts_a_replace_as_one_add_and_one_destroy() -> None:
    plan = Plan(
        "repo",
        (
            Change("x", Action.REPLACE, needs=("root CA key",)),
            Change("y", Action.DELETE),
            Change("z", Action.UPDATE, needs=("root CA key",)),
            Change("w", Action.NOOP, needs=("never",)),
        ),
        "f",
    )
    assert plan.counts() == {"add": 1, "change": 1, "destroy": 2}
    assert plan.needs() == ["root CA key"]


def test_lock_refuses_a_second_holder_naming_the_first(tmp_path: Any) -> None:
    import os

    from meshops.engine import lock
    from meshops.errors import LockHeld

    path = tmp_path / "meshops.lock"
    holder = rf"holds {path}: pid {os.getpid()} on .*\(apply"
    with lock.hold(path, "apply"), pytest.raises(LockHeld, match=holder):  # noqa: SIM117
        with lock.hold(path, "apply"):
            pass  # pragma: no cover
    with lock.hold(path, "apply"):  # released after the block
        pass


class Urgent(Item):
    def security_first(self, change: Change) -> bool:
        return True


class Follower(Item):
    runs_after_any = True


def test_keep_going_applies_whatever_does_not_depend_on_a_failure_and_reports_each() -> None:
    w = World(fail={"proxy-a", "proxy-b"})
    items = [
        Item(w, "leaf", "1"),
        Item(w, "proxy-a", "1", ("leaf",)),
        Item(w, "reload-a", "1", ("proxy-a",)),
        Item(w, "proxy-b", "1"),
        Item(w, "peer", "1"),
        Item(w, "hosts", "1"),
    ]
    result = apply_plan(make_plan("node:x", items, Runtime()), items, Runtime(), keep_going=True)
    assert not result.ok
    assert [c.address for c, _ in result.failures] == ["proxy-a", "proxy-b"]
    assert [str(e) for _, e in result.failures] == ["proxy-a broke", "proxy-b broke"]
    assert [c.address for c in result.skipped] == ["reload-a"]
    assert [c.address for c in result.applied] == ["leaf", "peer", "hosts"]
    assert result.failed is not None and result.failed.address == "proxy-a"


def test_security_changes_go_first_among_those_ready() -> None:
    w = World(values={"iface": "1"})
    items = [
        Item(w, "iface", "1"),
        Item(w, "proxy", "1"),
        Item(w, "leaf", "1"),
        Urgent(w, "peer-removed", "1", ("iface",)),
        Urgent(w, "crl", "1"),
        Item(w, "reload", "1", ("crl", "proxy")),
    ]
    apply_plan(make_plan("node:x", items, Runtime()), items, Runtime(), keep_going=True)
    assert w.log == ["peer-removed", "crl", "proxy", "leaf", "reload"]


@given(dags(), st.sets(st.sampled_from([f"r{i}" for i in range(12)])))
def test_keep_going_order_respects_dependencies_and_never_runs_past_a_failure(
    graph: list[tuple[str, tuple[str, ...]]], failing: set[str]
) -> None:
    w = World(fail=failing)
    items: list[Item] = [
        (Urgent if int(a[1:]) % 3 == 0 else Item)(w, a, "1", deps) for a, deps in graph
    ]
    result = apply_plan(make_plan("node:x", items, Runtime()), items, Runtime(), keep_going=True)
    position = {a: i for i, a in enumerate(w.log)}
    deps_of = dict(graph)
    for address in w.log:  # everything that ran ran after its dependencies succeeded
        for dep in deps_of[address]:
            assert position[dep] < position[address] and dep not in failing
    attempted = set(w.log)
    skipped = {c.address for c in result.skipped}
    assert attempted | skipped == set(deps_of)
    for address in skipped:  # skipped only because something below it broke
        assert any(d in failing or d in skipped for d in deps_of[address])


def test_a_follower_runs_when_anything_it_follows_changed_despite_a_failure() -> None:
    w = World(fail={"proxy"})
    items = [
        Item(w, "crl", "1"),
        Item(w, "proxy", "1", ("crl",)),
        Follower(w, "reload", "1", ("proxy", "crl")),
        Follower(w, "on-renew", "1", ("proxy",)),
    ]
    result = apply_plan(make_plan("node:x", items, Runtime()), items, Runtime(), keep_going=True)
    assert "reload" in w.log  # the old, checked config is reloaded with the new CRL
    assert [c.address for c in result.skipped] == ["on-renew"]  # it follows only a failure
