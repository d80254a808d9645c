"""The per-variant counters the planner reads (migration 0016) always equal the counted history.

Whatever writes the log — the planner's multi-row insert, the send path, a bounce, a task done, a row
moved to another variant, an erasure — the triggers keep `send_counters` equal to counting the log.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, delete, func, select, update

from db.engine import transaction
from db.enums import TouchState
from db.models import CommunicationLog, MessageVariant, SendCounter
from outreach.campaigns import CampaignManager
from outreach.experiments import _sent_counts
from tests.sending_setup import KEY, launch_campaign

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
AB = """
  - type: email
    variants:
      - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }}"}
      - {name: B, subject: "{{ company }} + us", body: "Hello {{ first_name | default('there') }}"}
"""
SENT = (TouchState.SENT, TouchState.BOUNCED)


def _counted(engine: Engine) -> dict[tuple[int, int], tuple[int, int]]:
    sent = func.sum(case((CommunicationLog.state.in_(SENT), 1), else_=0))
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(CommunicationLog.step_id, CommunicationLog.variant_id, func.count(), sent)
            .where(CommunicationLog.variant_id.is_not(None))
            .group_by(CommunicationLog.step_id, CommunicationLog.variant_id)
        )
        return {(step, variant): (n, int(n_sent)) for step, variant, n, n_sent in rows}


def _kept(engine: Engine) -> dict[tuple[int, int], tuple[int, int]]:
    with transaction(engine, readonly=True) as s:
        rows = s.execute(select(SendCounter.step_id, SendCounter.variant_id, SendCounter.touches, SendCounter.sent))
        return {(step, variant): (n, sent) for step, variant, n, sent in rows if n or sent}


def test_counters_follow_every_write_to_the_log(engine: Engine) -> None:
    launch_campaign(engine, 2525, people=40, launch_at=T0 - timedelta(hours=1), name="Ab", steps=AB)
    with transaction(engine) as s:
        planned = CampaignManager(s, secret_key=KEY).schedule_communications(T0, limit=30)
    assert planned.queued == 30
    counted = _counted(engine)
    assert sum(n for n, _ in counted.values()) == 30 and len(counted) == 2  # balanced over A and B
    assert _kept(engine) == counted
    with transaction(engine) as s:
        ids = list(s.scalars(select(CommunicationLog.id).order_by(CommunicationLog.id)))
        s.execute(update(CommunicationLog).where(CommunicationLog.id.in_(ids[:12])).values(state=TouchState.SENT))
        s.execute(update(CommunicationLog).where(CommunicationLog.id == ids[0]).values(state=TouchState.BOUNCED))
        s.execute(update(CommunicationLog).where(CommunicationLog.id == ids[1]).values(state=TouchState.IN_DOUBT))
        s.execute(update(CommunicationLog).where(CommunicationLog.id == ids[20]).values(state=TouchState.CANCELLED))
    assert _kept(engine) == _counted(engine)
    with transaction(engine) as s:  # a row moved to the other variant, one without a variant, rows deleted
        variants = list(s.scalars(select(MessageVariant.id).order_by(MessageVariant.id)))
        s.execute(update(CommunicationLog).where(CommunicationLog.id.in_(ids[2:6])).values(variant_id=variants[1]))
        s.execute(update(CommunicationLog).where(CommunicationLog.id == ids[7]).values(variant_id=None))
        s.execute(delete(CommunicationLog).where(CommunicationLog.id.in_(ids[8:10] + ids[25:27])))
    assert _kept(engine) == _counted(engine)
    with transaction(engine) as s:  # the rest is planned in a second tick: balancing goes on from the counters
        CampaignManager(s, secret_key=KEY).schedule_communications(T0, limit=100)
    counted = _counted(engine)
    assert _kept(engine) == counted
    with transaction(engine, readonly=True) as s:
        step = next(iter(counted))[0]
        expected = {variant: n_sent for (st, variant), (_n, n_sent) in counted.items() if st == step and n_sent}
        assert _sent_counts(s, step) == expected
    per_variant = Counter({variant: n for (_step, variant), (n, _s) in counted.items()})
    assert abs(per_variant[variants[0]] - per_variant[variants[1]]) <= 2
