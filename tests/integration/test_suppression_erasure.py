"""Suppression and forgetting: a forgotten person leaves no plain text anywhere and stays unsendable."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, String, Text, cast, func, inspect, select, text
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import EventKind, ResponseKind, StepType, SuppressionKind, TaskType, TouchState
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    SequenceStep,
    Suppression,
    Task,
)
from outreach.erasure import ErasureError, find_plaintext, forget
from outreach.prospects import ImportOptions, import_prospects
from outreach.suppression import SuppressionError, is_suppressed, list_suppressions, suppress, unsuppress

SECRET = "test-secret-key-0123456789abcdefghijklmnop"
ADDRESS = "Zoe.Forgotten@Acme-Corp.com"


def seed_person(session: Session) -> int:
    """A prospect with a touch, an open, a reply, a task, and a mention in someone else's reply."""
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    zoe = Prospect(email=ADDRESS, email_normalized=ADDRESS.lower(), first_name="Zoe", custom_fields={"note": ADDRESS})
    other = Prospect(email="max@acme-corp.com", email_normalized="max@acme-corp.com", first_name="Max")
    campaign = OutreachCampaign(name="Q1")
    session.add_all([zoe, other, campaign])
    session.flush()
    step = SequenceStep(campaign_id=campaign.id, position=0, type=StepType.EMAIL)
    session.add(step)
    session.flush()
    enrollment = Enrollment(campaign_id=campaign.id, prospect_id=zoe.id)
    other_enrollment = Enrollment(campaign_id=campaign.id, prospect_id=other.id)
    session.add_all([enrollment, other_enrollment])
    session.flush()
    touch = CommunicationLog(
        enrollment_id=enrollment.id,
        step_id=step.id,
        channel=StepType.EMAIL,
        state=TouchState.SENT,
        due_at=now,
        sent_at=now,
        subject="Hi Zoe",
        body_text=f"Sent to {ADDRESS}",
    )
    other_touch = CommunicationLog(
        enrollment_id=other_enrollment.id,
        step_id=step.id,
        channel=StepType.EMAIL,
        state=TouchState.SENT,
        due_at=now,
        body_text="Hello Max",
    )
    session.add_all([touch, other_touch])
    session.flush()
    session.add_all(
        [
            EngagementEvent(
                kind=EventKind.OPEN, communication_id=touch.id, prospect_id=zoe.id, campaign_id=campaign.id
            ),
            ResponseAnalysis(
                message_id="<r1@acme-corp.com>",
                kind=ResponseKind.REPLY,
                prospect_id=zoe.id,
                from_address=ADDRESS,
                body_text="Thanks!",
            ),
            ResponseAnalysis(
                message_id="<r2@acme-corp.com>",
                kind=ResponseKind.REPLY,
                prospect_id=other.id,
                communication_id=other_touch.id,
                from_address="max@acme-corp.com",
                referred_to=ADDRESS.lower(),
                body_text=f"Please write to {ADDRESS} instead",
            ),
            ResponseAnalysis(
                message_id="<r3@acme-corp.com>", kind=ResponseKind.BOUNCE, bounce_recipient=ADDRESS.lower()
            ),
            Task(type=TaskType.CALL, prospect_id=zoe.id, campaign_id=campaign.id, due_at=now, body="Call Zoe"),
            Suppression(kind=SuppressionKind.EMAIL, value=ADDRESS.lower(), value_hash="0" * 64, reason="unsubscribed"),
        ]
    )
    session.flush()
    return zoe.id


def every_text_cell_mentioning(session: Session, needle: str) -> list[str]:
    """Independent of the code under test: scan every string column of every table in the database."""
    hits = []
    inspector = inspect(session.connection())
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if not isinstance(column["type"], String | Text) and "JSON" not in str(column["type"]).upper():
                continue
            expr = func.lower(cast(text(f'"{column["name"]}"'), Text))
            query = select(func.count()).select_from(text(f'"{table}"')).where(expr.like(f"%{needle.lower()}%"))
            if session.scalar(query):
                hits.append(f"{table}.{column['name']}")
    return hits


def test_suppress_addresses_and_domains_and_check_them(session: Session):
    result = suppress(session, ["Ann@Acme-Corp.com", "@blocked.io", "blocked.io", "  "])
    assert (result.added, result.already) == (2, 0)
    assert suppress(session, ["ann@acme-corp.com"]).already == 1
    assert is_suppressed(session, "ANN@acme-corp.com", SECRET)
    assert is_suppressed(session, "x@mail.blocked.io", SECRET)
    assert not is_suppressed(session, "bob@acme-corp.com", SECRET)
    entries, total = list_suppressions(session, search="blocked")
    assert total == 1 and entries[0].kind == SuppressionKind.DOMAIN
    assert unsuppress(session, "blocked.io")
    assert not is_suppressed(session, "x@mail.blocked.io", SECRET)
    with pytest.raises(SuppressionError, match="not a valid email"):
        suppress(session, ["ann@@acme"])


def test_forget_erases_everything_and_keeps_only_a_keyed_hash(engine: Engine, tmp_path: Path):
    with transaction(engine) as session:
        seed_person(session)
    with transaction(engine) as session:
        result = forget(session, ADDRESS, secret_key=SECRET)
    assert result.prospect_found
    assert result.deleted["communication_log"] == 1 and result.deleted["engagement_events"] == 1
    with transaction(engine, readonly=True) as session:
        assert every_text_cell_mentioning(session, ADDRESS) == []
        assert find_plaintext(session, ADDRESS) == []
        assert session.scalar(select(func.count()).select_from(Task)) == 0
        remaining = session.execute(select(Suppression.value, Suppression.value_hash, Suppression.reason)).all()
        assert len(remaining) == 1 and remaining[0].value is None and remaining[0].reason == "forgotten"
        assert is_suppressed(session, ADDRESS, SECRET)
        assert not is_suppressed(session, ADDRESS, "another-workspace-key-0123456789abcdef")
        max_reply = session.scalar(select(ResponseAnalysis).where(ResponseAnalysis.message_id == "<r2@acme-corp.com>"))
        assert max_reply is not None and "[forgotten]" in (max_reply.body_text or "")
        assert session.scalar(select(Prospect.first_name)) == "Max"

    path = tmp_path / "again.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["Email", "First Name"], [ADDRESS.upper(), "Zoe"]])
    with transaction(engine) as session:
        report = import_prospects(session, path, ImportOptions(), secret_key=SECRET)
    assert (report.suppressed, report.imported) == (1, 0)


def test_forgetting_someone_unknown_still_suppresses_them(session: Session):
    result = forget(session, "nobody@acme-corp.com", secret_key=SECRET)
    assert not result.prospect_found
    assert is_suppressed(session, "nobody@acme-corp.com", SECRET)
    assert find_plaintext(session, "nobody@acme-corp.com") == []
    with pytest.raises(ErasureError):
        forget(session, "not an address", secret_key=SECRET)
