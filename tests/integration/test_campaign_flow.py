"""A campaign end to end in one process: apply, launch, send over real SMTP, follow up in thread, finish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from db.engine import transaction
from db.enums import CampaignState, EnrollmentState, StopReason, TaskState, TlsMode, TouchState
from db.models import CommunicationLog, Enrollment, Prospect, ProspectList, ProspectListMember, Task
from outreach.campaigns import CampaignError, CampaignManager, engagement_counts, find_campaign
from outreach.config import load_settings
from outreach.enrollments import stop_enrollment
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.preview import preview
from outreach.sending import send_tick
from outreach.sequence import parse_definition
from outreach.worker import JobContext, WorkerIdentity
from tests.smtp_sink import Sink

KEY = "k" * 48
MONDAY_9_NY = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York

YAML = """
name: Q1
audience: {list: cfos}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: prospect, fallback_timezone: America/New_York, window: "09:00-17:00"}
steps:
  - type: email
    variants:
      - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }}"}
      - {name: B, subject: "{{ company }} + us", body: "Hello {{ first_name | default('there') }}"}
  - {type: email, delay: 3 business days, when: no_reply, thread: true, body: "Following up"}
  - {type: call, delay: 1 day, body: "Call {{ first_name | default('them') }}"}
"""


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def ctx(data_env) -> JobContext:
    settings = load_settings()
    clock = {"now": MONDAY_9_NY}
    return JobContext(MONDAY_9_NY, WorkerIdentity("w1", "h", 1), settings, lambda: clock["now"])


def _at(ctx: JobContext, now: datetime) -> JobContext:
    return JobContext(now, ctx.worker, ctx.settings, lambda: now)


def _setup(engine, sink: Sink, people: int = 4) -> None:
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE,
                                    per_minute=100, daily_limit=100))  # fmt: skip
        lst = ProspectList(name="cfos")
        s.add(lst)
        s.flush()
        for i in range(people):
            first = f"P{i}" if i % 2 == 0 else None
            p = Prospect(email=f"p{i}@acme.example", email_normalized=f"p{i}@acme.example", first_name=first,
                         company="Acme", timezone="America/New_York")  # fmt: skip
            s.add(p)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=p.id))
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML))
        manager.launch(find_campaign(s, "Q1"), MONDAY_9_NY - timedelta(hours=1))


def test_first_touches_go_out_in_the_window_with_balanced_variants(engine, sink, ctx) -> None:
    _setup(engine, sink)
    report = send_tick(engine, _at(ctx, MONDAY_9_NY - timedelta(hours=2)))
    assert report.outcomes["sent"] == 0  # 07:00 in New York: nobody is due yet
    report = send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=30)))
    assert report.outcomes["sent"] == 4
    assert sorted(r.rcpt_to[0] for r in sink.received) == [f"p{i}@acme.example" for i in range(4)]
    subjects = sorted(str(r.message["Subject"]) for r in sink.received)
    assert subjects == ["Acme + us", "Acme + us", "Idea for Acme", "Idea for Acme"]
    msg = sink.received[0].message
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Outreach Inc, 1 Main St" in msg.get_body(("plain",)).get_content()
    with transaction(engine, readonly=True) as s:
        sent = s.scalars(select(CommunicationLog).where(CommunicationLog.state == TouchState.SENT)).all()
        assert {t.message_id for t in sent} == {str(r.message["Message-ID"]) for r in sink.received}


def test_follow_up_is_threaded_and_anchored_on_the_send_time(engine, sink, ctx) -> None:
    _setup(engine, sink, people=1)
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=30)))
    first = sink.received[0].message
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(days=2)))  # Wednesday: too early
    assert len(sink.received) == 1
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(days=3, hours=4)))  # Thursday 13:00: due
    assert len(sink.received) == 2
    follow = sink.received[1].message
    assert follow["In-Reply-To"] == first["Message-ID"]
    assert str(follow["Subject"]) == f"Re: {first['Subject']}"


def test_call_step_becomes_a_task_and_done_finishes_the_enrollment(engine, sink, ctx) -> None:
    _setup(engine, sink, people=1)
    for day, hours in ((0, 1), (3, 4), (4, 5)):  # the call is due a day after the follow-up, plus jitter
        send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(days=day, hours=hours)))
    with transaction(engine) as s:
        task = s.scalars(select(Task)).one()
        assert task.state is TaskState.OPEN and task.body == "Call P0"
        CampaignManager(s, secret_key=KEY).complete_task(task.id, MONDAY_9_NY + timedelta(days=4, hours=2), done=True)
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(days=5)))
    with transaction(engine) as s:
        assert s.scalars(select(Enrollment.state)).one() is EnrollmentState.FINISHED
        CampaignManager(s, secret_key=KEY).finish_campaigns(MONDAY_9_NY + timedelta(days=5))
        assert find_campaign(s, "Q1").state is CampaignState.FINISHED


def test_a_stopped_enrollment_gets_nothing_more(engine, sink, ctx) -> None:
    _setup(engine, sink, people=2)
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=30)))
    with transaction(engine) as s:
        eid = s.scalars(select(Enrollment.id).order_by(Enrollment.id)).first()
        stop_enrollment(s, eid, StopReason.REPLIED, MONDAY_9_NY + timedelta(hours=1))
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(days=3, hours=4)))
    assert len(sink.received) == 3  # two first touches, one follow-up: the stopped one got nothing more


def test_pause_holds_and_resume_continues(engine, sink, ctx) -> None:
    _setup(engine, sink, people=2)
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).pause(find_campaign(s, "Q1"))
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=30)))
    assert sink.received == []
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).resume(find_campaign(s, "Q1"))
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=31)))
    assert len(sink.received) == 2


def test_smtp_550_bounces_stops_and_suppresses(engine, ctx) -> None:
    with Sink(lambda rcpt: "550 5.1.1 no such user" if rcpt == "p1@acme.example" else None) as sink:
        _setup(engine, sink, people=2)
        report = send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=30)))
    assert (report.outcomes["sent"], report.outcomes["bounced"]) == (1, 1)
    with transaction(engine, readonly=True) as s:
        states = dict(s.execute(select(Enrollment.prospect_id, Enrollment.stop_reason)).all())
        assert sorted(states.values(), key=str) == [None, StopReason.BOUNCED]
        counts = engagement_counts(s, find_campaign(s, "Q1"))
        assert (counts["sent"], counts["bounced"], counts["delivered"]) == (2, 1, 1)
        from outreach.suppression import is_suppressed

        assert is_suppressed(s, "p1@acme.example", KEY)


def test_launch_lists_what_is_missing_and_writes_nothing(engine, sink) -> None:
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE))
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML.replace("postal_address", "#postal")
                                                 .replace("{{ company }}", "{{ company_city }}")))  # fmt: skip
    with pytest.raises(CampaignError) as err, transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).launch(find_campaign(s, "Q1"), MONDAY_9_NY)
    assert "postal_address" in str(err.value) and "no prospect matches" in str(err.value)
    with transaction(engine, readonly=True) as s:
        assert find_campaign(s, "Q1").state is CampaignState.DRAFT
        assert s.scalars(select(Enrollment)).all() == []


def test_preview_is_what_gets_sent(engine, sink, ctx) -> None:
    _setup(engine, sink, people=1)
    with transaction(engine, readonly=True) as s:
        before = preview(s, "Q1", "p0@acme.example", MONDAY_9_NY, secret_key=KEY)
    send_tick(engine, _at(ctx, MONDAY_9_NY + timedelta(minutes=30)))
    sent = sink.received[0].message
    assert before.subject == str(sent["Subject"])
    sent_text = sent.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert before.text.split("Unsubscribe:")[0] == sent_text.split("Unsubscribe:")[0]
