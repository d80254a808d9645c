"""Rotation by remaining capacity, thread continuity, mailbox health and automatic pause (both databases).

Sending goes through the real send tick to a loopback SMTP sink; health is counted from real touch and
event rows.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import EventKind, MailboxState, TouchState
from db.models import AppSetting, CommunicationLog, EngagementEvent, Enrollment, Mailbox, Prospect
from outreach.campaigns import CampaignManager, find_campaign
from outreach.config import Settings, load_settings
from outreach.mailbox_actions import pause_mailbox, resume_mailbox
from outreach.mailbox_health import (
    THRESHOLDS_SETTING,
    HealthError,
    HealthThresholds,
    check_mailboxes,
    get_thresholds,
    mailbox_health,
    set_thresholds,
)
from outreach.mailboxes import committed_load, set_state
from outreach.sending import TickReport, send_tick
from outreach.worker import JOBS, JobContext, WorkerIdentity
from tests import factories
from tests.sending_setup import KEY, Box, launch_campaign
from tests.smtp_sink import Sink

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LAUNCH = T0 - timedelta(hours=1)
TWO_STEPS = """
  - type: email
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name }}, a short note."
  - type: email
    delay: 1 day
    thread: true
    body: "Following up, {{ first_name }}."
"""


@pytest.fixture
def settings(data_env, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    return load_settings()


def tick(engine: Engine, settings: Settings, now: datetime) -> TickReport:
    return send_tick(engine, JobContext(now, WorkerIdentity("w1", "host", 1), settings, lambda: now))


def people(tag: str, n: int) -> list[str]:
    return [f"{tag}{i}@prospect{i % 3}.example" for i in range(n)]


def mailbox_of(engine: Engine) -> dict[str, str]:
    """Each prospect's enrollment mailbox, by address."""
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(Prospect.email, Mailbox.name)
            .join(Enrollment, Enrollment.prospect_id == Prospect.id)
            .join(Mailbox, Mailbox.id == Enrollment.mailbox_id)
        )
        return {email: name for email, name in rows}


def senders(sink: Sink) -> dict[str, list[str]]:
    """Per recipient, the From addresses of what they received, in order."""
    out: dict[str, list[str]] = {}
    for r in sink.received:
        out.setdefault(r.rcpt_to[0], []).append(r.message["From"].addresses[0].addr_spec)
    return out


# --- rotation ------------------------------------------------------------------------------------


def test_launch_spreads_by_remaining_capacity_not_static_weights(engine: Engine) -> None:
    boxes = (Box("sales-1", daily_limit=30), Box("sales-2", daily_limit=30))
    backlog = launch_campaign(engine, 2525, people=people("b", 10), launch_at=LAUNCH, name="Backlog", boxes=boxes[1:])
    fresh = launch_campaign(engine, 2525, people=people("n", 40), launch_at=LAUNCH, name="Fresh", boxes=boxes)

    assigned = mailbox_of(engine)
    assert Counter(assigned[a] for a in backlog) == {"sales-2": 10}
    # sales-2 already has 10 prospects waiting: sales-1 takes the first 10, then they alternate (25 / 15),
    # where equal daily limits alone would have split 20 / 20.
    assert Counter(assigned[a] for a in fresh) == {"sales-1": 25, "sales-2": 15}
    assert [assigned[a] for a in fresh[:14]] == ["sales-1"] * 10 + ["sales-1", "sales-2"] * 2


def test_committed_load_counts_today_queue_and_waiting_prospects(session: Session) -> None:
    box, other = factories.mailbox(session, "sales-1"), factories.mailbox(session, "sales-2")
    now = T0
    ids = factories.queued_touches(session, 6, now, box)  # 6 queued
    session.execute(update(CommunicationLog).where(CommunicationLog.id.in_(ids[:2])).values(
        state=TouchState.SENT, sent_at=now - timedelta(hours=3)))  # fmt: skip
    session.execute(update(CommunicationLog).where(CommunicationLog.id == ids[2]).values(
        state=TouchState.SENT, sent_at=now - timedelta(days=2)))  # fmt: skip
    session.execute(update(CommunicationLog).where(CommunicationLog.id == ids[3]).values(state=TouchState.CANCELLED))
    factories.queued_touches(session, 3, now, other)
    enrollments = session.scalars(select(Enrollment).order_by(Enrollment.id)).all()
    for enrollment in enrollments[:4]:
        enrollment.mailbox_id, enrollment.next_due_at = other.id, now + timedelta(days=1)
    session.flush()

    # sales-1: 2 sent today + 2 queued (yesterday's send and the cancelled touch do not count);
    # sales-2: 3 queued + 4 prospects waiting for their next touch.
    assert committed_load(session, [box.id, other.id], now) == [4, 7]


