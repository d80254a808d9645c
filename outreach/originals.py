"""The original of an inbound message, fetched on demand from the IMAP folder it was polled from.

Only a message's fresh text is stored (ResponseAnalysis.body_text: quotes and signature stripped); the
message itself stays in the mailbox, and the Inbox page asks for it when the operator wants to see it.
The folder is opened read-only and the message fetched with BODY.PEEK, exactly as the poller does, so
looking at an original never marks it as read. A message ingested from a file (`outreach inbox
ingest`) has no mailbox to come from: only its text was kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.models import Mailbox, ResponseAnalysis
from outreach.errors import OutreachError
from outreach.inbound import parse_message
from outreach.inbox import Connect, ImapSettings, _examine, _fetch, _logout, connect, imap_settings
from outreach.mailparts import header_text

SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID", "In-Reply-To", "Auto-Submitted")
MAX_BODY_CHARS = 200_000  # a pasted log file in a reply should not freeze the browser


class OriginalUnavailable(OutreachError):
    """The original cannot be shown: ingested from a file, mailbox gone, or the server said no."""


@dataclass(frozen=True)
class OriginalLocation:
    """Where a polled message sits, with the mailbox's IMAP settings (password read from the environment)."""

    response_id: int
    mailbox: str
    settings: ImapSettings
    folder: str
    uidvalidity: int | None
    uid: int


def original_location(session: Session, response_id: int, env: dict[str, str] | None = None) -> OriginalLocation:
    row = session.get(ResponseAnalysis, response_id)
    if row is None:
        raise OriginalUnavailable(f"no inbound message with id {response_id}")
    if row.mailbox_id is None or row.folder is None or row.imap_uid is None:
        raise OriginalUnavailable(
            "This message was ingested from a file, not polled from a mailbox: only the text above was kept."
        )
    box = session.get(Mailbox, row.mailbox_id)
    if box is None:
        raise OriginalUnavailable("The mailbox this message was read from has been removed.")
    settings = imap_settings(box, env)
    return OriginalLocation(response_id, box.name, settings, row.folder, row.imap_uidvalidity, row.imap_uid)


def fetch_original(location: OriginalLocation, *, connector: Connect = connect) -> bytes:
    """The message's bytes as the server keeps them; call it outside any database transaction (network)."""
    where = f"{location.mailbox}/{location.folder}"
    try:
        client = connector(location.settings)
    except Exception as exc:  # refused, TLS, login: the operator needs the server's words
        raise OriginalUnavailable(
            f"cannot log in to {location.settings.host}:{location.settings.port} for {where}: {exc}"
        ) from exc
    try:
        uidvalidity = _examine(client, location.folder)
        if location.uidvalidity is not None and uidvalidity != location.uidvalidity:
            raise OriginalUnavailable(
                f"{where} was renumbered by the server (UIDVALIDITY changed); the next poll finds the message again."
            )
        raw = _fetch(client, location.uid)
    except OriginalUnavailable:
        raise
    except Exception as exc:  # a folder renamed or gone, a dropped connection
        raise OriginalUnavailable(f"cannot read message UID {location.uid} in {where}: {exc}") from exc
    finally:
        _logout(client)
    if raw is None:
        raise OriginalUnavailable(f"message UID {location.uid} is no longer in {where} (moved or deleted).")
    return raw


def original_text(raw: bytes) -> str:
    """The headers a person reads and the whole text body (quotes and signature included), as plain text."""
    parsed = parse_message(raw)
    headers = [f"{name}: {value}" for name in SHOWN_HEADERS if (value := header_text(parsed.message, name))]
    body = parsed.body_text.replace("\r\n", "\n")  # IMAP servers send CRLF line ends
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + f"\n… ({len(body) - MAX_BODY_CHARS} more characters not shown)"
    return "\n".join(headers) + "\n\n" + body


__all__ = ["OriginalLocation", "OriginalUnavailable", "fetch_original", "original_location", "original_text"]
