"""The first email a prospect receives moves its lead from "new" to "contacted", once, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import LeadStage
from db.models import LeadQualification, LeadStageChange, Prospect
from outreach.config import Settings, load_settings
from outreach.responses import update_lead_status
from outreach.sending import send_tick
from outreach.worker import JobContext, WorkerIdentity
from tests.sending_setup import KEY, launch_campaign
from tests.smtp_sink import Sink

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def settings(data_env, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    return load_settings()


def test_first_email_moves_new_leads_to_contacted_and_leaves_later_stages(engine: Engine, settings: Settings) -> None:
    with Sink() as sink:
        emails = launch_campaign(engine, sink.port, people=3, launch_at=T0 - timedelta(hours=1), name="Hello")
        with transaction(engine) as s:  # one lead is already further along: sending never moves it back
            first = s.scalar(select(Prospect.id).where(Prospect.email == emails[0]))
            update_lead_status(s, first, LeadStage.INTERESTED, "met at a conference", now=T0, by="ann")
        for minute in range(0, 6):
            now = T0 + timedelta(minutes=minute)
            send_tick(engine, JobContext(now, WorkerIdentity("w1", "host", 1), settings, lambda now=now: now))
        assert len(sink.received) == 3
    with transaction(engine, readonly=True) as s:
        stages = dict(
            s.execute(
                select(Prospect.email, LeadQualification.stage).join(
                    LeadQualification, LeadQualification.prospect_id == Prospect.id
                )
            ).all()
        )
        moves = s.execute(
            select(LeadStageChange.reason, LeadStageChange.changed_by).where(
                LeadStageChange.to_stage == LeadStage.CONTACTED
            )
        ).all()
    assert stages == {emails[0]: LeadStage.INTERESTED, emails[1]: LeadStage.CONTACTED, emails[2]: LeadStage.CONTACTED}
    assert moves == [("first email sent (Hello)", None)] * 2
