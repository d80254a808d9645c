"""The local capture SMTP server: accepts every message and keeps it on disk, so nothing reaches a person.

`outreach up` starts it while no real mailbox is configured. Storage format, one file per message:

- `<capture_dir>/<UTC timestamp>-<uuid hex>.eml`, e.g. `20260302T090000.123456Z-3f2a….eml`; the name
  sorts by arrival time and carries the arrival time.
- The file is the message exactly as received (CRLF line endings), preceded by envelope headers in the
  way a mail server records delivery: `X-Capture-Mail-From: <sender>` and one `X-Capture-Rcpt-To:
  <recipient>` per envelope recipient (Bcc recipients included). Non-ASCII addresses are RFC 2047 encoded.
- Written to a hidden temporary file in the same directory and renamed into place (os.replace), so a
  reader never sees half a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from outreach.errors import OutreachError
from outreach.netutil import port_error

log = logging.getLogger("outreach.capture")

MAIL_FROM_HEADER = "X-Capture-Mail-From"
RCPT_TO_HEADER = "X-Capture-Rcpt-To"
SERVER_NAME = "outreach-capture"
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_NAME_RE = re.compile(r"(?P<stamp>\d{8}T\d{6}\.\d{6}Z)-[0-9a-f]{32}\.eml")


@dataclass(frozen=True)
class CapturedMessage:
    """One captured message as the dashboard lists it (headers only; read_captured gives the body)."""

    name: str
    path: Path
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    subject: str
    to: str
    message_id: str


# --- writing -------------------------------------------------------------------------------------


def _header_line(name: str, value: str, linesep: bytes) -> bytes:
    value = " ".join(value.split())  # no CR/LF from the envelope can forge extra headers
    encoded = value if value.isascii() else Header(value, "utf-8").encode(linesep=linesep.decode("ascii"))
    return f"{name}: {encoded}".encode("ascii") + linesep


def captured_bytes(mail_from: str, rcpt_tos: list[str], content: bytes) -> bytes:
    """The stored file: envelope headers, then the message as received."""
    linesep = b"\r\n" if b"\r\n" in content[:4096] or not content else b"\n"
    header = _header_line(MAIL_FROM_HEADER, mail_from or "<>", linesep)
    header += b"".join(_header_line(RCPT_TO_HEADER, rcpt, linesep) for rcpt in rcpt_tos)
    return header + content


def message_name(received_at: datetime) -> str:
    return f"{received_at.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)}-{uuid.uuid4().hex}.eml"


def store_message(capture_dir: Path, data: bytes, received_at: datetime) -> Path:
    """Write atomically: a hidden temp file, flushed to disk, then renamed to its final name."""
    capture_dir.mkdir(parents=True, exist_ok=True)
    final = capture_dir / message_name(received_at)
    temp = capture_dir / f".{final.name}.tmp"
    try:
        with temp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        temp.replace(final)  # os.replace: atomic within one directory
    finally:
        temp.unlink(missing_ok=True)
    return final


class CaptureHandler:
    """aiosmtpd handler: every message is accepted and stored; a disk error is a transient 451."""

    def __init__(self, capture_dir: Path) -> None:
        self.capture_dir = capture_dir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        data = captured_bytes(envelope.mail_from or "", list(envelope.rcpt_tos), content)
        try:
            path = await asyncio.to_thread(store_message, self.capture_dir, data, datetime.now(UTC))
        except OSError as exc:
            log.error("could not store a message from %s: %s", envelope.mail_from, exc)
            return "451 4.3.0 Could not store the message, try again later"
        log.info("captured %s from %s to %s", path.name, envelope.mail_from, ", ".join(envelope.rcpt_tos))
        return "250 2.0.0 Message captured"


def smtp_factory(capture_dir: Path) -> SMTP:
    """One SMTP protocol instance per connection; the server name is fixed so no DNS lookup happens."""
    return SMTP(
        CaptureHandler(capture_dir),
        hostname=SERVER_NAME,
        ident="Outreach capture SMTP (nothing is delivered)",
        enable_SMTPUTF8=True,
        data_size_limit=MAX_MESSAGE_BYTES,
    )


# --- serving -------------------------------------------------------------------------------------


async def _serve(capture_dir: Path, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        server = await loop.create_server(lambda: smtp_factory(capture_dir), host=host, port=port)
    except OSError as exc:
        raise port_error(host, port, "capture SMTP", "--port", exc) from None
    log.info("capture SMTP listening on %s:%d, storing mail in %s", host, port, capture_dir)
    await stop.wait()
    server.close()
    # Open client connections must not keep the process alive: the listening socket is already closed.
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=1)
    except TimeoutError:
        log.info("closing the capture SMTP with client connections still open")
    log.info("capture SMTP stopped")


def serve_capture(capture_dir: Path, host: str, port: int) -> None:
    """Run the capture SMTP server until SIGTERM or SIGINT, then close the port and return."""
    capture_dir.mkdir(parents=True, exist_ok=True)
    # aiosmtpd logs every SMTP command at INFO; our one "captured …" line per message is what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(_serve(capture_dir, host, port))


# --- reading -------------------------------------------------------------------------------------


def _received_at(name: str) -> datetime | None:
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    return datetime.strptime(match["stamp"], _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def _text(headers: Any, name: str) -> str:
    value = headers.get(name)
    return "" if value is None else str(value).strip()  # a folded header keeps its leading space


def _summary(path: Path, received_at: datetime) -> CapturedMessage | None:
    """The listing entry, or None when the file is not one we stored (no envelope header)."""
    with path.open("rb") as fh:
        headers = BytesHeaderParser(policy=policy.default).parse(fh)
    mail_from = headers.get(MAIL_FROM_HEADER)
    if mail_from is None:
        return None
    return CapturedMessage(
        name=path.name,
        path=path,
        received_at=received_at,
        mail_from=str(mail_from).strip(),
        rcpt_to=[str(r).strip() for r in headers.get_all(RCPT_TO_HEADER, [])],
        subject=_text(headers, "Subject"),
        to=_text(headers, "To"),
        message_id=_text(headers, "Message-ID"),
    )


def list_captured(capture_dir: Path, limit: int = 100) -> list[CapturedMessage]:
    """The newest `limit` captured messages, newest first. Files that are not captured messages are skipped."""
    try:
        names = sorted((entry.name for entry in os.scandir(capture_dir) if entry.is_file()), reverse=True)
    except FileNotFoundError:
        return []
    found: list[CapturedMessage] = []
    for name in names:
        if len(found) >= limit:
            break
        received_at = _received_at(name)
        if received_at is None:
            continue
        try:
            summary = _summary(capture_dir / name, received_at)
        except Exception as exc:  # a damaged file must not hide the others
            log.warning("skipping unreadable captured message %s: %s", name, exc)
            continue
        if summary is None:
            log.warning("skipping %s: not a captured message (no %s header)", name, MAIL_FROM_HEADER)
            continue
        found.append(summary)
    return found


def read_captured(capture_dir: Path, name: str) -> EmailMessage:
    """The full captured message `name`; only plain file names inside `capture_dir` are accepted."""
    if _NAME_RE.fullmatch(name) is None:
        raise OutreachError(f"'{name}' is not the name of a captured message")
    path = capture_dir / name
    try:
        with path.open("rb") as fh:
            # policy.default builds EmailMessage objects (get_body, iter_attachments, decoded headers).
            return cast(EmailMessage, BytesParser(policy=policy.default).parse(fh))
    except FileNotFoundError:
        raise OutreachError(f"captured message '{name}' does not exist (it may have been deleted)") from None
    except OSError as exc:
        raise OutreachError(f"captured message '{name}' could not be read: {exc.strerror or exc}") from None
