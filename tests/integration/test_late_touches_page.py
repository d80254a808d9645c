"""Inbox & Tasks → In doubt: touches held because they were too late, sent or cancelled by the operator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import EnrollmentState, StopReason, TouchState
from db.models import CommunicationLog, Enrollment
from outreach import outbox
from tests.dashboard_helpers import open_page, texts
from tests.integration.test_campaign_pages import EMAILS_YAML, add_people, app_db, apply, at, click, launch, plan

__all__ = ["app_db", "at"]  # the page fixtures, shared with the campaign pages' tests


def test_late_touches_are_listed_and_sent_or_cancelled(at: AppTest, app_db: Engine) -> None:
    now = datetime.now(UTC)
    add_people(app_db, 2)
    apply(app_db, EMAILS_YAML)
    launch(app_db, "Emails", now - timedelta(days=1))
    plan(app_db, now)
    with transaction(app_db) as s:  # what the send path does with touches claimed after the worker was down
        ids = outbox.claim_due(s, worker_id="w", now=now, limit=10)
        for touch_id in ids:
            assert outbox.hold_claimed(s, touch_id, "w", "late: due 3 days ago", now)
    send_id, cancel_id = ids
    at = open_page(at, "inbox")

    assert any(w.value.startswith("2 touches are later than their campaign's maximum lateness") for w in at.warning)
    late = next(d.value for d in at.dataframe if "why" in d.value.columns)
    assert sorted(late["id"]) == sorted(ids) and set(late["why"]) == {"late: due 3 days ago"}
    at.selectbox(key="late_pick").select(send_id)
    at = click(at, "late_send")
    assert f"Touch {send_id} confirmed: it goes out now, at the mailbox's limits." in texts(at)
    at.selectbox(key="late_pick").select(cancel_id)
    at = click(at, "late_cancel")
    assert f"Touch {cancel_id} cancelled; the sequence stopped." in texts(at)

    with transaction(app_db, readonly=True) as s:
        sent, cancelled = s.get(CommunicationLog, send_id), s.get(CommunicationLog, cancel_id)
        assert (sent.state, sent.hold_reason) == (TouchState.QUEUED, None) and sent.due_at >= now
        assert cancelled.state is TouchState.CANCELLED
        stopped = s.execute(
            select(Enrollment.state, Enrollment.stop_reason).where(Enrollment.id == cancelled.enrollment_id)
        )
        assert tuple(stopped.one()) == (EnrollmentState.STOPPED, StopReason.OPERATOR)
    with transaction(app_db) as s:  # the confirmed one is claimable again
        assert outbox.claim_due(s, worker_id="w2", now=datetime.now(UTC), limit=10) == [send_id]
