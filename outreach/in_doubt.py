"""In-doubt touches resolved through the mailbox's Sent folder, where the mailbox has IMAP.

A crash between handing a message to the SMTP server and hearing its 250 leaves the touch `in_doubt`
(outreach.outbox): it may or may not have gone out. Many providers (Gmail, Microsoft 365) keep a copy of
what was submitted over SMTP in the Sent folder, so the worker looks there for the touch's Message-ID —
read-only (EXAMINE), `SEARCH HEADER Message-ID`, then the candidates' headers with BODY.PEEK to confirm
the exact id, so no flag ever changes. Found: the touch is sent and the sequence moves on. Not found: a
server that keeps no Sent copy looks exactly like a message that never left, so the campaign decides —
`in_doubt: hold` (the default) leaves the touch to the operator with a note saying what was checked;
`in_doubt: resend` queues it again with the same Message-ID (recipients' servers drop a duplicate id)
once the lease and a grace period are over, giving a slow Sent copy time to appear.

Every automatic resolution is recorded (`recent_resolutions`, shown on the Inbox page's In doubt tab).
The record keeps touch ids and Message-IDs only, never an address, so erasing a person needs nothing here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from imap_tools import AND, BaseMailBox, H
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import MailboxState, TouchState
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect, TouchResolution
from outreach.campaigns import CampaignManager, definition_of
from outreach.inbox import Connect, connect, imap_settings
from outreach.mailparts import message_ids
from outreach.sequence import InDoubtPolicy
from outreach.smtp_transport import MailboxUnavailable

if TYPE_CHECKING:
    from outreach.worker import JobContext

log = logging.getLogger("outreach.in_doubt")

SENT_FLAG = "\\Sent"  # RFC 6154 special-use attribute
SENT_NAMES = ("Sent", "Sent Items", "[Gmail]/Sent Mail")  # looked for, in this order, when no folder has the flag
GRACE_ENV = "OUTREACH_IN_DOUBT_GRACE_SECONDS"
DEFAULT_GRACE = timedelta(minutes=15)
_NOTE_PREFIX = "Sent folder checked"


def grace_from_env(env: dict[str, str] | None = None) -> timedelta:
    """How long after a touch went in doubt a missing Sent copy counts as "never sent" (policy resend)."""
    value = (os.environ if env is None else env).get(GRACE_ENV, "").strip()
    try:
        return timedelta(seconds=max(int(value), 0)) if value else DEFAULT_GRACE
    except ValueError:
        return DEFAULT_GRACE


@dataclass(frozen=True)
class Suspect:
    """One in-doubt touch to look for."""

    touch_id: int
    message_id: str
    policy: InDoubtPolicy
    in_doubt_since: datetime  # when recovery found its lease run out


@dataclass(frozen=True)
class Resolution:
    """What the worker decided for one touch, and why (the record the Inbox page shows)."""

    touch_id: int
    message_id: str
    outcome: str  # sent, resend
    reason: str
    mailbox: str
    folder: str
    at: datetime


# --- choosing the folder ---------------------------------------------------------------------------


def choose_sent_folder(folders: Iterable[tuple[str, Sequence[str]]]) -> str | None:
    """The Sent folder among (name, flags): the one flagged \\Sent, else the first known name (any case)."""
    listed = list(folders)
    for name, flags in listed:
        if any(flag.lower() == SENT_FLAG.lower() for flag in flags):
            return name
    by_lower = {name.lower(): name for name, _flags in listed}
    for wanted in SENT_NAMES:
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
    return None


def sent_folder(client: BaseMailBox) -> str | None:
    return choose_sent_folder((f.name, tuple(f.flags)) for f in client.folder.list())


def in_folder(client: BaseMailBox, message_id: str) -> bool:
    """Whether the selected folder holds a message with exactly this Message-ID (flags untouched)."""
    uids = client.uids(AND(header=H("Message-ID", message_id)))
    if not uids:
        return False
    # SEARCH HEADER matches substrings: confirm the exact id from the headers (BODY.PEEK[HEADER]).
    for message in client.fetch(uid_list=list(uids), mark_seen=False, headers_only=True, bulk=True):
        if message_id in message_ids(" ".join(message.headers.get("message-id", ()))):
            return True
    return False


# --- what to look for --------------------------------------------------------------------------------


def suspects_by_mailbox(session: Session) -> dict[int, list[Suspect]]:
    """In-doubt touches with a Message-ID whose mailbox has IMAP and is not disabled, grouped by mailbox."""
    rows = session.execute(
        select(CommunicationLog, OutreachCampaign)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .join(Mailbox, Mailbox.id == CommunicationLog.mailbox_id)
        .where(
            CommunicationLog.state == TouchState.IN_DOUBT,
            CommunicationLog.message_id.is_not(None),
            Mailbox.imap_host.is_not(None),
            Mailbox.state != MailboxState.DISABLED,
        )
        .order_by(CommunicationLog.mailbox_id, CommunicationLog.id)
    ).all()
    policies: dict[int, InDoubtPolicy] = {}
    found: dict[int, list[Suspect]] = {}
    for touch, campaign in rows:
        if campaign.id not in policies:
            policies[campaign.id] = definition_of(campaign).in_doubt
        suspect = Suspect(touch.id, touch.message_id or "", policies[campaign.id], touch.updated_at)
        found.setdefault(touch.mailbox_id or 0, []).append(suspect)
    return found


# --- deciding ----------------------------------------------------------------------------------------


def _record(session: Session, resolution: Resolution) -> None:
    session.add(
        TouchResolution(
            touch_id=resolution.touch_id, message_id=resolution.message_id, outcome=resolution.outcome,
            reason=resolution.reason, mailbox=resolution.mailbox, folder=resolution.folder,
            resolved_at=resolution.at,
        )
    )  # fmt: skip


def _note(session: Session, suspect: Suspect, text: str) -> None:
    """What the last check found, on the touch the operator still has to decide (its in-doubt time kept)."""
    session.execute(
        update(CommunicationLog)
        .where(CommunicationLog.id == suspect.touch_id, CommunicationLog.state == TouchState.IN_DOUBT)
        .values(last_error=text[:2000], updated_at=suspect.in_doubt_since)
        .execution_options(synchronize_session=False)
    )


def decide(
    session: Session,
    suspect: Suspect,
    found: bool,
    *,
    mailbox: str,
    folder: str,
    now: datetime,
    grace: timedelta,
    secret_key: str,
) -> Resolution | None:
    """Apply the verdict for one touch; returns the resolution made, or None when it stays in doubt."""
    manager = CampaignManager(session, secret_key=secret_key)
    checked = f"{_NOTE_PREFIX} {now:%Y-%m-%d %H:%M} UTC ({mailbox} › {folder})"
    if found:
        if not manager.resolve_in_doubt(suspect.touch_id, was_sent=True, now=now):
            return None  # the operator was quicker
        reason = f"Message-ID found in {mailbox}'s {folder} folder: it did go out"
        resolution = Resolution(suspect.touch_id, suspect.message_id, "sent", reason, mailbox, folder, now)
    elif suspect.policy is InDoubtPolicy.RESEND and now >= suspect.in_doubt_since + grace:
        if not manager.resolve_in_doubt(suspect.touch_id, was_sent=False, now=now):
            return None
        waited = int((now - suspect.in_doubt_since).total_seconds() // 60)
        reason = (
            f"not in {mailbox}'s {folder} folder {waited} min after its lease ran out; the campaign's policy is "
            "in_doubt: resend, so it is sent again with the same Message-ID"
        )
        resolution = Resolution(suspect.touch_id, suspect.message_id, "resend", reason, mailbox, folder, now)
    elif suspect.policy is InDoubtPolicy.RESEND:
        due = suspect.in_doubt_since + grace
        _note(session, suspect, f"{checked}: not found yet; resent after {due:%Y-%m-%d %H:%M} UTC if still missing")
        return None
    else:
        _note(session, suspect, f"{checked}: not found; the campaign's policy is in_doubt: hold — you decide")
        return None
    _record(session, resolution)
    log.info("touch %s in doubt → %s: %s", suspect.touch_id, resolution.outcome, reason)
    return resolution


# --- the worker job ----------------------------------------------------------------------------------


def check_mailbox(
    engine: Engine,
    mailbox_id: int,
    suspects: list[Suspect],
    now: datetime,
    *,
    secret_key: str,
    grace: timedelta,
    connector: Connect = connect,
    env: dict[str, str] | None = None,
) -> tuple[list[Resolution], str | None]:
    """Look for one mailbox's in-doubt touches in its Sent folder; (resolutions, a problem to report)."""
    with transaction(engine, readonly=True) as session:
        box = session.get(Mailbox, mailbox_id)
        if box is None:
            return [], None
        name = box.name
        try:
            settings = imap_settings(box, env)
        except MailboxUnavailable as exc:
            return [], str(exc)
    try:
        client = connector(settings)
    except Exception as exc:  # connection, TLS, login: this mailbox waits for the next run, the others go on
        return [], f"{name}: cannot log in to IMAP {settings.host}:{settings.port}: {exc}"
    try:
        folder = sent_folder(client)
        if folder is None:
            return [], f"{name}: no Sent folder (none flagged \\Sent, none named {', '.join(SENT_NAMES)})"
        client.folder.set(folder, readonly=True)
        verdicts = [(suspect, in_folder(client, suspect.message_id)) for suspect in suspects]
    finally:
        _logout(client)
    resolutions = []
    for suspect, found in verdicts:
        with transaction(engine) as session:
            made = decide(
                session, suspect, found, mailbox=name, folder=folder, now=now, grace=grace, secret_key=secret_key
            )
        if made is not None:
            resolutions.append(made)
    return resolutions, None


