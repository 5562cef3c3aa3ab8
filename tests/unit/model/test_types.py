"""Typed scalar fields: endpoints, recipients, names, paths, methods, durations."""

from __future__ import annotations

import base64
import contextlib
import struct

import pytest
from factories import age_recipient, ssh_recipient
from hypothesis import given
from hypothesis import strategies as st

from meshops.model.durations import (
    MAX_SECONDS,
    Duration,
    RenewBefore,
    format_duration,
    parse_duration,
)
from meshops.model.types import Endpoint, Recipient

# -- endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("192.0.2.11:51820", "192.0.2.11", 51820),
        ("[2001:db8::1]:51820", "2001:db8::1", 51820),
        ("Gateway.Example.COM:1", "gateway.example.com", 1),
        (" 198.51.100.7:65535 ", "198.51.100.7", 65535),
    ],
)
def test_endpoints_parse_host_and_port(text: str, host: str, port: int) -> None:
    endpoint = Endpoint.parse(text)
    assert (endpoint.host, endpoint.port) == (host, port)
    assert Endpoint.parse(str(endpoint)) == endpoint


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("192.0.2.11", "expected host:port"),
        (":51820", "expected host:port"),
        ("192.0.2.11:0", "port must be"),
        ("192.0.2.11:65536", "port must be"),
        ("192.0.2.11:http", "port must be"),
        ("192.0.2.11:²", "port must be"),
        ("999.0.2.1:51820", "not a valid IPv4 address"),
        ("2001:db8::1:51820", "[address]:port"),
        ("[2001:db8::zz]:1", "not an IPv6 address"),
        ("[2001:db8::1]", "expected [ipv6]:port"),
        ("bad_host!:1", "not a valid DNS name"),
        (51820, "expected host:port"),
    ],
)
def test_bad_endpoints_say_what_was_expected(text: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Endpoint.parse(text)


# -- recipients ------------------------------------------------------------------------


def test_real_age_recipients_parse() -> None:
    recipient = Recipient.parse(age_recipient(3))
    assert recipient.kind == "age"
    assert recipient.text == age_recipient(3)


def test_real_ssh_keys_parse_without_their_comment() -> None:
    ed = Recipient.parse(ssh_recipient(2, comment=True))
    assert ed.kind == "ssh-ed25519"
    assert ed.text == ssh_recipient(2)
    rsa = Recipient.parse(ssh_recipient(0, kind="rsa", comment=True))
    assert rsa.kind == "ssh-rsa"


def _flip_last_char(text: str) -> str:
    last = "q" if text[-1] != "q" else "p"
    return text[:-1] + last


def _ssh_blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: _flip_last_char(age_recipient()), "not a valid age X25519 recipient"),
        (lambda: age_recipient()[:-1], "not a valid age X25519 recipient"),
        (lambda: age_recipient().upper(), "not a recipient"),
        (lambda: "ssh-ed25519", "missing its base64 body"),
        (lambda: "ssh-ed25519 !!!", "not a valid SSH public key"),
        (lambda: "ssh-ed25519 " + _ssh_blob(b"ssh-ed25519", b"short"), "holds 32 bytes"),
        (lambda: "ssh-ed25519 " + _ssh_blob(b"ssh-ed25519")[:-4], "not a valid SSH public key"),
        (lambda: "ssh-rsa " + ssh_recipient().split()[1], "its body holds ssh-ed25519"),
        (
            lambda: "ssh-rsa " + _ssh_blob(b"ssh-rsa", b"\x01\x00\x01", b"\x00" + b"\xff" * 128),
            "at least 2048 bits",
        ),
        (lambda: "ecdsa-sha2-nistp256 AAAA", "not a recipient"),
        (lambda: 42, "expected an age or SSH public key"),
    ],
)
def test_bad_recipients_are_refused_with_a_reason(make: object, fragment: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=fragment):
        Recipient.parse(make())


# -- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("16h", 57600),
        ("720h", 2592000),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("0", 0),
        (".5s", 0.5),
    ],
)
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "16", "h", "16 h", "-5s", "1d", "1e3s", "16H", "s16"])
def test_non_go_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_durations_longer_than_go_allows_are_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("2562048h")
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9" * 400 + "h")
    assert parse_duration("2562047h") <= MAX_SECONDS


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2592000, "720h"), (5400, "1h30m"), (90, "1m30s"), (0, "0s"), (1.5, "1.5s")],
)
def test_durations_format_as_people_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert str(Duration(seconds)) == text


@given(st.integers(min_value=0, max_value=int(MAX_SECONDS)))
def test_whole_second_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=MAX_SECONDS, allow_nan=False, allow_infinity=False))
def test_any_duration_round_trips_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


_part = st.tuples(
    st.integers(min_value=0, max_value=10_000), st.sampled_from(["ns", "us", "ms", "s", "m", "h"])
)


@given(st.lists(_part, min_size=1, max_size=5))
def test_go_duration_text_reparses_to_the_same_value(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12)


@given(st.text(max_size=20))
def test_parse_duration_only_ever_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_duration(text)


def test_renew_before_takes_a_duration_or_a_percentage() -> None:
    assert RenewBefore.parse("16h").before_expiry(48 * 3600) == 16 * 3600
    assert RenewBefore.parse("25%").before_expiry(48 * 3600) == 12 * 3600
    assert str(RenewBefore.parse("33%")) == "33%"
    assert str(RenewBefore.parse("90m")) == "1h30m"


@pytest.mark.parametrize("text", ["0%", "100%", "150%", "x%", "nan%", "%", "16", "16d"])
def test_bad_renew_before_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"percentage|duration"):
        RenewBefore.parse(text)
