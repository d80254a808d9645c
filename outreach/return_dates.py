"""When an out-of-office sender is back: the return date read from their text, relative to the message date.

Pure and dependency-free: absence notices name the date in a handful of shapes ("until March 9",
"back on Monday", "bis 9. März", "jusqu'au 9 mars", "hasta el 9 de marzo", "9/3/2026", "2026-03-09",
"tomorrow", "next week"), always near a cue word. A general date parser would also read the sent
date quoted below the notice or a phone number; this one reads only dates and prefers the one that
follows a return cue ("until", "back", "bis", "retour", "hasta"…). Years are rarely written: a date
without one is the first such day on or after the message date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "january jan januar janvier enero gennaio januari janeiro jänner styczeń",
        "february feb februar février fevrier febrero febbraio februari fevereiro luty",
        "march mar märz maerz mars marzo maart março marzec",
        "april apr avril abril aprile kwiecień",
        "may mai mayo maggio mei maio maj",
        "june jun juni juin junio giugno junho czerwiec",
        "july jul juli juillet julio luglio julho lipiec",
        "august aug août aout agosto augustus sierpień",
        "september sep sept septembre septiembre settembre setembro wrzesień",
        "october oct oktober octobre octubre ottobre okt outubro październik",
        "november nov novembre noviembre novembro listopad",
        "december dec dezember décembre decembre diciembre dicembre dez dic dezembro grudzień",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS.setdefault(_name, _number)

_WEEKDAYS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "monday montag lundi lunes lunedì lunedi maandag segunda",
        "tuesday tue tues dienstag mardi martes martedì martedi dinsdag terça",
        "wednesday wed mittwoch mercredi miércoles miercoles mercoledì mercoledi woensdag quarta",
        "thursday thu thur thurs donnerstag jeudi jueves giovedì giovedi donderdag quinta",
        "friday fri freitag vendredi viernes venerdì venerdi vrijdag sexta",
        "saturday samstag samedi sábado sabado sabato zaterdag",
        "sunday sonntag dimanche domingo domenica zondag",
    )
):
    for _name in _names.split():
        _WEEKDAYS.setdefault(_name, _number)

_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAY_NAMES = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_ORDINAL = r"(?:st|nd|rd|th|er|ème|e|º|\.)?"

_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_NUMERIC = re.compile(r"(?<![\d.:/])(\d{1,2})([./])(\d{1,2})(?:\2(\d{4}|\d{2}))?(?![\d:/]|\.\d)")
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}}){_ORDINAL}\s*(?:of\s+|de\s+)?({_MONTH_NAMES})\b\.?(?:,?\s*(?:de\s+)?(\d{{4}}))?",
    re.I,
)
_MONTH_DAY = re.compile(rf"\b({_MONTH_NAMES})\.?\s+(\d{{1,2}}){_ORDINAL}(?!\d)(?:,?\s*(\d{{4}}))?", re.I)
_WEEKDAY = re.compile(rf"\b(next\s+|nächsten\s+|prochain\s+|el próximo\s+)?({_WEEKDAY_NAMES})\b\.?", re.I)
_RELATIVE = re.compile(
    r"\b(tomorrow|morgen|demain|mañana|domani|"
    r"next week|nächste woche|nächster woche|la semaine prochaine|semaine prochaine|la próxima semana|"
    r"la semana que viene|volgende week|end of (?:the )?week|end of (?:the )?month|"
    r"in (\d+|a|one|two|three|four) (day|days|week|weeks))\b",
    re.I,
)
_AFTER = re.compile(r"\s+after\b", re.I)
_ORDINAL_DAY = re.compile(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b", re.I)
_NUMBER_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4}
_CUE = re.compile(
    r"(?:until|till|til|through|thru|back|return|returning|returns|again|from|after|"
    r"bis|zurück|wieder|ab|ab dem|jusqu|retour|rentre|à partir|hasta|regreso|regresaré|vuelvo|a partir|"
    r"fino|rientro|rientrerò|tot|terug|weer|vanaf|until and including|through and including)\b[^.!?\n]{0,40}$",
    re.I,
)
_START_ONLY = re.compile(r"(?:from|since|vom|du|desde|dal|van|seit)\s*(?:the\s+)?$", re.I)


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    day: date
    explicit: bool  # a written date (not a weekday or "next week")


def return_date(text: str, sent: date) -> date | None:
    """The day the sender says they are back (or until which they are away), or None when they do not say."""
    found = _dates(text, sent)
    if not found:
        return None
    cued = [f for f in found if _cued(text, f)]
    if cued:
        return _best(cued).day
    later = [f for f in found if f.day >= sent]
    if not later:
        return None
    return max(later, key=lambda f: f.day).day  # "from 2 to 9 March": the end of the absence


def _cued(text: str, found: _Found) -> bool:
    before = text[max(0, found.start - 60) : found.start]
    if _START_ONLY.search(before):
        return False  # "from March 2" starts the absence
    return bool(_CUE.search(before))


def _best(cued: list[_Found]) -> _Found:
    """The first cued date; a written date next to a weekday ("Monday, March 9") wins over the weekday."""
    first = cued[0]
    for other in cued[1:]:
        if other.start - first.end <= 3 and other.explicit and not first.explicit:
            return other
    return first


def _dates(text: str, sent: date) -> list[_Found]:
    found: list[_Found] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, day: date | None, explicit: bool = True) -> None:
        if day is None or any(s < end and start < e for s, e in taken):
            return
        taken.append((start, end))
        found.append(_Found(start, end, day, explicit))

    for match in _ISO.finditer(text):
        add(match.start(), match.end(), _make(int(match[1]), int(match[2]), int(match[3])))
    for match in _DAY_MONTH.finditer(text):
        add(match.start(), match.end(), _yearless(sent, _MONTHS[match[2].lower()], int(match[1]), match[3]))
    for match in _MONTH_DAY.finditer(text):
        add(match.start(), match.end(), _yearless(sent, _MONTHS[match[1].lower()], int(match[2]), match[3]))
    for match in _NUMERIC.finditer(text):
        add(match.start(), match.end(), _numeric(sent, match))
    for match in _ORDINAL_DAY.finditer(text):
        add(match.start(), match.end(), _day_of_month(sent, int(match[1])))
    for match in _RELATIVE.finditer(text):
        add(match.start(), match.end(), _relative(sent, match), False)
    for match in _WEEKDAY.finditer(text):
        anchor = sent
        if _AFTER.match(text, match.end()):  # "away next week, back the Monday after": after that week
            earlier = [f.day for f in found if f.end <= match.start()]  # found so far, in text order or not
            anchor = max(earlier, default=sent)
        add(match.start(), match.end(), _weekday(anchor, _WEEKDAYS[match[2].lower()], bool(match[1])), False)
    return sorted(found, key=lambda f: f.start)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _year(value: str | None) -> int | None:
    if not value:
        return None
    year = int(value)
    return year + 2000 if year < 100 else year


def _yearless(sent: date, month: int, day: int, year_text: str | None = None) -> date | None:
    """A date without a year is the first such day on or after the message date."""
    year = _year(year_text)
    if year is not None:
        return _make(year, month, day)
    candidate = _make(sent.year, month, day)
    if candidate is None:
        return None
    return candidate if candidate >= sent - timedelta(days=1) else _make(sent.year + 1, month, day)


def _numeric(sent: date, match: re.Match[str]) -> date | None:
    """9.3.2026 is day-first; 3/9 is month-first unless a part exceeds 12 or only day-first is ahead."""
    first, separator, second, year_text = int(match[1]), match[2], int(match[3]), match[4]
    if separator == "." and year_text is None and not match.group(0).endswith("."):
        # "9.3" without a year or a closing dot is more often a version or a decimal than a date.
        following = match.string[match.end() : match.end() + 1]
        if following != ".":
            return None
    if separator == ".":
        return _yearless(sent, second, first, year_text)
    readings = []
    if first <= 12:
        readings.append(_yearless(sent, first, second, year_text))  # month first (US)
    if second <= 12:
        readings.append(_yearless(sent, second, first, year_text))  # day first
    ahead = [d for d in readings if d is not None and d >= sent]
    if ahead:
        return min(ahead)  # an absence ends soon: the nearer reading is the likelier one
    return next((d for d in readings if d is not None), None)


def _day_of_month(sent: date, day: int) -> date | None:
    """ "the 15th": this month's, or next month's when this month's has passed."""
    candidate = _make(sent.year, sent.month, day)
    if candidate is not None and candidate >= sent:
        return candidate
    return _make(sent.year + (sent.month == 12), sent.month % 12 + 1, day)


def _weekday(sent: date, weekday: int, next_word: bool) -> date:
    days = (weekday - sent.weekday()) % 7 or 7
    if next_word and days < 3:
        days += 7  # "next Monday" said on a Saturday means the Monday after the coming one
    return sent + timedelta(days=days)


def _relative(sent: date, match: re.Match[str]) -> date | None:
    phrase = match[1].lower()
    if phrase in ("tomorrow", "morgen", "demain", "mañana", "domani"):
        return sent + timedelta(days=1)
    if phrase.startswith("end of") and "month" in phrase:
        following = date(sent.year + (sent.month == 12), sent.month % 12 + 1, 1)
        return following - timedelta(days=1)
    if phrase.startswith("end of"):
        return sent + timedelta(days=(4 - sent.weekday()) % 7)
    if match[2]:
        count = _NUMBER_WORDS.get(match[2].lower()) or int(match[2])
        return sent + timedelta(days=count * (7 if match[3].lower().startswith("week") else 1))
    return sent + timedelta(days=7 - sent.weekday())  # next week: its Monday
