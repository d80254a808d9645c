"""Messages on the wire: the headers the contract promises, threading, the footer, and no header injection."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from outreach.errors import OutreachError
from outreach.mailer import (
    HeaderInjectionError,
    MessageError,
    OutgoingMessage,
    build_message,
    make_message_id,
    reply_subject,
    sender_domain,
)

UNSUBSCRIBE_URL = "https://track.example.com/u/eyJ0IjoxMjN9.c2lnbmF0dXJl"
SENT_AT = datetime(2026, 3, 9, 14, 30, tzinfo=UTC)


@pytest.fixture
def spec() -> OutgoingMessage:
    return OutgoingMessage(
        from_address="ana@acme.example.com",
        from_name="Ana Sales",
        to_address="cfo@fintech.example.org",
        to_name="Chris Fo",
        subject="Quick idea for Fintech Co",
        text_body="Hi Chris,\n\nA quick idea.\n",
        message_id="<touch-1.abc@acme.example.com>",
        date=SENT_AT,
        list_unsubscribe_url=UNSUBSCRIBE_URL,
        list_unsubscribe_mailto="mailto:unsubscribe@acme.example.com?subject=unsubscribe",
        postal_address="Acme Inc.\n1 Main Street\nSpringfield, IL 62701",
    )


def wire(message: EmailMessage) -> EmailMessage:
    """What a receiver sees: the bytes we would send, parsed back."""
    raw = message.as_bytes()
    assert b"\r\n" in raw
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("html",))
    return None if part is None else part.get_content().replace("\r\n", "\n")


# ------------------------------------------------------------------------------------------ headers


def test_every_contract_header_is_present(spec: OutgoingMessage) -> None:
    message = wire(build_message(spec))
    assert message["Message-ID"] == "<touch-1.abc@acme.example.com>"
    assert message["Date"].datetime == SENT_AT
    assert message["From"].addresses[0].addr_spec == "ana@acme.example.com"
    assert message["From"].addresses[0].display_name == "Ana Sales"
    assert message["To"].addresses[0].addr_spec == "cfo@fintech.example.org"
    assert message["Subject"] == "Quick idea for Fintech Co"
    assert message["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@acme.example.com?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["In-Reply-To"] is None and message["References"] is None


def test_long_unsubscribe_urls_are_folded_between_uris_never_encoded(spec: OutgoingMessage) -> None:
    long_url = "https://track.example.com/u/" + "A" * 300
    raw = build_message(dataclasses.replace(spec, list_unsubscribe_url=long_url)).as_bytes()
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["List-Unsubscribe"].startswith(f"<{long_url}>")


def test_a_bare_mailto_address_becomes_a_mailto_uri(spec: OutgoingMessage) -> None:
    message = wire(build_message(dataclasses.replace(spec, list_unsubscribe_mailto="unsub@acme.example.com")))
    assert message["List-Unsubscribe"].endswith("<mailto:unsub@acme.example.com>")


def test_one_click_header_needs_an_unsubscribe_url(spec: OutgoingMessage) -> None:
    message = wire(build_message(dataclasses.replace(spec, list_unsubscribe_url=None)))
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@acme.example.com?subject=unsubscribe>"
    assert message["List-Unsubscribe-Post"] is None


def test_date_keeps_the_instant_of_the_passed_time(spec: OutgoingMessage) -> None:
    berlin_time = SENT_AT.astimezone(timezone(timedelta(hours=1)))
    message = wire(build_message(dataclasses.replace(spec, date=berlin_time)))
    assert message["Date"].datetime == SENT_AT


def test_non_ascii_names_and_subjects_are_rfc2047_encoded(spec: OutgoingMessage) -> None:
    built = build_message(
        dataclasses.replace(spec, from_name="Zoë Müller, Sales", to_name='Jürgen "JJ" Øster', subject="Grüße — idea")
    )
    headers = built.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert headers.isascii()
    assert b"=?utf-8?" in headers
    message = wire(built)
    assert message["From"].addresses[0].display_name == "Zoë Müller, Sales"
    assert message["To"].addresses[0].display_name == 'Jürgen "JJ" Øster'
    assert message["Subject"] == "Grüße — idea"


def test_international_domains_are_sent_as_punycode(spec: OutgoingMessage) -> None:
    message = wire(build_message(dataclasses.replace(spec, to_address="chef@bücher.example")))
    assert message["To"].addresses[0].addr_spec == "chef@xn--bcher-kva.example"


def test_reply_to_is_set_when_given(spec: OutgoingMessage) -> None:
    message = wire(build_message(dataclasses.replace(spec, reply_to="replies@acme.example.com")))
    assert message["Reply-To"] == "replies@acme.example.com"


# ------------------------------------------------------------------------------------------ threading


def test_threaded_follow_up_carries_in_reply_to_references_and_re(spec: OutgoingMessage) -> None:
    follow_up = dataclasses.replace(
        spec,
        message_id="<touch-2@acme.example.com>",
        in_reply_to="<touch-1.abc@acme.example.com>",
        references=("<touch-0@acme.example.com>",),
    )
    message = wire(build_message(follow_up))
    assert message["In-Reply-To"] == "<touch-1.abc@acme.example.com>"
    assert message["References"] == "<touch-0@acme.example.com> <touch-1.abc@acme.example.com>"
    assert message["Subject"] == "Re: Quick idea for Fintech Co"


def test_first_reply_references_only_the_parent(spec: OutgoingMessage) -> None:
    message = wire(build_message(dataclasses.replace(spec, in_reply_to="<touch-1.abc@acme.example.com>")))
    assert message["References"] == "<touch-1.abc@acme.example.com>"


@pytest.mark.parametrize(
    "subject",
    ["Quick idea", "Re: Quick idea", "RE: Quick idea", "re:Quick idea", "Re: Re: Quick idea", "Re[2]: Quick idea"],
)
def test_re_is_never_doubled(spec: OutgoingMessage, subject: str) -> None:
    assert reply_subject(subject) == "Re: Quick idea"
    message = wire(build_message(dataclasses.replace(spec, subject=subject, in_reply_to="<p@acme.example.com>")))
    assert message["Subject"] == "Re: Quick idea"


def test_unthreaded_subject_is_left_alone(spec: OutgoingMessage) -> None:
    assert wire(build_message(dataclasses.replace(spec, subject="Re: your post")))["Subject"] == "Re: your post"


# ------------------------------------------------------------------------------------------ bodies and footer


def test_plain_text_only_when_no_html(spec: OutgoingMessage) -> None:
    message = wire(build_message(spec))
    assert message.get_content_type() == "text/plain"
    assert not message.is_multipart()
    assert text_of(message).startswith("Hi Chris,\n\nA quick idea.")


def test_html_is_an_alternative_to_the_text(spec: OutgoingMessage) -> None:
    html = "<html><body><p>Hi Chris,</p></body></html>"
    message = wire(build_message(dataclasses.replace(spec, html_body=html)))
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert "Hi Chris," in text_of(message)
    assert "<p>Hi Chris,</p>" in (html_of(message) or "")


def test_footer_has_postal_address_and_unsubscribe_link_in_both_parts(spec: OutgoingMessage) -> None:
    html = "<html><body><p>Hi</p></body></html>"
    message = wire(build_message(dataclasses.replace(spec, html_body=html)))
    text = text_of(message)
    assert "Acme Inc.\n1 Main Street\nSpringfield, IL 62701" in text
    assert f"Unsubscribe: {UNSUBSCRIBE_URL}" in text
    page = html_of(message) or ""
    assert "Acme Inc.<br>1 Main Street" in page
    assert f'<a href="{UNSUBSCRIBE_URL}">Unsubscribe</a>' in page
    assert page.index("Unsubscribe") < page.index("</body>")


def test_footer_text_is_escaped_in_html(spec: OutgoingMessage) -> None:
    evil = dataclasses.replace(spec, postal_address="<script>x</script> & Co", html_body="<p>Hi</p>")
    page = html_of(wire(build_message(evil))) or ""
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt; &amp; Co" in page


def test_long_and_non_ascii_bodies_survive_the_wire(spec: OutgoingMessage) -> None:
    body = "Grüße aus Köln! " * 40 + "\n" + "x" * 1200
    message = wire(build_message(dataclasses.replace(spec, text_body=body)))
    raw = build_message(dataclasses.replace(spec, text_body=body)).as_bytes()
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert text_of(message).startswith(body)


# ------------------------------------------------------------------------------------------ ids


def test_make_message_id_is_on_the_senders_domain() -> None:
    assert make_message_id("acme.example.com", "touch-42.9f8e") == "<touch-42.9f8e@acme.example.com>"
    assert make_message_id(sender_domain("ana@Bücher.example"), "x") == "<x@xn--bcher-kva.example>"


@pytest.mark.parametrize(
    ("domain", "unique"),
    [("acme.example.com", "a b"), ("acme.example.com", "a@b"), ("bad domain", "x"), ("acme.example.com", "")],
)
def test_make_message_id_refuses_what_would_break_the_header(domain: str, unique: str) -> None:
    with pytest.raises(MessageError):
        make_message_id(domain, unique)


@pytest.mark.parametrize("message_id", ["touch-1@acme.example.com", "<no-at-sign>", "<a b@acme.example.com>", ""])
def test_malformed_message_ids_are_refused(spec: OutgoingMessage, message_id: str) -> None:
    with pytest.raises(MessageError):
        build_message(dataclasses.replace(spec, message_id=message_id))


# ------------------------------------------------------------------------------------------ refusals

HEADER_FIELDS = [
    "from_address",
    "from_name",
    "to_address",
    "to_name",
    "subject",
    "message_id",
    "reply_to",
    "in_reply_to",
    "list_unsubscribe_url",
    "list_unsubscribe_mailto",
]
VALID_VALUES = {
    "reply_to": "replies@acme.example.com",
    "in_reply_to": "<p@acme.example.com>",
}


@pytest.mark.parametrize("field", HEADER_FIELDS)
@pytest.mark.parametrize("bad", ["\r\nBcc: victim@example.com", "\nX-Evil: 1", "\r", "\x00", "\u2028X-Evil: 1"])
def test_header_injection_is_refused_in_every_header_field(spec: OutgoingMessage, field: str, bad: str) -> None:
    base = getattr(spec, field) or VALID_VALUES[field]
    poisoned = base[:-1] + bad + ">" if base.endswith(">") else base + bad
    with pytest.raises(HeaderInjectionError, match=field):
        build_message(dataclasses.replace(spec, **{field: poisoned}))


@pytest.mark.parametrize("bad", ["\r\nBcc: victim@example.com", "\n", "\x00"])
def test_header_injection_is_refused_in_references(spec: OutgoingMessage, bad: str) -> None:
    with pytest.raises(HeaderInjectionError, match="references"):
        build_message(dataclasses.replace(spec, references=(f"<a{bad}@acme.example.com>",)))


def test_injection_errors_are_domain_errors(spec: OutgoingMessage) -> None:
    with pytest.raises(OutreachError):
        build_message(dataclasses.replace(spec, subject="Hi\r\nBcc: x@example.com"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to_address", "not-an-address"),
        ("to_address", "two@@example.com"),
        ("from_address", "ana@"),
        ("to_address", "jöhn@example.com"),
        ("list_unsubscribe_url", "javascript:alert(1)"),
        ("list_unsubscribe_url", "https://track.example.com/u/<x>"),
        ("list_unsubscribe_mailto", "mailto:not-an-address"),
    ],
)
def test_invalid_addresses_and_urls_are_refused(spec: OutgoingMessage, field: str, value: str) -> None:
    with pytest.raises(MessageError):
        build_message(dataclasses.replace(spec, **{field: value}))


def test_naive_dates_and_empty_subjects_are_refused(spec: OutgoingMessage) -> None:
    with pytest.raises(MessageError, match="aware"):
        build_message(dataclasses.replace(spec, date=datetime(2026, 3, 9, 14, 30)))
    with pytest.raises(MessageError, match="subject"):
        build_message(dataclasses.replace(spec, subject="  "))


def test_nul_in_a_body_is_refused(spec: OutgoingMessage) -> None:
    with pytest.raises(MessageError, match="text_body"):
        build_message(dataclasses.replace(spec, text_body="Hi\x00"))