# --- pausing moves the share; threads stay -------------------------------------------------------


def test_pausing_moves_prospects_not_contacted_yet_and_threads_wait(engine: Engine, settings: Settings) -> None:
    boxes = (Box("sales-1"), Box("sales-2", per_minute=2))
    with Sink() as sink:
        addresses = launch_campaign(
            engine, sink.port, people=people("p", 10), launch_at=LAUNCH, boxes=boxes, steps=TWO_STEPS
        )
        assert Counter(mailbox_of(engine).values()) == {"sales-1": 5, "sales-2": 5}
        tick(engine, settings, T0)  # sales-2 may send 2 a minute: 3 of its touches stay queued
        first = senders(sink)
        threaded = sorted(a for a, froms in first.items() if froms == ["sales-2@sender.example"])
        assert len(threaded) == 2 and len(first) == 7

        with transaction(engine) as s:
            moved = pause_mailbox(s, "sales-2", now=T0)
        assert (dict(moved.moved), moved.waiting, moved.stranded) == ({"sales-1": 3}, 2, 0)
        assignment = mailbox_of(engine)
        assert Counter(assignment.values()) == {"sales-1": 8, "sales-2": 2}
        assert sorted(a for a, box in assignment.items() if box == "sales-2") == threaded

        tick(engine, settings, T0 + timedelta(minutes=1))
        everyone = senders(sink)
        assert sorted(everyone) == sorted(addresses)
        assert all(everyone[a] == ["sales-1@sender.example"] for a in addresses if a not in threaded)

        # A day later the follow-ups: each from the mailbox that sent the first email. The paused one's wait.
        tick(engine, settings, T0 + timedelta(days=1, hours=2))
        tick(engine, settings, T0 + timedelta(days=1, hours=2, minutes=1))
        followed = senders(sink)
        assert all(followed[a] == ["sales-1@sender.example"] * 2 for a in addresses if a not in threaded)
        assert all(followed[a] == ["sales-2@sender.example"] for a in threaded)
        with transaction(engine, readonly=True) as s:
            waiting = s.execute(
                select(CommunicationLog.state, Mailbox.name)
                .join(Mailbox, Mailbox.id == CommunicationLog.mailbox_id)
                .where(CommunicationLog.state == TouchState.QUEUED)
            ).all()
        assert [tuple(w) for w in waiting] == [(TouchState.QUEUED, "sales-2")] * 2

        with transaction(engine) as s:
            resume_mailbox(s, "sales-2", T0 + timedelta(days=1, hours=3))
        tick(engine, settings, T0 + timedelta(days=1, hours=3))
    follow_ups = [r for r in sink.received if r.rcpt_to[0] in threaded and r.message["In-Reply-To"]]
    assert len(follow_ups) == 2
    assert all(r.message["From"].addresses[0].addr_spec == "sales-2@sender.example" for r in follow_ups)


def test_a_campaign_without_another_active_mailbox_keeps_its_prospects_waiting(engine: Engine) -> None:
    launch_campaign(engine, 2525, people=people("p", 4), launch_at=LAUNCH, boxes=(Box("sales-1"),))
    with transaction(engine) as s:
        moved = pause_mailbox(s, "sales-1", now=T0)
    assert (dict(moved.moved), moved.stranded) == ({}, 4)
    assert "their campaign has no other active mailbox" in moved.in_words()
    assert check_mailboxes(engine, T0) is None  # nothing can move: the job does not even take the write lock
    assert set(mailbox_of(engine).values()) == {"sales-1"}


