"""Which file column feeds which prospect field: exporter aliases, user overrides, saved presets.

Headers are matched by a key that ignores case, spacing and punctuation ("Email Address", "email_address"
and "emailAddress" are one key), against the layouts HubSpot, Apollo, LinkedIn, Salesforce (labels and
API names), Mailchimp, lemlist and PhantomBuster actually export. Every column that maps to no field is
kept as a custom field under a snake_case name, so templates can use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ImportPreset
from outreach.errors import OutreachError
from outreach.prospect_fields import STORED_FIELDS

IGNORE = "ignore"
CUSTOM_PREFIX = "custom:"

# Our fields, in the order the page shows them. `full_name` is split into first/last when those are absent.
FIELDS: tuple[str, ...] = ("email", "first_name", "last_name", "full_name", *STORED_FIELDS[2:], "tags")

# Alias keys per field, best first (a key is the header casefolded with everything but letters and digits
# removed). Sources: ../shared/corpora/csv_headers.md.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "workemail", "businessemail", "primaryemail", "email1", "emailid", "mail"),
    "first_name": ("firstname", "givenname", "first", "fname", "forename"),
    "last_name": ("lastname", "surname", "familyname", "last", "lname"),
    "full_name": ("fullname", "name", "contactname", "personname", "contact"),
    "title": ("title", "jobtitle", "position", "designation", "jobposition", "headline"),
    "seniority": ("seniority", "senioritylevel"),
    "company": (
        "companyname",
        "company",
        "organizationname",
        "organization",
        "organisation",
        "accountname",
        "account",
        "employer",
        "currentcompany",
        "associatedcompany",
    ),
    "company_domain": ("companydomain", "companydomainname", "domain", "websitedomain"),
    "website": ("website", "websiteurl", "companywebsite", "web", "homepage", "url"),
    "industry": ("industry", "companyindustry", "sector"),
    "employee_count": (
        "employees",
        "numberofemployees",
        "employeecount",
        "companysize",
        "numemployees",
        "headcount",
        "companyheadcount",
        "employeesize",
    ),
    "city": ("city", "mailingcity", "town", "contactcity"),
    "state": (
        "state",
        "stateregion",
        "stateprovince",
        "province",
        "mailingstate",
        "mailingstateprovince",
        "mailingstatecode",
        "region",
    ),
    "country": ("country", "countryregion", "countrycode", "mailingcountry", "mailingcountrycode", "cc"),
    "timezone": ("timezone", "tz", "timezonename"),
    "linkedin_url": (
        "personlinkedinurl",
        "linkedinurl",
        "linkedinprofileurl",
        "linkedinprofile",
        "linkedin",
        "profileurl",
    ),
    # Several phone columns may all feed `phone`: the first non-empty one in this order wins.
    "phone": (
        "workdirectphone",
        "directphone",
        "mobilephone",
        "mobilephonenumber",
        "mobile",
        "cellnumber",
        "cellphone",
        "phonenumber",
        "phone",
        "firstphone",
        "workphone",
        "officenumber",
        "officephone",
        "telephone",
        "corporatephone",
        "otherphone",
        "homephone",
    ),
    "tags": ("tags", "tag", "labels"),
}
MULTI_COLUMN_FIELDS = frozenset({"phone"})
_ALIAS_RANK = {(f, key): rank for f, keys in ALIASES.items() for rank, key in enumerate(keys)}
_ALL_ALIASES = {key: f for f, keys in reversed(ALIASES.items()) for key in keys}
_RESERVED_NAMES = frozenset(FIELDS) | {"email_normalized", "id", "custom_fields", "source", "is_role_address"}


class MappingError(OutreachError):
    """A mapping that cannot work: an unknown field, a column not in the file, no email column."""


def header_key(header: str) -> str:
    """'Email Address', 'email_address' and 'emailAddress' all become 'emailaddress'."""
    return "".join(ch for ch in header.casefold() if ch.isalnum())


def snake_case(header: str, position: int = 0) -> str:
    """A template-friendly name for a custom column: 'Company Name for Emails' -> 'company_name_for_emails'."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", header)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    if not text:
        return f"column_{position}"
    return f"f_{text}" if text[0].isdigit() else text


