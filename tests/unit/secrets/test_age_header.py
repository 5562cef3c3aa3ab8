"""Reading who a file is sealed to, without unsealing it (pure, property-tested)."""

from __future__ import annotations

import base64
import contextlib

from conftest import KeyPair
from hypothesis import given
from hypothesis import strategies as st
from secrets_helpers import stock

from meshops.model.types import Recipient
from meshops.secrets import recipients_fingerprint, recipients_of, seal_age
from meshops.secrets.agefile import Stanza, parse_header
from meshops.secrets.info import SealInfo
from meshops.secrets.sshkeys import recipient_tag


def test_header_of_our_file_names_kinds_and_ssh_tags(
    age_key: KeyPair, ed25519_key: KeyPair, rsa_key: KeyPair, other_age_key: KeyPair
) -> None:
    recipients = [age_key.recipient, other_age_key.recipient, ed25519_key.recipient]
    info = recipients_of(seal_age(b"x", [*recipients, rsa_key.recipient]))

    assert info.format == "age"
    assert info.count("X25519") == 2
    assert info.ssh_tags == {
        recipient_tag(ed25519_key.recipient),
        recipient_tag(rsa_key.recipient),
    }
    assert info.describe() == (
        f"sealed to 2 X25519 recipients, 1 SSH ed25519 key (tag "
        f"{recipient_tag(ed25519_key.recipient)}) and 1 SSH rsa key (tag "
        f"{recipient_tag(rsa_key.recipient)})"
    )


def test_tags_we_compute_match_the_ones_stock_age_writes(
    ed25519_key: KeyPair, rsa_key: KeyPair, tmp_path: object
) -> None:
    for key in (ed25519_key, rsa_key):
        sealed = stock(["age", "-e", "-a", "-r", key.recipient.text], input=b"x")
        (stanza,) = recipients_of(sealed).stanzas
        assert stanza == Stanza(kind=key.recipient.kind, tag=recipient_tag(key.recipient))


def test_ssh_only_file_knows_exactly_whether_recipients_changed(
    ed25519_key: KeyPair, rsa_key: KeyPair
) -> None:
    info = recipients_of(seal_age(b"x", [ed25519_key.recipient, rsa_key.recipient]))

    assert info.matches([rsa_key.recipient, ed25519_key.recipient]) is True
    assert info.matches([ed25519_key.recipient]) is False


def test_x25519_file_cannot_tell_which_recipients_but_can_tell_how_many(
    age_key: KeyPair, other_age_key: KeyPair, ed25519_key: KeyPair
) -> None:
    info = recipients_of(seal_age(b"x", [age_key.recipient, ed25519_key.recipient]))

    assert info.matches([other_age_key.recipient, ed25519_key.recipient]) is None
    assert info.matches([age_key.recipient]) is False
    assert info.matches([age_key.recipient, other_age_key.recipient]) is False


def _render_header(stanzas: list[tuple[str, list[str]]], armored: bool) -> bytes:
    lines = ["age-encryption.org/v1"]
    for kind, args in stanzas:
        lines.append(" ".join(["->", kind, *args]))
        lines.append(base64.b64encode(b"\x01" * 32).decode().rstrip("="))
    raw = ("\n".join(lines) + "\n--- " + "A" * 43 + "\n").encode() + b"\x00\xffpayload"
    if not armored:
        return raw
    body = base64.b64encode(raw).decode()
    wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return (
        f"-----BEGIN AGE ENCRYPTED FILE-----\n{wrapped}\n-----END AGE ENCRYPTED FILE-----\n"
    ).encode()


_ARG = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789+/", min_size=1, max_size=12)
_STANZA = st.one_of(
    st.tuples(st.just("X25519"), st.lists(_ARG, min_size=1, max_size=1)),
    st.tuples(st.sampled_from(["ssh-ed25519", "ssh-rsa"]), st.lists(_ARG, min_size=2, max_size=2)),
    st.tuples(st.just("scrypt"), st.lists(_ARG, min_size=2, max_size=2)),
    st.tuples(st.just("x7-grease"), st.lists(_ARG, max_size=3)),
)


@given(stanzas=st.lists(_STANZA, min_size=1, max_size=8), armored=st.booleans())
def test_header_parse_recovers_every_non_grease_stanza(
    stanzas: list[tuple[str, list[str]]], armored: bool
) -> None:
    expected = [
        Stanza(kind=k, tag=a[0] if k.startswith("ssh-") else None)
        for k, a in stanzas
        if not k.endswith("-grease")
    ]
    data = _render_header(stanzas, armored)
    if not expected:
        try:
            parse_header(data)
        except ValueError:
            return
        raise AssertionError("a header of only grease must be refused")
    assert list(parse_header(data)) == expected


@given(st.binary(max_size=400))
def test_header_parse_of_arbitrary_bytes_fails_only_with_valueerror(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_header(data)


@given(st.binary(max_size=200))
def test_header_parse_of_junk_after_version_line_never_crashes(tail: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_header(b"age-encryption.org/v1\n" + tail)


_RECIPIENTS = st.sampled_from(
    [
        Recipient.parse("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"),
        Recipient.parse("age1zrmmzmrprj9qpr5wlhyjtxaghlmw03kfuttyfwxxxeuu4su2es4qrx9cm7"),
        Recipient.parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIr98kp5upnE0YW9FBuSKFzckHMnKLIUAPjx1fnk8qr3"
        ),
    ]
)


@given(st.lists(_RECIPIENTS, max_size=6), st.randoms())
def test_fingerprint_ignores_order_and_duplicates(recipients: list[Recipient], rng: object) -> None:
    shuffled = list(recipients)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert recipients_fingerprint(shuffled + shuffled) == recipients_fingerprint(recipients)
    assert recipients_fingerprint(recipients).startswith("sha256:")


@given(st.lists(_RECIPIENTS, min_size=2, max_size=3, unique=True))
def test_fingerprint_changes_when_a_recipient_is_removed(recipients: list[Recipient]) -> None:
    assert recipients_fingerprint(recipients[:-1]) != recipients_fingerprint(recipients)


def test_describe_mentions_other_kinds_and_sops_keys() -> None:
    info = SealInfo(
        format="sops",
        stanzas=(Stanza(kind="X25519", recipient="age1..."),),
        other_keys=("sops pgp key ABCD",),
    )
    assert info.describe() == "sealed to 1 X25519 recipient and sops pgp key ABCD"
