"""Content lint: what makes a rendered message look broken or spammy, each warning with where it is.

Pure: the rendered subject and parts in, a list of warnings out. The preview shows them for one
prospect, and launch checks run them on a sample, so a leftover `{{ first_name }}`, a "Hi ," or a shouted
subject is seen before it is sent. Warnings, not errors: the operator decides.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser

SUBJECT_MAX = 60  # longer subjects are cut off on phones
MAX_LINKS = 3  # cold email with many links reads as marketing and trips filters
MAX_IMAGES = 2
MIN_SHARED_WORDS = 0.6  # text and HTML parts should say the same thing

SPAM_PHRASES = (
    "100% free", "100% guaranteed", "act now", "apply now", "amazing offer", "as seen on", "best price",
    "buy now", "cash bonus", "click here", "congratulations", "dear friend", "double your", "earn money",
    "extra income", "guaranteed", "incredible deal", "limited time", "lowest price", "make money", "miracle",
    "no cost", "no obligation", "not spam", "once in a lifetime", "order now", "risk-free", "risk free",
    "special promotion", "this isn't spam", "urgent", "winner", "you have been selected", "$$$",
)  # fmt: skip
_SPAM = re.compile(
    "|".join(rf"(?<![\w$]){re.escape(p)}(?![\w$])" if p[0].isalnum() else re.escape(p) for p in SPAM_PHRASES),
    re.IGNORECASE,
)
_UNRENDERED = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{\{|\}\}|\{%|%\}")
_PLACEHOLDER = re.compile(
    r"\[(?:first|last|full)?\s*_?name\]|\[company\]|\{(?:first_name|last_name|company|name|title)\}", re.IGNORECASE
)
_SPINTAX_LEFT = re.compile(r"\{[^{}|\n]{1,60}\|[^{}\n]{1,200}\}")
_EMPTY_HINTS = (
    (re.compile(r"\S+\s+[,.;:!?](?=\s|$)"), "a space before punctuation"),
    (re.compile(r"\(\s*\)|\[\s*\]|\"\s*\""), "empty brackets or quotes"),
    (re.compile(r"(?<=[^\s.!?]) {2,}(?=\S)"), "two spaces in a row"),  # not the old two after a full stop
    (re.compile(r"\b(?:None|null|undefined|NaN)\b"), "a placeholder word"),
)
_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)
_CAPS_WORD = re.compile(r"\b[A-Z]{5,}\b")
_EXCLAIM = re.compile(r"!{2,}")


@dataclass(frozen=True)
class LintWarning:
    """One finding: a stable code, where it is ('subject', 'text line 3', 'html', 'footer'), and what to do."""

    code: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class _Visible(HTMLParser):
    """The text a reader sees in an HTML part, plus its links and images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self.images = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag == "img":
            self.images += 1
        if tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> tuple[str, list[str], int]:
    """(text a reader sees, link targets, image count) of an HTML part."""
    parser = _Visible()
    parser.feed(page)
    parser.close()
    return "".join(parser.parts), parser.links, parser.images


_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)


def _blank_styles(page: str) -> str:
    """CSS inside <style> blanked (line breaks kept, so lines still count): `}}` closing a media query is not
    a template leftover."""
    return _STYLE.sub(lambda m: m.group(1) + re.sub(r"[^\n]", " ", m.group(2)) + m.group(3), page)


