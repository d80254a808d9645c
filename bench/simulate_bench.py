"""Simulation benchmark: a 100,000-prospect, 4-step campaign over 20 mailboxes, simulated before launch.

    .venv/bin/python bench/simulate_bench.py                       # 100,000 prospects, default horizon and to the end
    .venv/bin/python bench/simulate_bench.py --prospects 20000 --profile

Set-up (not timed): a fresh SQLite database, 20 mailboxes (50 a day, 2 a minute, five of them on a
ramp), 100,000 prospects in five zones and countries (holidays apply), a draft campaign with 4 email
steps (business-day delays, weekdays 09:00-17:00 in each prospect's zone). Timed, each in the same run:
- baseline: one trivial pass over the same prospects — read (id, zone, country) of every prospect and
  compute its first due time with `campaigns.first_touch_due` (what launch does once per prospect);
- `simulate()` with the CLI's default horizon (90 days), split into the initial state (what launch would
  enroll, computed with launch's functions, nothing written) and the replay (in memory, no database);
- `simulate()` to the end of the campaign (every touch placed). The campaign's maximum lateness is 366 days
  (both horizons), so the backlog is not held (at the default of two days the worker holds most of it).
The target (issue 9): the simulation ≤ 10 s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from db.engine import make_engine, transaction  # noqa: E402
from db.enums import TlsMode  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Mailbox, Prospect, ProspectList, ProspectListMember  # noqa: E402
from outreach.campaigns import CampaignManager, definition_of, find_campaign, first_touch_due  # noqa: E402
from outreach.sequence import parse_definition  # noqa: E402
from outreach.simulate import MAX_DAYS, _draft_state, replay, simulate  # noqa: E402

KEY = "b" * 48
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday
MAILBOXES = 20
PLACES = [
    ("America/New_York", "United States"),
    ("America/Los_Angeles", "USA"),
    ("Europe/Berlin", "Germany"),
    ("Europe/London", "United Kingdom"),
    (None, None),
]
YAML = """
name: Big
audience: {list: big}
mailboxes: [%s]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: prospect, window: "09:00-17:00", days: [mon, tue, wed, thu, fri], max_lateness: %s}
steps:
  - {type: email, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }}"}
  - {type: email, delay: 3 business days, when: no_reply, thread: true, body: "Following up"}
  - {type: email, delay: 4 business days, when: no_reply, thread: true, body: "One more"}
  - {type: email, delay: 7 days, when: no_reply, subject: "Closing the loop", body: "Last note"}
"""


def build(path: Path, prospects: int, lateness: str) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    names = [f"box-{i:02d}" for i in range(MAILBOXES)]
    with transaction(engine) as s:
        for i, name in enumerate(names):
            ramp = {"ramp_start": 10, "ramp_increment": 10, "ramp_started_on": NOW.date()} if i % 4 == 0 else {}
            s.add(Mailbox(name=name, from_address=f"{name}@sender.example", smtp_host="127.0.0.1", smtp_port=2525,
                          tls=TlsMode.NONE, daily_limit=50, per_minute=2, **ramp))  # fmt: skip
        lst = ProspectList(name="big")
        s.add(lst)
        s.flush()
        rows = [
            {"id": i + 1, "email": f"p{i}@x{i % 997}.example", "email_normalized": f"p{i}@x{i % 997}.example",
             "first_name": f"P{i}", "company": f"Co {i % 997}", "timezone": PLACES[i % 5][0],
             "country": PLACES[i % 5][1], "created_at": NOW, "updated_at": NOW}
            for i in range(prospects)
        ]  # fmt: skip
        s.execute(insert(Prospect), rows)  # executemany with the ids given: no RETURNING round trips
        s.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": i + 1} for i in range(prospects)])
        CampaignManager(s, secret_key=KEY).create_campaign(parse_definition(YAML % (", ".join(names), lateness)))
    engine.dispose()
    return url


def baseline(url: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the trivial pass."""
    engine = make_engine(url)
    with transaction(engine, readonly=True) as s:
        cpu = time.process_time()
        started = time.perf_counter()
        campaign = find_campaign(s, "Big")
        definition = definition_of(campaign)
        schedule = definition.schedule
        for pid, tz, country in s.execute(select(Prospect.id, Prospect.timezone, Prospect.country)):
            first_touch_due(definition, schedule.rules_for(tz, country), campaign.id, pid, NOW)
        elapsed = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    return elapsed


def timed_simulation(url: str, days: int, profile: bool) -> tuple[float, float, float, float, object]:
    """(initial state, replay, total wall, total CPU, the simulation) for `days`; the parts in CPU seconds."""
    engine = make_engine(url)
    with transaction(engine, readonly=True) as s:
        campaign = find_campaign(s, "Big")
        started = time.process_time()
        inp = _draft_state(s, campaign, NOW, KEY)
        loaded = time.process_time()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        sim = replay(inp, days)
        if profiler:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        done = time.process_time()
    with transaction(engine, readonly=True) as s:  # the public entry point, end to end, for the record
        total_cpu = time.process_time()
        total_started = time.perf_counter()
        check = simulate(s, find_campaign(s, "Big"), NOW, secret_key=KEY, days=days)
        total = time.perf_counter() - total_started
        total_cpu = time.process_time() - total_cpu
    engine.dispose()
    assert check.per_day == sim.per_day, "the same input gave another schedule"
    return loaded - started, done - loaded, total, total_cpu, sim


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        url = build(Path(tmp) / "sim.db", args.prospects, '"366 days"')
        setup = time.perf_counter() - t0
        size = f"{args.prospects:,} prospects × 4 steps, {MAILBOXES} mailboxes"
        print(f"{size} (set-up {setup:.1f} s, untimed)")
        baseline(url)  # warm-up, untimed: imports and the holiday tables load once per process
        for label, days in (("90 days (the CLI's default)", 90), ("to the end", MAX_DAYS)):
            base, base_cpu = baseline(url)
            state, run, total, total_cpu, sim = timed_simulation(url, days, args.profile)
            print(
                f"{label}:\n"
                f"  baseline (read every prospect + first_touch_due): {base:.2f} s (CPU {base_cpu:.2f} s)\n"
                f"  simulate(): {total:.2f} s end to end (CPU {total_cpu:.2f} s) = {total / base:.1f}× baseline "
                f"[CPU: initial state {state:.2f} s, replay {run:.2f} s{' (profiled)' if args.profile else ''}]\n"
                f"  result: {sim.touches:,} touches placed, {sim.unscheduled:,} after the horizon, "
                f"{sim.held_late:,} held (late), {sim.deferred:,} claims deferred (window closed), {sim.summary}"
            )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
