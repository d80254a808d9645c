"""The whole reading of one message (`classify_message`), pure: machine mail first, then replies."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from db.enums import Intent, ResponseKind
from outreach.classify import classify_message
from outreach.inbound import parse_message

SENT_AT = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
TALON_HTML = Path(__file__).resolve().parents[3] / "shared/corpora/mailgun_talon/tests/fixtures/html_replies"


def message(body: str, *, subject: str = "Re: Quick idea", html: str | None = None, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Dana <dana@acme.example>"
    msg["To"] = "sam@sender.example"
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return parse_message(bytes(msg)).message


@pytest.mark.parametrize(
    "subject",
    [
        "Automatische Antwort: Quick idea",
        "Réponse automatique : Quick idea",
        "Respuesta automática: Quick idea",
        "Risposta automatica: Quick idea",
        "Automatisch antwoord: Quick idea",
        "Automatyczna odpowiedź: Quick idea",
        "Autosvar: Quick idea",
        "Resposta automática: Quick idea",
        "Автоответ: Quick idea",
        "自動応答: Quick idea",
        "Out of Office: Quick idea",
    ],
)
def test_auto_reply_subjects_in_several_languages(subject: str) -> None:
    result = classify_message(message("Thanks for your message.", subject=subject), sent_at=SENT_AT)
    assert result.kind is ResponseKind.AUTO_REPLY


def test_absence_template_without_headers_is_an_auto_reply_with_its_return_date() -> None:
    body = "Thank you for your email. I am currently out of the office until March 16 with limited access to email."
    result = classify_message(message(body), sent_at=SENT_AT)
    assert (result.kind, result.reply.intent, result.reply.return_date) == (
        ResponseKind.AUTO_REPLY,
        Intent.OUT_OF_OFFICE,
        date(2026, 3, 16),
    )


def test_a_person_away_who_says_yes_is_a_reply() -> None:
    result = classify_message(message("I'm out of the office until Monday, but yes - let's talk next week."))
    assert (result.kind, result.reply.intent) == (ResponseKind.REPLY, Intent.INTERESTED)


def test_auto_reply_that_is_not_an_absence_has_no_other_intent() -> None:
    msg = message(
        "Your request has been received. Ticket #4411. Contact support@acme.example.", Auto_Submitted="auto-replied"
    )
    result = classify_message(msg, sent_at=SENT_AT)
    assert (result.kind, result.reply.intent, result.reply.referral) == (ResponseKind.AUTO_REPLY, Intent.OTHER, None)


def test_html_only_reply_is_cut_at_the_quote() -> None:
    html = (TALON_HTML / "gmail.html").read_text(encoding="utf-8")
    msg = EmailMessage()
    msg["From"], msg["Subject"] = "alex@example.com", "Re: Test"
    msg.set_content(html, subtype="html")
    result = classify_message(parse_message(bytes(msg)).message)
    assert " ".join(result.text.split()) == "Hi. I am fine. Thanks, Alex"
    assert result.kind is ResponseKind.REPLY


def test_signature_links_are_not_intent() -> None:
    body = "Got it, thanks.\n\nBest,\nDana\nVP Ops | Book a meeting with me: https://calendly.com/dana"
    result = classify_message(message(body))
    assert result.reply.intent is Intent.OTHER
    assert result.text.startswith("Got it, thanks.") and "calendly" in result.text  # shown, not judged


def test_rules_before_sentiment_and_the_sentiment_is_still_reported() -> None:
    result = classify_message(message("Please remove me from your list."))
    assert result.reply.intent is Intent.UNSUBSCRIBE and result.reply.sentiment > 0
    assert result.reply.confidence >= 0.9 and "remove me" in result.reply.explanation


def test_encoded_headers_are_read() -> None:
    msg = EmailMessage()
    msg["From"] = "=?utf-8?q?Ren=C3=A9e?= <renee@acme.example>"
    msg["Subject"] = "=?utf-8?b?UsOpcG9uc2UgYXV0b21hdGlxdWUgOiBRdWljayBpZGVh?="  # Réponse automatique : Quick idea
    msg.set_content("Je suis absente jusqu'au 11 mars.")
    result = classify_message(parse_message(bytes(msg)).message, sent_at=SENT_AT)
    assert (result.kind, result.reply.return_date) == (ResponseKind.AUTO_REPLY, date(2026, 3, 11))
