"""What the Prospects page shows and what its editors hold, as plain data: no Streamlit here.

The page's mapping editor works on rows (column, example, maps_to, custom_name); these functions turn
a proposed mapping into those rows and the edited rows back into the `header -> target` dict the import
takes. Reports, prospect details and suppression entries become lists of plain dicts for tables, every
value as text, so prospect-controlled strings are only ever rendered as table cells, never as Markdown.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from outreach.export import FORMATS, neutralize_cell, write_export
from outreach.prospect_mapping import (
    CUSTOM_PREFIX,
    FIELDS,
    IGNORE,
    ColumnMapping,
    MappingError,
    normalize_target,
    snake_case,
)
from outreach.prospect_search import ProspectDetail, ProspectPage
from outreach.prospects import FilePreview, ImportReport
from outreach.suppression import SuppressionEntry

CUSTOM_CHOICE = "custom field"
IGNORE_CHOICE = IGNORE
TARGET_CHOICES: tuple[str, ...] = (*FIELDS, CUSTOM_CHOICE, IGNORE_CHOICE)
OUTCOMES: tuple[str, ...] = ("imported", "updated", "duplicates", "rejected", "suppressed")
SAMPLE_LIMIT = 10
_SPLIT = re.compile(r"[\s,;]+")


# --- the mapping editor --------------------------------------------------------------------------


def editor_rows(mapping: ColumnMapping, samples: Sequence[Sequence[str]] = ()) -> list[dict[str, str]]:
    """One editable row per file column: what it maps to, and the custom field name when it is one."""
    rows = []
    for row in mapping.as_rows(samples):
        target = row["maps_to"]
        custom = target[len(CUSTOM_PREFIX) :] if target.startswith(CUSTOM_PREFIX) else ""
        rows.append(
            {
                "column": row["column"],
                "example": row["example"],
                "maps_to": CUSTOM_CHOICE if custom else target,
                "custom_name": custom,
            }
        )
    return rows


def mapping_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The edited rows as `header -> field / custom:<name> / ignore`, each target checked.

    An empty choice keeps the column as a custom field (nothing in the file is dropped unless the user
    says 'ignore'); a custom field without a name gets the column's snake_case name.
    """
    mapping: dict[str, str] = {}
    custom_owner: dict[str, str] = {}
    for row in rows:
        header = str(row.get("column") or "")
        if not header:
            continue
        choice = str(row.get("maps_to") or "").strip() or CUSTOM_CHOICE
        if choice == CUSTOM_CHOICE:
            name = str(row.get("custom_name") or "").strip() or snake_case(header)
            target = normalize_target(f"{CUSTOM_PREFIX}{name}", header)
            other = custom_owner.setdefault(target, header)
            if other != header:
                raise MappingError(
                    f"columns '{other}' and '{header}' both feed the custom field "
                    f"'{target[len(CUSTOM_PREFIX) :]}'; give one of them another name"
                )
        elif choice in TARGET_CHOICES:
            target = choice
        else:
            raise MappingError(
                f"column '{header}': '{choice}' is not a choice; pick a field, 'custom field' or 'ignore'"
            )
        mapping[header] = target
    return mapping


def sample_rows(header: Sequence[str], samples: Sequence[Sequence[str]], limit: int = SAMPLE_LIMIT) -> list[dict]:
    """The first rows of the file as table rows keyed by its (unique) header, short rows padded."""
    return [{name: (row[i] if i < len(row) else "") for i, name in enumerate(header)} for row in samples[:limit]]


_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def read_summary(preview: FilePreview) -> str:
    """How the file was read, e.g. 'CSV · encoding cp1252 · semicolon-separated · header on row 4 · ...'."""
    parts = [preview.kind.upper()]
    if preview.encoding:
        parts.append(f"encoding {preview.encoding}")
    if preview.delimiter:
        parts.append(f"{_DELIMITERS.get(preview.delimiter, repr(preview.delimiter))}-separated")
    parts.append(f"header on row {preview.header_row}")
    parts.append(f"about {preview.estimated_rows:,} data rows")
    return " · ".join(parts)


# --- reports -------------------------------------------------------------------------------------


def outcome_counts(report: ImportReport) -> dict[str, int]:
    """Every row's outcome, in the contract's order (they always add up to report.rows)."""
    return {name: int(getattr(report, name)) for name in OUTCOMES}


def accounting_line(report: ImportReport) -> str:
    """'12 rows = 9 imported + 1 updated + 1 duplicates + 1 rejected + 0 suppressed'."""
    parts = " + ".join(f"{count:,} {name}" for name, count in outcome_counts(report).items())
    return f"{report.rows:,} rows = {parts}"


def _reject_columns(header: Sequence[str]) -> list[str]:
    """The file's columns renamed where they would collide with the table's own 'row' and 'reason'."""
    taken = {"row", "reason"}
    columns = []
    for name in header:
        shown = name
        while shown in taken:
            shown = f"{shown} (file)"
        taken.add(shown)
        columns.append(shown)
    return columns


