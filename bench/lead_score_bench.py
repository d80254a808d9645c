"""Lead scoring and send-time costs: what re-scoring adds to the tracking writer, the nightly pass, the Leads page.

    .venv/bin/python bench/lead_score_bench.py                          # SQLite, 20,000 leads
    .venv/bin/python bench/lead_score_bench.py --leads 100000
    .venv/bin/python bench/lead_score_bench.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

A fresh database is migrated and seeded with `--leads` prospects, each enrolled with one sent touch, a
lead row, ~3 opens/clicks (a third of them machine opens) and, for one in twenty, an interested reply.
Figures (medians where repeated):
- the tracking writer: recording a batch of 32 hits (the baseline, what it already pays) vs refreshing
  the 32 leads behind them (what scoring adds, at most once a second under load);
- the nightly pass: re-scoring every lead (leads/s) and refitting the send-time model over every touch;
- the Leads page: one page of 50 sorted by score / by last activity, a filtered count, the pipeline board.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, select, text  # noqa: E402

from db.engine import make_engine, transaction  # noqa: E402
from db.enums import EventKind, Intent, LeadStage, ResponseKind, StepType, TouchState  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import (  # noqa: E402
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    SequenceStep,
)
from outreach import lead_scores, send_time  # noqa: E402
from outreach.engagement import Hit, record_hits  # noqa: E402

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
READER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
CHUNK = 5000
STAGES = [LeadStage.CONTACTED, LeadStage.ENGAGED, LeadStage.REPLIED, LeadStage.INTERESTED, LeadStage.MEETING]


def seed(engine, leads: int) -> list[int]:
    rng = random.Random(1)
    zones = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", None]
    with transaction(engine) as s:
        campaign = OutreachCampaign(name="bench", schedule={"timezone": "prospect"})
        step = SequenceStep(campaign=campaign, position=0, type=StepType.EMAIL)
        s.add_all([campaign, step])
        s.flush()
        lead_scores.save_profile(s, {"industries": ["fintech"], "title_keywords": ["cfo"], "min_employees": 50})
        campaign_id, step_id = campaign.id, step.id
    touch_ids: list[int] = []
    for start in range(0, leads, CHUNK):
        n = min(CHUNK, leads - start)
        with transaction(engine) as s:
            people = [
                {"email": f"p{i}@bench.example", "email_normalized": f"p{i}@bench.example",
                 "industry": rng.choice(["Fintech", "Retail", "Health"]), "title": rng.choice(["CFO", "Analyst"]),
                 "employee_count": rng.randint(5, 5000), "timezone": rng.choice(zones), "company": f"Co {i % 97}"}
                for i in range(start, start + n)
            ]  # fmt: skip
            pids = list(s.execute(insert(Prospect).returning(Prospect.id), people).scalars())
            eids = list(
                s.execute(
                    insert(Enrollment).returning(Enrollment.id),
                    [{"campaign_id": campaign_id, "prospect_id": p} for p in pids],
                ).scalars()
            )
            sent = [NOW - timedelta(days=rng.randint(1, 60), hours=rng.randint(0, 23)) for _ in pids]
            tids = list(
                s.execute(
                    insert(CommunicationLog).returning(CommunicationLog.id),
                    [{"enrollment_id": e, "step_id": step_id, "channel": StepType.EMAIL, "state": TouchState.SENT,
                      "due_at": t, "sent_at": t, "links": ["https://acme.example/demo"]}
                     for e, t in zip(eids, sent, strict=True)],
                ).scalars()
            )  # fmt: skip
            touch_ids += tids
            events = []
            for pid, eid, tid, t in zip(pids, eids, tids, sent, strict=True):
                for _ in range(rng.randint(1, 5)):
                    kind = rng.choice([EventKind.OPEN, EventKind.OPEN, EventKind.CLICK])
                    events.append({"kind": kind, "occurred_at": t + timedelta(hours=rng.randint(1, 48)),
                                   "communication_id": tid, "enrollment_id": eid, "campaign_id": campaign_id,
                                   "prospect_id": pid, "is_machine": rng.random() < 0.33,
                                   "url": "https://acme.example/demo" if kind is EventKind.CLICK else None,
                                   "details": {}})  # fmt: skip
            s.execute(insert(EngagementEvent), events)
            replied = [(pid, tid, t) for pid, tid, t in zip(pids, tids, sent, strict=True) if rng.random() < 0.05]
            if replied:
                s.execute(insert(ResponseAnalysis), [
                    {"message_id": f"<{uuid.uuid4().hex}@r>", "kind": ResponseKind.REPLY, "prospect_id": pid,
                     "communication_id": tid, "intent": Intent.INTERESTED, "received_at": t + timedelta(hours=3),
                     "explanation": {}, "actions": []} for pid, tid, t in replied
                ])  # fmt: skip
                s.execute(insert(EngagementEvent), [
                    {"kind": EventKind.REPLY, "occurred_at": t + timedelta(hours=3), "communication_id": tid,
                     "prospect_id": pid, "details": {}} for pid, tid, t in replied
                ])  # fmt: skip
            s.execute(insert(LeadQualification), [
                {"prospect_id": p, "stage": rng.choice(STAGES), "score": 0.0, "grade": "D", "explanation": {},
                 "updated_at": NOW} for p in pids
            ])  # fmt: skip
    return touch_ids


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    runs, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), result


def writer_costs(engine, touch_ids: list[int], batches: int = 40, size: int = 32) -> dict[str, float]:
    rng = random.Random(2)
    wall: dict[str, list[float]] = {"record": [], "rescore": []}
    cpu: dict[str, list[float]] = {"record": [], "rescore": []}

    def measure(name: str, fn) -> None:
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall[name].append(time.perf_counter() - started)
        cpu[name].append(time.process_time() - started_cpu)

    for _ in range(batches):
        chosen = rng.sample(touch_ids, size)
        hits = [Hit(EventKind.OPEN if i % 2 else EventKind.CLICK, t, NOW, READER, "198.51.100.7")
                for i, t in enumerate(chosen)]  # fmt: skip

        def record(hits=hits) -> None:
            with engine.begin() as conn:
                record_hits(conn, hits)

        def rescore(chosen=chosen) -> None:
            with engine.begin() as conn:
                lead_scores.refresh_for_touches(conn, chosen, NOW)

        measure("record", record)
        measure("rescore", rescore)
    out = {}
    for name in ("record", "rescore"):
        out[f"{name}_batch_ms"] = statistics.median(wall[name]) * 1000
        out[f"{name}_batch_cpu_ms"] = statistics.median(cpu[name]) * 1000
    return out


def page_costs(engine) -> dict[str, float]:
    out = {}
    with transaction(engine, readonly=True) as s:
        for sort in ("score", "last activity"):
            seconds, rows = timed(lambda sort=sort: lead_scores.lead_table(s, limit=50, offset=500, sort=sort), 5)
            assert len(rows) == 50
            out[f"page_by_{sort.replace(' ', '_')}_ms"] = seconds * 1000
        where = lead_scores.LeadFilter(stage=LeadStage.INTERESTED, grade="B")
        out["filtered_count_ms"] = timed(lambda: lead_scores.count_leads(s, where), 5)[0] * 1000
        out["pipeline_board_ms"] = timed(lambda: lead_scores.pipeline_board(s), 3)[0] * 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--url", help="a PostgreSQL admin URL: a throw-away database is created there")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    admin = None
    if args.url:
        name = f"lead_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.url.rsplit("/", 1)[0] + "/" + name
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='lead-bench-')) / 'outreach.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        seed_s, touch_ids = timed(lambda: seed(engine, args.leads))
        figures: dict[str, object] = {"database": engine.dialect.name, "leads": args.leads}
        figures |= {"load_average": round(os.getloadavg()[0], 1), "seed_s": round(seed_s, 1)}
        refresh_s, count = timed(lambda: lead_scores.refresh_all(engine, NOW))
        assert count == args.leads, count
        figures |= {"refresh_all_s": round(refresh_s, 2), "refresh_leads_per_s": round(args.leads / refresh_s)}
        with transaction(engine) as s:
            refit_s, summary = timed(lambda: send_time.refit(s, NOW, force=True))
        figures |= {"send_time_refit_s": round(refit_s, 2), "send_time": summary}
        figures |= {k: round(v, 2) for k, v in writer_costs(engine, touch_ids).items()}
        figures |= {k: round(v, 2) for k, v in page_costs(engine).items()}
        with transaction(engine, readonly=True) as s:
            grades = dict(
                s.execute(select(LeadQualification.grade, text("count(*)")).group_by(LeadQualification.grade)).all()
            )
        figures["grades"] = grades
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
            admin.dispose()
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        for key, value in figures.items():
            print(f"{key:>26}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
