"""The baseline classifier over real corpora (../shared/corpora, see its MANIFEST) and the pure reply helpers.

Kinds must be right for every bounce and auto-reply sample; hard/soft and the failed recipient are
scored (printed with -s) against floors, since the Response issue's full classifier will raise them.
"""

from __future__ import annotations

import json
import os
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from db.enums import Intent, ResponseKind
from outreach.inbound import BounceReport, classify_kind, parse_bounce, parse_message, synthetic_message_id
from outreach.responses import intent_of, sentiment_of, strip_quoted

CORPORA = Path(os.environ.get("OUTREACH_CORPORA", Path(__file__).resolve().parents[3] / "shared" / "corpora"))
BOUNCE_SECTIONS = ("bounces_sisimai", "bounces_flufl", "bounces_mail_deliverystatus_bounceparser")
# BounceParser calls spam that reached the bounce address "is_bounce" with zero reports; for a sales
# inbox that is not a delivery failure, so those samples are left out of the bounce set.
DELAYED_DSN_NEGATIVE = "mail_deliverystatus_bounceparser/t/corpus/warning-8.msg"


@cache
def expected() -> dict[str, Any]:
    path = CORPORA / "expected.json"
    if not path.exists():
        pytest.fail(f"the shared corpora are missing: {path} (set OUTREACH_CORPORA to their folder)")
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def read(sample: str) -> tuple[ResponseKind, BounceReport | None]:
    message = parse_message((CORPORA / sample).read_bytes()).message
    return classify_kind(message), parse_bounce(message)


def bounce_samples(section: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in expected()[section]
        if not any(row.get("reports") == 0 for row in entry["expected"])  # spam sent to the bounce address
    ]


def expected_class(section: str, entry: dict[str, Any]) -> str | None:
    rows = entry["expected"]
    if section == "bounces_sisimai":
        return rows[0]["class_from_status"]
    if section == "bounces_flufl":
        return rows[0]["class"] if rows else None
    code = rows[0].get("status") or rows[0].get("smtp_code") or ""
    return {"5": "permanent", "4": "temporary"}.get(code[:1])


def expected_recipients(section: str, entry: dict[str, Any]) -> list[str]:
    if section == "bounces_sisimai":
        hint = entry["recipient_hint"]
        found = hint["final_recipient"] or hint["original_recipient"] or hint["x_failed_recipients"]
    elif section == "bounces_flufl":
        found = [r for row in entry["expected"] for r in row["recipients"]]
    else:
        found = [r for row in entry["expected"] for r in row.get("recipients", [])]
    return [r.lower() for r in found]


# --- kinds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", BOUNCE_SECTIONS)
def test_every_bounce_sample_is_classified_bounce(section: str) -> None:
    samples = bounce_samples(section)
    missed = [(e["sample"], str(read(e["sample"])[0])) for e in samples if read(e["sample"])[0] != ResponseKind.BOUNCE]
    print(f"{section}: {len(samples) - len(missed)}/{len(samples)} classified bounce")
    assert missed == []


def test_every_auto_reply_sample_is_classified_auto_reply() -> None:
    samples = [e["sample"] for e in expected()["autoreplies"]]
    assert len(samples) == 13
    assert {s: str(read(s)[0]) for s in samples} == {s: "auto_reply" for s in samples}


def test_negatives_are_not_bounces() -> None:
    samples = [e["sample"] for e in expected()["negatives"] if e["sample"] != DELAYED_DSN_NEGATIVE]
    assert {s: read(s)[0] for s in samples if read(s)[0] == ResponseKind.BOUNCE} == {}


def test_delayed_dsn_is_a_soft_bounce_that_changes_nothing() -> None:
    """BounceParser calls "still being retried" no bounce; flufl and sisimai call delays temporary bounces.

    Either way it must not stop anything: it is read as a soft bounce, which is recorded only.
    """
    kind, report = read(DELAYED_DSN_NEGATIVE)
    assert kind == ResponseKind.BOUNCE and report is not None and report.permanent is False


def test_real_bounce_carrying_auto_submitted_is_a_bounce() -> None:
    kind, report = read("mail_deliverystatus_bounceparser/t/corpus/non-autoreply.msg")
    assert kind == ResponseKind.BOUNCE and report is not None and report.permanent


def test_real_replies_are_replies() -> None:
    samples = sorted((CORPORA / "mailgun_talon/tests/fixtures/standard_replies").glob("*.eml"))
    assert len(samples) == 12
    kinds = {p.name: read(str(p.relative_to(CORPORA)))[0] for p in samples}
    assert set(kinds.values()) == {ResponseKind.REPLY}


# --- bounce details ------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "floor"), [(s, 0.95) for s in BOUNCE_SECTIONS])
def test_hard_or_soft_score(section: str, floor: float) -> None:
    scored = [
        (expected_class(section, e), read(e["sample"])[1])
        for e in bounce_samples(section)
        if expected_class(section, e)
    ]
    right = sum(1 for cls, report in scored if report and report.permanent == (cls == "permanent"))
    print(f"{section}: hard/soft right {right}/{len(scored)}")
    assert scored and right / len(scored) >= floor


@pytest.mark.parametrize(
    ("section", "floor"),
    [(s, 0.95) for s in BOUNCE_SECTIONS],
)
def test_failed_recipient_score(section: str, floor: float) -> None:
    named = [(expected_recipients(section, e), read(e["sample"])[1]) for e in bounce_samples(section)]
    named = [(want, report) for want, report in named if want]
    right = sum(1 for want, report in named if report and report.recipient in want)
    print(f"{section}: recipient right {right}/{len(named)}")
    assert named and right / len(named) >= floor


