"""IMAP polling against a real Dovecot (tests/imap_server.py), on SQLite and PostgreSQL.

Incremental by UID, a UIDVALIDITY change re-reads without duplicates, \\Seen never set, and a poller
killed (SIGKILL) in the middle of a mailbox records each message exactly once after a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from db.engine import make_engine, transaction
from db.enums import EnrollmentState, ResponseKind, TlsMode
from db.migrate import upgrade
from db.models import Enrollment, ImapSyncState, Mailbox, ResponseAnalysis
from outreach.config import Settings, load_settings
from outreach.inbox import imap_settings, poll_inboxes, poll_mailbox
from outreach.smtp_transport import MailboxUnavailable
from outreach.worker import JobContext, WorkerIdentity
from tests.imap_server import PASSWORD, USER, DovecotServer, private_dovecot
from tests.integration.test_inbox_ingest import sent_thread

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with private_dovecot() as server:
        yield server


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """One database kind is enough where only the IMAP side is under test."""
    eng = make_engine(f"sqlite:///{tmp_path / 'outreach.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def clock() -> datetime:
    return NOW


def message(number: int, *, sender: str = "someone@prospect.example", in_reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = USER
    msg["Subject"] = f"Re: Quick idea #{number}"
    msg["Date"] = format_datetime(NOW - timedelta(hours=1))
    msg["Message-ID"] = f"<reply-{number}-{uuid.uuid4().hex[:8]}@prospect.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(f"Reply number {number}. Sounds interesting, let's talk.\n\nOn Mon, Sales wrote:\n> Quick idea\n")
    return bytes(msg)


def imap_mailbox(engine: Engine, server: DovecotServer, folder: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("OUTREACH_TEST_IMAP_PASSWORD", PASSWORD)
    with transaction(engine) as session:
        box = Mailbox(
            name=f"imap-{uuid.uuid4().hex[:6]}", from_address=USER, smtp_host="127.0.0.1", smtp_port=1025,
            tls=TlsMode.NONE, imap_host="127.0.0.1", imap_port=server.port, imap_user=USER,
            imap_password_env="OUTREACH_TEST_IMAP_PASSWORD", imap_folders=[folder],
        )  # fmt: skip
        session.add(box)
        session.flush()
        return box.id


def new_folder(server: DovecotServer) -> str:
    folder = f"Replies-{uuid.uuid4().hex[:8]}"
    server.create_folder(folder)
    return folder


def stored(engine: Engine) -> list[tuple[str, int | None, int | None]]:
    with transaction(engine, readonly=True) as session:  # never waits behind the poller's write lock
        rows = session.execute(
            select(ResponseAnalysis.message_id, ResponseAnalysis.imap_uidvalidity, ResponseAnalysis.imap_uid)
        )
        return [tuple(r) for r in rows]


def test_incremental_polling_never_changes_flags(
    engine: Engine, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = new_folder(dovecot)
    box_id = imap_mailbox(engine, dovecot, folder, monkeypatch)
    for number in range(3):
        dovecot.append(message(number), folder)

    [first] = poll_mailbox(engine, box_id, clock)
    assert (first.error, first.stored, first.duplicates) == (None, 3, 0)
    assert all(r"\Seen" not in flags for flags in dovecot.flags(folder).values())
    assert len(dovecot.flags(folder)) == 3

    for number in range(3, 5):
        dovecot.append(message(number), folder)
    [second] = poll_mailbox(engine, box_id, clock)
    [third] = poll_mailbox(engine, box_id, clock)

    assert (second.stored, second.duplicates) == (2, 0)  # only the two new UIDs were fetched
    assert (third.stored, third.duplicates) == (0, 0)
    rows = stored(engine)
    assert len(rows) == 5 and sorted(uid for _, _, uid in rows) == [1, 2, 3, 4, 5]
    assert all(r"\Seen" not in flags for flags in dovecot.flags(folder).values())
    with transaction(engine) as session:
        state = session.scalar(select(ImapSyncState).where(ImapSyncState.mailbox_id == box_id))
        assert (state.last_uid, state.uidvalidity, state.last_error) == (5, first.uidvalidity, None)


def test_uidvalidity_change_rereads_the_folder_without_duplicates(
    engine: Engine, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = new_folder(dovecot)
    box_id = imap_mailbox(engine, dovecot, folder, monkeypatch)
    raws = [message(n) for n in range(3)]
    for raw in raws:
        dovecot.append(raw, folder)
    [before] = poll_mailbox(engine, box_id, clock)

    dovecot.recreate_folder(folder, [raws[2], raws[0], raws[1], message(9)])  # renumbered, plus one new
    [after] = poll_mailbox(engine, box_id, clock)

    assert after.uidvalidity != before.uidvalidity and after.resynced
    assert (after.stored, after.duplicates) == (1, 3)
    rows = stored(engine)
    assert len(rows) == 4 and len({m for m, _, _ in rows}) == 4
    assert {v for _, v, _ in rows} == {after.uidvalidity}  # every row points at its current UID
    assert sorted(uid for _, _, uid in rows) == [1, 2, 3, 4]
    [again] = poll_mailbox(engine, box_id, clock)
    assert (again.stored, again.duplicates, again.resynced) == (0, 0, False)


POLLER = """
import sys, time
from datetime import UTC, datetime
from db.engine import make_engine
from outreach.config import Settings, load_settings
from outreach.inbox import poll_mailbox
from outreach.responses import ResponseTracker

