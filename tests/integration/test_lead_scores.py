"""Lead scores follow events (replies, opens and clicks from the tracking writer, stage moves), decay in the
nightly refresh, and the outcome model waits for outcomes; send-time cells and the campaign option — on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import EventKind, LeadStage, StepType, TouchState
from db.models import (
    AppSetting,
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    OutreachCampaign,
    Prospect,
)
from outreach import lead_scores, send_time
from outreach.campaigns import CampaignManager
from outreach.engagement import Hit
from outreach.event_recorder import EventRecorder
from outreach.responses import update_lead_status
from outreach.scoring import grade_for
from outreach.sequence import parse_definition
from tests.factories import queued_touches
from tests.integration.test_inbox_ingest import NOW, email, ingest, sent_thread

PROFILE = {"industries": ["fintech"], "title_keywords": ["cfo"], "seniorities": ["c-level"], "half_life_days": 14}
READER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"


def lead(session: Session, prospect_id: int) -> LeadQualification:
    row = session.scalar(select(LeadQualification).where(LeadQualification.prospect_id == prospect_id))
    assert row is not None
    return row


def texts(row: LeadQualification) -> list[str]:
    return [r["text"] for r in row.explanation["reasons"]]


def assert_consistent(row: LeadQualification) -> None:
    assert round(sum(r["points"] for r in row.explanation["reasons"]), 1) == row.score
    assert row.grade == grade_for(row.score) == row.explanation["grade"]


def test_an_interested_reply_scores_with_its_reason_and_keeps_the_stage_reason(session: Session) -> None:
    lead_scores.save_profile(session, PROFILE)
    thread = sent_thread(session)
    thread.prospect.industry, thread.prospect.title = "Fintech", "CFO"
    session.flush()

    ingest(session, email(thread.prospect.email, "Yes, let's talk on Thursday.", in_reply_to=thread.touch.message_id))

    row = lead(session, thread.prospect.id)
    assert row.stage is LeadStage.INTERESTED
    assert texts(row)[:3] == [
        "+20 industry Fintech matches the ideal profile",
        "+15 title CFO contains “cfo”",
        "+10 seniority c-level is in the ideal profile",
    ]
    [positive] = [r for r in row.explanation["reasons"] if "positive reply" in r["text"]]
    assert positive["text"].endswith("positive reply today") and 24.5 <= positive["points"] <= 25
    assert row.score >= 60 and row.grade == "A"
    assert row.explanation["stage_reason"] == "replied interested"  # update_lead_status's note survives
    assert row.last_activity_at == NOW - timedelta(hours=1)
    assert_consistent(row)


def test_an_out_of_office_reply_takes_points_off(session: Session) -> None:
    thread = sent_thread(session)
    away = "I am out of the office until Monday 9 March with limited access to email."
    ingest(session, email(thread.prospect.email, away, subject="Automatic reply: Quick idea",
                          in_reply_to=thread.touch.message_id, headers={"Auto-Submitted": "auto-replied"}))  # fmt: skip
    row = lead(session, thread.prospect.id)
    assert any(t.startswith("−10 out of office") or t.startswith("−9.9 out of office") for t in texts(row))
    assert row.score < 0 and row.grade == "D"
    assert_consistent(row)


def test_stage_moves_score_at_once_and_the_score_leaves_the_stage_date_alone(session: Session) -> None:
    thread = sent_thread(session)
    pid = thread.prospect.id
    update_lead_status(session, pid, LeadStage.MEETING, "operator: meeting booked", now=NOW, by="sam")
    row = lead(session, pid)
    assert "+40 meeting booked today" in texts(row) and row.score == 40 and row.grade == "B"
    stage_date = row.updated_at

    lead_scores.refresh_scores(session, [pid], NOW + timedelta(days=14))
    session.expire_all()
    row = lead(session, pid)
    assert "+20 meeting booked 14 days ago" in texts(row) and row.score == 20 and row.grade == "C"
    assert row.updated_at == stage_date
    assert row.explanation["stage_by"] == "sam"


def test_the_tracking_writer_scores_human_opens_and_clicks_but_not_machines(engine: Engine) -> None:
    with transaction(engine) as s:
        [touch_id] = queued_touches(s, 1, NOW - timedelta(days=1))
        s.execute(
            update(CommunicationLog)
            .where(CommunicationLog.id == touch_id)
            .values(state=TouchState.SENT, sent_at=NOW - timedelta(days=1), links=["https://acme.example/demo"])
        )
        prospect_id = s.scalar(
            select(Enrollment.prospect_id).join(CommunicationLog).where(CommunicationLog.id == touch_id)
        )
    hits = [
        Hit(EventKind.OPEN, touch_id, NOW, READER, "203.0.113.9"),
        Hit(EventKind.OPEN, touch_id, NOW, "Mozilla/5.0", "17.58.1.1"),  # Apple Mail Privacy Protection
        Hit(EventKind.CLICK, touch_id, NOW, "Mimecast URL scanner", link_index=0),
        Hit(EventKind.CLICK, touch_id, NOW + timedelta(minutes=1), READER, link_index=0),
    ]
    recorder = EventRecorder(engine)

    async def record_all() -> None:
        for hit in hits:
            await recorder.record(hit)

    asyncio.run(record_all())
    recorder.close()  # drains the queue: the rescoring after each batch has run when this returns

    with transaction(engine, readonly=True) as s:
        assert len(s.scalars(select(EngagementEvent.id)).all()) == 4
        row = lead(s, prospect_id)
        assert sorted(texts(row)[1:]) == ["+3 opened an email today", "+5 clicked acme.example/demo today"]
        assert row.score == 8 and row.stage is LeadStage.NEW and row.last_activity_at == NOW + timedelta(minutes=1)
        assert row.explanation["features"]["human_opens"] == 1 and row.explanation["features"]["human_clicks"] == 1


def test_the_nightly_refresh_decays_every_score(engine: Engine) -> None:
    with transaction(engine) as s:
        thread = sent_thread(s)
        pid = thread.prospect.id
        ingest(s, email(thread.prospect.email, "Yes, let's talk on Thursday.", in_reply_to=thread.touch.message_id))
        before = lead(s, pid).score
    assert lead_scores.refresh_all(engine, NOW + timedelta(days=14), chunk=1) == 1
    with transaction(engine, readonly=True) as s:
        after = lead(s, pid)
        assert after.score == round(before / 2, 1) or abs(after.score - before / 2) <= 0.1
        assert_consistent(after)


def _settled_lead(s: Session, n: int, clicks: float, positive: bool) -> None:
    p = Prospect(email=f"o{n}@settled.example", email_normalized=f"o{n}@settled.example")
    s.add(p)
    s.flush()
    features = {"human_clicks": clicks, "human_opens": 1.0}
    stage = LeadStage.MEETING if positive else LeadStage.LOST
    s.add(LeadQualification(prospect_id=p.id, stage=stage, explanation={"features": features}, updated_at=NOW))


def test_the_outcome_model_waits_for_outcomes_then_gives_probabilities(engine: Engine) -> None:
    with transaction(engine) as s:
        for n in range(30):
            _settled_lead(s, n, clicks=float(n % 3), positive=n % 10 == 0)
        fit = lead_scores.refit_outcome_model(s, NOW)
        assert fit.model is None and fit.message.startswith("not enough outcomes yet (3 of 20 meetings/won")
        assert lead_scores.outcome_status(s).message == fit.message
        for n in range(30, 130):
            _settled_lead(s, n, clicks=float(n % 3), positive=(n % 3 == 2 and n % 2 == 0) or n % 10 == 0)
        fit = lead_scores.refit_outcome_model(s, NOW)
    assert fit.model is not None
    with transaction(engine, readonly=True) as s:
        model = lead_scores.load_outcome_model(s)
        assert model == fit.model
        assert model.probability({"human_clicks": 2}) > model.probability({"human_clicks": 0})
        assert [c.feature for c in model.coefficients] == ["human_clicks"]  # opens never vary here


# --- send times ----------------------------------------------------------------------------------


def test_send_cells_count_sends_in_the_prospects_local_hour(session: Session) -> None:
    touches = queued_touches(session, 3, NOW)
    sent_at = datetime(2026, 3, 2, 15, 20, tzinfo=UTC)  # a Monday: 10:20 in New York, 16:20 in Berlin
    zones = ["America/New_York", "Europe/Berlin", None]  # no zone: the campaign's fallback (UTC)
    for touch_id, zone in zip(touches, zones, strict=True):
        touch = session.get(CommunicationLog, touch_id)
        touch.state, touch.sent_at = TouchState.SENT, sent_at
        session.get(Prospect, session.get(Enrollment, touch.enrollment_id).prospect_id).timezone = zone
    touch = session.get(CommunicationLog, touches[0])
    session.add(EngagementEvent(kind=EventKind.REPLY, communication_id=touch.id, occurred_at=sent_at))
    session.flush()

    cells = send_time.send_cells(session, NOW)
    assert sorted(cells["reply"], key=lambda c: c.hour) == [
        send_time.Cell(0, 10, 1, 1), send_time.Cell(0, 15, 1, 0), send_time.Cell(0, 16, 1, 0),
    ]  # fmt: skip
    assert cells["open"] == []  # the campaign does not track opens

    summary = send_time.refit(session, NOW)
    assert summary is not None and "not enough data yet: 3 sends and 1 replies" in summary
    assert send_time.refit(session, NOW + timedelta(hours=1)) is None  # refitted less than a day ago
    assert not send_time.load_model(session)["reply"].enough


CAMPAIGN = """
name: Timed %s
audience: {filter: {company: [Timing Inc]}}
schedule: {timezone: prospect, window: "09:00-17:00", optimize_send_time: %s}
steps:
  - {type: email, subject: "Hello", body: "Hi there"}
