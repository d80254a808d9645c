"""In-doubt touches resolved from the Sent folder of a real Dovecot (tests/imap_server.py), on SQLite and PostgreSQL.

Found there: sent, and the sequence moves on. Absent under `in_doubt: resend`: queued again with the same
Message-ID once the grace period is over, and delivered once to a real SMTP server. Absent under the
default `hold`: left to the operator, with a note of what was checked. Every automatic resolution is
recorded and shown on the Inbox page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import TlsMode, TouchState
from db.models import CommunicationLog, Enrollment, Mailbox, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.in_doubt import recent_resolutions, resolve_from_sent_folders
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.sending import send_tick
from outreach.sequence import parse_definition
from tests.dashboard_helpers import app_database, app_factory, keep_steady_state, logged_in_app, open_page
from tests.imap_server import PASSWORD, USER, DovecotServer, private_dovecot
from tests.smtp_sink import Sink
from tests.tracking_helpers import KEY, ctx_at, settings_for

T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # when recovery found the touch's lease run out
GRACE = timedelta(minutes=15)
PASSWORD_ENV = "OUTREACH_TEST_IMAP_PASSWORD"

YAML = """
name: Doubtful
audience: {{list: doubtful}}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St"
schedule: {{timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}}
in_doubt: {policy}
steps:
  - {{type: email, subject: "Idea for {{{{ company }}}}", body: "Hi {{{{ first_name }}}}"}}
  - {{type: email, delay: 2 days, thread: true, body: "Following up"}}
"""


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with private_dovecot() as server:
        server.create_folder("Sent")
        yield server


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def in_doubt_touch(
    engine: Engine, sink: Sink, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch, policy: str = "hold"
) -> tuple[int, str]:
    """A launched campaign whose first touch a crash left in doubt; returns (touch id, its Message-ID)."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    message_id = f"<{uuid.uuid4().hex}@sender.example>"
    with transaction(engine) as s:
        saved = save_mailbox(s, MailboxSpec("sales-1", USER, "127.0.0.1", sink.port, tls=TlsMode.NONE))
        box = s.get(Mailbox, saved.id)
        box.imap_host, box.imap_port, box.imap_user = "127.0.0.1", dovecot.port, USER
        box.imap_password_env = PASSWORD_ENV
        lst = ProspectList(name="doubtful")
        person = Prospect(
            email="pat@acme.example", email_normalized="pat@acme.example", first_name="Pat", company="Acme"
        )
        s.add_all([lst, person])
        s.flush()
        s.add(ProspectListMember(list_id=lst.id, prospect_id=person.id))
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML.format(policy=policy)))
        manager.launch(find_campaign(s, "Doubtful"), T0 - timedelta(hours=1))
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).schedule_communications(T0 - timedelta(minutes=30))
        touch = s.scalar(select(CommunicationLog))
        touch.state, touch.message_id, touch.updated_at = TouchState.IN_DOUBT, message_id, T0
        return touch.id, message_id


