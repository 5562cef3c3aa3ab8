"""Root transitions: a host pinned to any earlier root walks forward, only through
hand-overs the outgoing root signed."""

from __future__ import annotations

from dataclasses import replace

from trust_helpers import Root

from meshops.trust import transitions
from meshops.trust.transitions import handed_over, make_transition, walk

AT = "2030-01-15T12:00:00+00:00"


def test_a_host_pinned_two_rotations_back_walks_to_the_current_root(
    root: Root, next_root: Root, third_root: Root
) -> None:
    chain = [
        make_transition(next_root.cert, next_root.key, third_root.cert, AT),
        make_transition(root.cert, root.key, next_root.cert, AT),  # order does not matter
    ]
    reached, certs = walk({root.fingerprint}, chain)
    assert reached == {root.fingerprint, next_root.fingerprint, third_root.fingerprint}
    assert set(certs) == reached
    assert walk({next_root.fingerprint}, chain)[0] == {
        next_root.fingerprint,
        third_root.fingerprint,
    }


def test_a_hand_over_not_signed_by_the_outgoing_root_is_not_followed(
    root: Root, next_root: Root
) -> None:
    forged = make_transition(root.cert, next_root.key, next_root.cert, AT)  # signed by the new one
    assert walk({root.fingerprint}, [forged])[0] == {root.fingerprint}
    assert not handed_over(root.fingerprint, {next_root.fingerprint}, [forged])


def test_an_entry_whose_certificates_do_not_match_its_fingerprints_is_ignored(
    root: Root, next_root: Root, third_root: Root
) -> None:
    real = make_transition(root.cert, root.key, next_root.cert, AT)
    swapped = replace(real, to_cert=third_root.pem)  # same signature, another certificate
    assert walk({root.fingerprint}, [swapped])[0] == {root.fingerprint}
    retargeted = replace(real, to_fp=third_root.fingerprint, to_cert=third_root.pem)
    assert walk({root.fingerprint}, [retargeted])[0] == {root.fingerprint}


def test_the_file_round_trips(root: Root, next_root: Root) -> None:
    entry = make_transition(root.cert, root.key, next_root.cert, AT)
    assert transitions.parse(transitions.render([entry])) == [entry]


def test_a_hostile_file_is_refused_before_any_yaml_is_expanded() -> None:
    import pytest

    from meshops.errors import MeshError

    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\ntransitions: [*b, *b]\n"
    for data in (bomb, b"transitions: []\n" + b"#" * (2 << 20)):
        with pytest.raises(MeshError, match="not a transitions file meshops wrote"):
            transitions.parse(data)
