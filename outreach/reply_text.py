"""The new text of a reply: quoted history, forwarded blocks, client signatures and footers removed.

Pure. mail-parser-reply (maintained, with header patterns for a dozen languages) finds where the
quoted history starts; our own rules then handle what it misses on the talon / email_reply_parser
fixtures: bottom-posted replies, Russian and date-first attributions, multilingual Outlook header
blocks, separators left behind, "-- " signatures and "Sent from my …" footers. HTML replies are cut
where the client drew the quote (blockquote, gmail_quote, Outlook's bordered header block) before
they become text. A sign-off and name ("Thanks,\\nAlex") are kept: they are part of what was written.
"""

from __future__ import annotations

import re
from functools import cache

from lxml import etree
from mailparser_reply.parser import EmailMessage as _LibraryMessage

from outreach.mailparts import html_text_until

LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs")


@cache
def _library_header() -> re.Pattern[str]:
    """mail-parser-reply's compiled quote-header pattern for our languages (built once per process)."""
    return _LibraryMessage(text="", languages=list(LANGUAGES)).HEADER_REGEX


# --- plain text --------------------------------------------------------------------------------------

_WROTE_WORDS = (
    r"wrote|schrieb|a écrit|escribió|escribio|ha scritto|schreef|skrev|napisał|napisala|napisal|napsal|kirjoitti|"
    r"написал|написала|написал\(а\)|пишет|escreveu|yazdı"
)
_WROTE_END = re.compile(rf"(?:{_WROTE_WORDS})\s*:?\s*$", re.I)
_ATTRIBUTION_START = re.compile(
    r"^\s*(?:On|Am|Le|El|Il|Op|Den|Dne|W dniu|Em|В|Pada|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|"
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s|\d{1,2}\s+\w+\.?\s+\d{4})",
    re.I,
)
_DATE_HINT = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{2,4}|\b\d{1,2}:\d{2}\b|\b(?:19|20)\d{2}\b")
_EMAIL_HINT = re.compile(r"@[\w-]+\.[\w.-]+|<[^<>]*@[^<>]*>")
_END_MARKERS = re.compile(
    r"^\s*[-=_*]*\s*(?:Original Message|Forwarded message|Forwarded Message|Begin forwarded message|"
    r"Ursprüngliche Nachricht|Weitergeleitete Nachricht|Message d'origine|Message transféré|Mensaje original|"
    r"Mensaje reenviado|Messaggio originale|Oorspronkelijk bericht|Doorgestuurd bericht|Ursprungligt meddelande|"
    r"Oprindelig meddelelse|Wiadomość oryginalna|Původní zpráva|Исходное сообщение|Пересылаемое сообщение|"
    r"Reply above this line|Reply ABOVE THIS LINE)\s*[-=_*:]*\s*$|"
    r"^\s*_{10,}\s*$|^\s*-{10,}\s*$|^\s*={10,}\s*$",
    re.I,
)
_SIGNATURE_START = re.compile(r"^(?:-- ?|--|__)\s*$")
_MOBILE_FOOTER = re.compile(
    r"^\s*(?:Sent from my [\w .'-]{1,40}|Sent from (?:Outlook|Mail|Yahoo Mail|Gmail|Proton ?Mail)[\w .'-]{0,30}|"
    r"Sent (?:with|via) [\w .'-]{1,30}|Get Outlook for (?:iOS|Android)[^\n]{0,80}|"
    r"Von meinem [\w .'-]{1,30} gesendet|Gesendet von meinem [\w .'-]{1,30}|Envoyé de mon [\w .'-]{1,30}|"
    r"Enviado desde mi [\w .'-]{1,30}|Enviado do meu [\w .'-]{1,30}|Inviato da(?:l mio)? [\w .'-]{1,30}|"
    r"Verzonden (?:met|vanaf) mijn [\w .'-]{1,30}|Skickat från min [\w .'-]{1,30}|Sendt fra min [\w .'-]{1,30}|"
    r"Wysłane z [\w .'-]{1,30}|Отправлено с [\w .'-]{1,30})\s*$",
    re.I,
)
_HEADER_FROM = re.compile(r"^\s*\*?(?:From|Von|De|Da|Van|Fra|Från|Od|От|Kimden|Lähettäjä)\s?:\*?", re.I)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:Sent|Date|To|Subject|Cc|Gesendet|Datum|An|Betreff|Envoyé|Date|À|Objet|Enviado|Fecha|Para|Asunto|"
    r"Inviato|Data|A|Oggetto|Verzonden|Aan|Onderwerp|Sendt|Til|Emne|Skickat|Till|Ämne|Wysłano|Do|Temat|"
    r"Odesláno|Komu|Předmět|Отправлено|Дата|Кому|Тема)\s?:\*?",
    re.I,
)


def normalize(text: str) -> str:
    """One newline style, no trailing spaces, no zero-width or no-break spaces that hide markers."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u200b", "").replace("\u200e", "").replace("\ufeff", "").replace("\xa0", " ")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def fresh_text(text: str) -> str:
    """The reply's own new text (top-posted, bottom-posted or interleaved), without quotes and footers."""
    text = normalize(text)
    head = _before_library_header(text)
    if not head.strip():
        head = text  # nothing above the first quote header: a bottom-posted reply, read line by line
    return _own_rules(head)


