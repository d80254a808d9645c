"""Reading parts of a parsed message robustly: headers, ids, addresses, decoded text, HTML as text.

Pure helpers shared by the inbound reader and the classifiers. Real mail is often malformed (bad
charsets, broken headers, HTML-only bodies), so every function falls back instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import getaddresses

import lxml.html
from lxml import etree

_MSG_ID = re.compile(r"<[^<>\s]+>")


def message_ids(value: str) -> list[str]:
    """Every <id> in a Message-ID / In-Reply-To / References value, in order."""
    return _MSG_ID.findall(value or "")


def header_text(msg: Message, name: str) -> str:
    """A header as text: unfolded, RFC 2047 words decoded, undecodable bytes replaced; "" when absent.

    Read from the raw value rather than through policy.default's header objects: parsing every header
    into a structured object was three quarters of the classifier's time, and nothing here needs them.
    """
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return _readable(value)
    return ""


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _readable(value: object) -> str:
    if isinstance(value, Header):
        return str(value)
    text = _FOLD.sub("", str(value)).strip()
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # 8-bit header bytes, kept as surrogates by the parser
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" in text and _ENCODED_WORD.search(text):
        try:
            text = str(make_header(decode_header(text)))
        except (ValueError, LookupError, UnicodeError, HeaderParseError):
            return text
    return text


def content_type(part: Message) -> str:
    """The part's lowercased MIME type, read from the raw header (see header_text for why)."""
    value = header_text(part, "Content-Type")
    kind = value.split(";", 1)[0].strip().lower()
    return kind if kind.count("/") == 1 else part.get_default_type()


_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)


def charset_of(part: Message) -> str | None:
    match = _CHARSET.search(header_text(part, "Content-Type"))
    return match.group(1).lower() if match else None


def addresses_in(value: str) -> list[tuple[str, str]]:
    """(display name, lowercased address) pairs of an address header, keeping only real addresses."""
    try:
        pairs = getaddresses([value])
    except (ValueError, IndexError, TypeError):
        return []
    return [(name.strip(), addr.strip().lower()) for name, addr in pairs if "@" in addr]


def sender_address(msg: Message) -> str | None:
    """The From address, lowercased (prospects are keyed on the lowercased address); None when absent."""
    found = addresses_in(header_text(msg, "From"))
    return found[0][1] if found else None


def own_parts(msg: Message) -> Iterator[Message]:
    """The message and its parts, without descending into attached messages (someone else's mail)."""
    yield msg
    if msg.is_multipart() and content_type(msg) != "message/rfc822":
        payload = msg.get_payload()
        if isinstance(payload, list):
            for part in payload:
                if isinstance(part, Message):
                    yield from own_parts(part)


def decoded(part: Message) -> str:
    """A leaf part's text, decoded with its charset; undecodable bytes become U+FFFD, never an error."""
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, LookupError, TypeError, AssertionError):
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = charset_of(part) or "utf-8"
    if charset in ("us-ascii", "ascii", "unknown-8bit", "x-unknown", "8bit"):
        charset = "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def body_part(msg: Message, preference: tuple[str, ...] = ("plain", "html")) -> Message | None:
    """The message's own text part (not an attachment), the first subtype in `preference` order.

    The same choice as EmailMessage.get_body for the mail we meet, without its per-part header parsing.
    """
    found: dict[str, Message] = {}
    for part in own_parts(msg):
        if part.is_multipart():
            continue
        kind = content_type(part)
        if not kind.startswith("text/") or "attachment" in header_text(part, "Content-Disposition").lower():
            continue
        found.setdefault(kind.split("/", 1)[1], part)
    return next((found[p] for p in preference if p in found), None)


_BLOCK_TAGS = frozenset(
    {"br", "p", "div", "tr", "li", "blockquote", "hr", "table", "h1", "h2", "h3", "h4", "pre", "ul", "ol", "dt", "dd"}
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "xml"})


def html_to_text(html: str) -> str:
    """Visible text of an HTML document, block elements on their own lines; never raises."""
    return html_text_until(html, None)


def html_text_until(html: str, is_stop: Callable[[etree._Element], bool] | None) -> str:
    """Visible text of an HTML document up to (not including) the first element `is_stop` accepts.

    Quote containers (a Gmail quote, an Outlook header block) are found this way, so the reply can be
    cut where the client itself drew the line, before the text even exists.
    """
    if not html.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(html.encode("utf-8", errors="replace"))
    except (ValueError, TypeError, etree.ParserError):
        return re.sub(r"<[^>]+>", " ", html)
    out: list[str] = []
    _walk(root, out, is_stop or (lambda element: False))
    text = "".join(out).replace("\xa0", " ")
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r" *\n *", "\n", text).strip()


class _Stop(Exception):
    """Raised inside the walk when the stop element is reached."""


def _walk(root: etree._Element, out: list[str], is_stop: Callable[[etree._Element], bool]) -> None:
    try:
        _visit(root, out, is_stop)
    except _Stop:
        return


def _visit(element: etree._Element, out: list[str], is_stop: Callable[[etree._Element], bool]) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    tag = tag.lower().rsplit("}", 1)[-1].split(":")[-1]
    if tag in _SKIP_TAGS:
        out.append(_tail(element))
        return
    if tag and is_stop(element):
        raise _Stop
    block = tag in _BLOCK_TAGS
    if block:
        out.append("\n")
    if tag and element.text:
        out.append(re.sub(r"\s+", " ", element.text))
    for child in element:
        _visit(child, out, is_stop)
    if block:
        out.append("\n")
    out.append(_tail(element))


def _tail(element: etree._Element) -> str:
    return re.sub(r"\s+", " ", element.tail) if element.tail else ""
