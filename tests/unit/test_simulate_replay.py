"""The replay of the send tick, without a database: rolling limits on the worker's 5-second ticks, ramps, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.ramp import Ramp
from outreach.sequence import parse_definition
from outreach.simulate import SEND_TICK, BoxState, ProspectState, SimulationInput, replay

START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday


def campaign(schedule: str, steps: int = 1):
    follow_up = '\n  - {type: email, delay: 1 day, thread: true, body: "Again"}' * (steps - 1)
    return parse_definition(f"""
name: R
audience: {{list: r}}
schedule: {schedule}
steps:
  - {{type: email, subject: "Hi", body: "Hello"}}{follow_up}
""")


ALL_DAY = '{timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun], holidays: false}'


def inputs(definition, box: BoxState, count: int, due: datetime = START) -> SimulationInput:
    people = tuple(ProspectState(i, i, box.id, None, None, 0, due) for i in range(1, count + 1))
    return SimulationInput(1, "R", "draft", definition, START, (box,), people)


def test_per_minute_and_daily_limits_count_over_rolling_windows_on_the_tick_grid() -> None:
    box = BoxState(1, "m", daily_limit=3, per_minute=1, ramp=None, active=True)
    sim = replay(inputs(campaign(ALL_DAY), box, 5), days=3)
    seconds = [(t.at - START).total_seconds() for t in sim.sends]
    # One a minute: a send counts while sent_at >= now - 60 s, so the next tick after 60 s (65 s).
    # Three a day: the fourth waits until the first is more than 24 hours old, the next tick after.
    assert seconds == [0, 65, 130, 86_405, 86_470]
    assert all((t.at - START) % SEND_TICK == timedelta(0) for t in sim.sends)
    assert sim.finishes_in_days == 1 and sim.unscheduled == 0


def test_a_ramp_raises_the_limit_at_utc_midnight() -> None:
    box = BoxState(1, "m", daily_limit=10, per_minute=100, ramp=Ramp(2, 3, START.date()), active=True)
    sim = replay(inputs(campaign(ALL_DAY), box, 9), days=3)
    by_day = {d.date.isoformat(): d.count for d in sim.per_day}
    assert by_day == {"2026-12-07": 2, "2026-12-08": 5, "2026-12-09": 2}
    # Tuesday's sends start at midnight UTC, when the ramp allows 5 and Monday's 2 are still in the window.
    tuesday = [t.at for t in sim.sends if t.at.date().isoformat() == "2026-12-08"]
    assert tuesday[0] == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert len(tuesday) == 5  # 5 minus Monday's 2 (still inside 24 h) leaves 3 … until 10:00:05 frees 2 more


def test_touches_outside_the_window_wait_for_it_and_nothing_is_sent_at_night() -> None:
    office = '{timezone: UTC, window: "09:00-17:00", days: [mon, tue, wed, thu, fri], holidays: false}'
    box = BoxState(1, "m", daily_limit=100, per_minute=1, ramp=None, active=True)
    late = START.replace(hour=16, minute=58)
    sim = replay(inputs(campaign(office), box, 4, due=late), days=2)
    hours = sorted({t.at.hour for t in sim.sends})
    assert hours[0] >= 9 and hours[-1] < 17
    assert [t.at.date().isoformat() for t in sim.sends].count("2026-12-08") >= 2  # the rest goes out Tuesday


def test_the_same_input_gives_the_same_schedule_and_a_paused_mailbox_sends_nothing() -> None:
    box = BoxState(1, "m", daily_limit=5, per_minute=2, ramp=None, active=True)
    first = replay(inputs(campaign(ALL_DAY, steps=2), box, 7), days=10)
    again = replay(inputs(campaign(ALL_DAY, steps=2), box, 7), days=10)
    assert first.sends == again.sends and first.touches == 14
    paused = BoxState(1, "m", daily_limit=5, per_minute=2, ramp=None, active=False)
    stuck = replay(inputs(campaign(ALL_DAY, steps=2), paused, 7), days=10)
    assert stuck.touches == 0 and stuck.unscheduled == 14 and stuck.finishes_on is None


def test_a_closed_zone_waits_unclaimed_while_an_open_one_sends_and_a_stale_touch_is_held() -> None:
    office = '{timezone: prospect, window: "09:00-17:00", days: [mon, tue, wed, thu, fri], holidays: false}'
    box = BoxState(1, "m", daily_limit=100, per_minute=1, ramp=None, active=True)
    zones = ("Asia/Tokyo", "Europe/London")  # at START (10:00 UTC) Tokyo is closed (19:00), London open
    people = tuple(ProspectState(i, i, 1, zones[i % 2], None, 0, START) for i in range(1, 21))
    stale = ProspectState(99, 99, 1, "Europe/London", None, 0, None, START - timedelta(days=5), 1)  # queued 5 days ago
    sim = replay(SimulationInput(1, "R", "running", campaign(office), START, (box,), (stale, *people)), days=3)
    assert sim.held_late == 1 and sim.deferred == 0  # the stale one is held; no claim is wasted on a closed zone
    sends = {t.prospect_id: t.at for t in sim.sends}
    assert len(sends) == 20 and 99 not in sends
    for pid, at in sends.items():
        local = at.astimezone(ZoneInfo(zones[pid % 2]))
        assert at.weekday() < 5 and 9 <= local.hour < 17
    london_first = sorted(at for pid, at in sends.items() if pid % 2 == 1)
    # The held one took the first claim; then one a minute (the next tick after 60 s).
    assert london_first[:10] == [START + SEND_TICK * (1 + 13 * k) for k in range(10)]
