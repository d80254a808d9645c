"""Inbound mail: reading sources (.eml, mbox, maildir) and the facts of one message.

Everything below `iter_messages` is pure: a parsed message in, plain data out. Classification lives in
`outreach.classify` (bounces in `outreach.bounces`); the names re-exported here keep older imports working.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from outreach.bounces import (
    BounceReport,
    delivery_status_blocks,
    is_system_sender,
    original_message_ids,
    parse_bounce,
)
from outreach.classify import classify_kind, is_auto_reply
from outreach.errors import OutreachError
from outreach.mailparts import body_part, content_type, decoded, header_text, html_to_text, message_ids, sender_address

__all__ = [
    "BounceReport",
    "InboundMessage",
    "classify_kind",
    "delivery_status_blocks",
    "header_text",
    "is_auto_reply",
    "is_system_sender",
    "iter_messages",
    "message_date",
    "message_ids",
    "original_message_ids",
    "parse_bounce",
    "parse_message",
    "sender_address",
    "synthetic_message_id",
    "text_body",
]

# --- sources --------------------------------------------------------------------------------------


def iter_messages(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(source label, raw bytes) for every message in an .eml file, an mbox file or a maildir.

    The path is checked before the first message is read, so a bad path fails at the call, not half-way.
    """
    source = Path(path)
    if not source.exists():
        raise OutreachError(f"{source}: no such file or directory")
    if source.is_dir():
        if not any((source / sub).is_dir() for sub in ("cur", "new")):
            raise OutreachError(f"{source}: a directory but not a maildir (it has no cur/ or new/ folder)")
        return _maildir(source)
    try:
        with source.open("rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        raise OutreachError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise OutreachError(f"{source}: the file is empty")
    # An mbox starts with its "From " envelope line; a single message starts with a header.
    return _mbox(source) if head == b"From " else _single(source)


def _single(source: Path) -> Iterator[tuple[str, bytes]]:
    yield str(source), source.read_bytes()


def _mbox(source: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.mbox(source, create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield f"{source}#{number}", box.get_bytes(key)
    finally:
        box.close()


def _maildir(source: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.Maildir(source, factory=None, create=False)
    for key in sorted(box.iterkeys(), key=_arrival):
        yield f"{source}:{key}", box.get_bytes(key)


_MAILDIR_NAME = re.compile(r"^(\d+)\.(?:[^.]*?M(\d+))?(?:[^.]*?Q(\d+))?")


def _arrival(key: str) -> tuple[int, int, int, str]:
    """Maildir names start with the delivery second, then (usually) M<microseconds> and a counter."""
    match = _MAILDIR_NAME.match(key)
    if match is None:
        return (0, 0, 0, key)
    seconds, micros, counter = (int(g) if g else 0 for g in match.groups())
    return (seconds, micros, counter, key)


# --- one message ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundMessage:
    """The facts of one inbound message that matching and the database need."""

    message_id: str
    from_address: str | None
    subject: str
    sent_at: datetime | None  # the Date header, when it parses
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    body_text: str
    message: EmailMessage


def parse_message(raw: bytes) -> InboundMessage:
    """Parse; a message without a Message-ID gets a stable synthetic one.

    The compat32 policy keeps header values as the raw strings our readers (outreach.mailparts) decode
    themselves: policy.default parses every header into an object on each access, which cost three
    quarters of the classification time. Bodies and parts parse the same under both policies.
    """
    msg = BytesParser(_class=EmailMessage, policy=policy.compat32).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    ids = message_ids(header_text(msg, "Message-ID"))
    return InboundMessage(
        message_id=ids[0] if ids else synthetic_message_id(raw),
        from_address=sender_address(msg),
        subject=" ".join(header_text(msg, "Subject").split()),
        sent_at=message_date(msg),
        in_reply_to=tuple(message_ids(header_text(msg, "In-Reply-To"))),
        references=tuple(message_ids(header_text(msg, "References"))),
        body_text=text_body(msg),
        message=msg,
    )


def synthetic_message_id(raw: bytes) -> str:
    """The same bytes always get the same id, so re-ingesting a message without one is still a duplicate."""
    return f"<{hashlib.sha256(raw).hexdigest()}@outreach.invalid>"


def message_date(msg: Message) -> datetime | None:
    value = header_text(msg, "Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def text_body(msg: EmailMessage) -> str:
    """The message's own text: the plain part, else the HTML part with its tags removed."""
    part = body_part(msg)
    if part is None:
        return ""
    text = decoded(part)
    return html_to_text(text) if content_type(part) == "text/html" else text
