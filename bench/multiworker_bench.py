"""Several workers on one PostgreSQL: 1 worker process against N, same touches, same loopback SMTP server.

    .venv/bin/python bench/multiworker_bench.py                       # 1 vs 4 workers, 4,000 touches each run
    .venv/bin/python bench/multiworker_bench.py --touches 10000 --workers 4 --concurrency 2
    .venv/bin/python bench/multiworker_bench.py --server-latency-ms 100   # a server that takes 100 ms per DATA

Each run gets a fresh PostgreSQL database (created on the admin URL, dropped afterwards), four
mailboxes whose limits allow everything, and a launched one-step campaign; then `outreach worker`
processes (the product's command, real clock) start, and the script polls the log until every touch is
`sent`. The SMTP server is the counting aiosmtpd of send_bench.py, in its own process. Figures:
touches per second from process start (includes ~2 s of imports) and in steady state (first to last
`sent_at`). The target: N=4 at ≥ 3× the rate of 1 worker, when the limits allow it. With the default
instant server the work is CPU-bound on this machine's two cores; `--server-latency-ms` makes each
message wait as it does on a real provider's server, where a worker spends most of its time waiting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send_bench import KEY, start_server  # noqa: E402

YAML = """
name: Multi
audience: {list: multi}
mailboxes: [multi-1, multi-2, multi-3, multi-4]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
steps:
  - type: email
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name | default('there') }},\\n\\nA short note about {{ company }}.\\n\\nBest,\\nDana"
"""


def _database(admin_url: str) -> tuple[str, object]:
    from sqlalchemy import create_engine, text

    name = f"outreach_multi_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return f"{admin_url.rsplit('/', 1)[0]}/{name}", drop


def setup(url: str, port: int, touches: int) -> object:
    from sqlalchemy import insert

    from db.engine import make_engine, transaction
    from db.enums import TlsMode
    from db.migrate import upgrade
    from db.models import Prospect, ProspectList, ProspectListMember
    from outreach.campaigns import CampaignManager, find_campaign
    from outreach.mailboxes import MailboxSpec, save_mailbox
    from outreach.sequence import parse_definition

    engine = make_engine(url)
    upgrade(engine)
    with transaction(engine) as s:
        for n in range(1, 5):
            save_mailbox(s, MailboxSpec(f"multi-{n}", f"dana{n}@sender.example", "127.0.0.1", port,
                                        tls=TlsMode.NONE, per_minute=1_000_000, daily_limit=1_000_000))  # fmt: skip
        lst = ProspectList(name="multi")
        s.add(lst)
        s.flush()
        rows = [{"email": f"p{i}@acme{i % 50}.example", "email_normalized": f"p{i}@acme{i % 50}.example",
                 "first_name": f"P{i}", "company": f"Acme {i % 50}"} for i in range(touches)]  # fmt: skip
        ids = s.execute(insert(Prospect).returning(Prospect.id), rows).scalars().all()
        s.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": pid} for pid in ids])
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML))
        manager.launch(find_campaign(s, "Multi"), datetime.now(UTC) - timedelta(hours=1))
    return engine


def run(admin_url: str, port: int, touches: int, workers: int, concurrency: int, data_dir: Path) -> dict[str, float]:
    from sqlalchemy import func, select

    from db.engine import transaction
    from db.enums import TouchState
    from db.models import CommunicationLog

    url, drop = _database(admin_url)
    engine = setup(url, port, touches)
    env = {**os.environ, "OUTREACH_DATABASE_URL": url, "OUTREACH_DATA_DIR": str(data_dir),
           "OUTREACH_SECRET_KEY": KEY, "OUTREACH_LOG_LEVEL": "WARNING"}  # fmt: skip
    cmd = [sys.executable, "-m", "outreach", "worker", "--concurrency", str(concurrency)]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    try:
        sent = 0
        while sent < touches:
            time.sleep(0.5)
            with transaction(engine, readonly=True) as s:  # type: ignore[arg-type]
                sent = s.scalar(select(func.count()).where(CommunicationLog.state == TouchState.SENT)) or 0
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a worker died")
        elapsed = time.monotonic() - started
        with transaction(engine, readonly=True) as s:  # type: ignore[arg-type]
            first, last = s.execute(
                select(func.min(CommunicationLog.sent_at), func.max(CommunicationLog.sent_at))
            ).one()
            takers = s.scalar(select(func.count(func.distinct(CommunicationLog.claimed_by))))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        engine.dispose()  # type: ignore[attr-defined]
        drop()  # type: ignore[operator]
    steady = (last - first).total_seconds()
    return {
        "elapsed": elapsed, "rate": touches / elapsed, "steady_rate": touches / steady if steady else 0.0,
        "workers_used": float(takers or 0), "load_before": load_before, "load_after": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touches", type=int, default=4_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="--concurrency of each worker")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--server-latency-ms", type=float, default=0.0,
                        help="the server's delay before answering DATA (real servers take 50-500 ms)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outreach-multi-bench-") as tmp:
        os.environ.update({"OUTREACH_DATA_DIR": str(Path(tmp) / "data"), "OUTREACH_SECRET_KEY": KEY})
        server, port = start_server(args.server_latency_ms)
        try:
            one = run(args.database_url, port, args.touches, 1, args.concurrency, Path(tmp) / "data")
            many = run(args.database_url, port, args.touches, args.workers, args.concurrency, Path(tmp) / "data")
        finally:
            server.communicate("", timeout=60)
    print(f"server latency per message: {args.server_latency_ms:.0f} ms; --concurrency {args.concurrency}")
    for label, r in (("1 worker", one), (f"{args.workers} workers", many)):
        print(f"{label:>10}: {args.touches} touches in {r['elapsed']:.1f} s = {r['rate']:.0f}/s from start, "
              f"{r['steady_rate']:.0f}/s steady; {r['workers_used']:.0f} took part; "
              f"load {r['load_before']:.1f} -> {r['load_after']:.1f}")  # fmt: skip
    print(f"speed-up: {many['rate'] / one['rate']:.2f}x from start, {many['steady_rate'] / one['steady_rate']:.2f}x "
          f"steady (target >= 3x)")  # fmt: skip


if __name__ == "__main__":
    main()
