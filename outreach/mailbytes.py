"""A touch's wire bytes without the email package: byte for byte what `build_message(spec).as_bytes()` gives.

The email package parses every header value into a structured object and folds it again (~1 ms per
message, most of the send path's CPU after the database). A usual touch needs none of that: its header
values are ASCII, short, free of anything that would be quoted or RFC 2047-encoded, and were already
checked for line breaks and control characters. For such a touch the headers and bodies are written
here directly; anything else (a non-ASCII or quoted display name or subject, a line that would fold,
attachments) is built by `build_message`, so the output is the same either way (tests compare both).
Validation is the same calls in the same order, so a bad touch fails with the same error.
"""

from __future__ import annotations

import re
from email import quoprimime
from email.utils import format_datetime
from functools import lru_cache

from outreach.mailer import (
    ONE_CLICK,
    OutgoingMessage,
    _check_url,
    _cte,
    _mailto,
    _validate,
    _with_html_footer,
    boundary_for,
    build_message,
    check_address,
    check_message_id,
    html_footer,
    reply_subject,
    text_footer,
)

MAX_LINE = 78  # policy.SMTP's max_line_length: a longer header line would be folded
_PLAIN_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")  # atoms
_PLAIN_TEXT = re.compile(r"^[\x21-\x7e]+(?: [\x21-\x7e]+)*$")  # printable ASCII words, single spaces


def message_bytes(spec: OutgoingMessage) -> bytes:
    """The message as it goes on the wire (CRLF line ends), validated as build_message validates it."""
    fast = _plain_bytes(spec)
    return fast if fast is not None else build_message(spec).as_bytes()


@lru_cache(maxsize=4096)
def _address(field: str, value: str) -> str:
    """check_address, remembered: a mailbox's From and Reply-To are checked once, not once per message."""
    return check_address(field, value)


_unsubscribe_mailto = lru_cache(maxsize=1024)(_mailto)  # a mailbox's own address: checked once, not per message


def _name_ok(name: str | None) -> bool:
    return not name or (_PLAIN_PHRASE.match(name) is not None and "=?" not in name)


def _mailbox(name: str | None, address: str) -> str:
    return f"{name} <{address}>" if name else address


def _plain_bytes(spec: OutgoingMessage) -> bytes | None:
    """The bytes, or None when the email package is needed to write this message the same way."""
    _validate(spec)
    message_id = check_message_id("message_id", spec.message_id)
    sender = _address("from_address", spec.from_address)
    to = _address("to_address", spec.to_address)
    reply_to = _address("reply_to", spec.reply_to) if spec.reply_to else None
    references = [check_message_id(f"references[{i}]", ref) for i, ref in enumerate(spec.references)]
    parent = check_message_id("in_reply_to", spec.in_reply_to) if spec.in_reply_to else None
    if parent and parent not in references:
        references.append(parent)
    uris = []
    if spec.list_unsubscribe_url:
        uris.append(_check_url("list_unsubscribe_url", spec.list_unsubscribe_url))
    if spec.list_unsubscribe_mailto:
        uris.append(_unsubscribe_mailto("list_unsubscribe_mailto", spec.list_unsubscribe_mailto))
    subject = reply_subject(spec.subject) if spec.in_reply_to else spec.subject.strip()
    if spec.attachments or not (_name_ok(spec.from_name) and _name_ok(spec.to_name)):
        return None
    if not _PLAIN_TEXT.match(subject) or "=?" in subject or any("=?" in uri for uri in uris):
        return None
    headers = [
        f"Message-ID: {message_id}",
        f"Date: {format_datetime(spec.date)}",
        f"From: {_mailbox(spec.from_name, sender)}",
        f"To: {_mailbox(spec.to_name, to)}",
    ]
    if reply_to:
        headers.append(f"Reply-To: {reply_to}")
    headers.append(f"Subject: {subject}")
    if parent:
        headers.append(f"In-Reply-To: {parent}")
    if references:
        headers.append(f"References: {' '.join(references)}")
    if any(len(line) > MAX_LINE for line in headers):
        return None
    if uris:  # folded between its URIs, never encoded (mailer.UriListHeader)
        headers.append("List-Unsubscribe: " + ",\r\n ".join(f"<{uri}>" for uri in uris))
    if spec.list_unsubscribe_url:
        headers.append(f"List-Unsubscribe-Post: {ONE_CLICK}")
    text = spec.text_body.rstrip() + text_footer(spec) + "\n"
    text_part = _text_part("plain", text)
    if spec.html_body is None:
        return _join([*headers, *text_part[0], "MIME-Version: 1.0"], text_part[1])
    page = _with_html_footer(spec.html_body, html_footer(spec))
    html_part = _text_part("html", page)
    boundary = boundary_for(message_id, 0, (text, page))
    outer = [*headers, "MIME-Version: 1.0", f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"']
    body = (
        f"--{boundary}\r\n".encode()
        + _join(text_part[0], text_part[1])
        + f"\r\n--{boundary}\r\n".encode()
        + _join([*html_part[0], "MIME-Version: 1.0"], html_part[1])
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return _join(outer, body)


def _text_part(subtype: str, text: str) -> tuple[list[str], bytes]:
    """A text part's headers and body, encoded as the email package's set_content(cte=_cte(text)) encodes it."""
    cte = _cte(text)
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if cte == "quoted-printable":
        body = quoprimime.body_encode(body.decode("latin-1"), MAX_LINE).encode("ascii")
    headers = [f'Content-Type: text/{subtype}; charset="utf-8"', f"Content-Transfer-Encoding: {cte}"]
    return headers, body.replace(b"\n", b"\r\n")


def _join(headers: list[str], body: bytes) -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body
