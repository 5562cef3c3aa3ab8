"""Enrolment requests: the file round-trips, its proofs of possession hold only for the
keys it names, and every way a request can be wrong (forged, edited, for another node,
asking for another node's names, a key another node uses) is a located problem."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest
from factories import make_mesh, to_yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshops.enroll.checks import KnownKeys, check_enrolments
from meshops.enroll.make import make_request
from meshops.enroll.request import Request, parse_request, prove
from meshops.errors import ValidationFailed
from meshops.model import load_text
from meshops.pki.keys import PrivateKey, generate_key
from meshops.providers.wireguard.keys import generate_private_key

NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
DOMAIN = "mesh.demo.internal"


def request_for(
    node: str,
    *,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
    ca_key: PrivateKey | None = None,
    wireguard: bytes | None = None,
    key_type: str = "ecdsa-p256",
    mesh: str = "demo",
) -> Request:
    return make_request(
        mesh=mesh,
        node=node,
        dns=dns if dns is not None else [f"{node}.{DOMAIN}"],
        ips=[ip_address(i) for i in ips or []],
        ca_key=ca_key or generate_key(key_type),  # type: ignore[arg-type]
        wireguard_private=wireguard or generate_private_key(),
        now=NOW,
        crl_ttl_seconds=3600 * 24 * 365,
    )


def host_mesh(nodes: int = 3, **sections: object) -> str:
    data = make_mesh(nodes=nodes, **sections)
    data["mesh"] = {"name": "demo", "trust_domain": "demo.internal", "domain": DOMAIN}
    for i, name in enumerate(sorted(data["nodes"]), start=1):
        data["nodes"][name].pop("recipient", None)
        data["nodes"][name]["keys"] = "host"
        data["nodes"][name]["address"] = f"10.42.0.{10 + i}"
    return to_yaml(data)


_REQUEST = request_for("node-1", ips=["10.42.0.11"])
_TEXT = _REQUEST.render()


def test_a_request_round_trips_and_its_proofs_hold() -> None:
    request, doc = parse_request(_TEXT, "enroll/node-1.yaml")
    assert request == _REQUEST
    proven = prove(request, doc)
    assert proven.names() == ([f"node-1.{DOMAIN}"], ["10.42.0.11"])
    assert b"PRIVATE" not in _TEXT


@pytest.mark.parametrize(
    ("edit", "where", "words"),
    [
        (lambda t: t.replace("node: node-1", "node: node-9"), "9:3", "wireguard.signature"),
        (lambda t: t.replace("mesh: demo", "mesh: other"), "9:3", "does not verify"),
        (lambda t: re.sub(r'key: "sha256:[0-9a-f]{4}', 'key: "sha256:0000', t), "12:3",
         "node_ca.key"),
        (lambda t: re.sub(r"(signature: \")(.)", lambda m: m[1] + ("B" if m[2] == "A" else "A"), t),
         "9:3", "no proof of possession"),
    ],
)  # fmt: skip
def test_an_edited_request_fails_at_the_field_that_no_longer_holds(
    edit: object, where: str, words: str
) -> None:
    text = edit(_TEXT.decode()).encode()  # type: ignore[operator]
    with pytest.raises(ValidationFailed) as caught:
        prove(*parse_request(text, "enroll/node-1.yaml"))
    messages = [str(p) for p in caught.value.problems]
    assert any(m.startswith(f"enroll/node-1.yaml:{where}:") and words in m for m in messages), (
        messages
    )


def test_a_csr_signed_by_another_key_is_no_proof_of_possession() -> None:
    other = request_for("node-1")
    forged = _TEXT.decode().replace(_REQUEST.csr, other.csr).encode()
    with pytest.raises(ValidationFailed) as caught:
        prove(*parse_request(forged, "enroll/node-1.yaml"))
    assert "node_ca.key: is not the fingerprint of the CSR's public key" in str(caught.value)


def test_a_wireguard_key_signed_by_someone_else_is_refused() -> None:
    """The attacker names a victim's WireGuard public key and signs with its own key."""
    victim = base64.b64encode(bytes(range(32))).decode()
    text = re.sub(r'public_key: ".*"', f'public_key: "{victim}"', _TEXT.decode()).encode()
    with pytest.raises(ValidationFailed) as caught:
        prove(*parse_request(text, "enroll/node-1.yaml"))
    assert "wireguard.signature" in str(caught.value)


def test_requests_of_host_held_nodes_are_checked_against_the_mesh() -> None:
    loaded = load_text(host_mesh(2))
    files = {
        "node-1.yaml": request_for("node-1", ips=["10.42.0.11"]).render(),
        "node-2.yaml": request_for("node-2").render(),
    }
    checked = check_enrolments(loaded, files, now=NOW)
    assert checked.problems == ()
    assert sorted(checked.proven) == ["node-1", "node-2"]


def test_a_host_held_node_without_a_request_is_located_in_mesh_yaml() -> None:
    loaded = load_text(host_mesh(2))
    checked = check_enrolments(loaded, {"node-1.yaml": request_for("node-1").render()}, now=NOW)
    (problem,) = checked.problems
    assert problem.location is not None and problem.location.file == "mesh.yaml"
    assert "run `meshops host init --node node-2` on that host" in problem.message


def test_names_that_are_not_the_nodes_are_refused() -> None:
    loaded = load_text(host_mesh(2))
    for dns, ips, shown in (
        ([f"node-1.{DOMAIN}", f"node-2.{DOMAIN}"], [], f"dns:node-2.{DOMAIN}"),
        ([f"node-1.{DOMAIN}"], ["10.42.0.12"], "ip:10.42.0.12"),
        (["evil.example.com"], [], "dns:evil.example.com"),
    ):
        files = {
            "node-1.yaml": request_for("node-1", dns=dns, ips=ips).render(),
            "node-2.yaml": request_for("node-2").render(),
        }
        problems = [str(p) for p in check_enrolments(loaded, files, now=NOW).problems]
        assert len(problems) == 1 and problems[0].startswith("enroll/node-1.yaml:13:3:")
        assert f"names that are not node node-1's: {shown}" in problems[0]


