"""IMAP polling: every mailbox with IMAP settings is read incrementally, and each message stored once.

Mautic marked whole inboxes as read (#7649, #10487); here every folder is opened read-only (EXAMINE)
and fetched with BODY.PEEK, so the mailbox's \\Seen flags never change. Each folder's progress
(UIDVALIDITY and the last UID recorded) lives in ImapSyncState and is committed in the same
transaction as the message it covers, so a poller killed at any point restarts where it was and
records each message exactly once. A new UIDVALIDITY means the server renumbered the folder: the
folder is read again from the start, and messages already stored (same Message-ID) are only
re-pointed to their new UID, never stored twice. Headers are fetched first, so a resync downloads
only the bodies it does not have.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage
from imap_tools.errors import MailboxFolderSelectError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import MailboxState, TlsMode
from db.models import ImapSyncState, Mailbox, ResponseAnalysis
from outreach.mailparts import header_text, message_ids
from outreach.responses import ImapLocation, ResponseTracker, storable_message_id
from outreach.smtp_transport import MailboxUnavailable

if TYPE_CHECKING:
    from outreach.worker import JobContext

log = logging.getLogger("outreach.inbox")

DEFAULT_FOLDERS = ("INBOX",)
HEADER_BATCH = 200  # UIDs per header FETCH
TIMEOUT_S = 30.0


# --- settings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    user: str
    password: str | None
    security: TlsMode  # none, starttls or ssl (implicit TLS, port 993)
    folders: tuple[str, ...] = DEFAULT_FOLDERS
    timeout: float = TIMEOUT_S


def imap_settings(box: Mailbox, env: dict[str, str] | None = None) -> ImapSettings:
    """The IMAP side of a mailbox, password from the environment at the last moment (like smtp_settings).

    Port 993 is implicit TLS; otherwise STARTTLS unless the mailbox sends without TLS (a local server).
    """
    if not box.imap_host:
        raise MailboxUnavailable(f"mailbox {box.name}: no IMAP host configured")
    env = dict(os.environ) if env is None else env
    variable = box.imap_password_env or box.password_env
    password = None
    if variable:
        password = env.get(variable)
        if not password:
            raise MailboxUnavailable(
                f"mailbox {box.name}: the environment variable {variable} holding its IMAP password is not set"
            )
    port = box.imap_port or (993 if box.tls is not TlsMode.NONE else 143)
    security = TlsMode.SSL if port == 993 else (TlsMode.NONE if box.tls is TlsMode.NONE else TlsMode.STARTTLS)
    folders = tuple(str(f) for f in (box.imap_folders or []) if str(f).strip()) or DEFAULT_FOLDERS
    user = box.imap_user or box.smtp_user or box.from_address
    return ImapSettings(box.imap_host, port, user, password, security, folders)


Connect = Callable[[ImapSettings], BaseMailBox]


class _RawMessage(MailMessage):
    """imap-tools' message, keeping the exact bytes the server sent (parsed again by our own reader)."""

    def __init__(self, fetch_data: list[Any]) -> None:
        super().__init__(fetch_data)
        self.raw: bytes = self._get_message_data_parts(fetch_data)[0]


def connect(settings: ImapSettings) -> BaseMailBox:
    """A logged-in imap-tools mailbox with no folder selected."""
    mailbox: BaseMailBox
    if settings.security is TlsMode.SSL:
        mailbox = MailBox(
            settings.host, settings.port, timeout=settings.timeout, ssl_context=ssl.create_default_context()
        )
    elif settings.security is TlsMode.STARTTLS:
        mailbox = MailBoxStartTls(
            settings.host, settings.port, timeout=settings.timeout, ssl_context=ssl.create_default_context()
        )
    else:
        mailbox = MailBoxUnencrypted(settings.host, settings.port, timeout=settings.timeout)
    mailbox.email_message_class = _RawMessage
    return mailbox.login(settings.user, settings.password or "", initial_folder=None)


# --- polling ---------------------------------------------------------------------------------------------


