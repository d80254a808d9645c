"""Personalized messages end to end (SQLite and PostgreSQL): library → planner → real SMTP, and the preview
shows the very bytes that are sent; follow-ups read and quote the previous email; the model is never called."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import TlsMode, TouchState
from db.models import CommunicationLog, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.config import load_settings
from outreach.drafting import ModelSettings, set_model_settings
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.personalization import import_library, save_draft
from outreach.preview import preview
from outreach.sending import send_tick
from outreach.sequence import parse_definition
from outreach.worker import JobContext, WorkerIdentity
from tests.smtp_sink import Sink, SinkHandler, _free_port

MONDAY_9_NY = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
LIBRARY = (Path(__file__).resolve().parents[1] / "fixtures" / "personalization" / "library.yaml").read_text()

CAMPAIGN = """
name: Close faster
audience: {list: cfos}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St, Springfield"
tracking: {opens: false, clicks: false}
schedule: {timezone: prospect, fallback_timezone: America/New_York, window: "09:00-17:00"}
steps:
  - type: email
    subject: "{Quick|Short} idea for {{ company | title_case }}"
    body: |
      {Hi|Hello} {{ first_name | first_word | default('there') }},

      {{ opener }}

      {{ value_prop }} Here is a short demo: {{ demo_link }}
    %(html)s
  - type: email
    delay: 3 business days
    thread: true
    quote_previous: true
    body: "Did my note from {{ previous.sent_at | ago }} reach you?"
"""
HTML = """html: '<p>{Hi|Hello} {{ first_name | first_word | default("there") }},</p><p>{{ opener }}</p>'"""


@dataclass
class RawHandler(SinkHandler):
    """The sink, also keeping each accepted message's bytes exactly as they arrived."""

    raw: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            self.raw.append(envelope.original_content or envelope.content)
        return reply


class RawSink(Sink):
    def __init__(self) -> None:
        self.handler = RawHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=_free_port())


@pytest.fixture
def sink() -> Iterator[RawSink]:
    with RawSink() as server:
        yield server


def _ctx(now: datetime) -> JobContext:
    return JobContext(now, WorkerIdentity("w1", "h", 1), load_settings(), lambda: now)


def _setup(engine: Engine, sink: Sink, *, html: bool = False, people: int = 1, **fields: object) -> None:
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE,
                                    from_name="Dana Scully", per_minute=100, daily_limit=100))  # fmt: skip
        import_library(s, LIBRARY)
        lst = ProspectList(name="cfos")
        s.add(lst)
        s.flush()
        for i in range(people):
            values = {"first_name": "Ann Marie", "company": "LEDGERLY", "title": "CFO", "industry": "Fintech",
                      "employee_count": 120, "timezone": "America/New_York"} | fields  # fmt: skip
            p = Prospect(email=f"p{i}@ledgerly.example", email_normalized=f"p{i}@ledgerly.example", **values)
            s.add(p)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=p.id))
        manager = CampaignManager(s, secret_key=load_settings().secret_key())
        manager.create_campaign(parse_definition(CAMPAIGN % {"html": HTML if html else ""}))
        check = manager.launch(find_campaign(s, "Close faster"), MONDAY_9_NY - timedelta(hours=1))
        assert not [w for w in check.lint if "does not render" in w], check.lint


def _plan(engine: Engine, now: datetime) -> None:
    with transaction(engine) as s:
        CampaignManager(s, secret_key=load_settings().secret_key()).schedule_communications(now)


def _preview(engine: Engine, step: int = 1, email: str = "p0@ledgerly.example") -> object:
    with transaction(engine, readonly=True) as s:
        return preview(s, "Close faster", email, MONDAY_9_NY, secret_key=load_settings().secret_key(),
                       step_number=step)  # fmt: skip


def _masked(message: bytes, *, boundary: bool = False, unsubscribe: bool = False) -> bytes:
    """The message with the parts allowed to differ blanked: Date and Message-ID (and, where asked, the MIME
    boundary the email package draws at random, or the per-touch unsubscribe link of a not-yet-queued touch)."""
    out = re.sub(rb"(?m)^(Date|Message-ID): .*\r\n(?:[ \t].*\r\n)*", rb"\1: *\r\n", message)
    if boundary:
        for found in set(re.findall(rb'boundary="([^"]+)"', out)):
            out = out.replace(found, b"BOUNDARY")
    if unsubscribe:
        out = re.sub(rb"https?://[^\s>]+/u/[A-Za-z0-9_-]+|https://unsubscribe\.invalid/[^\s>]+", b"UNSUB", out)
    return out


