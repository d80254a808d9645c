"""Send-tick benchmark: does a tick cost what is due, or what is stored? 1,000 due among 10,000 vs 1,000,000.

    .venv/bin/python bench/tick_bench.py                                  # SQLite and PostgreSQL
    .venv/bin/python bench/tick_bench.py --db sqlite --sizes 10000 1000000 --repeat 5
    .venv/bin/python bench/tick_bench.py --profile                        # cProfile of one big tick

A tick here is the send tick without SMTP, each part in its own transaction as `send_tick` runs it:
recover expired leases, plan due enrollments into touches (render + log, up to 500), claim due touches
(up to 200, mailbox limits counted from the log). The database holds N enrollments in one running
two-step campaign over 10 mailboxes: 1,000 are due for step 1; every other one already got step 1 (a sent
touch in the log, sent over the past year) and waits for step 2 later. After each measured tick the
rows it wrote are removed and the due enrollments reset, so every repetition does the same work; the
sizes are measured in turn, so a busy moment on a shared machine hits both. Tables are filled with Core
bulk inserts: INSERT … SELECT FROM generate_series on PostgreSQL (then ANALYZE, as autovacuum would),
executemany on SQLite (no ANALYZE: nothing in Outreach runs it there).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, case, create_engine, delete, func, insert, literal, literal_column, select, text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from db.engine import make_engine, transaction  # noqa: E402
from db.enums import CampaignState, EnrollmentState, MailboxState, StepType, TlsMode, TouchState  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect, SequenceStep  # noqa: E402
from db.types import UTCDateTime  # noqa: E402
from outreach import outbox  # noqa: E402
from outreach.campaigns import CampaignManager  # noqa: E402
from outreach.sending import BATCH  # noqa: E402
from outreach.sequence import parse_definition  # noqa: E402

KEY = "t" * 48
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MAILBOXES = 10
CHUNK = 50_000
PG_ADMIN = os.environ.get("OUTREACH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
YAML = """
name: Big
audience: {list: big}
mailboxes: [%s]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
steps:
  - type: email
    variants:
      - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }}"}
      - {name: B, subject: "{{ company }} + us", body: "Hello {{ first_name | default('there') }}"}
  - {type: email, delay: 3 days, thread: true, body: "Following up, {{ first_name | default('there') }}"}
"""


def campaign(engine: Engine) -> tuple[int, int, list[int], list[int]]:
    """Mailboxes, a running two-step campaign; returns campaign id, step-1 id, its variant ids, mailbox ids."""
    names = [f"box-{i}" for i in range(MAILBOXES)]
    with transaction(engine) as s:
        boxes = [
            Mailbox(name=n, from_address=f"{n}@sender.example", smtp_host="127.0.0.1", smtp_port=2525,
                    tls=TlsMode.NONE, daily_limit=100_000, per_minute=10_000, state=MailboxState.ACTIVE)
            for n in names
        ]  # fmt: skip
        s.add_all(boxes)
        s.flush()
        ref = CampaignManager(s, secret_key=KEY).create_campaign(parse_definition(YAML % ", ".join(names)))
        row = s.get(OutreachCampaign, ref.id)
        assert row is not None
        row.state, row.launched_at = CampaignState.RUNNING, NOW - timedelta(days=365)
        step = s.scalars(select(SequenceStep).where(SequenceStep.campaign_id == ref.id, SequenceStep.position == 0))
        first = step.one()
        return ref.id, first.id, [v.id for v in first.variants], [b.id for b in boxes]


def fill_sqlite(engine: Engine, n: int, due: int, ids: tuple[int, int, list[int], list[int]]) -> None:
    """executemany in chunks: prospects, enrollments, and the sent step-1 touch of each waiting enrollment."""
    campaign_id, step_id, variants, boxes = ids
    for start in range(0, n, CHUNK):
        rng = range(start, min(start + CHUNK, n))
        with transaction(engine) as s:
            s.execute(insert(Prospect), [
                {"id": i + 1, "email": f"p{i}@x{i % 1000}.example", "email_normalized": f"p{i}@x{i % 1000}.example",
                 "first_name": f"P{i}", "company": f"Co {i % 1000}", "created_at": NOW, "updated_at": NOW}
                for i in rng
            ])  # fmt: skip
            s.execute(insert(Enrollment), [
                {"id": i + 1, "campaign_id": campaign_id, "prospect_id": i + 1, "mailbox_id": boxes[i % MAILBOXES],
                 "state": EnrollmentState.ACTIVE, "next_step": 0 if i < due else 1,
                 "next_due_at": NOW - timedelta(minutes=1) if i < due else NOW + timedelta(hours=1 + i % 72),
                 "created_at": NOW, "updated_at": NOW}
                for i in rng
            ])  # fmt: skip
            sent = [i for i in rng if i >= due]
            if sent:
                s.execute(insert(CommunicationLog), [
                    {"enrollment_id": i + 1, "step_id": step_id, "variant_id": variants[i % 2],
                     "mailbox_id": boxes[i % MAILBOXES], "channel": StepType.EMAIL, "state": TouchState.SENT,
                     "due_at": _sent_at(i), "sent_at": _sent_at(i), "attempts": 1,
                     "message_id": f"<h{i}@sender.example>", "subject": "Idea", "body_text": "Hi",
                     "created_at": _sent_at(i), "updated_at": _sent_at(i)}
                    for i in sent
                ])  # fmt: skip


def _sent_at(i: int) -> datetime:
    """History spread over the past year, so a day's window holds 1/365 of it."""
    return NOW - timedelta(days=1 + i % 365, seconds=i % 86_400)


