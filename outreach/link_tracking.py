"""Click and open tracking for one touch's bodies — pure: text in, text out, no clock, no database.

Click tracking replaces every http(s) link with `{base}/c/{token}`; the token carries the touch id and
the link's position in the returned `links` list, and the redirect answers only with that stored URL —
so a tracked link can never be turned into an open redirect. The unsubscribe link, mailto:, tel:,
anchors and anything not http(s) are left exactly as written. HTML is read with the standard library's
HTML parser; only the `href` of `<a>`/`<area>` tags is rewritten, in place, so the rest of the markup is
byte-for-byte the author's. Open tracking adds a 1×1 pixel to the HTML part; a text-only touch gets a
minimal HTML alternative made from its text (escaped) so the pixel has somewhere to live.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

from outreach.tokens import LinkToken, Purpose, sign

MAX_TRACKED_LINKS = 1000  # far above any real email; links past it are left untracked, never dropped
_URL_IN_TEXT = re.compile(r"""https?://[^\s<>"'`]+""", re.IGNORECASE)
_TRAILING = ".,;:!?'\"*_"
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}
_LINK_TAGS = frozenset({"a", "area"})


@dataclass(frozen=True)
class TrackedBodies:
    """What to send, and the URLs a click on this touch may lead to (store them in CommunicationLog.links)."""

    text: str
    html: str | None
    links: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrackingOptions:
    base_url: str  # the tracking service's public URL (Settings.base_url), without a trailing slash
    key: str  # the current signing key (Settings.secret_key())
    opens: bool
    clicks: bool
    unsubscribe_url: str | None = None  # never rewritten, wherever it appears


def track_touch(touch_id: int, text: str, html_body: str | None, options: TrackingOptions) -> TrackedBodies:
    """The bodies to send for one touch, with links rewritten and the pixel added as the campaign asks.

    Both off: the bodies come back unchanged and no HTML part is invented (plain text stays plain text).
    Opens on and no HTML: an HTML alternative is made from the text first, so the pixel can be added.
    The same URL in the text and the HTML part gets one index, so either click leads to the same place.
    """
    if not options.opens and not options.clicks:
        return TrackedBodies(text, html_body, [])
    if options.opens and html_body is None:
        html_body = text_to_html(text)
    links = _LinkTable(touch_id, options)
    if options.clicks:
        if html_body is not None:
            html_body = _rewrite_html(html_body, links)
        text = _rewrite_text(text, links)
    if options.opens and html_body is not None:
        html_body = add_pixel(html_body, pixel_url(touch_id, options))
    return TrackedBodies(text, html_body, links.urls)


def pixel_url(touch_id: int, options: TrackingOptions) -> str:
    return f"{options.base_url.rstrip('/')}/o/{sign(LinkToken(Purpose.OPEN, touch_id), options.key)}"


def add_pixel(page: str, src: str) -> str:
    """The 1×1 transparent image, inside <body> when there is one (mail clients drop what follows </html>)."""
    tag = (
        f'<img src="{html.escape(src, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />'
    )
    lower = page.lower()
    close = lower.rfind("</body>")
    if close < 0:
        close = lower.rfind("</html>")
    return page + tag if close < 0 else page[:close] + tag + page[close:]


def text_to_html(text: str) -> str:
    """A minimal HTML alternative for a text-only touch: escaped, line breaks kept, bare URLs made links."""
    out: list[str] = []
    position = 0
    for start, end, url in _text_urls(text):
        out.append(html.escape(text[position:start], quote=False))
        escaped = html.escape(url, quote=True)
        out.append(f'<a href="{escaped}">{escaped}</a>')
        position = end
    out.append(html.escape(text[position:], quote=False))
    body = "".join(out).replace("\r\n", "\n").replace("\n", "<br>\n")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body><div style="font-family:sans-serif;font-size:14px;line-height:1.5">{body}</div></body></html>'
    )