def test_launch_with_a_paused_mailbox_warns_and_the_active_ones_take_its_share(engine: Engine) -> None:
    boxes = (Box("sales-1"), Box("sales-2"))
    launch_campaign(engine, 2525, people=people("a", 2), launch_at=LAUNCH, name="First", boxes=boxes)
    with transaction(engine) as s:
        pause_mailbox(s, "sales-2", now=T0)
    later = launch_campaign(engine, 2525, people=people("b", 6), launch_at=T0, name="Later", boxes=boxes)
    assert {mailbox_of(engine)[a] for a in later} == {"sales-1"}
    with transaction(engine) as s:
        check = CampaignManager(s, secret_key=KEY).check_launch(find_campaign(s, "Later"), T0)
        [warning] = check.warnings
        assert not any("mailbox" in p for p in check.problems)  # (the only problem: everyone is enrolled now)
        assert warning.startswith("mailbox sales-2 is paused") and "share goes to sales-1" in warning
        pause_mailbox(s, "sales-1", now=T0)
        blocked = CampaignManager(s, secret_key=KEY).check_launch(find_campaign(s, "Later"), T0)
    assert any(p.startswith("mailbox sales-1 is paused") for p in blocked.problems)


def test_the_job_moves_the_share_of_a_mailbox_the_send_path_paused(engine: Engine) -> None:
    launch_campaign(engine, 2525, people=people("p", 6), launch_at=LAUNCH, boxes=(Box("sales-1"), Box("sales-2")))
    with transaction(engine) as s:  # what outreach.sending does after 3 failed connections in a row
        set_state(s, "sales-1", MailboxState.PAUSED, "paused after 3 failed connections: refused")

    assert check_mailboxes(engine, T0) == "moved 3 not-yet-contacted prospects from sales-1: 3 to sales-2"
    assert set(mailbox_of(engine).values()) == {"sales-2"}
    assert check_mailboxes(engine, T0) is None  # idempotent


# --- health --------------------------------------------------------------------------------------


def _touches(session: Session, box: Mailbox, states: list[tuple[TouchState, int]], at: datetime) -> list[int]:
    """Touches of one mailbox in the given states (sent_at = `at`; failed ones with `attempts`)."""
    total = sum(n for _, n in states)
    ids = factories.queued_touches(session, total, at, box)
    start = 0
    for state, n in states:
        chunk = ids[start : start + n]
        start += n
        values: dict[str, object] = {"state": state, "updated_at": at}
        if state in (TouchState.SENT, TouchState.BOUNCED):
            values["sent_at"] = at
        if state is TouchState.FAILED:
            values["attempts"] = 6
        session.execute(update(CommunicationLog).where(CommunicationLog.id.in_(chunk)).values(**values))
    return ids


def _event(session: Session, touch_id: int, kind: EventKind, at: datetime) -> None:
    session.add(EngagementEvent(kind=kind, communication_id=touch_id, occurred_at=at))


def test_health_counts_bounces_failures_and_unsubscribes_in_the_window(session: Session) -> None:
    box = factories.mailbox(session, "sales-1")
    recent = T0 - timedelta(days=2)
    ids = _touches(session, box, [(TouchState.SENT, 45), (TouchState.BOUNCED, 3), (TouchState.FAILED, 2)], recent)
    _event(session, ids[0], EventKind.BOUNCE, recent + timedelta(hours=1))  # a DSN that came back later
    _event(session, ids[0], EventKind.BOUNCE, recent + timedelta(hours=2))  # and again: one touch, one bounce
    _event(session, ids[1], EventKind.UNSUBSCRIBE, recent + timedelta(hours=1))
    _event(session, ids[2], EventKind.COMPLAINT, recent + timedelta(hours=1))
    _event(session, ids[3], EventKind.OPEN, recent + timedelta(hours=1))
    never_tried = factories.queued_touches(session, 1, recent, box)  # failed at rendering: not the mailbox's fault
    session.execute(update(CommunicationLog).where(CommunicationLog.id.in_(never_tried)).values(
        state=TouchState.FAILED, updated_at=recent))  # fmt: skip
    old = _touches(session, box, [(TouchState.BOUNCED, 5)], T0 - timedelta(days=30))  # outside the window
    _event(session, old[0], EventKind.BOUNCE, T0 - timedelta(days=30))
    session.flush()

    [health] = mailbox_health(session, T0)

    assert (health.sent, health.failed, health.bounced, health.unsubscribed) == (48, 2, 4, 2)
    assert health.bounce_rate == pytest.approx(4 / 48) and health.failure_rate == pytest.approx(2 / 50)
    assert health.problems == ("bounce rate 8.3% (4 of 48 sent) is above 5.0%",)
    assert health.as_row()["bounce rate"] == "8.3 %"