@dataclass(frozen=True)
class ColumnMapping:
    """Every header of the file with what it feeds: a field name, 'custom:<name>' or 'ignore'."""

    targets: dict[str, str]  # header -> target, in file order

    def columns_for(self, field_name: str) -> list[str]:
        """Headers feeding one field, best first (alias rank, then file order)."""
        headers = [h for h, t in self.targets.items() if t == field_name]
        order = {h: i for i, h in enumerate(self.targets)}
        return sorted(headers, key=lambda h: (_ALIAS_RANK.get((field_name, header_key(h)), 999), order[h]))

    @property
    def custom_columns(self) -> dict[str, str]:
        """Header -> custom field name."""
        return {h: t[len(CUSTOM_PREFIX) :] for h, t in self.targets.items() if t.startswith(CUSTOM_PREFIX)}

    @property
    def mapped_fields(self) -> list[str]:
        return [f for f in FIELDS if f in self.targets.values()]

    def template_fields(self) -> list[str]:
        """Names a template can use for prospects from this file."""
        names = [f for f in FIELDS if f not in ("email", "full_name", "tags")]
        return ["email", *names, *self.custom_columns.values()]

    def as_rows(self, samples: Sequence[Sequence[str]] = ()) -> list[dict[str, str]]:
        """One row per column for an editable table: column, maps_to, an example value."""
        rows = []
        for position, (header, target) in enumerate(self.targets.items()):
            example = next((r[position] for r in samples if position < len(r) and r[position].strip()), "")
            rows.append({"column": header, "maps_to": target, "example": example[:80]})
        return rows

    def overrides(self) -> dict[str, str]:
        """The mapping as a plain dict, as saved in a preset."""
        return dict(self.targets)


def auto_map(header: Sequence[str], samples: Sequence[Sequence[str]] = ()) -> ColumnMapping:
    """The mapping our aliases give for these headers; anything unknown becomes a custom field."""
    keys = [header_key(h) for h in header]
    chosen: dict[int, str] = {}
    for field_name, aliases in ALIASES.items():
        candidates = sorted((aliases.index(k), i) for i, k in enumerate(keys) if k in aliases and i not in chosen)
        if field_name == "website":
            candidates = [(r, i) for r, i in candidates if not _linkedin_column(i, samples)]
        if field_name == "linkedin_url":
            candidates += [(len(aliases), i) for i, k in enumerate(keys) if k == "url" and _linkedin_column(i, samples)]
        if not candidates:
            continue
        picked = candidates if field_name in MULTI_COLUMN_FIELDS else candidates[:1]
        for _rank, i in picked:
            chosen[i] = field_name
    return ColumnMapping(_with_custom_names(header, chosen))


def _linkedin_column(position: int, samples: Sequence[Sequence[str]]) -> bool:
    """LinkedIn's Connections.csv calls the profile link just 'URL'."""
    values = [r[position] for r in samples if position < len(r) and r[position].strip()]
    return bool(values) and all("linkedin.com" in v.lower() for v in values[:20])


def _with_custom_names(header: Sequence[str], chosen: Mapping[int, str]) -> dict[str, str]:
    used: set[str] = set(_RESERVED_NAMES)
    for target in chosen.values():
        if target.startswith(CUSTOM_PREFIX):
            used.add(target[len(CUSTOM_PREFIX) :])
    targets: dict[str, str] = {}
    for position, name in enumerate(header):
        target = chosen.get(position)
        if target is None:
            custom = _unique(snake_case(name, position + 1), used)
            used.add(custom)
            target = CUSTOM_PREFIX + custom
        targets[name] = target
    return targets


def _unique(name: str, used: set[str]) -> str:
    if name not in used:
        return name
    n = 2
    while f"{name}_{n}" in used:
        n += 1
    return f"{name}_{n}"


def parse_map_options(values: Sequence[str]) -> dict[str, str]:
    """`--map HEADER=field` options as a dict; the last one for a header wins."""
    result: dict[str, str] = {}
    for value in values:
        header, sep, target = value.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            raise MappingError(f"--map '{value}': expected HEADER=field, e.g. --map 'E-Mail Adresse=email'")
        result[header.strip()] = target.strip()
    return result


