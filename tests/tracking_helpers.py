"""A launched campaign whose first touches really went out over SMTP, for the tracking, API and webhook tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update

from db.engine import transaction
from db.enums import TlsMode, TouchState
from db.models import CommunicationLog, Enrollment, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.config import Settings
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.sending import send_tick
from outreach.sequence import parse_definition
from outreach.worker import JobContext, WorkerIdentity
from tests.smtp_sink import Sink

KEY = "k" * 48
OLD_KEY = "o" * 48
BASE = "https://track.example.com"
MONDAY_9_NY = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York
FIRST_SEND = MONDAY_9_NY + timedelta(minutes=30)
FOLLOW_UP_DUE = MONDAY_9_NY + timedelta(days=3, hours=4)  # Thursday 13:00 New York: step 2 is due
LINKS = ["https://good.example/pricing", "https://good.example/demo?utm=mail&x=1"]

YAML = """
name: Q1
audience: {list: cfos}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St, Springfield"
tracking: {opens: true, clicks: true}
schedule: {timezone: prospect, fallback_timezone: America/New_York, window: "09:00-17:00"}
steps:
  - type: email
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name | default('there') }}, see https://good.example/pricing"
  - {type: email, delay: 3 business days, when: no_reply, thread: true, body: "Following up"}
"""


def settings_for(data_dir: Path, url: str = "sqlite://", previous: tuple[str, ...] = ()) -> Settings:
    return Settings(
        data_dir=data_dir, database_url=url, base_url=BASE, secret_key_from_env=KEY, previous_secret_keys=previous
    )


def ctx_at(settings: Settings, now: datetime) -> JobContext:
    return JobContext(now, WorkerIdentity("w1", "h", 1), settings, lambda: now)


def launch(engine: Engine, sink: Sink, people: int = 2) -> None:
    """Mailbox on the sink, `people` prospects p0…@acme.example in list cfos, campaign Q1 launched."""
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE,
                                    per_minute=100, daily_limit=100))  # fmt: skip
        lst = ProspectList(name="cfos")
        s.add(lst)
        s.flush()
        for i in range(people):
            p = Prospect(email=f"p{i}@acme.example", email_normalized=f"p{i}@acme.example", first_name=f"P{i}",
                         company="Acme", timezone="America/New_York")  # fmt: skip
            s.add(p)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=p.id))
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML))
        manager.launch(find_campaign(s, "Q1"), MONDAY_9_NY - timedelta(hours=1))


def send_first_touches(engine: Engine, settings: Settings, *, links: list[str] | None = None) -> dict[str, int]:
    """Run the send tick at Monday 09:30; store `links` on every sent touch. Returns email -> touch id."""
    report = send_tick(engine, ctx_at(settings, FIRST_SEND))
    assert report.outcomes["sent"] >= 1, report
    with transaction(engine) as s:
        if links is not None:
            s.execute(update(CommunicationLog).where(CommunicationLog.state == TouchState.SENT).values(links=links))
        rows = s.execute(
            select(Prospect.email, CommunicationLog.id)
            .join(Enrollment, Enrollment.prospect_id == Prospect.id)
            .join(CommunicationLog, CommunicationLog.enrollment_id == Enrollment.id)
            .where(CommunicationLog.state == TouchState.SENT)
        ).all()
    return dict(rows)


def mark_sent_at(engine: Engine, touch_id: int, when: datetime) -> None:
    with transaction(engine) as s:
        s.execute(update(CommunicationLog).where(CommunicationLog.id == touch_id).values(sent_at=when))