def fill_postgresql(engine: Engine, n: int, due: int, ids: tuple[int, int, list[int], list[int]]) -> None:
    """INSERT … SELECT FROM generate_series, one statement per table."""
    campaign_id, step_id, variants, boxes = ids
    assert boxes == list(range(boxes[0], boxes[0] + MAILBOXES)), "mailbox ids are consecutive"
    gs = func.generate_series(0, n - 1).table_valued("i").render_derived()
    i = gs.c.i
    now = literal(NOW, UTCDateTime())
    email = func.concat("p", i, "@x", i % 1000, ".example")
    box_of = literal(boxes[0]) + i % MAILBOXES
    due_at = case((i < due, literal(NOW - timedelta(minutes=1), UTCDateTime())),
                  else_=now + func.make_interval(0, 0, 0, 0, 1 + i % 72))  # fmt: skip
    sent_at = now - func.make_interval(0, 0, 0, 1 + i % 365, 0, 0, i % 86_400)
    json_object, json_list = literal_column("'{}'::jsonb"), literal_column("'[]'::jsonb")
    with transaction(engine) as s:
        s.execute(insert(Prospect).from_select(
            ["id", "email", "email_normalized", "first_name", "company", "custom_fields", "is_role_address",
             "is_disposable", "created_at", "updated_at"],
            select(i + 1, email, email, func.concat("P", i), func.concat("Co ", i % 1000), json_object,
                   literal(False), literal(False), now, now).select_from(gs),
        ))  # fmt: skip
        s.execute(insert(Enrollment).from_select(
            ["id", "campaign_id", "prospect_id", "mailbox_id", "state", "next_step", "next_due_at", "created_at",
             "updated_at"],
            select(i + 1, literal(campaign_id), i + 1, box_of, literal(EnrollmentState.ACTIVE.value),
                   case((i < due, 0), else_=1), due_at, now, now).select_from(gs),
        ))  # fmt: skip
        s.execute(insert(CommunicationLog).from_select(
            ["enrollment_id", "step_id", "variant_id", "mailbox_id", "channel", "state", "due_at", "sent_at",
             "attempts", "message_id", "subject", "body_text", "links", "created_at", "updated_at"],
            select(i + 1, literal(step_id), literal(variants[0]) + (i % 2) * (variants[1] - variants[0]), box_of,
                   literal(StepType.EMAIL.value), literal(TouchState.SENT.value), sent_at, sent_at, literal(1),
                   func.concat("<h", i, "@sender.example>"), literal("Idea"), literal("Hi"), json_list,
                   sent_at, sent_at).select_from(gs).where(i >= due),
        ))  # fmt: skip
        for table in ("prospects", "enrollments", "communication_log"):
            s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))


