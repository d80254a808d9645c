"""Sending mailboxes: validated settings, limits with the advice cold senders follow, secrets from the env."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from db.enums import EnrollmentState, MailboxState, TlsMode, TouchState
from db.models import CommunicationLog, Enrollment, Mailbox
from outreach.errors import OutreachError
from outreach.smtp_transport import MailboxUnavailable, SmtpSettings

DEFAULT_DAILY_LIMIT = 30
ADVISED_MAX_DAILY = 50  # what Instantly, lemlist and Smartlead advise for a cold mailbox
DEFAULT_PER_MINUTE = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class MailboxSpec:
    name: str
    from_address: str
    smtp_host: str
    smtp_port: int
    user: str | None = None
    password_env: str | None = None
    tls: TlsMode = TlsMode.STARTTLS
    from_name: str | None = None
    imap_host: str | None = None
    imap_port: int | None = None
    daily_limit: int = DEFAULT_DAILY_LIMIT
    per_minute: int = DEFAULT_PER_MINUTE


@dataclass(frozen=True)
class SavedMailbox:
    id: int
    name: str
    created: bool
    warnings: list[str] = field(default_factory=list)


def _check(spec: MailboxSpec) -> list[str]:
    """Raise on what cannot work; return warnings for what works but is unwise."""
    if not _NAME.match(spec.name):
        raise OutreachError(f"mailbox name '{spec.name}': use letters, digits, '.', '_' or '-' (up to 100)")
    try:
        validate_email(spec.from_address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise OutreachError(f"--from: '{spec.from_address}' is not an email address ({exc})") from None
    if not spec.smtp_host.strip() or any(c.isspace() for c in spec.smtp_host):
        raise OutreachError(f"--smtp-host: '{spec.smtp_host}' is not a host name")
    for flag, port in (("--smtp-port", spec.smtp_port), ("--imap-port", spec.imap_port)):
        if port is not None and not 0 < port < 65536:
            raise OutreachError(f"{flag}: {port} is not a port (1–65535)")
    if spec.password_env is not None and not _ENV_NAME.match(spec.password_env):
        raise OutreachError(f"--password-env: '{spec.password_env}' is not an environment variable name")
    if spec.password_env and not spec.user:
        raise OutreachError("--password-env needs --user: the password logs in as that user")
    if spec.daily_limit < 1 or spec.per_minute < 1:
        raise OutreachError("--daily-limit and --per-minute must be at least 1")
    warnings = []
    if spec.daily_limit > ADVISED_MAX_DAILY:
        warnings.append(
            f"daily limit {spec.daily_limit} is above {ADVISED_MAX_DAILY}: cold mailboxes sending more "
            "than that per day risk the spam folder"
        )
    if spec.tls is TlsMode.NONE and spec.user:
        warnings.append("--tls none with a login sends the password unencrypted")
    return warnings


def save_mailbox(session: Session, spec: MailboxSpec) -> SavedMailbox:
    """Create the mailbox, or update it when one with that name exists (scripts can re-run)."""
    warnings = _check(spec)
    box = session.scalar(select(Mailbox).where(Mailbox.name == spec.name))
    created = box is None
    if box is None:
        box = Mailbox(name=spec.name)
        session.add(box)
    box.from_address = spec.from_address
    box.from_name = spec.from_name
    box.smtp_host = spec.smtp_host.strip()
    box.smtp_port = spec.smtp_port
    box.smtp_user = spec.user
    box.password_env = spec.password_env
    box.tls = spec.tls
    box.imap_host = spec.imap_host
    box.imap_port = spec.imap_port
    box.imap_user = spec.user if spec.imap_host else None
    box.imap_password_env = spec.password_env if spec.imap_host else None
    box.daily_limit = spec.daily_limit
    box.per_minute = spec.per_minute
    session.flush()
    return SavedMailbox(box.id, box.name, created, warnings)


def smtp_settings(box: Mailbox, env: dict[str, str] | None = None) -> SmtpSettings:
    """The connection settings, with the password taken from the environment at the last moment."""
    env = dict(os.environ) if env is None else env
    password = None
    if box.password_env:
        password = env.get(box.password_env)
        if not password:
            raise MailboxUnavailable(
                f"mailbox {box.name}: the environment variable {box.password_env} holding its password is not set"
            )
    return SmtpSettings(box.smtp_host, box.smtp_port, box.tls, box.smtp_user, password)


def list_mailboxes(session: Session) -> list[dict[str, object]]:
    """What may be shown about each mailbox: never a password, only the name of its variable."""
    return [
        {
            "name": b.name,
            "from": b.from_address,
            "smtp": f"{b.smtp_host}:{b.smtp_port}",
            "tls": b.tls.value,
            "user": b.smtp_user,
            "password_env": b.password_env,
            "imap": f"{b.imap_host}:{b.imap_port}" if b.imap_host else None,
            "daily_limit": b.daily_limit,
            "per_minute": b.per_minute,
            "state": b.state.value,
            "paused_reason": b.paused_reason,
        }
        for b in session.scalars(select(Mailbox).order_by(Mailbox.name))
    ]


def set_state(session: Session, name: str, state: MailboxState, reason: str | None = None) -> None:
    box = session.scalar(select(Mailbox).where(Mailbox.name == name))
    if box is None:
        raise OutreachError(f"no mailbox named '{name}'")
    box.state = state
    box.paused_reason = reason


PENDING_TOUCHES = (TouchState.QUEUED, TouchState.CLAIMED, TouchState.SENDING, TouchState.RETRY_WAIT)
SENT_TODAY = (TouchState.SENT, TouchState.IN_DOUBT, TouchState.BOUNCED)  # what the daily limit counts


def committed_load(session: Session, mailbox_ids: Sequence[int], now: datetime) -> list[int]:
    """Per mailbox (in the order given), the touches it is already committed to, in every campaign.

    Sent in the last 24 hours (the daily limit's window) + queued or in flight + enrolled prospects
    waiting for their next touch. Rotation subtracts this from each mailbox's capacity, so a mailbox
    with a backlog gets fewer newcomers. Two grouped counts, both on indexed columns.
    """
    if not mailbox_ids:
        return []
    touches = session.execute(
        select(CommunicationLog.mailbox_id, func.count())
        .where(
            CommunicationLog.mailbox_id.in_(mailbox_ids),
            or_(
                CommunicationLog.state.in_(PENDING_TOUCHES),
                and_(CommunicationLog.state.in_(SENT_TODAY), CommunicationLog.sent_at >= now - timedelta(days=1)),
            ),
        )
        .group_by(CommunicationLog.mailbox_id)
    )
    waiting = session.execute(
        select(Enrollment.mailbox_id, func.count())
        .where(
            Enrollment.mailbox_id.in_(mailbox_ids),
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.next_due_at.is_not(None),
        )
        .group_by(Enrollment.mailbox_id)
    )
    load = dict.fromkeys(mailbox_ids, 0)
    for box_id, n in [*touches, *waiting]:
        load[box_id] += n
    return [load[box_id] for box_id in mailbox_ids]