def reject_rows(report: ImportReport) -> list[dict[str, Any]]:
    """Rejects with their row number in the file, the reason, then the original cells by column."""
    columns = _reject_columns(report.header)
    return [
        {"row": reject.row, "reason": reject.reason, **dict(zip(columns, reject.cells, strict=False))}
        for reject in report.rejects
    ]


def rejects_csv(report: ImportReport) -> bytes:
    """The rejects file the import wrote (all of them), or one built from the report when none was written."""
    if report.rejects_path is not None and report.rejects_path.is_file():
        return report.rejects_path.read_bytes()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "reason", *report.header])
    for reject in report.rejects:
        writer.writerow([reject.row, reject.reason, *(neutralize_cell(c) for c in reject.cells)])
    return out.getvalue().encode("utf-8-sig")


def empty_field_rows(report: ImportReport) -> list[dict[str, Any]]:
    """Template fields that would render empty, most often empty first (fields always filled are left out)."""
    counts = sorted(report.empty_fields.items(), key=lambda item: (-item[1], item[0]))
    return [{"template field": name, "empty for prospects": count} for name, count in counts if count]


def mapping_table(report: ImportReport) -> list[dict[str, str]]:
    return [{"column": header, "maps to": target} for header, target in report.mapping.items()]


# --- small inputs --------------------------------------------------------------------------------


def split_tags(text: str | None) -> tuple[str, ...]:
    """'vip, q3 , vip' -> ('vip', 'q3'): comma-separated, trimmed, de-duplicated in order."""
    tags: list[str] = []
    for part in (text or "").split(","):
        tag = " ".join(part.split())
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


def split_entries(text: str | None) -> list[str]:
    """Addresses or domains pasted one per line, or separated by commas, semicolons or spaces."""
    return [part for part in _SPLIT.split(text or "") if part]


def confirmation_matches(address: str, typed: str) -> bool:
    """The typed confirmation for an erasure: the same address again (case and spaces ignored)."""
    return bool(address.strip()) and address.strip().lower() == typed.strip().lower()


# --- tables --------------------------------------------------------------------------------------


def shown(value: Any) -> str:
    """A value as table text: empty for None, yes/no, timestamps to the minute in UTC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(shown(v) for v in value)
    return str(value)


def prospect_table(page: ProspectPage) -> list[dict[str, Any]]:
    return [
        {
            "email": row.email,
            "first_name": shown(row.first_name),
            "last_name": shown(row.last_name),
            "title": shown(row.title),
            "company": shown(row.company),
            "country": shown(row.country),
            "added": shown(row.created_at),
        }
        for row in page.rows
    ]


def total_text(page: ProspectPage) -> str:
    """'1,234' or '10,000+' when the count stopped at its cap."""
    return f"{page.total:,}+" if page.total_capped else f"{page.total:,}"


def detail_fields(detail: ProspectDetail) -> list[dict[str, str]]:
    """Email, stage, score, lists, tags and every stored field as (field, value) rows."""
    rows = [
        {"field": "email", "value": detail.email},
        {"field": "stage", "value": detail.stage or "new"},
        {"field": "score", "value": shown(detail.score) if detail.score is not None else ""},
        {"field": "lists", "value": shown(detail.lists)},
        {"field": "tags", "value": shown(detail.tags)},
    ]
    rows.extend({"field": name, "value": shown(value)} for name, value in detail.fields.items())
    return rows


def custom_field_rows(detail: ProspectDetail) -> list[dict[str, str]]:
    return [{"custom field": str(name), "value": shown(value)} for name, value in sorted(detail.custom_fields.items())]


def campaign_rows(detail: ProspectDetail) -> list[dict[str, str]]:
    return [
        {
            "campaign": c.campaign,
            "campaign state": c.campaign_state,
            "enrollment": c.enrollment_state,
            "stopped because": shown(c.stop_reason),
            "next touch due": shown(c.next_due_at),
        }
        for c in detail.campaigns
    ]


def timeline_rows(detail: ProspectDetail) -> list[dict[str, str]]:
    return [
        {"when": shown(e.at), "kind": e.kind, "what": e.what, "campaign": shown(e.campaign), "detail": shown(e.detail)}
        for e in detail.timeline
    ]


FORGOTTEN_VALUE = "(forgotten: only a keyed hash is kept)"


def suppression_rows(entries: Iterable[SuppressionEntry]) -> list[dict[str, str]]:
    return [
        {
            "kind": str(e.kind),
            "address or domain": e.value if e.value is not None else FORGOTTEN_VALUE,
            "reason": str(e.reason),
            "source": shown(e.source),
            "added": shown(e.created_at),
        }
        for e in entries
    ]


# --- exports -------------------------------------------------------------------------------------


def export_bytes(session: Session, kind: str, fmt: str) -> bytes:
    """One export as a download: CSV in UTF-8 with a BOM (Excel then reads accents right), JSON in UTF-8."""
    out = io.StringIO()
    write_export(session, kind, fmt, out)
    return out.getvalue().encode("utf-8-sig" if fmt == "csv" else "utf-8")


def export_file_name(kind: str, fmt: str, today: date) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    return f"outreach-{kind}-{today.isoformat()}.{fmt}"
