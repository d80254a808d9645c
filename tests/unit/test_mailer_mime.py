"""MIME structure: boundaries drawn from the Message-ID (the same touch always has the same bytes) and attachments."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from outreach.mailer import Attachment, MessageError, OutgoingMessage, build_message

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
SPEC = OutgoingMessage(
    from_address="dana@sender.example", to_address="pat@acme.example", subject="Idea for Acme",
    text_body="Hi Pat,\nhave a look: https://demo.example/tour", html_body="<p>Hi Pat</p>",
    message_id="<17.abc@sender.example>", date=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
    list_unsubscribe_url="https://t.example/u/tok", postal_address="Outreach Inc\n1 Main St",
)  # fmt: skip


def _boundaries(raw: bytes) -> list[str]:
    parsed = message_from_bytes(raw, policy=policy.default)
    return [part.get_boundary() for part in parsed.walk() if part.is_multipart()]


def test_the_same_message_id_gives_the_same_bytes_every_time() -> None:
    assert build_message(SPEC).as_bytes() == build_message(SPEC).as_bytes()
    with_file = replace(SPEC, attachments=(Attachment("tour.pdf", PDF),))
    assert build_message(with_file).as_bytes() == build_message(with_file).as_bytes()


def test_boundaries_come_from_the_message_id_and_differ_between_messages() -> None:
    first = _boundaries(build_message(SPEC).as_bytes())
    other = _boundaries(build_message(replace(SPEC, message_id="<18.abc@sender.example>")).as_bytes())
    digest = hashlib.sha256(b"<17.abc@sender.example>:0:0").hexdigest()[:32]
    assert first == [f"=_outreach_{digest}"]
    assert other != first


def test_a_7bit_body_containing_the_boundary_gets_another_one_and_still_parses() -> None:
    digest = hashlib.sha256(b"<17.abc@sender.example>:0:0").hexdigest()[:32]
    sneaky = replace(SPEC, text_body=f"Hi\n--=_outreach_{digest}\nnot a part")
    raw = build_message(sneaky).as_bytes()
    assert _boundaries(raw) != [f"=_outreach_{digest}"]
    parsed = message_from_bytes(raw, policy=policy.default)
    assert "not a part" in parsed.get_body(("plain",)).get_content()
    assert [p.get_content_type() for p in parsed.walk()] == ["multipart/alternative", "text/plain", "text/html"]


def test_an_attachment_follows_the_two_parts_and_arrives_intact() -> None:
    raw = build_message(replace(SPEC, attachments=(Attachment("Acme tour.pdf", PDF),))).as_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf",
    ]  # fmt: skip
    [attached] = list(parsed.iter_attachments())
    assert (attached.get_filename(), attached.get_content()) == ("Acme tour.pdf", PDF)
    assert "Hi Pat" in parsed.get_body(("plain",)).get_content()


@pytest.mark.parametrize("name", ["evil\r\nBcc: x@y.example.pdf", "", "   "])
def test_an_attachment_name_that_could_forge_headers_is_refused(name: str) -> None:
    with pytest.raises(MessageError):
        build_message(replace(SPEC, attachments=(Attachment(name, PDF),)))