def test_one_bounce_of_two_does_not_pause_but_a_real_sample_does_and_resume_starts_afresh(engine: Engine) -> None:
    with transaction(engine) as s:
        box = factories.mailbox(s, "sales-1")
        ids = _touches(s, box, [(TouchState.SENT, 1), (TouchState.BOUNCED, 1)], T0 - timedelta(hours=5))
    assert check_mailboxes(engine, T0) is None
    with transaction(engine, readonly=True) as s:
        [health] = mailbox_health(s, T0)
        assert health.verdict == "too few sends to judge (2 of 20)"
        assert s.get(Mailbox, box.id).state is MailboxState.ACTIVE

    with transaction(engine) as s:
        box = s.get(Mailbox, box.id)
        _touches(s, box, [(TouchState.SENT, 17), (TouchState.BOUNCED, 2)], T0 - timedelta(hours=4))
        s.add(EngagementEvent(kind=EventKind.BOUNCE, communication_id=ids[0], occurred_at=T0 - timedelta(hours=3)))
    summary = check_mailboxes(engine, T0)
    assert summary is not None and "paused sales-1" in summary
    with transaction(engine, readonly=True) as s:
        box = s.get(Mailbox, box.id)
        assert box.state is MailboxState.PAUSED
        assert box.paused_reason == ("auto-paused 2026-11-24 10:00 UTC: bounce rate 19.0% (4 of 21 sent) is above 5.0%")

    with transaction(engine) as s:
        resume_mailbox(s, "sales-1", T0 + timedelta(minutes=5))
    assert check_mailboxes(engine, T0 + timedelta(minutes=10)) is None  # the old bounces no longer count
    with transaction(engine, readonly=True) as s:
        [health] = mailbox_health(s, T0 + timedelta(minutes=10))
        assert (health.state, health.sent, health.since) == (MailboxState.ACTIVE, 0, T0 + timedelta(minutes=5))


def test_auto_pause_moves_the_share_and_can_be_switched_off(engine: Engine) -> None:
    launch_campaign(engine, 2525, people=people("p", 6), launch_at=LAUNCH, boxes=(Box("sales-1"), Box("sales-2")))
    with transaction(engine) as s:
        box = s.scalar(select(Mailbox).where(Mailbox.name == "sales-2"))
        _touches(s, box, [(TouchState.SENT, 15), (TouchState.FAILED, 5)], T0 - timedelta(hours=1))
        set_thresholds(s, HealthThresholds(auto_pause=False))
    assert check_mailboxes(engine, T0) is None
    with transaction(engine, readonly=True) as s:
        [_, health] = mailbox_health(s, T0)
        assert health.problems == ("failure rate 25.0% (5 of 20 tried) is above 10.0%",)

    with transaction(engine) as s:
        set_thresholds(s, HealthThresholds(max_failure_rate=0.3))
    assert check_mailboxes(engine, T0) is None  # 25 % is under the operator's 30 %
    with transaction(engine) as s:
        set_thresholds(s, HealthThresholds())
    summary = check_mailboxes(engine, T0)
    assert summary == (
        "paused sales-2: auto-paused 2026-11-24 10:00 UTC: failure rate 25.0% (5 of 20 tried) is above 10.0%; "
        "moved 3 not-yet-contacted prospects from sales-2: 3 to sales-1"
    )
    assert set(mailbox_of(engine).values()) == {"sales-1"}
    assert "mailbox_health" in [job.id for job in JOBS]


def test_thresholds_are_stored_validated_and_default_when_unset(session: Session) -> None:
    assert get_thresholds(session) == HealthThresholds()
    saved = set_thresholds(session, HealthThresholds(window_days=3, min_sends=50, max_bounce_rate=0.02))
    assert get_thresholds(session) == saved
    assert session.get(AppSetting, THRESHOLDS_SETTING).value["max_bounce_rate"] == 0.02
    for bad, message in [
        (HealthThresholds(window_days=0), "window"),
        (HealthThresholds(min_sends=0), "minimum sends"),
        (HealthThresholds(max_bounce_rate=0), "bounce rate"),
        (HealthThresholds(max_unsubscribe_rate=1.5), "unsubscribe rate"),
    ]:
        with pytest.raises(HealthError, match=message):
            set_thresholds(session, bad)
    assert get_thresholds(session) == saved