def normalize_target(target: str, header: str) -> str:
    """Accept 'email', 'ignore', 'custom', 'custom:name' (or a bare snake_case name not among our fields)."""
    value = target.strip()
    lowered = value.lower()
    if lowered in FIELDS or lowered == IGNORE:
        return lowered
    if lowered in ("custom", CUSTOM_PREFIX):
        return CUSTOM_PREFIX + snake_case(header)
    if lowered.startswith(CUSTOM_PREFIX):
        name = snake_case(value[len(CUSTOM_PREFIX) :])
        if name in _RESERVED_NAMES:
            raise MappingError(f"'{target}' for column '{header}': '{name}' is one of our fields; map to it directly")
        return CUSTOM_PREFIX + name
    raise MappingError(
        f"'{target}' for column '{header}' is not a field; use one of {', '.join(FIELDS)}, 'custom:NAME' or 'ignore'"
    )


def resolve_mapping(
    header: Sequence[str],
    samples: Sequence[Sequence[str]] = (),
    overrides: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
    file_name: str = "the file",
) -> ColumnMapping:
    """Auto mapping, then the user's overrides (by header, matched like aliases).

    An override moving a field to another column takes that field away from the auto-chosen column,
    which becomes a custom field again. `strict=False` skips overrides for columns the file lacks
    (presets saved from another file).
    """
    auto = auto_map(header, samples)
    if not overrides:
        return auto
    by_key = {header_key(h): h for h in reversed(header)}
    forced: dict[str, str] = {}
    for wanted, target in overrides.items():
        actual = wanted if wanted in auto.targets else by_key.get(header_key(wanted))
        if actual is None:
            if strict:
                raise MappingError(
                    f"--map '{wanted}': {file_name} has no such column; its columns are: {', '.join(header)}"
                )
            continue
        forced[actual] = normalize_target(target, actual)
    forced_fields = {t for t in forced.values() if t in FIELDS}
    chosen: dict[int, str] = {}
    for position, name in enumerate(header):
        if name in forced:
            chosen[position] = forced[name]
        elif auto.targets[name] in FIELDS and auto.targets[name] not in forced_fields:
            chosen[position] = auto.targets[name]
    return ColumnMapping(_with_custom_names(header, chosen))


def header_score(cells: Sequence[str], extra: Sequence[str] = ()) -> int:
    """How much a row looks like our header: known aliases count 1, an email column 10."""
    extra_keys = {header_key(e) for e in extra}
    score = 0
    for cell in cells:
        key = header_key(cell)
        if not key:
            continue
        if key in ALIASES["email"] or key in extra_keys:
            score += 10
        elif key in _ALL_ALIASES:
            score += 1
    return score


def require_email_column(mapping: ColumnMapping, file_name: str) -> None:
    if "email" not in mapping.targets.values():
        raise MappingError(
            f"{file_name}: no email column found among {', '.join(mapping.targets)}; "
            "name it 'Email' or map it with --map 'COLUMN=email'"
        )


# --- presets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresetInfo:
    name: str
    mapping: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None


def save_preset(session: Session, name: str, mapping: Mapping[str, str]) -> PresetInfo:
    """Create or replace a named mapping. Targets are checked so a preset can always be applied."""
    clean_name = " ".join(name.split())
    if not clean_name:
        raise MappingError("a preset needs a name")
    if len(clean_name) > 200:
        raise MappingError(f"preset name '{clean_name[:40]}…' is longer than 200 characters")
    checked = {str(h): normalize_target(str(t), str(h)) for h, t in mapping.items()}
    preset = session.scalar(select(ImportPreset).where(ImportPreset.name == clean_name))
    if preset is None:
        preset = ImportPreset(name=clean_name, mapping=checked)
        session.add(preset)
    else:
        preset.mapping = checked
    session.flush()
    return PresetInfo(preset.name, dict(preset.mapping), preset.updated_at)


def load_preset(session: Session, name: str) -> dict[str, str]:
    preset = session.scalar(select(ImportPreset).where(ImportPreset.name == " ".join(name.split())))
    if preset is None:
        known = ", ".join(p.name for p in list_presets(session)) or "none saved yet"
        raise MappingError(f"no mapping preset named '{name}' (presets: {known})")
    return {str(h): str(t) for h, t in preset.mapping.items()}


def list_presets(session: Session) -> list[PresetInfo]:
    presets = session.scalars(select(ImportPreset).order_by(ImportPreset.name))
    return [PresetInfo(p.name, dict(p.mapping), p.updated_at) for p in presets]


def delete_preset(session: Session, name: str) -> bool:
    preset = session.scalar(select(ImportPreset).where(ImportPreset.name == " ".join(name.split())))
    if preset is None:
        return False
    session.delete(preset)
    session.flush()
    return True