def _around(text: str, start: int, end: int, width: int = 15) -> str:
    """The words around a match, on its own line, for showing where it is."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    return text[max(start - width, line_start) : min(end + width, line_end)].strip()


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _where(part: str, text: str, position: int) -> str:
    return part if part == "subject" else f"{part} line {_line(text, position)}"


def _leftovers(part: str, text: str) -> list[LintWarning]:
    """Template code, placeholders or spintax that reached the rendered text."""
    found = []
    for pattern, what in (
        (_UNRENDERED, "template code was not filled in"),
        (_PLACEHOLDER, "a placeholder was not filled in"),
        (_SPINTAX_LEFT, "spintax was not resolved"),
    ):
        for match in pattern.finditer(text):
            found.append(
                LintWarning("unrendered", _where(part, text, match.start()), f"{what}: '{match.group(0)[:40]}'")
            )
    return found


def _wording(part: str, text: str, lines: bool = True) -> list[LintWarning]:
    """Empty fields, spam phrases and shouting in what a reader sees."""
    found: list[LintWarning] = []

    def where(position: int) -> str:
        return _where(part, text, position) if lines else part

    for pattern, hint in _EMPTY_HINTS:
        for match in pattern.finditer(text):
            snippet = _around(text, match.start(), match.end())
            message = f"looks like an empty field ({hint}: '{snippet}'); give it a default"
            found.append(LintWarning("empty_field", where(match.start()), message))
    for match in _SPAM.finditer(text):
        message = f"'{match.group(0)}' is a common spam-filter trigger; rephrase it"
        found.append(LintWarning("spam_phrase", where(match.start()), message))
    for match in _CAPS_WORD.finditer(text):
        message = f"'{match.group(0)}' is in capitals, which reads as shouting (try | title_case on fields)"
        found.append(LintWarning("all_caps", where(match.start()), message))
    for match in _EXCLAIM.finditer(text):
        found.append(LintWarning("punctuation", where(match.start()), "several '!' in a row"))
    return found


def _subject(subject: str) -> list[LintWarning]:
    found = _leftovers("subject", subject) + _wording("subject", subject)
    if not subject.strip():
        found.append(LintWarning("subject_length", "subject", "the subject is empty"))
    elif len(subject) > SUBJECT_MAX:
        message = f"{len(subject)} characters; phones show about {SUBJECT_MAX}, so the end will be cut off"
        found.append(LintWarning("subject_length", "subject", message))
    letters = [c for c in subject if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.5:
        found.append(LintWarning("all_caps", "subject", "most of the subject is in capitals"))
    return found


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{3,}", text.casefold())}


def _mismatch(text: str, seen: str, html_links: list[str]) -> list[LintWarning]:
    found = []
    text_words, html_words = _words(text), _words(seen)
    union = text_words | html_words
    if union:
        shared = len(text_words & html_words) / len(union)
        if shared < MIN_SHARED_WORDS:
            message = f"the text and HTML parts say different things ({shared:.0%} of their words shared)"
            found.append(LintWarning("text_html_mismatch", "text/html", message))
    text_urls = {u.rstrip(".,;:!?") for u in _URL.findall(text)}
    for link in html_links:
        if link.startswith(("http://", "https://")) and html_lib.unescape(link) not in text_urls:
            message = f"the HTML part links to {link[:60]}, which the text part does not show"
            found.append(LintWarning("text_html_mismatch", "html", message))
    return found


def lint_message(
    subject: str | None, text: str, html: str | None, *, unsubscribe: bool = True, postal_address: bool = True
) -> list[LintWarning]:
    """Every warning for one rendered message (bodies as rendered, before the footer is added).

    `unsubscribe` / `postal_address` say whether the footer will carry them (an email step's message does
    when the campaign has a postal address); a LinkedIn note or call script passes no subject and no HTML.
    """
    found = _subject(subject) if subject is not None else []
    found += _leftovers("text", text) + _wording("text", text)
    text_links = _URL.findall(text)
    if len(text_links) > MAX_LINKS:
        message = f"{len(text_links)} links; more than {MAX_LINKS} reads as marketing and trips filters"
        found.append(LintWarning("links", "text", message))
    if html is not None:
        seen, links, images = visible_text(html)
        found += _leftovers("html", _blank_styles(html)) + _wording("html", " ".join(seen.split()), lines=False)
        if len(links) > MAX_LINKS:
            message = f"{len(links)} links; more than {MAX_LINKS} reads as marketing and trips filters"
            found.append(LintWarning("links", "html", message))
        if images > MAX_IMAGES:
            found.append(LintWarning("images", "html", f"{images} images; keep cold email to {MAX_IMAGES} or fewer"))
        found += _mismatch(text, seen, links)
    if subject is not None and not unsubscribe:
        found.append(LintWarning("footer", "footer", "no unsubscribe link; every marketing email needs one"))
    if subject is not None and not postal_address:
        found.append(LintWarning("footer", "footer", "no postal address; set it in Settings or on the campaign"))
    return found