def test_a_key_used_by_another_node_is_refused_once_on_the_later_request() -> None:
    loaded = load_text(host_mesh(3))
    shared_wg, shared_ca = generate_private_key(), generate_key("ecdsa-p256")
    files = {
        "node-1.yaml": request_for("node-1", wireguard=shared_wg).render(),
        "node-2.yaml": request_for("node-2", wireguard=shared_wg).render(),
        "node-3.yaml": request_for("node-3", ca_key=shared_ca).render(),
    }
    known = {"node-9": KnownKeys(node_ca=prove(*parse_request(files["node-3.yaml"], "x")).ca_key)}
    checked = check_enrolments(loaded, files, now=NOW, known=known)
    problems = [str(p) for p in checked.problems]
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        "enroll/node-2.yaml:8:3: wireguard.public_key: this WireGuard key is already used by "
        "node node-1 (enroll/node-1.yaml)"
    )
    assert problems[1].startswith(
        "enroll/node-3.yaml:12:3: node_ca.key: this node CA key is already used by node "
        "node-9 (state/state.yaml)"
    )
    assert sorted(checked.proven) == ["node-1"]


def test_a_request_for_a_sealed_node_another_mesh_or_key_type_is_refused() -> None:
    loaded = load_text(host_mesh(2).replace("keys: host", "keys: sealed", 1).replace(
        "  node-1:\n", f"  node-1:\n    recipient: {make_mesh(1)['nodes']['node-1']['recipient']}\n"
    ))  # fmt: skip
    files = {
        "node-1.yaml": request_for("node-1").render(),
        "node-2.yaml": request_for("node-2", mesh="other", key_type="ecdsa-p384").render(),
    }
    problems = [p.message for p in check_enrolments(loaded, files, now=NOW).problems]
    assert any("node node-1 holds sealed keys in mesh.yaml" in m for m in problems)
    assert any("the request is for mesh 'other'" in m for m in problems)
    assert any("the node CA key is ecdsa-p384, mesh.yaml's ca.key_type is ecdsa-p256" in m
               for m in problems)  # fmt: skip


def test_an_expired_crl_and_a_file_named_for_another_node_are_refused() -> None:
    loaded = load_text(host_mesh(1))
    files = {"node-1.yaml": request_for("node-1").render()}
    late = NOW + timedelta(days=400)
    (expired,) = check_enrolments(loaded, files, now=late).problems
    assert "the node CA's CRL expired" in expired.message
    misnamed = {"node-1.yaml": request_for("node-2").render()}
    problems = [p.message for p in check_enrolments(loaded, misnamed, now=NOW).problems]
    assert any("a request for node-2 lives in enroll/node-2.yaml" in m for m in problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(0, len(_TEXT) - 1), byte=st.integers(0, 255))
def test_any_changed_byte_is_a_located_problem_or_changes_nothing_that_counts(
    at: int, byte: int
) -> None:
    """The parser and the proofs never raise anything but a located ValidationFailed;
    an edit that still verifies leaves every signed value as it was."""
    text = bytearray(_TEXT)
    text[at] = byte
    try:
        request, doc = parse_request(bytes(text), "enroll/node-1.yaml")
        proven = prove(request, doc)
    except ValidationFailed as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    assert proven.request.signed_text() == _REQUEST.signed_text()
    assert proven.ca_key == _REQUEST.ca_key


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_arbitrary_yaml_is_refused_with_located_problems(value: object) -> None:
    import yaml

    text = yaml.safe_dump(value).encode()
    with pytest.raises(ValidationFailed) as caught:
        parse_request(text, "enroll/x.yaml")
    assert caught.value.problems


def test_a_key_retired_by_a_rotation_never_enrols_again() -> None:
    """A thief of a host's old keys (the reason it rotated) cannot bring them back with a
    replayed or fresh request: state.yaml keeps the keys the node rotated away."""
    loaded = load_text(host_mesh(1))
    old_wg, old_ca = generate_private_key(), generate_key("ecdsa-p256")
    replay = request_for("node-1", wireguard=old_wg, ca_key=old_ca).render()
    proven = prove(*parse_request(replay, "x"))
    retired = (f"wg:{proven.wireguard_key}", f"ca:{proven.ca_key}")
    known = {"node-1": KnownKeys(wireguard="b64-of-the-new-key", retired=retired)}
    problems = [p.message for p in check_enrolments(loaded, {"node-1.yaml": replay}, now=NOW,
                                                    known=known).problems]  # fmt: skip
    assert len(problems) == 2, problems
    assert all("already used by node node-1 before a rotation (retired keys never enrol)" in m
               for m in problems)  # fmt: skip


def test_verified_requests_are_remembered_by_digest_and_an_edit_is_verified_again() -> None:
    import hashlib

    loaded = load_text(host_mesh(1))
    good = request_for("node-1").render()
    first = check_enrolments(loaded, {"node-1.yaml": good}, now=NOW)
    assert first.verified == {hashlib.sha256(good).hexdigest()}
    edited = re.sub(rb'(signature: ")(.)', lambda m: m[1] + (b"B" if m[2] == b"A" else b"A"), good)
    again = check_enrolments(loaded, {"node-1.yaml": edited}, now=NOW, verified=first.verified)
    assert again.verified == frozenset() and "wireguard.signature" in str(again.problems[0])
