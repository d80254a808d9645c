"""The first email a prospect receives moves its lead from "new" to "contacted", once, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import LeadStage
from db.models import LeadQualification, LeadStageChange, Prospect, Webhook, WebhookDelivery
from outreach import responses
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


@pytest.mark.parametrize("webhook", [False, True], ids=["quiet", "webhook"])
def test_first_email_moves_new_leads_to_contacted_and_leaves_later_stages(
    engine: Engine, settings: Settings, webhook: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of moving (two statements when nobody listens, the full move when a webhook does) agree."""
    with Sink() as sink:
        emails = launch_campaign(engine, sink.port, people=3, launch_at=T0 - timedelta(hours=1), name="Hello")
        if webhook:
            with transaction(engine) as s:
                s.add(Webhook(url="https://crm.example/hook", secret="s" * 32, events=["lead_status_changed"],
                              is_active=True))  # fmt: skip
        with transaction(engine) as s:  # one lead is already further along: sending never moves it back
            first = s.scalar(select(Prospect.id).where(Prospect.email == emails[0]))
            update_lead_status(s, first, LeadStage.INTERESTED, "met at a conference", now=T0, by="ann")
        full_moves: list[int] = []
        monkeypatch.setattr(
            responses, "update_lead_status", lambda *a, **k: full_moves.append(1) or update_lead_status(*a, **k)
        )
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
        explanations = s.scalars(
            select(LeadQualification.explanation).where(LeadQualification.stage == LeadStage.CONTACTED)
        ).all()
        announced = [
            (d.payload["email"], d.payload["from"], d.payload["to"], d.payload["reason"])
            for d in s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
            if d.payload["to"] == "contacted"
        ]
    assert stages == {emails[0]: LeadStage.INTERESTED, emails[1]: LeadStage.CONTACTED, emails[2]: LeadStage.CONTACTED}
    assert moves == [("first email sent (Hello)", None)] * 2
    for explanation in explanations:  # the stage reason joins the score's explanation; nothing of it is lost
        assert (explanation["stage_reason"], explanation["stage_by"]) == ("first email sent (Hello)", None)
        assert {"score", "grade", "reasons", "features"} <= set(explanation)
    expected = [(e, "new", "contacted", "first email sent (Hello)") for e in emails[1:]]
    assert sorted(announced) == (expected if webhook else [])
    assert len(full_moves) == (2 if webhook else 0)
