"""The constraints the flows rely on hold in the database itself, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from db.engine import transaction
from db.enums import CampaignState, StepType, TouchState
from db.models import (
    CommunicationLog,
    Enrollment,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ResponseAnalysis,
    SequenceStep,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _campaign_with_enrollment(session) -> tuple[Enrollment, SequenceStep]:
    prospect = Prospect(email="Dana@Example.com", email_normalized="dana@example.com")
    campaign = OutreachCampaign(name="Q1")
    step = SequenceStep(campaign=campaign, position=0, type=StepType.EMAIL)
    session.add_all([prospect, campaign, step])
    session.flush()
    enrollment = Enrollment(campaign_id=campaign.id, prospect_id=prospect.id)
    session.add(enrollment)
    session.flush()
    return enrollment, step


def test_normalized_email_is_unique(engine) -> None:
    with transaction(engine) as s:
        s.add(Prospect(email="a@x.com", email_normalized="a@x.com"))
    with pytest.raises(IntegrityError), transaction(engine) as s:
        s.add(Prospect(email="A@X.com", email_normalized="a@x.com"))


def test_one_enrollment_per_campaign_and_prospect(engine) -> None:
    with transaction(engine) as s:
        enrollment, _ = _campaign_with_enrollment(s)
        ids = (enrollment.campaign_id, enrollment.prospect_id)
    with pytest.raises(IntegrityError), transaction(engine) as s:
        s.add(Enrollment(campaign_id=ids[0], prospect_id=ids[1]))


def test_a_touch_cannot_be_created_twice(engine) -> None:
    with transaction(engine) as s:
        enrollment, step = _campaign_with_enrollment(s)
        s.add(CommunicationLog(enrollment_id=enrollment.id, step_id=step.id, channel=StepType.EMAIL, due_at=NOW))
        ids = (enrollment.id, step.id)
    with pytest.raises(IntegrityError), transaction(engine) as s:
        s.add(CommunicationLog(enrollment_id=ids[0], step_id=ids[1], channel=StepType.EMAIL, due_at=NOW))
    with transaction(engine, readonly=True) as s:
        assert len(s.scalars(select(CommunicationLog)).all()) == 1


def test_failed_transaction_writes_nothing(engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as s:
        s.add(Prospect(email="b@x.com", email_normalized="b@x.com"))
        s.flush()
        raise RuntimeError("boom")
    with transaction(engine, readonly=True) as s:
        assert s.scalar(select(Prospect).where(Prospect.email_normalized == "b@x.com")) is None


def test_status_columns_reject_unknown_values(engine) -> None:
    with transaction(engine) as s:
        s.add(OutreachCampaign(name="C"))
    with pytest.raises(IntegrityError), transaction(engine) as s:
        s.execute(text("UPDATE outreach_campaigns SET state = 'exploded'"))
    with pytest.raises(StatementError), transaction(engine) as s:
        s.add(OutreachCampaign(name="D", state="exploded"))


def test_foreign_keys_are_enforced_and_cascade(engine) -> None:
    with pytest.raises(IntegrityError), transaction(engine) as s:
        s.add(ProspectListMember(list_id=999, prospect_id=999))
    with transaction(engine) as s:
        p = Prospect(email="c@x.com", email_normalized="c@x.com")
        lst = ProspectList(name="L")
        s.add_all([p, lst])
        s.flush()
        s.add(ProspectListMember(list_id=lst.id, prospect_id=p.id))
    with transaction(engine) as s:
        s.execute(text("DELETE FROM prospects"))
    with transaction(engine, readonly=True) as s:
        assert s.scalars(select(ProspectListMember)).all() == []


def test_imap_uids_keep_their_full_unsigned_32_bit_range(engine) -> None:
    largest = 2**32 - 1  # UIDVALIDITY and UIDs are unsigned 32-bit; a signed INTEGER stops at 2**31 - 1
    with transaction(engine) as s:
        s.add(
            ResponseAnalysis(
                message_id="<r@x>", kind="reply", imap_uidvalidity=largest, imap_uid=largest, folder="INBOX"
            )
        )
    with transaction(engine, readonly=True) as s:
        row = s.scalars(select(ResponseAnalysis)).one()
        assert (row.imap_uidvalidity, row.imap_uid) == (largest, largest)


def test_timestamps_come_back_aware_utc(engine) -> None:
    local = NOW.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    with transaction(engine) as s:
        enrollment, step = _campaign_with_enrollment(s)
        s.add(CommunicationLog(enrollment_id=enrollment.id, step_id=step.id, channel=StepType.EMAIL, due_at=local))
    with transaction(engine, readonly=True) as s:
        row = s.scalars(select(CommunicationLog)).one()
        assert row.due_at == NOW and row.due_at.tzinfo is UTC
        assert row.state is TouchState.QUEUED
        assert s.scalars(select(OutreachCampaign)).one().state is CampaignState.DRAFT


def test_naive_datetimes_are_refused(engine) -> None:
    with pytest.raises(StatementError), transaction(engine) as s:
        enrollment, step = _campaign_with_enrollment(s)
        s.add(
            CommunicationLog(
                enrollment_id=enrollment.id,
                step_id=step.id,
                channel=StepType.EMAIL,
                due_at=NOW.replace(tzinfo=None) + timedelta(0),
            )
        )
        s.flush()


def test_due_query_uses_the_state_due_index(engine) -> None:
    """The worker's due query is answered from (state, due_at), not by scanning the table."""
    stmt = "SELECT id FROM communication_log WHERE state = 'queued' AND due_at <= :now ORDER BY due_at LIMIT 50"
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + stmt), {"now": NOW}))
            assert "ix_communication_log_state_due_at" in plan, plan
        else:
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + stmt), {"now": NOW}))
            assert "ix_communication_log_state_due_at" in plan, plan