def sent_copy(message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = USER, "pat@acme.example", "Idea for Acme"
    msg["Date"], msg["Message-ID"] = format_datetime(T0 - timedelta(minutes=20)), message_id
    msg.set_content("Hi Pat")
    return bytes(msg)


def run(engine: Engine, tmp_path: Path, now: datetime) -> str | None:
    return resolve_from_sent_folders(engine, ctx_at(settings_for(tmp_path), now), grace=GRACE)


def touch_of(engine: Engine, touch_id: int) -> CommunicationLog:
    with transaction(engine, readonly=True) as s:
        touch = s.get(CommunicationLog, touch_id)
        s.expunge(touch)
        return touch


def test_a_message_found_in_sent_resolves_to_sent_and_the_sequence_moves_on(
    engine: Engine, sink: Sink, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    touch_id, message_id = in_doubt_touch(engine, sink, dovecot, monkeypatch)  # hold: finding it is enough
    dovecot.append(sent_copy(f"<not-{uuid.uuid4().hex}@sender.example>"), "Sent")  # someone else's copy
    dovecot.append(sent_copy(message_id), "Sent")
    now = T0 + timedelta(minutes=2)

    assert run(engine, tmp_path, now) == "in doubt: 1 found in Sent; 0 queued to resend"

    touch = touch_of(engine, touch_id)
    assert (touch.state, touch.sent_at, touch.message_id) == (TouchState.SENT, now, message_id)
    with transaction(engine, readonly=True) as s:
        assert s.get(Enrollment, touch.enrollment_id).next_due_at >= now + timedelta(days=2)  # step 2 scheduled
        [record] = recent_resolutions(s)
    assert (record["touch"], record["message-id"], record["resolved as"]) == (touch_id, message_id, "sent")
    assert record["why"] == "Message-ID found in sales-1's Sent folder: it did go out"
    assert record["prospect"] == "pat@acme.example" and record["campaign"] == "Doubtful"
    assert all("\\Seen" not in flags for flags in dovecot.flags("Sent").values())  # read-only, BODY.PEEK
    assert run(engine, tmp_path, now) is None  # nothing left in doubt


def test_absent_under_resend_is_queued_again_after_the_grace_and_sent_once_with_the_same_id(
    engine: Engine, sink: Sink, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    touch_id, message_id = in_doubt_touch(engine, sink, dovecot, monkeypatch, policy="resend")

    assert run(engine, tmp_path, T0 + timedelta(minutes=1)) is None  # a slow Sent copy may still appear
    early = touch_of(engine, touch_id)
    assert early.state is TouchState.IN_DOUBT and "not found yet; resent after 2026-03-04 10:15" in early.last_error
    assert early.updated_at == T0  # the note keeps the time it went in doubt

    later = T0 + GRACE + timedelta(minutes=1)
    assert run(engine, tmp_path, later) == "in doubt: 0 found in Sent; 1 queued to resend"
    requeued = touch_of(engine, touch_id)
    assert (requeued.state, requeued.message_id) == (TouchState.QUEUED, message_id)
    with transaction(engine, readonly=True) as s:
        [record] = recent_resolutions(s)
    assert record["resolved as"] == "resent" and "policy is in_doubt: resend" in record["why"]

    report = send_tick(engine, ctx_at(settings_for(tmp_path), later))

    assert report.outcomes["sent"] == 1
    assert [r.message["Message-ID"] for r in sink.received] == [message_id]
    assert touch_of(engine, touch_id).state is TouchState.SENT
    send_tick(engine, ctx_at(settings_for(tmp_path), later + timedelta(minutes=5)))
    assert len(sink.received) == 1  # once


def test_absent_under_hold_stays_in_doubt_with_a_note_for_the_operator(
    engine: Engine, sink: Sink, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    touch_id, message_id = in_doubt_touch(engine, sink, dovecot, monkeypatch)

    assert run(engine, tmp_path, T0 + timedelta(hours=6)) is None
    send_tick(engine, ctx_at(settings_for(tmp_path), T0 + timedelta(hours=6)))

    touch = touch_of(engine, touch_id)
    assert (touch.state, touch.message_id) == (TouchState.IN_DOUBT, message_id)
    assert touch.last_error.endswith("not found; the campaign's policy is in_doubt: hold — you decide")
    assert sink.received == []
    with transaction(engine, readonly=True) as s:
        assert recent_resolutions(s) == []


def test_a_mailbox_without_imap_credentials_is_reported_and_its_touches_wait(
    engine: Engine, sink: Sink, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    touch_id, _ = in_doubt_touch(engine, sink, dovecot, monkeypatch, policy="resend")
    monkeypatch.delenv(PASSWORD_ENV)

    summary = run(engine, tmp_path, T0 + timedelta(hours=1))

    assert summary is not None and PASSWORD_ENV in summary
    assert touch_of(engine, touch_id).state is TouchState.IN_DOUBT  # never resent without looking


def test_the_inbox_page_shows_why_a_touch_was_resolved(
    db_url: str, data_env: Path, sink: Sink, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keep_steady_state(monkeypatch)
    for engine in app_database(db_url, monkeypatch):
        touch_id, message_id = in_doubt_touch(engine, sink, dovecot, monkeypatch)
        dovecot.append(sent_copy(message_id), "Sent")
        run(engine, tmp_path, T0 + timedelta(minutes=3))
        at = open_page(logged_in_app(app_factory(), engine), "inbox")
        [resolved] = [d.value for d in at.dataframe if "resolved as" in d.value.columns]
        row = resolved.iloc[0]
        assert (row["touch"], row["message-id"], row["resolved as"]) == (touch_id, message_id, "sent")
        assert row["why"] == "Message-ID found in sales-1's Sent folder: it did go out"