def tick(engine: Engine) -> dict[str, float]:
    """The send tick up to the SMTP part, timed per part."""
    times = {}
    started = time.perf_counter()
    with transaction(engine) as s:
        outbox.recover_expired_leases(s, NOW)
    times["recover"] = time.perf_counter() - started
    with transaction(engine) as s:
        plan = CampaignManager(s, secret_key=KEY).schedule_communications(NOW)
    times["plan"] = time.perf_counter() - started - times["recover"]
    with transaction(engine) as s:
        claimed = outbox.claim_due(s, worker_id="bench", now=NOW, limit=BATCH)
    times["claim"] = time.perf_counter() - started - times["recover"] - times["plan"]
    times["total"] = time.perf_counter() - started
    assert plan.queued == 500 and len(claimed) == BATCH, (plan, len(claimed))
    return times


def reset(engine: Engine, due: int, last_touch: int) -> None:
    """Undo a tick: its touches removed, the due enrollments due again."""
    with transaction(engine) as s:
        s.execute(delete(CommunicationLog).where(CommunicationLog.id > last_touch))
        s.execute(
            update(Enrollment)
            .where(Enrollment.id <= due)
            .values(next_step=0, next_due_at=NOW - timedelta(minutes=1), state=EnrollmentState.ACTIVE)
        )


def build(kind: str, n: int, due: int, workdir: Path) -> tuple[Engine, Callable[[], None], float]:
    """A migrated, filled database; returns its engine, a clean-up, and the seconds the fill took."""
    if kind == "sqlite":
        url, drop = f"sqlite:///{workdir / f'tick-{n}.db'}", lambda: None
    else:
        name = f"outreach_tick_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    ids = campaign(engine)
    (fill_sqlite if kind == "sqlite" else fill_postgresql)(engine, n, due, ids)
    if kind == "postgresql":  # autovacuum analyzes big fresh tables; nothing in Outreach analyzes SQLite
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    return engine, drop, time.perf_counter() - started


class Database:
    """One filled database, ready for ticks."""

    def __init__(self, kind: str, n: int, due: int, workdir: Path) -> None:
        self.kind, self.n, self.due = kind, n, due
        self.engine, self.drop, self.fill_s = build(kind, n, due, workdir)
        with transaction(self.engine, readonly=True) as s:
            self.last_touch = s.scalar(select(func.coalesce(func.max(CommunicationLog.id), 0)))
            assert s.scalar(select(func.count()).select_from(Enrollment)) == n
        self.runs: list[dict[str, float]] = []

    def run(self) -> None:
        self.runs.append(tick(self.engine))
        reset(self.engine, self.due, self.last_touch)

    def profile(self) -> str:
        profiler = cProfile.Profile()
        profiler.enable()
        tick(self.engine)
        profiler.disable()
        reset(self.engine, self.due, self.last_touch)
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).sort_stats("cumulative")
        stats.print_stats(r"outreach/|\{method 'execute'|psycopg/cursor", 25)  # our functions and the database
        return stream.getvalue()

    def median(self, part: str) -> float:
        return statistics.median(r[part] for r in self.runs)

    def close(self) -> None:
        self.engine.dispose()
        self.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 1_000_000])
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile one tick at the largest size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outreach-tick-bench-") as tmp:
        for kind in args.db:
            dbs = [Database(kind, n, args.due, Path(tmp)) for n in sorted(args.sizes)]
            try:
                for _ in range(args.repeat):  # alternate sizes, so a busy moment on the machine hits both
                    for db in dbs:
                        db.run()
                for db in dbs:
                    ms = {part: db.median(part) * 1000 for part in ("total", "recover", "plan", "claim")}
                    print(
                        f"{kind:10} {db.n:>9,} enrollments, {args.due:,} due: tick {ms['total']:7.1f} ms (recover "
                        f"{ms['recover']:.1f}, plan {ms['plan']:.1f}, claim {ms['claim']:.1f}; median of {args.repeat})"
                        f" — filled in {db.fill_s:.0f} s",
                        flush=True,
                    )
                ratio = dbs[-1].median("total") / dbs[0].median("total")
                verdict = "met" if ratio <= 2 else "MISSED"
                print(f"{kind:10} ratio {dbs[-1].n:,} / {dbs[0].n:,}: {ratio:.2f}x (target <= 2x: {verdict})")
                if args.profile:
                    print(f"--- profile: {kind}, {dbs[-1].n:,} enrollments ---\n{dbs[-1].profile()}", flush=True)
            finally:
                for db in dbs:
                    db.close()


if __name__ == "__main__":
    main()