def is_trackable(url: str, options: TrackingOptions) -> bool:
    """Only absolute http(s) URLs with a host; never the unsubscribe link or our own tracking URLs."""
    value = url.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not host:
        return False
    if options.unsubscribe_url and value == options.unsubscribe_url:
        return False
    base = options.base_url.rstrip("/")
    return not value.startswith((f"{base}/u/", f"{base}/c/", f"{base}/o/"))


class _LinkTable:
    """Original URLs in first-seen order; the index is what the click token carries."""

    def __init__(self, touch_id: int, options: TrackingOptions) -> None:
        self.touch_id, self.options = touch_id, options
        self.urls: list[str] = []
        self._index: dict[str, int] = {}

    def tracked(self, url: str) -> str | None:
        """The tracking URL to put in place of `url`, or None to leave it alone."""
        url = url.strip()
        if not is_trackable(url, self.options):
            return None
        index = self._index.get(url)
        if index is None:
            if len(self.urls) >= MAX_TRACKED_LINKS:
                return None
            index = self._index[url] = len(self.urls)
            self.urls.append(url)
        token = sign(LinkToken(Purpose.CLICK, self.touch_id, index), self.options.key)
        return f"{self.options.base_url.rstrip('/')}/c/{token}"


# --- plain text ----------------------------------------------------------------------------------


def _trim(url: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets that follow a URL in prose."""
    while url:
        last = url[-1]
        unbalanced = last in _CLOSERS and url.count(_CLOSERS[last]) < url.count(last)
        if last not in _TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def _text_urls(text: str) -> list[tuple[int, int, str]]:
    """(start, end, url) of each bare http(s) URL in prose, trailing punctuation excluded."""
    found = []
    for match in _URL_IN_TEXT.finditer(text):
        url = _trim(match.group(0))
        if _host(url):
            found.append((match.start(), match.start() + len(url), url))
    return found


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _rewrite_text(text: str, links: _LinkTable) -> str:
    out: list[str] = []
    position = 0
    for start, end, url in _text_urls(text):
        replacement = links.tracked(url)
        if replacement is None:
            continue
        out.append(text[position:start])
        out.append(replacement)
        position = end
    out.append(text[position:])
    return "".join(out)


# --- HTML ----------------------------------------------------------------------------------------


class _HrefFinder(HTMLParser):
    """Collects (offset, raw start tag, attributes) of every <a>/<area> tag that has an href."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        # HTMLParser counts lines by "\n" only (a lone "\r" does not start a line for getpos()).
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.tags: list[tuple[int, str, list[tuple[str, str | None]], bool]] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        raw = self.get_starttag_text()
        if tag in _LINK_TAGS and raw and any(name == "href" for name, _ in attrs):
            self.tags.append((self._offset(), raw, attrs, self_closing))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, True)


def _rebuild_tag(raw: str, attrs: list[tuple[str, str | None]], new_href: str, self_closing: bool) -> str:
    """The start tag with its (first) href replaced; the other attributes re-serialized, escaped."""
    name = re.match(r"<\s*([A-Za-z][^\s/>]*)", raw)
    parts = [f"<{name.group(1) if name else 'a'}"]
    replaced = False
    for attr, value in attrs:
        if attr == "href" and not replaced:
            value, replaced = new_href, True
        parts.append(f" {attr}" if value is None else f' {attr}="{html.escape(value, quote=True)}"')
    return "".join(parts) + (" />" if self_closing else ">")


def _rewrite_html(source: str, links: _LinkTable) -> str:
    finder = _HrefFinder(source)
    finder.feed(source)
    finder.close()
    out: list[str] = []
    position = 0
    for offset, raw, attrs, self_closing in finder.tags:
        if source[offset : offset + len(raw)] != raw or offset < position:
            continue  # the parser's position did not match the source (should not happen): leave the tag alone
        href = next(value for name, value in attrs if name == "href")
        replacement = links.tracked(href) if href else None
        if replacement is None:
            continue
        out.append(source[position:offset])
        out.append(_rebuild_tag(raw, attrs, replacement, self_closing))
        position = offset + len(raw)
    out.append(source[position:])
    return "".join(out)
