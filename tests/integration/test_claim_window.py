"""The claim meets touches in their prospect's window only: a closed zone's backlog is placed in its next window
by one statement per prospect group (outbox.roll_windows), never claimed and deferred touch by touch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import TouchState
from db.models import CommunicationLog, Enrollment, Prospect
from outreach import outbox
from outreach.campaigns import CampaignManager, find_campaign
from tests.integration.test_simulation_matches_worker import KEY, LAUNCH, _set_up

EVENING = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # Tuesday: 17:30 in Berlin (closed), 11:30 in New York
BERLIN_OPENS = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # Wednesday 09:00 in Berlin


def _launched_and_planned(engine: Engine) -> None:
    """40 prospects (New York, Berlin, no zone: UTC), launched; every first touch planned by the evening."""
    _set_up(engine, 2525)
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).launch(find_campaign(s, "Sim"), LAUNCH)
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).schedule_communications(EVENING)


def _touches(engine: Engine) -> dict[str | None, list[tuple[int, datetime, datetime | None, TouchState]]]:
    by_zone: dict[str | None, list[tuple[int, datetime, datetime | None, TouchState]]] = {}
    with transaction(engine, readonly=True) as s:
        for zone, touch_id, due, closes, state in s.execute(
            select(Prospect.timezone, CommunicationLog.id, CommunicationLog.due_at, CommunicationLog.window_closes_at,
                   CommunicationLog.state)
            .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
            .join(Prospect, Prospect.id == Enrollment.prospect_id)
            .order_by(CommunicationLog.id)
        ):  # fmt: skip
            by_zone.setdefault(zone, []).append((touch_id, due, closes, state))
    return by_zone


def test_a_closed_zone_is_placed_in_its_next_window_and_never_claimed_outside_it(engine: Engine) -> None:
    _launched_and_planned(engine)
    before = _touches(engine)
    with transaction(engine) as s:
        assert outbox.roll_windows(s, EVENING) == 40  # every due touch placed, in one pass
        assert outbox.roll_windows(s, EVENING) == 0  # and only once per window
    touches = _touches(engine)
    berlin, new_york, utc = touches["Europe/Berlin"], touches["America/New_York"], touches[None]
    # Berlin's window closed at 16:00 UTC: due at Wednesday's start, in the id order they had.
    assert {(due, closes) for _id, due, closes, _state in berlin} == {(BERLIN_OPENS, BERLIN_OPENS + timedelta(hours=8))}
    # Open windows keep each touch's own due time and close with the window.
    assert [due for _id, due, _c, _s in new_york] == [due for _id, due, _c, _s in before["America/New_York"]]
    assert {closes for *_x, closes, _s in new_york} == {datetime(2026, 11, 24, 22, 0, tzinfo=UTC)}
    assert {closes for *_x, closes, _s in utc} == {datetime(2026, 11, 24, 17, 0, tzinfo=UTC)}

    with transaction(engine) as s:  # per-minute limits: sim-1 one, sim-2 two; only open zones, oldest first
        claimed = outbox.claim_due(s, worker_id="w", now=EVENING, limit=100)
    berlin_ids = {touch_id for touch_id, *_ in berlin}
    assert len(claimed) == 3 and not berlin_ids & set(claimed)
    with transaction(engine) as s:
        outbox.release(s, claimed, "w", EVENING)
        night = BERLIN_OPENS - timedelta(seconds=1)  # New York and UTC closed too: nothing at all
        assert outbox.claim_due(s, worker_id="w", now=night, limit=100) == []
    with transaction(engine) as s:  # Berlin opens: its backlog first (rolled New York/UTC touches come later)
        claimed = outbox.claim_due(s, worker_id="w", now=BERLIN_OPENS, limit=100)
    assert claimed and set(claimed) <= berlin_ids


def test_a_touch_no_worker_placed_for_longer_than_the_maximum_lateness_is_left_for_the_send_path(
    engine: Engine,
) -> None:
    _launched_and_planned(engine)
    three_days = EVENING + timedelta(days=3)  # no worker ran: the default maximum lateness is two days
    with transaction(engine) as s:
        assert outbox.roll_windows(s, three_days) == 0
    assert {closes for rows in _touches(engine).values() for _i, _d, closes, _s in rows} == {None}
    with transaction(engine) as s:  # claimed whatever the window, so the send path holds it (late) as before
        assert len(outbox.claim_due(s, worker_id="w", now=three_days, limit=100)) == 3