def test_queued_preview_is_byte_for_byte_what_is_sent(engine: Engine, sink: RawSink, data_env: Path) -> None:
    _setup(engine, sink)
    rendered = _preview(engine)
    _plan(engine, MONDAY_9_NY + timedelta(minutes=30))
    queued = _preview(engine)
    send_tick(engine, _ctx(MONDAY_9_NY + timedelta(minutes=31)))
    [sent] = sink.handler.raw
    assert queued.source == "queued" and rendered.source == "rendered"
    assert _masked(queued.message.encode()) == _masked(sent)
    assert _masked(rendered.message.encode(), unsubscribe=True) == _masked(sent, unsubscribe=True)
    text = sink.received[0].message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert re.match(r"(Hi|Hello) Ann,\n\nSaw that LEDGERLY keeps growing its finance team", text)
    assert "Here is a short demo: https://demo.example/fintech-close" in text
    assert str(sink.received[0].message["Subject"]) in ("Quick idea for Ledgerly", "Short idea for Ledgerly")
    assert [c["item"] for c in queued.personalization] == ["fintech-cfo", "close-faster", "Fintech close tour"]
    assert [(w["code"], w["where"]) for w in queued.lint] == [("all_caps", "text line 3")]  # the opener's LEDGERLY


def test_two_part_preview_matches_apart_from_the_random_boundary_and_a_broken_prospect_fails_alone(
    engine: Engine, sink: RawSink, data_env: Path
) -> None:
    _setup(engine, sink, html=True, people=2)
    with transaction(engine) as s:
        broken = s.scalar(select(Prospect).where(Prospect.email_normalized == "p1@ledgerly.example"))
        broken.company = "Ledgerly\x1b[31m"  # a control character cannot go into a subject
    _plan(engine, MONDAY_9_NY + timedelta(minutes=30))
    queued = _preview(engine)
    report = send_tick(engine, _ctx(MONDAY_9_NY + timedelta(minutes=31)))
    [sent] = sink.handler.raw
    assert b"multipart/alternative" in sent
    assert _masked(queued.message.encode(), boundary=True) == _masked(sent, boundary=True)
    assert report.outcomes["sent"] == 1
    with transaction(engine, readonly=True) as s:
        failed = s.scalars(select(CommunicationLog).where(CommunicationLog.state == TouchState.FAILED)).one()
        assert "control character" in failed.last_error


class _CountingModel(BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.calls.append(self.path)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def model_url() -> Iterator[str]:
    """A model endpoint that only counts calls: planning and sending must never make one."""
    _CountingModel.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_follow_up_quotes_the_previous_email_uses_the_draft_and_never_calls_the_model(
    engine: Engine, sink: RawSink, data_env: Path, model_url: str
) -> None:
    _setup(engine, sink)
    with transaction(engine) as s:
        set_model_settings(s, ModelSettings(enabled=True, base_url=model_url, model="stub"))
        campaign, prospect = find_campaign(s, "Close faster"), s.scalar(select(Prospect))
        save_draft(s, campaign.id, prospect.id, "Loved the {{ talk }} at FinOps Summit.", MONDAY_9_NY, model="stub")
    send_tick(engine, _ctx(MONDAY_9_NY + timedelta(minutes=30)))
    thursday = MONDAY_9_NY + timedelta(days=3, hours=4)
    _plan(engine, thursday)
    follow = _preview(engine, step=2)
    send_tick(engine, _ctx(thursday + timedelta(minutes=1)))
    first, second = sink.received[0].message, sink.received[1].message
    assert "\n\nLoved the {{ talk }} at FinOps Summit.\n\n" in first.get_body(("plain",)).get_content().replace(
        "\r", ""
    )
    assert second["In-Reply-To"] == first["Message-ID"] and str(second["Subject"]) == f"Re: {first['Subject']}"
    text = second.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Did my note from 3 days ago reach you?\n\nOn Mon, 2 Mar 2026 at 09:30, Dana Scully "
                           "<dana@sender.example> wrote:\n> ")  # fmt: skip
    assert "\n> Loved the {{ talk }} at FinOps Summit.\n" in text
    assert _masked(follow.message.encode()) == _masked(sink.handler.raw[1])
    assert _CountingModel.calls == []