@dataclass
class FolderReport:
    """What one poll of one folder did."""

    mailbox: str
    folder: str
    uidvalidity: int | None = None
    stored: int = 0
    duplicates: int = 0  # already stored (the same Message-ID from another folder, a resync, the CLI)
    resynced: bool = False
    error: str | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if self.error:
            return f"{self.mailbox}/{self.folder}: {self.error}"
        parts = [f"{self.stored} new"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already stored")
        if self.resynced:
            parts.append("UIDVALIDITY changed: re-read")
        return f"{self.mailbox}/{self.folder}: {', '.join(parts)}"


def poll_mailbox(
    engine: Engine,
    mailbox_id: int,
    clock: Callable[[], datetime],
    *,
    tracker: ResponseTracker | None = None,
    connector: Connect = connect,
    env: dict[str, str] | None = None,
    limit: int | None = None,
) -> list[FolderReport]:
    """Poll every configured folder of one mailbox; each message is ingested in its own transaction.

    `limit` caps the messages stored per folder in this call (the worker keeps each tick short).
    """
    with transaction(engine) as session:
        box = session.get(Mailbox, mailbox_id)
        if box is None:
            return []
        name = box.name
        try:
            settings = imap_settings(box, env)
        except MailboxUnavailable as exc:
            return [FolderReport(name, "*", error=str(exc))]
    tracker = tracker or ResponseTracker()
    try:
        client = connector(settings)
    except Exception as exc:  # connection refused, TLS, login: reported per mailbox, the others still run
        log.warning("IMAP %s: %s", name, exc)
        return [FolderReport(name, "*", error=f"cannot log in to {settings.host}:{settings.port}: {exc}")]
    reports = []
    try:
        for folder in settings.folders:
            report = FolderReport(name, folder)
            try:
                _poll_folder(engine, client, mailbox_id, folder, clock, tracker, report, limit)
            except MailboxFolderSelectError as exc:
                report.error = f"folder {folder!r} cannot be opened: {exc}"
            reports.append(report)
            _record_poll(engine, mailbox_id, folder, report, clock())
    finally:
        _logout(client)
    return reports


def _logout(client: BaseMailBox) -> None:
    try:
        client.logout()
    except Exception as exc:  # the connection may already be gone; nothing is lost either way
        log.debug("IMAP logout: %s", exc)


_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


def _examine(client: BaseMailBox, folder: str) -> int:
    """Open the folder read-only (EXAMINE: flags never change) and return its UIDVALIDITY."""
    result = client.folder.set(folder, readonly=True)
    for line in result[1] or []:
        match = _UIDVALIDITY.search(line if isinstance(line, bytes) else b"")
        if match:
            return int(match.group(1))
    _, data = client.client.response("UIDVALIDITY")
    if data and data[0]:
        return int(data[0])
    return int(client.folder.status(folder, ["UIDVALIDITY"])["UIDVALIDITY"])


def _poll_folder(
    engine: Engine,
    client: BaseMailBox,
    mailbox_id: int,
    folder: str,
    clock: Callable[[], datetime],
    tracker: ResponseTracker,
    report: FolderReport,
    limit: int | None,
) -> None:
    uidvalidity = _examine(client, folder)
    report.uidvalidity = uidvalidity
    last_uid, report.resynced = _sync_state(engine, mailbox_id, folder, uidvalidity, clock())
    uids = [int(u) for u in client.uids(f"UID {last_uid + 1}:*") if int(u) > last_uid]  # n:* returns * when n > max
    if limit is not None:
        uids = uids[:limit]
    for start in range(0, len(uids), HEADER_BATCH):
        batch = uids[start : start + HEADER_BATCH]
        ids = _message_ids(client, batch)
        for uid in batch:
            location = ImapLocation(mailbox_id, folder, uidvalidity, uid)
            if _already_stored(engine, location, ids.get(uid), clock()):
                report.duplicates += 1
                continue
            raw = _fetch(client, uid)
            if raw is None:  # expunged between SEARCH and FETCH: nothing to record, move past it
                _advance(engine, mailbox_id, folder, uidvalidity, uid, clock())
                continue
            _ingest(engine, tracker, raw, location, clock(), report)


def _message_ids(client: BaseMailBox, uids: list[int]) -> dict[int, str]:
    """UID → Message-ID from the headers alone (BODY.PEEK[HEADER]): known messages need no body download."""
    found: dict[int, str] = {}
    parser = BytesHeaderParser(policy=policy.default)
    for message in client.fetch(uid_list=[str(u) for u in uids], mark_seen=False, headers_only=True, bulk=True):
        if message.uid is None:
            continue
        headers = parser.parsebytes(message.raw)  # type: ignore[attr-defined]
        ids = message_ids(header_text(headers, "Message-ID"))
        if ids:
            found[int(message.uid)] = storable_message_id(ids[0])
    return found


def _fetch(client: BaseMailBox, uid: int) -> bytes | None:
    for message in client.fetch(uid_list=[str(uid)], mark_seen=False):
        return message.raw  # type: ignore[attr-defined, no-any-return]
    return None


def _sync_state(engine: Engine, mailbox_id: int, folder: str, uidvalidity: int, now: datetime) -> tuple[int, bool]:
    """(the last UID recorded, whether the folder was renumbered since the last poll)."""
    with transaction(engine) as session:
        state = _state(session, mailbox_id, folder)
        if state is None:
            session.add(ImapSyncState(mailbox_id=mailbox_id, folder=folder, uidvalidity=uidvalidity, last_uid=0))
            return 0, False
        if state.uidvalidity != uidvalidity:
            log.info("IMAP mailbox %s folder %s: UIDVALIDITY changed; reading it again", mailbox_id, folder)
            state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, 0, now
            return 0, True
        return int(state.last_uid), False


def _state(session: Session, mailbox_id: int, folder: str) -> ImapSyncState | None:
    return session.scalar(
        select(ImapSyncState).where(ImapSyncState.mailbox_id == mailbox_id, ImapSyncState.folder == folder)
    )


def _set_last_uid(session: Session, location: ImapLocation, now: datetime) -> None:
    state = _state(session, location.mailbox_id, location.folder)
    if state is not None and state.uidvalidity == location.uidvalidity and state.last_uid < location.uid:
        state.last_uid, state.updated_at = location.uid, now


def _advance(engine: Engine, mailbox_id: int, folder: str, uidvalidity: int, uid: int, now: datetime) -> None:
    with transaction(engine) as session:
        _set_last_uid(session, ImapLocation(mailbox_id, folder, uidvalidity, uid), now)


def _already_stored(engine: Engine, location: ImapLocation, message_id: str | None, now: datetime) -> bool:
    """True (and progress saved) when this UID or this Message-ID is stored already.

    After a resync the stored row is re-pointed to its new UID when it came from this same folder.
    """
    with transaction(engine) as session:
        at_location = session.scalar(
            select(ResponseAnalysis.id).where(
                ResponseAnalysis.mailbox_id == location.mailbox_id,
                ResponseAnalysis.folder == location.folder,
                ResponseAnalysis.imap_uidvalidity == location.uidvalidity,
                ResponseAnalysis.imap_uid == location.uid,
            )
        )
        row = None
        if at_location is None and message_id is not None:
            row = session.scalar(select(ResponseAnalysis).where(ResponseAnalysis.message_id == message_id))
        if at_location is None and row is None:
            return False
        if row is not None and row.mailbox_id in (None, location.mailbox_id) and row.folder in (None, location.folder):
            row.mailbox_id, row.folder = location.mailbox_id, location.folder
            row.imap_uidvalidity, row.imap_uid = location.uidvalidity, location.uid
        _set_last_uid(session, location, now)
        return True


def _ingest(
    engine: Engine, tracker: ResponseTracker, raw: bytes, location: ImapLocation, now: datetime, report: FolderReport
) -> None:
    """Store one message and move the folder's progress past it, in one transaction."""
    with transaction(engine) as session:
        result = tracker.parse_response(session, raw, now, location)
        _set_last_uid(session, location, now)
    if result.duplicate:
        report.duplicates += 1
    else:
        report.stored += 1
        report.kinds[str(result.kind)] = report.kinds.get(str(result.kind), 0) + 1


def _record_poll(engine: Engine, mailbox_id: int, folder: str, report: FolderReport, now: datetime) -> None:
    with transaction(engine) as session:
        state = _state(session, mailbox_id, folder)
        if state is not None:
            state.last_polled_at, state.last_error = now, report.error


# --- the worker job ------------------------------------------------------------------------------------

PER_MAILBOX_LIMIT = 500  # messages per folder per tick: a huge first sync spreads over several ticks


def pollable_mailboxes(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(Mailbox.id)
            .where(Mailbox.imap_host.is_not(None), Mailbox.state != MailboxState.DISABLED)
            .order_by(Mailbox.id)
        )
    )


def poll_inboxes(engine: Engine, ctx: JobContext) -> str | None:
    """Worker job body: poll every mailbox with IMAP settings; a summary line when anything happened."""
    with transaction(engine) as session:
        mailbox_ids = pollable_mailboxes(session)
    if not mailbox_ids:
        return None
    tracker = ResponseTracker(secret_key=ctx.settings.secret_key())
    lines = []
    for mailbox_id in mailbox_ids:
        for report in poll_mailbox(engine, mailbox_id, ctx.clock, tracker=tracker, limit=PER_MAILBOX_LIMIT):
            if report.error or report.stored or report.resynced:
                lines.append(report.summary())
    return "; ".join(lines) or None
