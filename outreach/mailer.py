"""Building the MIME message for one touch: headers, threading, unsubscribe headers and footer. No sending here.

Every value bound for a header is checked for line breaks and control characters BEFORE anything is
built: this machine's Python 3.11.7 predates the CVE-2024-6923 fix, so the email package may fold a
newline in a header value into a new header instead of refusing it. Addresses are validated offline
with email-validator; non-ASCII display names and subjects are RFC 2047-encoded by the SMTP policy.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from outreach.errors import OutreachError

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
_REPLY_PREFIX = re.compile(r"^(?:\s*re\s*(?:\[\d+\])?\s*:)+\s*", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"^<[\x21-\x7e]+@[\x21-\x7e]+>$")
_ID_LEFT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")  # RFC 5322 dot-atom-text
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_LINE_BREAKS = frozenset("\x85\u2028\u2029")  # str.splitlines() breaks lines here too
_SHORT_LINE = 78
MAX_URI_LENGTH = 900  # each URI sits on its own header line, which must stay under 998 characters


class MessageError(OutreachError):
    """The message cannot be built as given (bad address, URL, Message-ID, date)."""


class HeaderInjectionError(MessageError):
    """A header value contains a line break or control character: it could forge extra headers."""


class UriListHeader(UnstructuredHeader):
    """List-Unsubscribe: folded only between its <URI>s and never RFC 2047-encoded.

    The stock folding encodes any word longer than a line as =?utf-8?q?…?=, which would turn a long
    signed unsubscribe URL into something no mail client recognizes.
    """

    def fold(self, *, policy: Policy) -> str:
        uris = re.split(r",\s*(?=<)", str(self))
        return f"{self.name}: " + ("," + policy.linesep + " ").join(uris) + policy.linesep


def _policy() -> Policy:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", UriListHeader)
    return SMTP.clone(header_factory=registry)


POLICY = _policy()  # policy.SMTP (CRLF, RFC 2047 for non-ASCII) with the List-Unsubscribe folding above


@dataclass(frozen=True)
class Attachment:
    """A file sent with the message (a demo's PDF); the caller has read it and checked its size."""

    filename: str
    content: bytes
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class OutgoingMessage:
    """Everything one touch's message needs; the caller renders the bodies and chooses the Message-ID."""

    from_address: str
    to_address: str
    subject: str
    text_body: str
    message_id: str
    date: datetime  # the send time, passed in (pure code reads no clock)
    from_name: str | None = None
    to_name: str | None = None
    html_body: str | None = None
    reply_to: str | None = None
    in_reply_to: str | None = None  # the previous touch's Message-ID, for thread: true follow-ups
    references: tuple[str, ...] = ()  # the previous touch's References; in_reply_to is appended
    list_unsubscribe_url: str | None = None  # signed https link; also the footer's unsubscribe link
    list_unsubscribe_mailto: str | None = None  # "mailto:unsub@…" or a bare address
    postal_address: str | None = None  # the sender's postal address, shown in the footer
    attachments: tuple[Attachment, ...] = ()  # after the text (and HTML) parts, in a multipart/mixed


_BAD_CHARACTER = re.compile("[\x00-\x08\x0a-\x1f\x7f" + "".join(sorted(_LINE_BREAKS)) + "]")  # controls but tab


def _bad_character(value: str) -> str | None:
    found = _BAD_CHARACTER.search(value)
    return found.group() if found else None


def check_header_value(field: str, value: str) -> str:
    """Reject CR, LF, NUL and every other line break or control character in a header-bound value."""
    if not isinstance(value, str):
        raise MessageError(f"{field} must be text, got {type(value).__name__}")
    bad = _bad_character(value)
    if bad is not None:
        raise HeaderInjectionError(f"{field} contains a line break or control character ({bad!r}); use one line")
    return value


def _header_values(spec: OutgoingMessage) -> list[tuple[str, str | None]]:
    return [
        ("from_address", spec.from_address),
        ("from_name", spec.from_name),
        ("to_address", spec.to_address),
        ("to_name", spec.to_name),
        ("subject", spec.subject),
        ("message_id", spec.message_id),
        ("reply_to", spec.reply_to),
        ("in_reply_to", spec.in_reply_to),
        ("list_unsubscribe_url", spec.list_unsubscribe_url),
        ("list_unsubscribe_mailto", spec.list_unsubscribe_mailto),
        *((f"references[{i}]", ref) for i, ref in enumerate(spec.references)),
    ]


def check_address(field: str, value: str) -> str:
    """A syntactically valid address (no DNS), returned in ASCII form (IDN domains as punycode)."""
    check_header_value(field, value)
    try:
        result = validate_email(value, check_deliverability=False, globally_deliverable=False, test_environment=True)
    except EmailNotValidError as exc:
        raise MessageError(f"{field} {value!r} is not a valid email address: {exc}") from None
    if result.ascii_email is None:
        raise MessageError(f"{field} {value!r} has a non-ASCII local part, which needs SMTPUTF8 (not supported)")
    return result.ascii_email


def check_message_id(field: str, value: str) -> str:
    check_header_value(field, value)
    if not _MESSAGE_ID.match(value):
        raise MessageError(f"{field} {value!r} is not a Message-ID; expected <unique@domain>")
    return value


def make_message_id(domain: str, unique: str) -> str:
    """'<unique@domain>' on the sender's domain; `unique` must already be unique (e.g. a random token)."""
    check_header_value("message id domain", domain)
    check_header_value("message id", unique)
    ascii_domain = _ascii_domain(domain)
    if not _ID_LEFT.match(unique) or unique.startswith(".") or unique.endswith(".") or ".." in unique:
        raise MessageError(f"{unique!r} cannot be the left part of a Message-ID; use letters, digits, . - _")
    return f"<{unique}@{ascii_domain}>"


def sender_domain(address: str) -> str:
    """The domain part of the sender's address, for Message-IDs."""
    return check_address("from_address", address).rsplit("@", 1)[1]


def _ascii_domain(domain: str) -> str:
    try:
        ascii_domain = domain.strip().encode("idna").decode("ascii")
    except UnicodeError:
        raise MessageError(f"{domain!r} is not a valid domain") from None
    if not _HOSTNAME.match(ascii_domain):
        raise MessageError(f"{domain!r} is not a valid domain")
    return ascii_domain


def reply_subject(subject: str) -> str:
    """'Re: ' + the subject without its own Re: prefixes, so it never reads 'Re: Re: …'."""
    return "Re: " + _REPLY_PREFIX.sub("", subject).strip()


def _check_url(field: str, url: str) -> str:
    check_header_value(field, url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s<>\"]", url):
        raise MessageError(f"{field} {url!r} is not an http(s) URL")
    if len(url) > MAX_URI_LENGTH:
        raise MessageError(f"{field} is {len(url)} characters long; the limit is {MAX_URI_LENGTH}")
    return url


def _mailto(field: str, value: str) -> str:
    check_header_value(field, value)
    target = value.removeprefix("mailto:")
    address, _, query = target.partition("?")
    ascii_address = check_address(field, address)
    uri = f"mailto:{ascii_address}" + (f"?{query}" if query else "")
    if re.search(r"[\s<>\"]", query) or len(uri) > MAX_URI_LENGTH:
        raise MessageError(f"{field} {value!r} is not a usable mailto: URI")
    return uri


def _cte(text: str) -> str:
    """7bit when the text is short-lined ASCII; quoted-printable otherwise (never raw 8bit on the wire)."""
    if text.isascii() and all(len(line) <= _SHORT_LINE for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def _unsubscribe_target(spec: OutgoingMessage) -> str | None:
    if spec.list_unsubscribe_url:
        return spec.list_unsubscribe_url
    if spec.list_unsubscribe_mailto:
        return spec.list_unsubscribe_mailto.removeprefix("mailto:")
    return None


def text_footer(spec: OutgoingMessage) -> str:
    lines = []
    if spec.postal_address:
        lines.append(spec.postal_address.strip())
    target = _unsubscribe_target(spec)
    if target:
        lines.append(f"Unsubscribe: {target}")
    return "\n\n" + "\n".join(lines) if lines else ""


def html_footer(spec: OutgoingMessage) -> str:
    parts = []
    if spec.postal_address:
        parts.append("<br>".join(html.escape(line) for line in spec.postal_address.strip().splitlines()))
    target = _unsubscribe_target(spec)
    if target:
        href = target if spec.list_unsubscribe_url else f"mailto:{target}"
        parts.append(f'<a href="{html.escape(href, quote=True)}">Unsubscribe</a>')
    if not parts:
        return ""
    return '<p style="font-size:12px;color:#777777">' + "<br>".join(parts) + "</p>"


def _with_html_footer(body: str, footer: str) -> str:
    """Put the footer inside <body> when there is one, else at the end."""
    if not footer:
        return body
    close = body.lower().rfind("</body>")
    return body + footer if close < 0 else body[:close] + footer + body[close:]


def _validate(spec: OutgoingMessage) -> None:
    for field, value in _header_values(spec):
        if value is not None:
            check_header_value(field, value)
    for field, body in (("text_body", spec.text_body), ("html_body", spec.html_body)):
        if body is not None and "\x00" in body:
            raise MessageError(f"{field} contains a NUL character")
    if spec.date.tzinfo is None or spec.date.utcoffset() is None:
        raise MessageError("the message date must be time-zone aware")
    if not spec.subject.strip():
        raise MessageError("the subject is empty")


def _set_threading(msg: EmailMessage, spec: OutgoingMessage) -> None:
    references = [check_message_id(f"references[{i}]", ref) for i, ref in enumerate(spec.references)]
    if spec.in_reply_to:
        parent = check_message_id("in_reply_to", spec.in_reply_to)
        msg["In-Reply-To"] = parent
        if parent not in references:
            references.append(parent)
    if references:
        msg["References"] = " ".join(references)


def _set_unsubscribe(msg: EmailMessage, spec: OutgoingMessage) -> None:
    uris = []
    if spec.list_unsubscribe_url:
        uris.append(_check_url("list_unsubscribe_url", spec.list_unsubscribe_url))
    if spec.list_unsubscribe_mailto:
        uris.append(_mailto("list_unsubscribe_mailto", spec.list_unsubscribe_mailto))
    if uris:
        msg["List-Unsubscribe"] = ", ".join(f"<{uri}>" for uri in uris)
    if spec.list_unsubscribe_url:
        msg["List-Unsubscribe-Post"] = ONE_CLICK


def build_message(spec: OutgoingMessage) -> EmailMessage:
    """The message ready for SMTP: text part always, HTML alternative when given, footer in both."""
    _validate(spec)
    msg = EmailMessage(policy=POLICY)
    msg["Message-ID"] = check_message_id("message_id", spec.message_id)
    msg["Date"] = spec.date
    msg["From"] = Address(display_name=spec.from_name or "", addr_spec=check_address("from_address", spec.from_address))
    msg["To"] = Address(display_name=spec.to_name or "", addr_spec=check_address("to_address", spec.to_address))
    if spec.reply_to:
        msg["Reply-To"] = Address(addr_spec=check_address("reply_to", spec.reply_to))
    msg["Subject"] = reply_subject(spec.subject) if spec.in_reply_to else spec.subject.strip()
    _set_threading(msg, spec)
    _set_unsubscribe(msg, spec)
    text = spec.text_body.rstrip() + text_footer(spec) + "\n"
    msg.set_content(text, cte=_cte(text))
    page = None
    if spec.html_body is not None:
        page = _with_html_footer(spec.html_body, html_footer(spec))
        msg.add_alternative(page, subtype="html", cte=_cte(page))
    for attachment in spec.attachments:
        _attach(msg, attachment)
    _set_boundaries(msg, spec.message_id, (text, page or ""))
    return msg


def _attach(msg: EmailMessage, attachment: Attachment) -> None:
    name = check_header_value("attachment filename", attachment.filename).strip()
    maintype, slash, subtype = attachment.content_type.partition("/")
    if not name or not slash or _bad_character(attachment.content_type):
        raise MessageError(f"attachment {attachment.filename!r} ({attachment.content_type}) cannot be attached")
    msg.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=name)


def _set_boundaries(msg: EmailMessage, message_id: str, bodies: tuple[str, ...]) -> None:
    """MIME boundaries derived from the Message-ID, so one touch always has the same bytes.

    The email package draws a random boundary when it writes a multipart message, which would make the
    preview differ from what is sent.
    """
    for index, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(boundary_for(message_id, index, bodies))


def boundary_for(message_id: str, index: int, bodies: tuple[str, ...]) -> str:
    """The boundary of the message's `index`-th multipart part (outreach.mailbytes writes the same).

    A boundary must not occur in the content: it starts with "=_", which quoted-printable (it writes "="
    as "=3D") and base64 can never produce, so only a 7bit body could contain it — then the next salt is taken.
    """
    salt = 0
    while True:
        digest = hashlib.sha256(f"{message_id}:{index}:{salt}".encode()).hexdigest()[:32]
        boundary = f"=_outreach_{digest}"
        if not any(boundary in body for body in bodies):
            return boundary
        salt += 1
