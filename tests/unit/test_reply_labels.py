"""Intent on our own labelled replies (tests/fixtures/replies/*_replies.yaml): per-class precision and recall,
the out-of-office return dates and the referral targets, through the full reply path.

Each reply is put into a real message (its quoted history added the way its mail client quotes), parsed
and classified exactly as the inbox does it. Run with -s to see the table docs/reply-classification.md
reports.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from db.enums import Intent, ResponseKind
from outreach.classify import classify_message

REPLIES = Path(__file__).resolve().parents[1] / "fixtures" / "replies"
SETS = ("labelled", "holdout", "fresh")  # see the header of each file for how it was written and used
OUTREACH = (
    "Hi Dana,\n\nTeams like Acme's usually spend two days a month reconciling card spend. We cut that to an hour.\n"
    "Would a 15 minute call next week make sense, or should I send a short overview first?\n\n"
    "If this isn't relevant, just reply and I'll stop reaching out.\n\nSam Rivera\nRiverflow | 1 Market St, SF"
)
QUOTE_STYLES = {
    "gmail": "{text}\n\nOn Tue, Mar 3, 2026 at 9:12 AM Sam Rivera <sam@sender.example> wrote:\n\n{quoted}\n",
    "outlook": "{text}\n\n________________________________\nFrom: Sam Rivera <sam@sender.example>\n"
    "Sent: Tuesday, March 3, 2026 9:12 AM\nTo: Dana <dana@acme.example>\nSubject: Quick idea for Acme\n\n{plain}\n",
    "apple": "{text}\n\n> On Mar 3, 2026, at 09:12, Sam Rivera <sam@sender.example> wrote:\n> \n{quoted}\n",
    "iphone": "{text}\n\nSent from my iPhone\n\n> On Mar 3, 2026, at 9:12 AM, Sam Rivera <sam@sender.example> wrote:\n"
    "> \n{quoted}\n",
    "interleaved": "On Tue, Mar 3, 2026 at 9:12 AM Sam Rivera <sam@sender.example> wrote:\n{text}\n",
    "none": "{text}",
}
CLASSES = [str(i) for i in Intent]


@cache
def labelled() -> dict[str, Any]:
    """Every set's replies in one list, each tagged with its set; all sets share the sent date."""
    replies: list[dict[str, Any]] = []
    sent = None
    for name in SETS:
        data = yaml.safe_load((REPLIES / f"{name}_replies.yaml").read_text(encoding="utf-8"))
        sent = data["sent"]
        replies += [{**entry, "set": name} for entry in data["replies"]]
    return {"sent": sent, "replies": replies}


def message_for(entry: dict[str, Any], sent: date) -> EmailMessage:
    quoted = "\n".join(f"> {line}" if line else ">" for line in OUTREACH.split("\n"))
    body = QUOTE_STYLES[entry["thread"]].format(text=entry["text"].rstrip("\n"), quoted=quoted, plain=OUTREACH)
    msg = EmailMessage(policy=default)
    msg["From"] = entry.get("from", "Dana Whitfield <dana@acme.example>")
    msg["To"] = "Sam Rivera <sam@sender.example>"
    if entry.get("cc"):
        msg["Cc"] = entry["cc"]
    msg["Subject"] = "Re: Quick idea for Acme"
    msg["Date"] = format_datetime(datetime(sent.year, sent.month, sent.day, 15, 30, tzinfo=UTC))
    msg.set_content(body)
    return msg


@cache
def predictions() -> list[tuple[dict[str, Any], Any]]:
    data = labelled()
    sent = data["sent"]
    results = []
    for entry in data["replies"]:
        sent_at = datetime(sent.year, sent.month, sent.day, 15, 30, tzinfo=UTC)
        results.append(
            (
                entry,
                classify_message(
                    message_for(entry, sent), sent_at=sent_at, own_addresses=frozenset({"sam@sender.example"})
                ),
            )
        )
    return results


