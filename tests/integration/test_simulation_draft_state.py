"""A draft's simulated start is launch's: the pure path computes the rows launch would write, without writing."""

from __future__ import annotations

from sqlalchemy import Engine, select

from db.engine import transaction
from db.models import Enrollment
from outreach.campaigns import CampaignManager, find_campaign
from outreach.simulate import _draft_state
from tests.integration.test_simulation_matches_worker import KEY, LAUNCH, _set_up


def test_the_pure_draft_state_is_what_launch_writes(engine: Engine) -> None:
    _set_up(engine, 2525)  # 40 prospects in three zones, two mailboxes (one on a ramp), holidays on
    with transaction(engine, readonly=True) as s:
        state = _draft_state(s, find_campaign(s, "Sim"), LAUNCH, KEY)
        assert s.scalar(select(Enrollment.id).limit(1)) is None  # nothing was written
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).launch(find_campaign(s, "Sim"), LAUNCH)
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(
                Enrollment.prospect_id, Enrollment.mailbox_id, Enrollment.next_step, Enrollment.next_due_at
            ).order_by(Enrollment.id)
        ).all()
    computed = [(p.prospect_id, p.mailbox_id, p.next_step, p.next_due) for p in state.prospects]
    assert len(rows) == 40 and len({box for _p, box, _s, _d in rows}) == 2
    assert computed == [tuple(row) for row in rows]  # same prospects, order, mailboxes and first due times
    assert [p.enrollment_id for p in state.prospects] == list(range(1, 41))  # ties break in insert order
    assert {b.name for b in state.boxes} == {"sim-1", "sim-2"}
