"""The send path's direct writer gives the email package's bytes exactly, and the same errors, for any touch."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.mailbytes import _plain_bytes, message_bytes
from outreach.mailer import Attachment, HeaderInjectionError, MessageError, OutgoingMessage, build_message

BASE = OutgoingMessage(
    from_address="dana@sender.example", to_address="pat@acme.example", subject="Idea for Acme",
    text_body="Hi Pat,\n\nA short note about Acme.\n\nBest,\nDana", message_id="<17.abc@sender.example>",
    date=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
)  # fmt: skip
URL = "https://app.example/u/" + "t" * 120
NAMES = [None, "", "Pat", "Pat Smith", "O'Brien", "José Núñez", "Smith, Pat", "P. Smith", 'Pat "PJ"', "=?x?q?y?=",
         "a" * 80, "Pat  Smith", "Pat\tSmith"]  # fmt: skip
SUBJECTS = ["Idea for Acme", "Re: Idea", "Idée pour Acme", "x " * 50, "=?utf-8?q?hi?=", "two  spaces", "tab\there",
            "  padded  ", "Acme + us: 50% off (really)", "a" * 90]  # fmt: skip
BODIES = ["Hi", "Hi Pat,\n\nA note.", "Grüße aus Köln", "x" * 200, "line\r\nwith CR\rhere", "From the start\n.\n..",
          "trailing   \n\n\n", "", "tab\there =3D and = signs", "\u2028odd break", "long " * 40]  # fmt: skip
HTMLS = [None, "<p>Hi</p>", "<html><body><p>Hi</p></body></html>", "<p>Grüße</p>", "<p>" + "y" * 200 + "</p>"]


def _same(spec: OutgoingMessage) -> bytes:
    expected = build_message(spec).as_bytes()
    assert message_bytes(spec) == expected
    return expected


def test_a_usual_touch_is_written_directly_and_byte_identical() -> None:
    spec = replace(
        BASE, to_name="Pat", list_unsubscribe_url=URL, list_unsubscribe_mailto="mailto:dana@sender.example?subject=u",
        postal_address="Outreach Inc, 1 Main St", reply_to="replies@sender.example",
    )  # fmt: skip
    for variant in (spec, replace(spec, html_body="<p>Hi Pat</p>"), replace(spec, in_reply_to="<1.a@sender.example>")):
        assert _plain_bytes(variant) is not None  # the fast path, not the fallback
        _same(variant)


@pytest.mark.parametrize(("name", "subject"), list(itertools.product(NAMES, SUBJECTS)))
def test_names_and_subjects(name: str | None, subject: str) -> None:
    _check(replace(BASE, from_name=name, to_name=name, subject=subject))


@pytest.mark.parametrize(("body", "html"), list(itertools.product(BODIES, HTMLS)))
def test_bodies_and_footers(body: str, html: str | None) -> None:
    for extra in ({}, {"postal_address": "Outreach Inc\n1 Main St", "list_unsubscribe_url": URL}):
        _check(replace(BASE, text_body=body, html_body=html, **extra))  # type: ignore[arg-type]


@pytest.mark.parametrize("refs", [0, 1, 2, 8])
def test_threading_headers(refs: int) -> None:
    references = tuple(f"<{i}.{'r' * 20}@sender.example>" for i in range(refs))
    spec = replace(BASE, in_reply_to="<parent.1@sender.example>", references=references)
    raw = _same(spec)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["In-Reply-To"] == "<parent.1@sender.example>"
    assert str(parsed["References"]).split() == [*references, "<parent.1@sender.example>"]
    assert parsed["Subject"] == "Re: Idea for Acme"


def test_list_unsubscribe_and_dates() -> None:
    for url, mailto in itertools.product([None, URL, "https://a.example/u/x"], [None, "dana@sender.example"]):
        raw = _same(replace(BASE, list_unsubscribe_url=url, list_unsubscribe_mailto=mailto))
        if url:
            assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
            assert f"List-Unsubscribe: <{url}>".encode() in raw
    for offset in (0, 1, -5.5):
        _same(replace(BASE, date=datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone(timedelta(hours=offset)))))


def test_attachments_and_idn_domains_fall_back_to_the_same_bytes() -> None:
    _same(replace(BASE, attachments=(Attachment("tour.pdf", b"%PDF-1.4\n%%EOF\n"),)))
    _same(replace(BASE, to_address="pat@bücher.example", to_name="Pat"))


def _check(spec: OutgoingMessage) -> None:
    """The same bytes when the email package builds the message, the same error when it refuses it."""
    try:
        expected = build_message(spec).as_bytes()
    except MessageError:
        _same_error(spec)
        return
    assert message_bytes(spec) == expected


def _same_error(spec: OutgoingMessage) -> None:
    with pytest.raises(MessageError) as expected:
        build_message(spec)
    with pytest.raises(type(expected.value)) as got:
        message_bytes(spec)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"to_name": "Pat\nBcc: victim@example.com"},
        {"from_name": "Dana\x00"},
        {"in_reply_to": "<a@b>\r\nX-Evil: 1"},
        {"references": ("<a@b>\nX: y",)},
        {"list_unsubscribe_url": "https://a.example/u\r\nX: y"},
        {"subject": "Hi\u2028Bcc: victim@example.com"},
    ],
)
def test_header_injection_is_refused(change: dict) -> None:
    with pytest.raises(HeaderInjectionError):
        message_bytes(replace(BASE, **change))
    _same_error(replace(BASE, **change))


@pytest.mark.parametrize(
    "change",
    [
        {"to_address": "not an address"},
        {"message_id": "no-brackets@x"},
        {"date": datetime(2026, 1, 1)},
        {"subject": "   "},
        {"text_body": "nul\x00"},
        {"list_unsubscribe_url": "ftp://a.example/u"},
        {"list_unsubscribe_mailto": "mailto:bad address"},
    ],
)
def test_bad_touches_fail_with_the_same_error(change: dict) -> None:
    _same_error(replace(BASE, **change))


_printable = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f\x85"), max_size=90)


@settings(max_examples=300, deadline=None)
@given(name=_printable, subject=_printable, body=st.text(max_size=300), html=st.none() | st.text(max_size=200))
def test_any_touch_gives_the_email_packages_bytes(name: str, subject: str, body: str, html: str | None) -> None:
    spec = replace(BASE, to_name=name or None, subject=subject, text_body=body, html_body=html)
    _check(replace(spec, list_unsubscribe_url=URL))
