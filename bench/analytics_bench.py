"""Analytics benchmark: the Analytics page's queries over 1,000,000 engagement events, SQLite and PostgreSQL.

    .venv/bin/python bench/analytics_bench.py                        # 1M events, both databases
    .venv/bin/python bench/analytics_bench.py --events 200000 --db sqlite --repeat 5
    .venv/bin/python bench/analytics_bench.py --explain              # plans of the overview's reads
    .venv/bin/python bench/analytics_bench.py --before               # and the old overview, same run

The same generated workspace goes into a fresh migrated SQLite file and a throw-away PostgreSQL database
(raw executemany in one transaction on SQLite, COPY on PostgreSQL, then ANALYZE there as autovacuum
would; nothing in Outreach analyzes SQLite, so neither does this). Per 1M events: 10 campaigns (3 email
steps, A/B on the first), 8 mailboxes, 4 lists, ~166,000 prospects over 13 time zones (one of them
half an hour off UTC, one prospect in 13 without a zone), ~400,000 sent emails over 120 days (plus
queued, in-doubt and failed ones for the live monitor); per email 1.5 proxy loads on average, a
person reading 30% of them (1-4 loads), 8% human clicks, 10% scanner clicks, 2% bounces, 4% replies
(intents and sentiment), 0.5% unsubscribes, 0.05% complaints; meetings for 30% of interested replies.

Timed: the first refresh after the load (it builds the rollups from scratch: the triggers queued every
loaded row), then a refresh after --late new events (repeated --repeat times); then, each as the page
runs it (its own read-only transaction, results turned into the page's dataclasses): the overview read
from the rollups (funnel, per campaign, daily series, per step/variant/mailbox, heatmap, time to reply),
each of its sections alone, the reply mix, the live monitor, and the page's whole query set (its own
refresh first), unfiltered and with the page's filters. --before also times the old one-statement
overview from the raw events. Baseline, same run: `SELECT count(*)` over engagement_events. Figures
are the median of --repeat runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import EngagementEvent, LeadStageChange, ResponseAnalysis  # noqa: E402
from outreach import analytics, analytics_reads, analytics_rollup  # noqa: E402
from outreach.analytics_sql import Filters  # noqa: E402

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PG_ADMIN = os.environ.get("OUTREACH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ZONES = [
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Europe/London",
    "Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo",
    "Africa/Johannesburg", None,
]  # fmt: skip
INTENTS = ["interested"] * 25 + ["not_interested"] * 20 + ["question"] * 20 + ["other"] * 15 + ["referral"] * 5
INTENTS += ["unsubscribe"] * 5 + ["out_of_office"] * 10
CAMPAIGN_STATES = ["running"] * 6 + ["paused"] * 2 + ["finished"] * 2


class Tables:
    """Rows per table, as column names and tuples, in insertion order (parents first)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, list[tuple[Any, ...]]] = {}

    def add(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.columns[table] = list(columns)
        self.rows.setdefault(table, []).extend(rows)


def generate(events: int, seed: int = 8) -> Tables:
    """A workspace proportionate to `events`: ~2.4 events per sent email, 2.4 emails per person."""
    rnd = random.Random(seed)
    t = Tables()
    people = max(events // 6, 50)
    n_campaigns, n_boxes, n_lists = 10, 8, 4
    t.add("mailboxes", ["id", "name", "from_address", "smtp_host", "smtp_port", "tls", "imap_folders", "daily_limit",
                        "per_minute", "state", "consecutive_failures", "created_at", "updated_at"],
          [(i, f"box-{i}", f"box-{i}@sender.example", "127.0.0.1", 25, "none", "[]", 1000, 10,
            "paused" if i == n_boxes else "active", 0, NOW, NOW) for i in range(1, n_boxes + 1)])  # fmt: skip
    t.add("outreach_campaigns", ["id", "name", "state", "definition", "audience", "schedule", "stop_on", "track_opens",
                                 "track_clicks", "consecutive_failures", "created_at", "updated_at"],
          [(i, f"Campaign {i}", CAMPAIGN_STATES[i - 1], "{}", "{}", "{}", "[]", i != 3, True, 0, NOW, NOW)
           for i in range(1, n_campaigns + 1)])  # fmt: skip
    steps, variants = [], []
    for camp in range(1, n_campaigns + 1):
        for pos in range(3):
            sid = (camp - 1) * 3 + pos + 1
            steps.append((sid, camp, pos, "email", 3 * pos, "days", "always", pos > 0, "{}"))
            names = ["A", "B"] if pos == 0 else ["only"]
            for name in names:
                variants.append((len(variants) + 1, sid, name, f"Subject {name}", "Body", 1.0, True))
    t.add("sequence_steps", ["id", "campaign_id", "position", "type", "delay_amount", "delay_unit", "condition",
                             "thread", "options"], steps)  # fmt: skip
    t.add("message_variants", ["id", "step_id", "name", "subject", "body", "weight", "is_active"], variants)
    variants_of = {sid: [v[0] for v in variants if v[1] == sid] for sid, *_ in steps}
    t.add("prospect_lists", ["id", "name", "created_at"], [(i, f"list-{i}", NOW) for i in range(1, n_lists + 1)])
    t.add("prospects", ["id", "email", "email_normalized", "first_name", "company", "timezone", "custom_fields",
                        "is_role_address", "is_disposable", "created_at", "updated_at"],
          [(p, f"p{p}@x{p % 997}.example", f"p{p}@x{p % 997}.example", f"P{p}", f"Co {p % 997}",
            ZONES[p % len(ZONES)], "{}", False, False, NOW, NOW) for p in range(1, people + 1)])  # fmt: skip
    t.add("prospect_list_members", ["list_id", "prospect_id", "added_at"],
          [(1 + p % n_lists, p, NOW) for p in range(1, people + 1)])  # fmt: skip
    t.add("enrollments", ["id", "campaign_id", "prospect_id", "mailbox_id", "state", "next_step", "created_at",
                          "updated_at"],
          [(p, 1 + p % n_campaigns, p, 1 + p % n_boxes, "active", 0, NOW, NOW)
           for p in range(1, people + 1)])  # fmt: skip
    _touches_and_events(t, rnd, people, events, variants_of)
    return t


def _touches_and_events(t: Tables, rnd: random.Random, people: int, events: int,
                        variants_of: dict[int, list[int]]) -> None:  # fmt: skip
    touches: list[tuple[Any, ...]] = []
    evs: list[tuple[Any, ...]] = []
    replies: list[tuple[Any, ...]] = []
    changes: list[tuple[Any, ...]] = []
    n_boxes = 8

    def event(kind: str, at: datetime, touch: int, enr: int, camp: int, pid: int, machine: bool = False) -> None:
        evs.append((len(evs) + 1, kind, at, touch, enr, camp, pid, machine, "{}"))

    for p in range(1, people + 1):
        camp = 1 + p % 10
        first = NOW - timedelta(days=rnd.uniform(1, 120))
        n_touches = rnd.choice((1, 2, 3, 3))
        for pos in range(n_touches):
            sid = (camp - 1) * 3 + pos + 1
            sent = first + timedelta(days=3 * pos, minutes=rnd.randint(0, 600))
            if sent >= NOW:
                break
            touch = len(touches) + 1
            bounced = rnd.random() < 0.02
            state = "bounced" if bounced else "sent"
            touches.append((touch, p, sid, rnd.choice(variants_of[sid]), 1 + (p + pos) % n_boxes, "email", state,
                            sent, 1, "[]", sent, sent, sent))  # fmt: skip
            if bounced:
                event("bounce", sent + timedelta(minutes=5), touch, p, camp, p)
                continue
            for _ in range(rnd.choice((0, 1, 1, 2, 3))):  # Apple's proxy and gateways load every image
                event("open", sent + timedelta(seconds=rnd.randint(2, 600)), touch, p, camp, p, machine=True)
            if rnd.random() < 0.3:  # a person reads it, often more than once
                for _ in range(rnd.randint(1, 4)):
                    event("open", sent + timedelta(hours=rnd.uniform(0.1, 72)), touch, p, camp, p)
            if rnd.random() < 0.1:
                event("click", sent + timedelta(seconds=3), touch, p, camp, p, machine=True)
            if rnd.random() < 0.08:
                event("click", sent + timedelta(hours=rnd.uniform(0.2, 48)), touch, p, camp, p)
            if rnd.random() < 0.005:
                event("unsubscribe", sent + timedelta(hours=rnd.uniform(1, 48)), touch, p, camp, p)
            if rnd.random() < 0.0005:
                event("complaint", sent + timedelta(hours=rnd.uniform(1, 48)), touch, p, camp, p)
            if rnd.random() < 0.04:
                at = sent + timedelta(hours=rnd.expovariate(1 / 20))
                intent = rnd.choice(INTENTS)
                replies.append((len(replies) + 1, f"<r{len(replies)}@x.example>", "reply", touch, p, camp, at, intent,
                                rnd.uniform(-1, 1), "{}", "[]", at))  # fmt: skip
                event("reply", at, touch, p, camp, p)
                if intent == "interested" and rnd.random() < 0.3:
                    changes.append((len(changes) + 1, p, "interested", "meeting", "bench", at + timedelta(days=2)))
            if len(evs) >= events:
                break
        if len(evs) >= events:
            break
    while len(evs) < events:  # top up with more proxy loads on random sent emails (people ran out first)
        touch = rnd.randint(1, len(touches))
        row = touches[touch - 1]
        enr = row[1]
        event("open", row[7] + timedelta(seconds=rnd.randint(2, 600)), touch, enr, 1 + enr % 10, enr, machine=True)
    del evs[events:]
    last_step = {row[1]: row[2] for row in touches}
    live = [p for p in range(1, people + 1) if (1 + p % 10) <= 6 and last_step.get(p, 0) % 3 != 0][:2000]
    for i, p in enumerate(live):
        state = ("queued", "queued", "retry_wait", "in_doubt", "failed")[i % 5]
        touches.append((len(touches) + 1, p, last_step.get(p, (p % 10) * 3) + 1, None, 1 + p % n_boxes, "email", state,
                        NOW - timedelta(minutes=i % 50), i % 3, "[]", None, NOW, NOW))  # fmt: skip
    touch_columns = ["id", "enrollment_id", "step_id", "variant_id", "mailbox_id", "channel", "state", "due_at",
                     "attempts", "links", "sent_at", "created_at", "updated_at"]  # fmt: skip
    t.add("communication_log", touch_columns, touches)
    t.add("engagement_events", ["id", "kind", "occurred_at", "communication_id", "enrollment_id", "campaign_id",
                                "prospect_id", "is_machine", "details"], evs)  # fmt: skip
    t.add("response_analyses", ["id", "message_id", "kind", "communication_id", "prospect_id", "campaign_id",
                                "received_at", "intent", "sentiment", "explanation", "actions", "created_at"],
          replies)  # fmt: skip
    t.add("lead_stage_changes", ["id", "prospect_id", "from_stage", "to_stage", "reason", "created_at"], changes)


# --- loading --------------------------------------------------------------------------------------


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return int(v) if isinstance(v, bool) else v


def load_sqlite(engine: Engine, t: Tables) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        cur.execute("PRAGMA cache_size=-262144")  # 256 MB for this load only: index builds stay in memory
        for table, cols in t.columns.items():
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            cur.executemany(sql, ([_sqlite_value(v) for v in row] for row in t.rows[table]))
        cur.execute("COMMIT")
    finally:
        raw.close()


def load_postgresql(engine: Engine, t: Tables) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, cols in t.columns.items():
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in t.rows[table]:
                    copy.write_row(row)
            if "id" in cols:
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # what autovacuum does to a big fresh table


def database(kind: str, workdir: Path) -> Iterator[Engine]:
    """A migrated empty database of that kind, dropped afterwards."""
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{workdir / 'analytics.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    name = f"outreach_analytics_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- timing ---------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], repeat: int, warmup: bool) -> tuple[float, float, list[float]]:
    """Median wall and CPU seconds (CPU of this process: all of SQLite's work, only the client's for PG)."""
    if warmup:
        fn()  # caches, prepared plans
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), walls


def query_sets(engine: Engine, filters: Filters) -> dict[str, Callable[[], Any]]:
    def run(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        def go() -> Any:
            with transaction(engine, readonly=True) as s:
                return fn(s, *args)

        return go

    sets: dict[str, Callable[[], Any]] = {
        "baseline: SELECT count(*) FROM engagement_events": run(
            lambda s: s.execute(text("SELECT count(*) FROM engagement_events")).scalar()
        ),
    }
    for name in analytics.SECTIONS:
        sets[f"  section alone: {name}"] = run(analytics.overview, filters, NOW, (name,))
    sets["overview (rollups; refresh finds nothing queued)"] = run(analytics.overview, filters, NOW)
    sets["reply mix (intent, sentiment)"] = run(analytics_reads.reply_mix, filters)
    sets["live monitor"] = run(analytics_reads.live_monitor, NOW)
    sets["filter options"] = run(analytics_reads.filter_options)

    def page() -> None:
        with transaction(engine) as s:  # what the page does first: its own (empty) refresh
            analytics_rollup.refresh(s)
        with transaction(engine, readonly=True) as s:
            analytics_reads.filter_options(s)
            analytics.overview(s, filters, NOW)
            analytics_reads.reply_mix(s, filters)
            analytics_reads.live_monitor(s, NOW)

    sets["PAGE: every query the page runs"] = page
    return sets


FIRST_DAY = (NOW - timedelta(days=121)).date()
FILTER_SETS = {
    "unfiltered (all time, all campaigns)": Filters(),
    "page default (dates spanning every send)": Filters(start=FIRST_DAY, end=NOW.date()),
    "last 30 days": Filters(start=(NOW - timedelta(days=29)).date(), end=NOW.date()),
    "one campaign + one list": Filters(campaign_id=2, list_id=2),
    "one list (a quarter of the prospects)": Filters(list_id=2),
    "one list, last 30 days (funnel from the facts)": Filters(
        start=(NOW - timedelta(days=29)).date(), end=NOW.date(), list_id=2
    ),
    "one mailbox, last 30 days": Filters(start=(NOW - timedelta(days=29)).date(), end=NOW.date(), mailbox_id=3),
}


def late_rows(engine: Engine, n: int, rnd: random.Random) -> None:
    """`n` new engagement events on random sent emails (opens, clicks, a few bounces, unsubscribes), 2% of
    them with a reply, and a meeting for some: what arrives between two refreshes."""
    with transaction(engine) as s:
        touches = s.execute(
            text("SELECT c.id, c.enrollment_id, e.campaign_id, e.prospect_id FROM communication_log c "
                 "JOIN enrollments e ON e.id = c.enrollment_id WHERE c.state = 'sent' ORDER BY c.id DESC LIMIT 20000")
        ).all()  # fmt: skip
        events, replies, stages = [], [], []
        for _ in range(n):
            touch, enr, camp, pid = rnd.choice(touches)
            kind = rnd.choices(["open", "click", "bounce", "unsubscribe"], [80, 15, 3, 2])[0]
            events.append({"kind": kind, "occurred_at": NOW, "communication_id": touch, "enrollment_id": enr,
                           "campaign_id": camp, "prospect_id": pid, "is_machine": rnd.random() < 0.5})  # fmt: skip
            if rnd.random() < 0.02:
                replies.append({"message_id": f"<late-{uuid.uuid4().hex}@x>", "kind": "reply",
                                "communication_id": touch, "prospect_id": pid, "campaign_id": camp, "received_at": NOW,
                                "intent": rnd.choice(INTENTS), "sentiment": 0.5})  # fmt: skip
                stages.append({"prospect_id": pid, "from_stage": "interested", "to_stage": "meeting",
                               "reason": "bench", "created_at": NOW})  # fmt: skip
        s.execute(insert(EngagementEvent), events)
        if replies:
            s.execute(insert(ResponseAnalysis), replies)
            s.execute(insert(LeadStageChange), stages)


def refresh_once(engine: Engine) -> str | None:
    with transaction(engine) as s:
        return analytics_rollup.refresh(s)


def explain(engine: Engine, filters: Filters) -> str:
    """Plans of the overview's reads (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE)."""
    from outreach import analytics_rollup_reads as reads

    with transaction(engine, readonly=True) as s:
        narrowed, trk = reads.effective(s, filters), analytics.tracking(s)
    statements = [reads.days_statement(narrowed, trk), reads.dims_statement(narrowed, trk),
                  reads.heat_statement(narrowed), reads.people_statement(narrowed, trk)]  # fmt: skip
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    out = []
    with engine.connect() as conn:
        for stmt in statements:
            compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
            rows = conn.exec_driver_sql(prefix + str(compiled)).all()
            out.append("\n".join(" | ".join(str(c) for c in row) for row in rows))
    return "\n--\n".join(out)


def _line(name: str, wall: float, cpu: float, runs: list[float]) -> None:
    each = ", ".join(f"{r * 1000:.0f}" for r in runs)
    print(f"{name:<52} wall {wall * 1000:8.1f} ms  cpu {cpu * 1000:8.1f} ms  runs {each}  "
          f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--no-warmup", action="store_true", help="time the first run too (a cold page)")
    parser.add_argument("--only", choices=list(FILTER_SETS), nargs="*")
    parser.add_argument("--late", type=int, nargs="*", default=[1000], help="new events before a timed refresh")
    parser.add_argument("--before", action="store_true", help="also time the old overview from raw events")
    args = parser.parse_args()
    print(f"date {date.today()}  load average {os.getloadavg()}  cores {os.cpu_count()}")
    started = time.perf_counter()
    tables = generate(args.events)
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in tables.rows.items())
    print(f"generated in {time.perf_counter() - started:.1f} s: {sizes}")
    with tempfile.TemporaryDirectory() as workdir:
        for kind in args.db:
            for engine in database(kind, Path(workdir)):
                started = time.perf_counter()
                (load_sqlite if kind == "sqlite" else load_postgresql)(engine, tables)
                print(f"\n== {kind}: loaded in {time.perf_counter() - started:.1f} s, load average {os.getloadavg()}")
                wall, cpu, runs = _timed(lambda e=engine: refresh_once(e), 1, False)
                _line("rollups built from scratch (first refresh)", wall, cpu, runs)
                rnd = random.Random(1)
                for n in args.late:
                    walls, cpus = [], []
                    for _ in range(args.repeat):
                        late_rows(engine, n, rnd)
                        wall, cpu, _runs = _timed(lambda e=engine: refresh_once(e), 1, False)
                        walls.append(wall)
                        cpus.append(cpu)
                    _line(f"refresh after {n:,} new events", statistics.median(walls), statistics.median(cpus), walls)
                for label, filters in FILTER_SETS.items():
                    if args.only and label not in args.only:
                        continue
                    print(f"-- {label}", flush=True)
                    for name, fn in query_sets(engine, filters).items():
                        _line(name, *_timed(fn, args.repeat, not args.no_warmup))
                    if args.before:
                        before = query_sets(engine, filters)["baseline: SELECT count(*) FROM engagement_events"]
                        _line("  (baseline again)", *_timed(before, 1, False))

                        def old(e: Engine = engine, f: Filters = filters) -> Any:
                            with transaction(e, readonly=True) as s:
                                return analytics.recount(s, f, NOW)

                        _line("BEFORE: overview from raw events (one statement)", *_timed(old, 1, False))
                    if args.explain:
                        print(explain(engine, filters))
                print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
