"""Inbound mail: reading sources (.eml, mbox, maildir) and the baseline reading of one message.

Everything below `iter_messages` is pure: a parsed message in, plain data out. `classify_kind` is the
baseline classifier (DSN → bounce, RFC 3834 headers or out-of-office subjects → auto_reply, else reply);
it is one small function so a fuller classifier can replace it without touching the ingest service.
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
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import lxml.html

from db.enums import ResponseKind
from outreach.errors import OutreachError

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

_MSG_ID = re.compile(r"<[^<>\s]+>")
# An enhanced status code (RFC 3463) standing alone: not part of an IP address or a version number.
_STATUS = re.compile(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
_FAILURE_STATUS = re.compile(r"(?<![\w.])([45])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
_BODY_MESSAGE_ID = re.compile(r"(?im)^[ \t]*Message-ID:[ \t]*(<[^<>\s]+>)")
_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_QMAIL_RECIPIENT = re.compile(r"(?m)^<([^<>\s@]+@[^<>\s@]+)>:")


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
    """Parse with the modern email policy; a message without a Message-ID gets a stable synthetic one."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
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


def message_ids(value: str) -> list[str]:
    """Every <id> in a Message-ID / In-Reply-To / References value, in order."""
    return _MSG_ID.findall(value or "")


def header_text(msg: Message, name: str) -> str:
    """A header as text; a header the parser cannot make sense of falls back to its raw value."""
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    return "" if value is None else str(value)


def sender_address(msg: Message) -> str | None:
    """The From address, lowercased (prospects are keyed on the lowercased address); None when absent."""
    addresses = [addr for _, addr in getaddresses([header_text(msg, "From")]) if "@" in addr]
    return addresses[0].strip().lower() if addresses else None


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
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _decoded(part)
    return _html_to_text(text) if part.get_content_subtype() == "html" else text


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload or "")
    return content if isinstance(content, str) else content.decode("utf-8", errors="replace")


def _html_to_text(html: str) -> str:
    try:
        return lxml.html.fromstring(html).text_content()
    except (ValueError, TypeError):
        return re.sub(r"<[^>]+>", " ", html)


# --- bounces (RFC 3464 delivery status notifications and their non-standard cousins) ------------


@dataclass(frozen=True)
class BounceReport:
    """What a bounce says about the failed delivery."""

    recipient: str | None  # the Final-Recipient (or the best address a non-standard bounce names)
    status: str | None  # the enhanced status code, e.g. "5.1.1"
    permanent: bool
    action: str | None = None  # failed or delayed (DSNs only)
    diagnostic: str | None = None
    original_message_ids: tuple[str, ...] = ()
    original_recipient: str | None = None  # the address as first written, before forwarding or aliasing


_SYSTEM_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "mdaemon", "mail-daemon", "mailerdaemon"})
_SYSTEM_NAMES = re.compile(r"mail delivery (sub)?system|mailer.daemon|postmaster|system administrator", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|problem|has failed|report)|"
    r"delivery notification|returned mail|return(ed|ing) (mail|message) to sender|mail delivery failed|"
    r"failure (notice|delivery)|failed mail|mail failure|mail failed|returning to sender|could not be delivered|"
    r"non.?delivery|not delivered|"
    r"delayed|warning: message|mail delivery warning|nicht zugestellt|unzustellbar|non remis|no entregado",
    re.I,
)
# A bounce subject at the very start (never a "Re:") is a bounce whoever sent it: gateways and virus
# scanners use their own sender names.
_STRONG_BOUNCE_SUBJECT = re.compile(
    r"^(undeliverable|undelivered mail|delivery status notification|mail delivery failed|returned mail|"
    r"failure notice|delivery failure|mail could not be delivered|non.?delivery|delivery notification|"
    r"delivery report|failed mail)",
    re.I,
)
_SUCCESS_SUBJECT = re.compile(r"\((success|relay|relayed|delivered|expanded)\)", re.I)
_BOUNCE_BODY = re.compile(
    r"(could not be delivered|couldn't be delivered|undeliverable|delivery (to the following recipients? )?"
    r"(has )?failed|permanent(ly)? (error|fatal)|user unknown|unknown user|no such user|"
    r"not a valid (user|mailbox|recipient)|mailbox (unavailable|not found|full)|"
    r"i'm afraid i wasn't able to deliver|returned to sender|(has been|was) returned|returned mail follows|"
    r"无法送达|无法发送|не доставлено|nicht zugestellt|unzustellbar)",
    re.I,
)
_DELAY_WORDS = re.compile(r"delay|not yet been delivered|still being retried|will (continue|retry)", re.I)
_SMTP_CODE = re.compile(r"(?<![\w.])([245])\d\d(?![\w.])")
_FAILED_ACTIONS = frozenset({"failed", "delayed"})
# Challenge-response filters answer with a DSN-shaped "please confirm you are human": not a dead address.
_CHALLENGE = re.compile(r"pre-?approved|requires confirmation|confirm (this|your) (mail|sender|server|address)", re.I)


