"""Exports: formula cells neutral in CSV (read back with csv), JSON as stored, leads and activity."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from db.enums import EventKind, LeadStage, StepType, TouchState
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    OutreachCampaign,
    Prospect,
    SequenceStep,
)
from outreach.export import ExportError, neutralize_cell, write_export
from outreach.prospect_lists import add_to_list, tag_prospects

DANGEROUS = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rReturn"]


def seed(session: Session) -> Prospect:
    evil = Prospect(
        email="eve@acme-corp.com",
        email_normalized="eve@acme-corp.com",
        first_name=DANGEROUS[0],
        last_name=DANGEROUS[1],
        company=DANGEROUS[2],
        title=DANGEROUS[3],
        city=DANGEROUS[4],
        state=DANGEROUS[5],
        phone="+14155550100",
        custom_fields={"icebreaker": "=cmd|' /C calc'!A0"},
    )
    session.add(evil)
    session.flush()
    tag_prospects(session, [evil.id], ["vip"])
    add_to_list(session, "Q1", [evil.id])
    session.add(LeadQualification(prospect_id=evil.id, stage=LeadStage.INTERESTED, score=72.5))
    campaign = OutreachCampaign(name="=Campaign")
    session.add(campaign)
    session.flush()
    step = SequenceStep(campaign_id=campaign.id, position=0, type=StepType.EMAIL)
    session.add(step)
    session.flush()
    enrollment = Enrollment(campaign_id=campaign.id, prospect_id=evil.id)
    session.add(enrollment)
    session.flush()
    when = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    touch = CommunicationLog(
        enrollment_id=enrollment.id,
        step_id=step.id,
        channel=StepType.EMAIL,
        state=TouchState.SENT,
        due_at=when,
        sent_at=when,
        subject="@you",
    )
    session.add(touch)
    session.flush()
    session.add(
        EngagementEvent(
            kind=EventKind.CLICK,
            communication_id=touch.id,
            prospect_id=evil.id,
            campaign_id=campaign.id,
            occurred_at=when,
            url="https://acme-corp.com/x",
        )
    )
    session.flush()
    return evil


def read_back(session: Session, kind: str) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    write_export(session, kind, "csv", out)
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def test_prospect_csv_neutralizes_every_formula_cell(session: Session):
    seed(session)
    [row] = read_back(session, "prospects")
    for column, value in zip(["first_name", "last_name", "company", "title", "city", "state"], DANGEROUS, strict=True):
        assert row[column] == "'" + value
    assert row["phone"] == "'+14155550100"
    assert row["icebreaker"].startswith("'=")
    assert (row["tags"], row["lists"]) == ("vip", "Q1")
    for value in row.values():
        assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_leads_and_activity_csv(session: Session):
    seed(session)
    [lead] = read_back(session, "leads")
    assert (lead["stage"], lead["score"]) == ("interested", "72.5")
    activity = read_back(session, "activity")
    assert [a["kind"] for a in activity] == ["touch_sent", "click"]
    assert activity[0]["campaign"] == "'=Campaign" and activity[0]["subject"] == "'@you"


def test_json_export_keeps_values_as_stored(session: Session):
    seed(session)
    out = io.StringIO()
    assert write_export(session, "prospects", "json", out) == 1
    [row] = json.loads(out.getvalue())
    assert row["first_name"] == DANGEROUS[0] and row["tags"] == ["vip"] and row["is_role_address"] is False


def test_empty_export_is_valid_and_unknown_kinds_are_refused(session: Session):
    out = io.StringIO()
    assert write_export(session, "leads", "json", out) == 0
    assert json.loads(out.getvalue()) == []
    with pytest.raises(ExportError):
        write_export(session, "everything", "csv", io.StringIO())
    assert neutralize_cell(-5) == -5 and neutralize_cell("ok") == "ok"
