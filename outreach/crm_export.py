"""One prospect for a CRM: a HubSpot or Salesforce import file (CSV), or JSON with the whole conversation.

The CSV headers are the names each CRM's import maps by itself: HubSpot's contact property labels and
Salesforce's Lead field API names (Data Import Wizard and Data Loader both match them). Salesforce
requires LastName and Company on a lead, so they fall back to the first name (or the address) and to
"[not provided]", Salesforce's own placeholder. CSV cells a spreadsheet would run as a formula are
neutralized (`export.neutralize_cell`), except plain phone numbers; JSON is data and keeps the text as stored.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import LeadStage
from db.models import LeadQualification, LeadStageChange, Prospect
from outreach.conversations import conversation
from outreach.errors import OutreachError
from outreach.export import neutralize_cell
from outreach.prospect_fields import PROSPECT_FIELDS
from outreach.suppression import is_suppressed

CRM_FORMATS: dict[str, str] = {
    "hubspot": "HubSpot contact (CSV)",
    "salesforce": "Salesforce lead (CSV)",
    "json": "JSON: prospect, stage history and conversation",
}
HUBSPOT_COLUMNS = (
    "Email", "First Name", "Last Name", "Job Title", "Company Name", "Website URL", "Phone Number", "City",
    "State/Region", "Country/Region", "LinkedIn URL", "Lifecycle Stage", "Lead Status", "Outreach Stage",
    "Unsubscribed",
)  # fmt: skip
SALESFORCE_COLUMNS = (
    "Email", "FirstName", "LastName", "Title", "Company", "Website", "Phone", "City", "State", "Country",
    "LeadSource", "Status", "HasOptedOutOfEmail", "Description",
)  # fmt: skip
NOT_PROVIDED = "[not provided]"
PLAIN_NUMBER = re.compile(r"\+?[\d\s().\-/]+")  # "+49 30 1234567": no formula a spreadsheet could run

# Our pipeline in each CRM's default vocabulary (HubSpot's internal values, Salesforce's default picklist).
HUBSPOT_LIFECYCLE = {
    LeadStage.NEW: "lead", LeadStage.CONTACTED: "lead", LeadStage.ENGAGED: "lead", LeadStage.REPLIED: "lead",
    LeadStage.INTERESTED: "salesqualifiedlead", LeadStage.MEETING: "opportunity", LeadStage.WON: "customer",
    LeadStage.LOST: "other", LeadStage.UNSUBSCRIBED: "other", LeadStage.BOUNCED: "other",
    LeadStage.DO_NOT_CONTACT: "other",
}  # fmt: skip
HUBSPOT_LEAD_STATUS = {
    LeadStage.NEW: "NEW", LeadStage.CONTACTED: "ATTEMPTED_TO_CONTACT", LeadStage.ENGAGED: "ATTEMPTED_TO_CONTACT",
    LeadStage.REPLIED: "CONNECTED", LeadStage.INTERESTED: "IN_PROGRESS", LeadStage.MEETING: "OPEN_DEAL",
    LeadStage.WON: "OPEN_DEAL", LeadStage.LOST: "UNQUALIFIED", LeadStage.UNSUBSCRIBED: "UNQUALIFIED",
    LeadStage.BOUNCED: "UNQUALIFIED", LeadStage.DO_NOT_CONTACT: "UNQUALIFIED",
}  # fmt: skip
SALESFORCE_STATUS = {
    LeadStage.NEW: "Open - Not Contacted",
    LeadStage.WON: "Closed - Converted",
    LeadStage.LOST: "Closed - Not Converted",
    LeadStage.UNSUBSCRIBED: "Closed - Not Converted",
    LeadStage.BOUNCED: "Closed - Not Converted",
    LeadStage.DO_NOT_CONTACT: "Closed - Not Converted",
}
SALESFORCE_WORKING = "Working - Contacted"


@dataclass(frozen=True)
class CrmFile:
    """A download: the file name never carries prospect text (it is the browser's to interpret)."""

    filename: str
    mime: str
    data: str


@dataclass(frozen=True)
class _Facts:
    prospect: Prospect
    stage: LeadStage
    score: float
    suppressed: bool


def crm_file(session: Session, prospect_id: int, fmt: str, *, secret_key: str, now: datetime) -> CrmFile:
    if fmt not in CRM_FORMATS:
        raise OutreachError(f"unknown CRM format '{fmt}'; choose one of {', '.join(CRM_FORMATS)}")
    facts = _facts(session, prospect_id, secret_key)
    name = f"outreach-prospect-{prospect_id}"
    if fmt == "hubspot":
        return CrmFile(f"{name}-hubspot.csv", "text/csv", _csv(HUBSPOT_COLUMNS, _hubspot(facts)))
    if fmt == "salesforce":
        return CrmFile(f"{name}-salesforce.csv", "text/csv", _csv(SALESFORCE_COLUMNS, _salesforce(facts)))
    record = _record(session, facts, now)
    return CrmFile(f"{name}.json", "application/json", json.dumps(record, indent=2, ensure_ascii=False))


def _facts(session: Session, prospect_id: int, secret_key: str) -> _Facts:
    prospect = session.get(Prospect, prospect_id)
    if prospect is None:
        raise OutreachError(f"prospect {prospect_id} no longer exists (erased or deleted)")
    lead = session.scalar(select(LeadQualification).where(LeadQualification.prospect_id == prospect_id))
    return _Facts(
        prospect,
        lead.stage if lead else LeadStage.NEW,
        float(lead.score) if lead else 0.0,
        is_suppressed(session, prospect.email_normalized, secret_key),
    )


def _csv(columns: tuple[str, ...], row: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    """Neutralize formula-like text, but keep a phone number a phone number (a CRM would store the apostrophe)."""
    if value is None:
        return ""
    if isinstance(value, str) and PLAIN_NUMBER.fullmatch(value):
        return value
    return neutralize_cell(value)


def _hubspot(facts: _Facts) -> dict[str, Any]:
    p = facts.prospect
    return {
        "Email": p.email, "First Name": p.first_name, "Last Name": p.last_name, "Job Title": p.title,
        "Company Name": p.company, "Website URL": p.website, "Phone Number": p.phone, "City": p.city,
        "State/Region": p.state, "Country/Region": p.country, "LinkedIn URL": p.linkedin_url,
        "Lifecycle Stage": HUBSPOT_LIFECYCLE[facts.stage], "Lead Status": HUBSPOT_LEAD_STATUS[facts.stage],
        "Outreach Stage": str(facts.stage), "Unsubscribed": "true" if facts.suppressed else "false",
    }  # fmt: skip


def _salesforce(facts: _Facts) -> dict[str, Any]:
    p = facts.prospect
    return {
        "Email": p.email, "FirstName": p.first_name, "LastName": p.last_name or p.first_name or p.email,
        "Title": p.title, "Company": p.company or NOT_PROVIDED, "Website": p.website, "Phone": p.phone,
        "City": p.city, "State": p.state, "Country": p.country, "LeadSource": "Other",
        "Status": SALESFORCE_STATUS.get(facts.stage, SALESFORCE_WORKING),
        "HasOptedOutOfEmail": "true" if facts.suppressed else "false",
        "Description": f"Outreach stage: {facts.stage}; lead score {facts.score:.1f}",
    }  # fmt: skip


_PROSPECT_FIELDS = (*PROSPECT_FIELDS, "source")


def _record(session: Session, facts: _Facts, now: datetime) -> dict[str, Any]:
    p = facts.prospect
    history = session.scalars(
        select(LeadStageChange)
        .where(LeadStageChange.prospect_id == p.id)
        .order_by(LeadStageChange.created_at, LeadStageChange.id)
    )
    return {
        "exported_at": now.isoformat(),
        "prospect": {"id": p.id, **{name: getattr(p, name) for name in _PROSPECT_FIELDS},
                     "custom_fields": dict(p.custom_fields or {})},
        "lead": {
            "stage": str(facts.stage), "score": facts.score, "unsubscribed": facts.suppressed,
            "history": [
                {"at": c.created_at.isoformat(), "from": str(c.from_stage) if c.from_stage else None,
                 "to": str(c.to_stage), "reason": c.reason, "by": c.changed_by}
                for c in history
            ],
        },
        "conversation": [
            {"at": item.at.isoformat(), "direction": item.direction, "kind": item.kind, "campaign": item.campaign,
             "subject": item.subject, "text": item.text, "intent": str(item.intent) if item.intent else None,
             "confidence": item.confidence, "label_corrected": item.corrected}
            for item in conversation(session, p.id)
        ],
    }  # fmt: skip


__all__ = ["CRM_FORMATS", "CrmFile", "crm_file"]