def is_system_sender(msg: Message) -> bool:
    """MAILER-DAEMON, postmaster and friends, or the empty sender bounces are sent from."""
    value = header_text(msg, "From").strip()
    if value in ("", "<>") or value.endswith("<>"):
        return True
    address = sender_address(msg)
    if address and address.split("@", 1)[0].strip('"') in _SYSTEM_LOCAL_PARTS:
        return True
    return bool(_SYSTEM_NAMES.search(value))


def delivery_status_blocks(msg: Message) -> list[Message] | None:
    """The field blocks of the message/delivery-status part, or None when the message carries none.

    Only the top level and its direct multiparts are searched: a DSN quoted inside a returned
    message/rfc822 is someone else's report.
    """
    for part in _own_parts(msg):
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                return [block for block in payload if isinstance(block, Message)]
            return [HeaderParser(policy=policy.default).parsestr(str(payload))]
    return None


def _own_parts(msg: Message) -> Iterator[Message]:
    yield msg
    if msg.is_multipart() and msg.get_content_type() != "message/rfc822":
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from _own_parts(part)


def _field(block: Message, name: str) -> str | None:
    value = header_text(block, name).strip()
    return value or None


def _typed_address(value: str | None) -> str | None:
    """'rfc822; Dana@X.example' → 'dana@x.example'."""
    if not value:
        return None
    address = value.split(";", 1)[-1].strip().strip("<>").strip()
    return address.lower() if "@" in address else None


def _status_code(text: str | None, pattern: re.Pattern[str] = _STATUS) -> str | None:
    match = pattern.search(text or "")
    return ".".join(match.groups()) if match else None


def parse_bounce(msg: EmailMessage) -> BounceReport | None:
    """The report of a bounce, or None when the message is not one (see `classify_kind`)."""
    recipients = [
        b
        for b in delivery_status_blocks(msg) or []
        if _field(b, "Final-Recipient") or _field(b, "Action") or _field(b, "Status")
    ]
    if recipients:
        return _dsn_report(msg, recipients)
    if not _looks_like_bounce(msg):
        return None
    return _heuristic_report(msg)


def _dsn_report(msg: EmailMessage, recipients: list[Message]) -> BounceReport | None:
    """None for a success notice (delivered / relayed / expanded) and for challenge-response robots."""
    failing = [b for b in recipients if _action(b) in _FAILED_ACTIONS]
    if not failing:
        return None
    diagnostics = " ".join(_field(b, "Diagnostic-Code") or "" for b in recipients)
    if _CHALLENGE.search(diagnostics):
        return None
    # The worst recipient speaks for the message: a permanent failure outranks a delay.
    block = next((b for b in failing if _action(b) == "failed"), failing[0])
    action = _action(block)
    diagnostic = _field(block, "Diagnostic-Code")
    status = _status_code(_field(block, "Status")) or _status_code(diagnostic)
    original = _typed_address(_field(block, "Original-Recipient"))
    recipient = _typed_address(_field(block, "Final-Recipient")) or original
    if status:
        permanent = status.startswith("5")
    else:
        smtp = _SMTP_CODE.search(f"{_field(block, 'Status') or ''} {diagnostic or ''}")
        permanent = smtp.group(1) == "5" if smtp else action == "failed"
    return BounceReport(
        recipient=recipient or _original_recipient(msg),
        status=status,
        permanent=permanent,
        action=action,
        diagnostic=" ".join(diagnostic.split()) if diagnostic else None,
        original_message_ids=original_message_ids(msg),
        original_recipient=original,
    )


def _action(block: Message) -> str:
    """The DSN Action, tolerating what real servers write ("failure", "failed (Bad address)")."""
    value = (_field(block, "Action") or "").lower()
    if not value:
        return "failed" if (_status_code(_field(block, "Status")) or "").startswith(("4", "5")) else ""
    if value.startswith("fail"):
        return "failed"
    if value.startswith("delay"):
        return "delayed"
    return value.split()[0]