class Slow(ResponseTracker):
    def parse_response(self, session, raw, now, location=None):
        result = super().parse_response(session, raw, now, location)
        time.sleep(0.1)  # inside the transaction: a kill lands between storing and committing too
        return result

engine = make_engine(sys.argv[1])
poll_mailbox(engine, int(sys.argv[2]), lambda: datetime(2026, 3, 4, 10, tzinfo=UTC), tracker=Slow())
print("finished")
"""


def test_killed_poller_restarts_and_records_each_message_once(
    engine: Engine, db_url: str, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = new_folder(dovecot)
    box_id = imap_mailbox(engine, dovecot, folder, monkeypatch)
    total = 16
    for number in range(total):
        dovecot.append(message(number), folder)
    env = {**os.environ, "OUTREACH_TEST_IMAP_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, db_url, str(box_id)], env=env, cwd=ROOT, stdout=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while len(stored(engine)) < 5 and time.monotonic() < deadline and poller.poll() is None:
        time.sleep(0.05)
    poller.send_signal(signal.SIGKILL)
    poller.wait(timeout=10)
    partial = len(stored(engine))
    assert 5 <= partial < total, "the poller was not killed in the middle of the mailbox"

    [resumed] = poll_mailbox(engine, box_id, clock)

    rows = stored(engine)
    assert resumed.error is None and resumed.stored == total - partial
    assert len(rows) == total and len({m for m, _, _ in rows}) == total
    assert sorted(uid for _, _, uid in rows) == list(range(1, total + 1))
    assert all(r"\Seen" not in flags for flags in dovecot.flags(folder).values())


def test_reply_polled_from_imap_stops_the_sequence(
    sqlite_engine: Engine, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    folder = new_folder(dovecot)
    box_id = imap_mailbox(engine, dovecot, folder, monkeypatch)
    with transaction(engine) as session:
        thread = sent_thread(session)
        ids = (thread.enrollment.id, thread.prospect.email, thread.touch.message_id)
    dovecot.append(message(1, sender=ids[1], in_reply_to=ids[2]), folder)

    ctx = JobContext(NOW, WorkerIdentity.current(), _settings(monkeypatch), clock)
    summary = poll_inboxes(engine, ctx)

    assert summary is not None and "1 new" in summary
    with transaction(engine) as session:
        row = session.scalar(select(ResponseAnalysis))
        assert (row.kind, row.mailbox_id, row.folder, row.imap_uid) == (ResponseKind.REPLY, box_id, folder, 1)
        assert session.get(Enrollment, ids[0]).state is EnrollmentState.STOPPED
    assert poll_inboxes(engine, ctx) is None  # nothing new: nothing to say


def test_wrong_password_is_reported_and_polling_goes_on(
    sqlite_engine: Engine, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    folder = new_folder(dovecot)
    box_id = imap_mailbox(engine, dovecot, folder, monkeypatch)
    monkeypatch.setenv("OUTREACH_TEST_IMAP_PASSWORD", "wrong")
    [report] = poll_mailbox(engine, box_id, clock)
    assert report.error and "cannot log in" in report.error
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(ResponseAnalysis)) == 0


def test_imap_settings_need_the_password_variable() -> None:
    box = Mailbox(
        name="m", from_address="a@b.example", smtp_host="h", smtp_port=25, tls=TlsMode.STARTTLS,
        imap_host="imap.b.example", imap_password_env="NOPE_VAR", imap_folders=["INBOX", "Replies"],
    )  # fmt: skip
    with pytest.raises(MailboxUnavailable, match="NOPE_VAR"):
        imap_settings(box, env={})
    settings = imap_settings(box, env={"NOPE_VAR": "pw"})
    assert (settings.port, settings.security, settings.folders, settings.user) == (
        993,
        TlsMode.SSL,
        ("INBOX", "Replies"),
        "a@b.example",
    )


def _settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "x" * 40)
    return load_settings()