def test_dsn_fields_and_the_original_message_id() -> None:
    _, report = read("sisimai_set_of_emails/maildir/bsd/lhost-postfix-04.eml")
    assert report is not None
    assert (report.recipient, report.status, report.permanent, report.action) == (
        "kijitora@example.co.jp",
        "5.1.1",
        True,
        "failed",
    )
    assert report.diagnostic and "550" in report.diagnostic
    assert report.original_message_ids == ("<A8F82EDD-E518-4F5C-8C70-BC4EFF24AB9F@example.ne.jp>",)


def test_version_numbers_and_addresses_are_not_status_codes() -> None:
    msg = _message(
        "MAILER-DAEMON@mx.example",
        "failure notice",
        "Hi. This is the qmail-send program 1.2.3 at 10.2.1.7.\n<gone@x.example>:\nSorry, no mailbox here.\n",
    )
    report = parse_bounce(msg)
    assert report is not None and report.status is None and report.permanent and report.recipient == "gone@x.example"


# --- headers -------------------------------------------------------------------------------------


def _message(sender: str, subject: str, body: str = "Thanks!", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["Subject"] = sender, subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


@pytest.mark.parametrize(
    ("headers", "subject", "kind"),
    [
        ({"Auto_Submitted": "auto-replied"}, "Re: Quick idea", ResponseKind.AUTO_REPLY),
        ({"Auto_Submitted": "no"}, "Re: Quick idea", ResponseKind.REPLY),
        ({"X_Autoreply": "yes"}, "Re: Quick idea", ResponseKind.AUTO_REPLY),
        ({"X_Autorespond": "On vacation"}, "Re: Quick idea", ResponseKind.AUTO_REPLY),
        ({"Precedence": "bulk"}, "Re: Quick idea", ResponseKind.AUTO_REPLY),
        ({"Precedence": "first-class"}, "Re: Quick idea", ResponseKind.REPLY),
        ({}, "Out of Office: Quick idea", ResponseKind.AUTO_REPLY),
        ({}, "Abwesenheitsnotiz: Quick idea", ResponseKind.AUTO_REPLY),
        ({}, "Réponse automatique : Quick idea", ResponseKind.AUTO_REPLY),
        ({}, "Fuera de la oficina: Quick idea", ResponseKind.AUTO_REPLY),
        ({}, "Re: Quick idea", ResponseKind.REPLY),
    ],
)
def test_auto_reply_headers_and_subjects(headers: dict[str, str], subject: str, kind: ResponseKind) -> None:
    assert classify_kind(_message("dana@acme.example", subject, **headers)) == kind


def test_success_notice_from_a_mail_system_is_machine_mail_not_a_bounce() -> None:
    msg = _message("postmaster@mx.example", "Delivery Status Notification (Success)", "Delivered to dana@x.example")
    assert parse_bounce(msg) is None
    assert classify_kind(msg) == ResponseKind.AUTO_REPLY


def test_synthetic_message_id_is_stable() -> None:
    raw = b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n"
    assert parse_message(raw).message_id == synthetic_message_id(raw) == synthetic_message_id(bytes(raw))
    assert synthetic_message_id(raw + b"!") != synthetic_message_id(raw)


# --- reply text ----------------------------------------------------------------------------------


def test_strip_quoted_top_posted_reply() -> None:
    text = "Yes, let's talk.\n\nOn Tue, 3 Mar 2026 at 09:00, Sales <sales@sender.example>\nwrote:\n> Quick idea\n"
    assert strip_quoted(text) == "Yes, let's talk."


def test_strip_quoted_bottom_posted_reply_keeps_the_answer() -> None:
    assert strip_quoted("On 04/02/2012 06:26 PM, Sales wrote:\n> Quick idea?\nHello") == "Hello"


def test_strip_quoted_outlook_header_block() -> None:
    text = "Call me Friday.\n\nFrom: Sales <sales@sender.example>\nSent: Tuesday\nSubject: Quick idea\n\nHi Dana"
    assert strip_quoted(text) == "Call me Friday."


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Please remove me from your list.", Intent.UNSUBSCRIBE),
        ("Unsubscribe", Intent.UNSUBSCRIBE),
        ("We're not interested, thanks.", Intent.NOT_INTERESTED),
        ("No thanks.", Intent.NOT_INTERESTED),
        ("I'm out of the office until Monday.", Intent.OUT_OF_OFFICE),
        ("Interested — can we book a call next week?", Intent.INTERESTED),
        ("Let’s talk.", Intent.INTERESTED),
        ("How much does it cost?", Intent.QUESTION),
        ("Got it.", Intent.OTHER),
    ],
)
def test_intent_rules(text: str, intent: Intent) -> None:
    assert intent_of(text) is intent


def test_rules_come_before_sentiment() -> None:
    text = "Please remove me from your list."
    assert sentiment_of(text) > 0  # why rules decide: VADER calls this polite opt-out positive
    assert intent_of(text) is Intent.UNSUBSCRIBE


def test_sentiment_sign() -> None:
    assert sentiment_of("This looks great, I love it!") > 0.5
    assert sentiment_of("This is terrible spam, stop it.") < 0
    assert sentiment_of("   ") == 0.0