"""


def test_optimize_send_time_moves_first_touches_to_the_best_hour_in_the_window(session: Session) -> None:
    grid = tuple(tuple(0.2 if h == 14 else 0.05 for h in range(24)) for _ in range(7))
    planted = send_time.SendTimeFit("reply", True, "planted", 1000, 100, 0.06, grid=grid, fitted_at=NOW)
    session.add(AppSetting(key=send_time.MODEL_SETTING, value={"reply": planted.to_data()}))
    for n, zone in enumerate(["America/New_York", "Europe/Berlin", "Asia/Tokyo"]):
        session.add(Prospect(email=f"t{n}@timing.example", email_normalized=f"t{n}@timing.example",
                             company="Timing Inc", timezone=zone))  # fmt: skip
    session.flush()
    manager = CampaignManager(session, secret_key="k" * 48)
    monday_early = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # before Monday's window opens in all three zones
    zones = {p.id: ZoneInfo(p.timezone) for p in session.scalars(select(Prospect))}

    def first_dues(optimize: str) -> list[datetime]:
        ref = manager.create_campaign(parse_definition(CAMPAIGN % (optimize, optimize)))
        check = manager.check_launch(session.get_one(OutreachCampaign, ref.id), monday_early)
        return [due.astimezone(zones[pid]) for pid, due in check.to_enroll]

    plain, timed = first_dues("false"), first_dues("true")
    assert len(plain) == len(timed) == 3
    assert {(local.weekday(), local.hour) for local in plain} == {(0, 9)}
    assert {(local.weekday(), local.hour) for local in timed} == {(0, 14)}
    assert all(local.minute < 15 for local in timed)


def test_touches_of_other_channels_are_not_counted(session: Session) -> None:
    [touch_id] = queued_touches(session, 1, NOW)
    touch = session.get(CommunicationLog, touch_id)
    touch.state, touch.sent_at, touch.channel = TouchState.SENT, NOW - timedelta(hours=2), StepType.LINKEDIN
    session.flush()
    assert send_time.send_cells(session, NOW) == {"reply": [], "open": []}