def per_class() -> dict[str, tuple[int, int, int]]:
    """class → (true positives, predicted, labelled)."""
    counts: dict[str, list[int]] = {c: [0, 0, 0] for c in CLASSES}
    for entry, result in predictions():
        got = str(result.reply.intent)
        counts[got][1] += 1
        counts[entry["intent"]][2] += 1
        counts[got][0] += got == entry["intent"]
    return {c: (tp, p, n) for c, (tp, p, n) in counts.items()}


def test_the_set_is_large_varied_and_labelled() -> None:
    entries = labelled()["replies"]
    assert len([e for e in entries if e["set"] == "labelled"]) >= 150
    assert len({e["id"] for e in entries}) == len(entries)
    by_class = Counter(e["intent"] for e in entries)
    assert set(by_class) == set(CLASSES) and min(by_class.values()) >= 15
    assert {e["thread"] for e in entries} == set(QUOTE_STYLES)


def test_every_labelled_reply_is_read_as_a_reply_with_its_new_text() -> None:
    for entry, result in predictions():
        assert result.kind in (ResponseKind.REPLY, ResponseKind.AUTO_REPLY), entry["id"]
        assert "Sam Rivera" not in result.text and "stop reaching out" not in result.text, entry["id"]
        assert "Sent from my iPhone" not in result.text, entry["id"]


def test_precision_and_recall_per_class() -> None:
    table = per_class()
    print("\n| intent | labelled | predicted | precision | recall |\n|---|---|---|---|---|")
    for name, (tp, predicted, n) in table.items():
        precision = tp / predicted if predicted else 1.0
        recall = tp / n if n else 1.0
        print(f"| {name} | {n} | {predicted} | {precision:.0%} | {recall:.0%} |")
    right = sum(tp for tp, _, _ in table.values())
    total = sum(n for _, _, n in table.values())
    print(f"| all | {total} | | accuracy {right / total:.1%} | |")
    for name in SETS:
        mine = [(e, r) for e, r in predictions() if e["set"] == name]
        print(f"{name}: {sum(str(r.reply.intent) == e['intent'] for e, r in mine)}/{len(mine)}")
    wrong = [
        (e["id"], e["intent"], str(r.reply.intent)) for e, r in predictions() if str(r.reply.intent) != e["intent"]
    ]
    print("misread:", wrong)
    assert right / total >= 0.95
    for name, (tp, predicted, n) in table.items():
        assert tp / n >= 0.9, f"{name} recall {tp}/{n}"
        assert predicted == 0 or tp / predicted >= 0.9, f"{name} precision {tp}/{predicted}"


def test_out_of_office_return_dates() -> None:
    dated = [(e, r) for e, r in predictions() if "return_date" in e]
    right = [e["id"] for e, r in dated if r.reply.return_date == e["return_date"]]
    print(f"return dates right: {len(right)}/{len(dated)}")
    assert len(dated) >= 30
    assert len(right) == len(dated), [(e["id"], e["return_date"], r.reply.return_date) for e, r in dated]


def test_referral_targets() -> None:
    referred = [(e, r) for e, r in predictions() if "referral" in e]
    for entry, result in referred:
        want = entry["referral"]
        got = result.reply.referral
        assert got is not None, entry["id"]
        assert got.email == want.get("email"), entry["id"]
        if "name" in want:
            assert got.name == want["name"], (entry["id"], got.name)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Please remove me from your list.", Intent.UNSUBSCRIBE),
        ("We're not interested, thanks.", Intent.NOT_INTERESTED),
        ("Interested — can we book a call next week?", Intent.INTERESTED),
        ("How much does it cost?", Intent.QUESTION),
        ("Got it.", Intent.OTHER),
    ],
)
def test_rules_before_sentiment_on_short_replies(text: str, intent: Intent) -> None:
    msg = message_for({"thread": "none", "text": text}, date(2026, 3, 4))
    assert classify_message(msg).reply.intent is intent