def _before_library_header(text: str) -> str:
    stripped = "\n".join(line.strip() for line in text.split("\n"))  # the library's patterns expect this
    match = _library_header().search(stripped)
    if match is None:
        return text
    start = match.start()
    while start < len(stripped) and stripped[start] == "\n":
        start += 1
    # Map the position back onto the original lines (only per-line leading whitespace differs).
    line_number = stripped.count("\n", 0, start)
    return "\n".join(text.split("\n")[:line_number])


def _own_rules(text: str) -> str:
    lines = text.split("\n")
    kept: list[str] = []
    skip = 0
    for index, line in enumerate(lines):
        if skip:
            skip -= 1
            continue
        written = any(k.strip() for k in kept)
        attribution = _attribution_length(lines, index)
        if attribution:
            if written:
                break
            skip = attribution - 1  # bottom-posted: the answer follows the quote
            continue
        if _END_MARKERS.match(line) or _outlook_header(lines, index):
            if written:
                break
            continue
        if _SIGNATURE_START.match(line) or (written and _MOBILE_FOOTER.match(line)):
            if written:
                break
            continue
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return _tidy(kept)


def _tidy(lines: list[str]) -> str:
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def _attribution_length(lines: list[str], index: int) -> int:
    """1–3 when an attribution line ("On <date>, <person> wrote:", "<date>, <name> <email>:") starts here."""
    line = lines[index].strip()
    if not line or not (_ATTRIBUTION_START.match(line) or _EMAIL_HINT.search(line) or _DATE_HINT.search(line)):
        return 0
    for length in (1, 2, 3):
        if index + length > len(lines):
            break
        joined = " ".join(part.strip() for part in lines[index : index + length])
        if _is_attribution(joined):
            return length
        if not lines[index + length - 1].strip():
            break
    return 0


def _is_attribution(line: str) -> bool:
    if len(line) > 300:
        return False
    if _WROTE_END.search(line) and (_ATTRIBUTION_START.match(line) or _EMAIL_HINT.search(line)):
        return True
    # Date-first attributions with no verb: "26.06.2014, 14:41, "Alex" <a@x.example>:" (Yandex, Mail.ru).
    return line.endswith(":") and bool(_EMAIL_HINT.search(line)) and bool(_DATE_HINT.search(line))


def _outlook_header(lines: list[str], index: int) -> bool:
    """Outlook quotes with a header block: From: followed by Sent:/Date:/To:/Subject: lines (many languages)."""
    if not _HEADER_FROM.match(lines[index]):
        return False
    return any(_HEADER_NEXT.match(following) for following in lines[index + 1 : index + 5])


# --- HTML ---------------------------------------------------------------------------------------------

_QUOTE_CLASSES = re.compile(
    r"gmail_quote|moz-cite-prefix|yahoo_quoted|protonmail_quote|OutlookMessageHeader|zmail_extra|"
    r"x_gmail_quote|AppleOriginalContents|ydp[0-9a-f]*yahoo_quoted",
    re.I,
)
_QUOTE_IDS = re.compile(r"divRplyFwdMsg|appendonsend|OLK_SRC_BODY_SECTION|stopSpelling|zwchr|isForwardContent", re.I)
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid|border-top-style\s*:\s*solid", re.I)


def _is_quote_start(element: etree._Element) -> bool:
    """Where mail clients start the quoted message in HTML."""
    tag = element.tag.lower() if isinstance(element.tag, str) else ""
    if tag == "blockquote" or tag == "hr":
        return True
    if _QUOTE_CLASSES.search(element.get("class") or "") or _QUOTE_IDS.search(element.get("id") or ""):
        return True
    # Outlook 2007+ and Windows Mail draw the quoted header block inside a div with a solid top border.
    return tag == "div" and bool(_BORDER_TOP.search(element.get("style") or ""))


def fresh_text_from_html(html: str) -> str:
    """The new text of an HTML reply: cut at the client's quote container, then the plain-text rules."""
    return fresh_text(html_text_until(html, _is_quote_start))


# --- the part of the text that carries intent ------------------------------------------------------------

_VALEDICTION = re.compile(
    r"^\s*(?:thanks|thank you|many thanks|thanks again|thx|cheers|best|best regards|kind regards|warm regards|"
    r"regards|sincerely|all the best|br|rgds|talk soon|mit freundlichen grüßen|viele grüße|beste grüße|grüße|lg|"
    r"cordialement|bien à vous|bien cordialement|salutations|saludos|un saludo|atentamente|saluti|cordiali saluti|"
    r"met vriendelijke groet|groeten|hälsningar|med vänlig hälsning|pozdrawiam)\s*[,.!]?\s*$",
    re.I,
)


def before_signoff(text: str) -> str:
    """The text up to the sign-off ("Best,\\nDana\\nVP Sales | +1 …"): a signature's words are not intent."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if index > 0 and _VALEDICTION.match(line) and any(k.strip() for k in lines[:index]):
            return "\n".join(lines[:index]).strip()
    return text.strip()
