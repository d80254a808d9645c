"""What an operator does to a mailbox from the dashboard: test it, send a test email, pause and resume it.

The connection test is the same one launch runs before trusting a mailbox (`smtp_problem`), and the
test email is built by outreach.mailer and sent over outreach.smtp_transport exactly like a touch, so a
green result here means the worker can send through this mailbox too.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import MailboxState
from db.models import Mailbox
from outreach.config import load_settings
from outreach.dkim import signer
from outreach.errors import OutreachError
from outreach.mailbox_health import Moved, move_unthreaded
from outreach.mailboxes import set_state, smtp_settings
from outreach.mailer import MessageError, OutgoingMessage, build_message, check_address, make_message_id, sender_domain
from outreach.smtp_transport import SmtpConnection, check_connection

PAUSED_BY_OPERATOR = "paused by the operator"


@dataclass(frozen=True)
class SentTestEmail:
    message_id: str
    to_address: str
    server_reply: str


def _mailbox(session: Session, name: str) -> Mailbox:
    box = session.scalar(select(Mailbox).where(Mailbox.name == name))
    if box is None:
        raise OutreachError(f"no mailbox named '{name}'; add it under Settings → Mailboxes first")
    return box


def smtp_problem(box: Mailbox) -> str | None:
    """Launch's reachability check: None when the mailbox connects and logs in, else what went wrong."""
    try:
        check_connection(smtp_settings(box))
    except OutreachError as exc:
        return str(exc)
    return None


def check_mailbox_connection(session: Session, name: str) -> str:
    """Connect and log in (no mail sent); returns the server's answer or raises with what to fix."""
    return check_connection(smtp_settings(_mailbox(session, name)))


def send_test_email(
    session: Session, name: str, to_address: str, now: datetime, keys: Sequence[str] | None = None
) -> SentTestEmail:
    """Send one short message to an address the operator owns; raises unless the server answered 250.

    DKIM-signed like a touch when the sender's domain has a key, so the operator can check the signature.
    """
    box = _mailbox(session, name)
    try:
        to = check_address("to", to_address.strip())
    except MessageError:
        raise OutreachError(f"'{to_address}' is not an email address; type the address to send the test to") from None
    message_id = make_message_id(sender_domain(box.from_address), f"test.{secrets.token_hex(12)}")
    message = build_message(
        OutgoingMessage(
            from_address=box.from_address,
            from_name=box.from_name,
            to_address=to,
            subject=f"Outreach test email from mailbox {box.name}",
            text_body=(
                f"This is a test email sent by Outreach through the mailbox {box.name} "
                f"({box.smtp_host}:{box.smtp_port}).\n\n"
                "If you can read it, the mailbox can send. Nothing else was sent."
            ),
            message_id=message_id,
            date=now,
        )
    )
    sign = signer(session, box.from_address, load_settings().secret_keys() if keys is None else keys)
    with SmtpConnection(smtp_settings(box)) as connection:
        result = connection.send(sign(message) if sign else message, box.from_address, to)
    if not result.sent:
        raise OutreachError(
            f"mailbox {box.name}: the server did not accept the test email ({result.detail}); "
            "check the sender address and the account's sending permissions"
        )
    return SentTestEmail(message_id, to, result.detail)


def pause_mailbox(session: Session, name: str, reason: str = PAUSED_BY_OPERATOR, now: datetime | None = None) -> Moved:
    """Nothing is sent through it until it is resumed; its campaigns use their other mailboxes.

    Its prospects not contacted yet move to the campaigns' other active mailboxes now; the ones already
    in a thread wait for it (outreach.mailbox_health says why).
    """
    set_state(session, name, MailboxState.PAUSED, reason)
    session.flush()
    return move_unthreaded(session, _mailbox(session, name).id, now or datetime.now(UTC))


def resume_mailbox(session: Session, name: str, now: datetime | None = None) -> None:
    """Back in service with a clean failure count and a fresh health window.

    Otherwise one more connection failure, or the same old bounces at the next health check, would
    pause it again at once.
    """
    set_state(session, name, MailboxState.ACTIVE, None)
    box = _mailbox(session, name)
    box.consecutive_failures, box.last_error = 0, None
    box.health_reset_at = now or datetime.now(UTC)
    session.flush()


SmtpCheck = Callable[[Mailbox], str | None]


def checked_in_advance(boxes: Iterable[Mailbox]) -> SmtpCheck:
    """Test each mailbox now and answer launch's SMTP check from the results.

    Launch enrolls inside one write transaction; testing a mail server in there would hold the
    database's write lock (SQLite: the whole file) for as long as the server takes to answer.
    """
    results = {box.name: smtp_problem(box) for box in boxes}

    def check(box: Mailbox) -> str | None:
        return results[box.name] if box.name in results else smtp_problem(box)

    return check


def password_env_is_set(variable: str | None, env: Mapping[str, str] | None = None) -> bool | None:
    """Whether the variable holding a mailbox's password is set here (None: the mailbox logs in without one).

    Only presence is reported, never the value; the worker needs the same variable in its own environment.
    """
    if not variable:
        return None
    return bool((os.environ if env is None else env).get(variable))
