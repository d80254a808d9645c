"""Exports of prospects, leads and activity as CSV or JSON, streamed so a million rows fit in memory.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR) get a leading
apostrophe (OWASP "CSV injection"): prospect data comes from strangers' files and replies. JSON is
data, not a spreadsheet, and is written as stored.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import LeadStage
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ProspectTag,
    ResponseAnalysis,
    SequenceStep,
)
from outreach.errors import OutreachError
from outreach.prospect_fields import PROSPECT_FIELDS

EXPORT_KINDS = ("prospects", "leads", "activity")
FORMATS = ("csv", "json")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BATCH = 2_000

PROSPECT_COLUMNS = (*PROSPECT_FIELDS, "is_role_address", "is_disposable", "source", "created_at")
LEAD_COLUMNS = ("email", "first_name", "last_name", "title", "company", "stage", "score", "stage_updated_at")
ACTIVITY_COLUMNS = ("at", "email", "campaign", "kind", "channel", "step", "subject", "detail")


class ExportError(OutreachError):
    """An unknown export kind or format."""


@dataclass(frozen=True)
class ExportTable:
    """Column names and a stream of rows (plain values) — the page can show or download it."""

    columns: list[str]
    rows: Iterator[dict[str, Any]]


def neutralize_cell(value: Any) -> Any:
    """Prefix text a spreadsheet would evaluate with an apostrophe; other values pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def export_table(session: Session, kind: str) -> ExportTable:
    if kind == "prospects":
        return _prospects(session)
    if kind == "leads":
        return _leads(session)
    if kind == "activity":
        return _activity(session)
    raise ExportError(f"unknown export '{kind}'; choose one of {', '.join(EXPORT_KINDS)}")


def write_export(session: Session, kind: str, fmt: str, out: TextIO) -> int:
    """Write one export to an open text stream; returns the number of rows written."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}'; choose csv or json")
    table = export_table(session, kind)
    return _write_csv(table, out) if fmt == "csv" else _write_json(table, out)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return value


def _write_csv(table: ExportTable, out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.columns)
    count = 0
    for row in table.rows:
        writer.writerow([neutralize_cell(_csv_text(_cell(row.get(c)))) for c in table.columns])
        count += 1
    return count


def _csv_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _write_json(table: ExportTable, out: TextIO) -> int:
    out.write("[")
    count = 0
    for row in table.rows:
        out.write(",\n" if count else "\n")
        out.write(json.dumps({c: _json_value(row.get(c)) for c in table.columns}, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


# --- the three tables ----------------------------------------------------------------------------


def _custom_keys(session: Session) -> list[str]:
    keys: dict[str, None] = {}
    for custom in session.execute(select(Prospect.custom_fields).execution_options(yield_per=BATCH)).scalars():
        for key in custom or {}:
            keys.setdefault(str(key), None)
    return sorted(keys)


def _prospects(session: Session) -> ExportTable:
    custom_keys = [k for k in _custom_keys(session) if k not in PROSPECT_COLUMNS]
    columns = [*PROSPECT_COLUMNS, "tags", "lists", *custom_keys]

    def rows() -> Iterator[dict[str, Any]]:
        for batch in _id_batches(session):
            prospects = session.scalars(select(Prospect).where(Prospect.id.in_(batch)).order_by(Prospect.id)).all()
            tags = _grouped(
                session, select(ProspectTag.prospect_id, ProspectTag.tag).where(ProspectTag.prospect_id.in_(batch))
            )
            lists = _grouped(
                session,
                select(ProspectListMember.prospect_id, ProspectList.name)
                .join(ProspectList, ProspectList.id == ProspectListMember.list_id)
                .where(ProspectListMember.prospect_id.in_(batch)),
            )
            for p in prospects:
                row = {c: getattr(p, c) for c in PROSPECT_COLUMNS}
                row["tags"] = sorted(tags.get(p.id, []))
                row["lists"] = sorted(lists.get(p.id, []))
                for key in custom_keys:
                    row[key] = (p.custom_fields or {}).get(key)
                yield row
            session.expunge_all()  # keep memory flat on big exports

    return ExportTable(columns, rows())


def _id_batches(session: Session) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(session.scalars(select(Prospect.id).where(Prospect.id > last).order_by(Prospect.id).limit(BATCH)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def _grouped(session: Session, query: Any) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for key, value in session.execute(query):
        grouped.setdefault(key, []).append(value)
    return grouped


def _leads(session: Session) -> ExportTable:
    query = (
        select(
            Prospect.email,
            Prospect.first_name,
            Prospect.last_name,
            Prospect.title,
            Prospect.company,
            LeadQualification.stage,
            LeadQualification.score,
            LeadQualification.updated_at,
        )
        .outerjoin(LeadQualification, LeadQualification.prospect_id == Prospect.id)
        .order_by(Prospect.id)
        .execution_options(yield_per=BATCH)
    )

    def rows() -> Iterator[dict[str, Any]]:
        for email, first, last, title, company, stage, score, updated in session.execute(query):
            yield {
                "email": email,
                "first_name": first,
                "last_name": last,
                "title": title,
                "company": company,
                "stage": str(stage or LeadStage.NEW),
                "score": score if score is not None else 0.0,
                "stage_updated_at": updated,
            }

    return ExportTable(list(LEAD_COLUMNS), rows())


def _activity(session: Session) -> ExportTable:
    touches = (
        select(
            CommunicationLog.sent_at,
            CommunicationLog.due_at,
            Prospect.email,
            OutreachCampaign.name,
            CommunicationLog.state,
            CommunicationLog.channel,
            SequenceStep.position,
            CommunicationLog.subject,
        )
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .join(SequenceStep, SequenceStep.id == CommunicationLog.step_id)
        .order_by(CommunicationLog.id)
        .execution_options(yield_per=BATCH)
    )
    events = (
        select(
            EngagementEvent.occurred_at,
            Prospect.email,
            OutreachCampaign.name,
            EngagementEvent.kind,
            EngagementEvent.url,
        )
        .outerjoin(Prospect, Prospect.id == EngagementEvent.prospect_id)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == EngagementEvent.campaign_id)
        .order_by(EngagementEvent.id)
        .execution_options(yield_per=BATCH)
    )
    responses = (
        select(
            ResponseAnalysis.received_at,
            Prospect.email,
            OutreachCampaign.name,
            ResponseAnalysis.kind,
            ResponseAnalysis.subject,
            ResponseAnalysis.intent,
        )
        .outerjoin(Prospect, Prospect.id == ResponseAnalysis.prospect_id)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == ResponseAnalysis.campaign_id)
        .order_by(ResponseAnalysis.id)
        .execution_options(yield_per=BATCH)
    )

    def rows() -> Iterator[dict[str, Any]]:
        for sent_at, due_at, email, campaign, state, channel, position, subject in session.execute(touches):
            yield {
                "at": sent_at or due_at,
                "email": email,
                "campaign": campaign,
                "kind": f"touch_{state}",
                "channel": str(channel),
                "step": position + 1,
                "subject": subject,
                "detail": None,
            }
        for occurred_at, email, campaign, kind, url in session.execute(events):
            yield {"at": occurred_at, "email": email, "campaign": campaign, "kind": str(kind), "detail": url}
        for received_at, email, campaign, kind, subject, intent in session.execute(responses):
            yield {
                "at": received_at,
                "email": email,
                "campaign": campaign,
                "kind": f"inbound_{kind}",
                "subject": subject,
                "detail": str(intent) if intent else None,
            }

    return ExportTable(list(ACTIVITY_COLUMNS), rows())