def _logout(client: BaseMailBox) -> None:
    try:
        client.logout()
    except Exception as exc:  # already gone: nothing was changed on the server either way
        log.debug("IMAP logout: %s", exc)


def resolve_from_sent_folders(
    engine: Engine,
    ctx: JobContext,
    *,
    connector: Connect = connect,
    env: dict[str, str] | None = None,
    grace: timedelta | None = None,
) -> str | None:
    """Worker job body (owns its transactions): check every IMAP mailbox's Sent folder for its in-doubt touches."""
    with transaction(engine, readonly=True) as session:
        work = suspects_by_mailbox(session)
    if not work:
        return None
    wait = grace_from_env(env) if grace is None else grace
    key = ctx.settings.secret_key()
    counts = {"sent": 0, "resend": 0}
    problems = []
    for mailbox_id, suspects in work.items():
        resolutions, problem = check_mailbox(
            engine, mailbox_id, suspects, ctx.now, secret_key=key, grace=wait, connector=connector, env=env
        )
        for resolution in resolutions:
            counts[resolution.outcome] += 1
        if problem:
            log.warning("in-doubt check: %s", problem)
            problems.append(problem)
    parts = [f"{counts['sent']} found in Sent", f"{counts['resend']} queued to resend"] if any(counts.values()) else []
    return "in doubt: " + "; ".join(parts + problems) if parts or problems else None


# --- what the Inbox page shows -------------------------------------------------------------------------


def recent_resolutions(session: Session, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest automatic resolutions, newest first, with the touch's campaign and prospect."""
    rows = session.execute(
        select(TouchResolution, Prospect.email, OutreachCampaign.name)
        .join(CommunicationLog, CommunicationLog.id == TouchResolution.touch_id)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .order_by(TouchResolution.resolved_at.desc(), TouchResolution.id.desc())
        .limit(limit)
    )
    return [
        {
            "touch": r.touch_id,
            "campaign": campaign,
            "prospect": email,
            "message-id": r.message_id,
            "resolved as": "sent" if r.outcome == "sent" else "resent",
            "why": r.reason,
            "at": r.resolved_at,
        }
        for r, email, campaign in rows
    ]