def _looks_like_bounce(msg: EmailMessage) -> bool:
    subject = " ".join(header_text(msg, "Subject").split())
    if _SUCCESS_SUBJECT.search(subject):
        return False
    if _STRONG_BOUNCE_SUBJECT.match(subject):
        return True
    subject_says = bool(_BOUNCE_SUBJECT.search(subject))
    if is_system_sender(msg) and subject_says:
        return True
    # Otherwise the text must say so too: from a mail system, or under a failure subject from a gateway.
    return (subject_says or is_system_sender(msg)) and bool(_BOUNCE_BODY.search(_all_text(msg)[:20_000]))


def _heuristic_report(msg: EmailMessage) -> BounceReport:
    """A bounce without a machine-readable report: status and recipient read from the text."""
    text = _all_text(msg)
    status = _status_code(text, _FAILURE_STATUS)
    failed = header_text(msg, "X-Failed-Recipients")
    recipient = _typed_address(failed.split(",")[0]) if failed else None
    if recipient is None:
        match = _QMAIL_RECIPIENT.search(text)
        recipient = match.group(1).lower() if match else _original_recipient(msg) or _first_address(text, msg)
    if status:
        permanent = status.startswith("5")
    else:
        # An unknown failure counts as permanent (a "soft" default keeps mailing dead addresses),
        # unless the notice itself says the server is still trying.
        permanent = not _DELAY_WORDS.search(header_text(msg, "Subject") + "\n" + text[:3000])
    return BounceReport(recipient, status, permanent, None, None, original_message_ids(msg))


def _first_address(text: str, msg: EmailMessage) -> str | None:
    """The first address the notice names that is not the notice's own sender or a mail system."""
    sender = sender_address(msg)
    for candidate in _ADDRESS.findall(text[:4000]):
        address = candidate.lower()
        if address != sender and address.split("@", 1)[0] not in _SYSTEM_LOCAL_PARTS:
            return address
    return None


def _all_text(msg: EmailMessage) -> str:
    """Every text part of the notice itself (not of the returned message), joined."""
    texts = [_decoded(p) for p in _own_parts(msg) if p.get_content_maintype() == "text" and not p.is_multipart()]
    return "\n".join(texts)


def original_message_ids(msg: EmailMessage) -> tuple[str, ...]:
    """The Message-ID of the message that bounced: from the returned message, its headers, or the text."""
    found: list[str] = []
    for part in _own_parts(msg):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(original, Message):
                found += message_ids(header_text(original, "Message-ID"))
        elif kind == "text/rfc822-headers":
            headers = HeaderParser(policy=policy.default).parsestr(_decoded(part))
            found += message_ids(header_text(headers, "Message-ID"))
    if not found:
        found = _BODY_MESSAGE_ID.findall(_all_text(msg))
    own = set(message_ids(header_text(msg, "Message-ID")))
    return tuple(dict.fromkeys(i for i in found if i not in own))


def _original_recipient(msg: EmailMessage) -> str | None:
    """The To of the returned message: the address we wrote to."""
    for part in _own_parts(msg):
        if part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            addresses = [a for _, a in getaddresses([header_text(inner[0], "To")]) if "@" in a]
            if addresses:
                return addresses[0].lower()
    return None


# --- auto-replies (RFC 3834 and what real autoresponders send) -----------------------------------

_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
_AUTO_SUBJECT = re.compile(
    r"out of (the )?office|automatic reply|auto.?reply|automatic response|autoresponse|auto.?respons|"
    r"abwesenheitsnotiz|abwesend|réponse automatique|reponse automatique|absence du bureau|"
    r"fuera de la oficina|respuesta automática|risposta automatica|automatyczna odpowied|"
    r"afwezigheidsbericht|^auto:",
    re.I,
)


def is_auto_reply(msg: EmailMessage) -> bool:
    """RFC 3834 headers, the de-facto X-Autoreply / X-Autorespond / Precedence ones, or an away subject."""
    auto_submitted = header_text(msg, "Auto-Submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return True
    if header_text(msg, "X-Autoreply") or header_text(msg, "X-Autorespond"):
        return True
    if header_text(msg, "Precedence").strip().lower() in _AUTO_PRECEDENCE:
        return True
    return bool(_AUTO_SUBJECT.search(" ".join(header_text(msg, "Subject").split())))


def classify_kind(msg: EmailMessage) -> ResponseKind:
    """bounce, auto_reply or reply. Bounces are checked first: real bounces can carry Auto-Submitted."""
    if parse_bounce(msg) is not None:
        return ResponseKind.BOUNCE
    if is_auto_reply(msg) or is_system_sender(msg) or delivery_status_blocks(msg) is not None:
        return ResponseKind.AUTO_REPLY  # success notices are machine mail too: they must not stop a sequence
    return ResponseKind.REPLY
