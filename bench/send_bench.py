"""Sending benchmark: our whole pipeline against raw smtplib, to the same loopback SMTP server, in one run.

    .venv/bin/python bench/send_bench.py                          # 10,000 messages, SQLite
    .venv/bin/python bench/send_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/send_bench.py --profile                # and the top of a cProfile of ours

Ours = back-to-back send ticks (outreach.sending.send_tick) until every touch is sent: planning renders
each touch from its template and writes it to the log, the claim, the claim-time checks, building the
MIME message, `sending` committed, SMTP over one reused connection, `sent` committed and the sequence
advanced. Raw = smtplib.SMTP.sendmail of the same messages, built beforehand, over one connection.
The server (aiosmtpd, accepting and counting) runs in its own process so it does not share our GIL.
Raw runs before and after ours; the ratio uses their mean.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "b" * 48
YAML = """
name: Bench
audience: {list: bench}
mailboxes: [bench-1]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
steps:
  - type: email
    variants:
      - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }},\\n\\nA short note about {{ company }}.\\n\\nBest,\\nDana"}
      - {name: B, subject: "{{ company }} + us", body: "Hello {{ first_name | default('there') }},\\n\\nOne question for {{ company }}.\\n\\nDana"}
"""  # noqa: E501


def serve(port: int, latency_ms: float = 0.0) -> None:
    """The loopback server: accept every message, count them, print the count when stdin closes.

    `latency_ms` delays each answer to DATA, as a real server does while it scans and stores a message
    (each connection waits; the server keeps serving the others meanwhile).
    """
    import asyncio

    from aiosmtpd.controller import Controller

    class Counting:
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
            self.count += 1
            return "250 2.0.0 OK"

    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()
    print(handler.count, flush=True)


def start_server(latency_ms: float = 0.0) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--server-latency-ms", str(latency_ms)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the SMTP server did not start")
    return proc, port


def setup(url: str, port: int, count: int) -> object:
    """A migrated database with one mailbox at the server and a launched campaign for `count` prospects."""
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
        box = MailboxSpec("bench-1", "dana@sender.example", "127.0.0.1", port, tls=TlsMode.NONE,
                          per_minute=1_000_000, daily_limit=1_000_000)  # fmt: skip
        save_mailbox(s, box)
        lst = ProspectList(name="bench")
        s.add(lst)
        s.flush()
        rows = [{"email": f"p{i}@acme{i % 50}.example", "email_normalized": f"p{i}@acme{i % 50}.example",
                 "first_name": f"P{i}", "company": f"Acme {i % 50}"} for i in range(count)]  # fmt: skip
        ids = s.execute(insert(Prospect).returning(Prospect.id), rows).scalars().all()
        s.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": pid} for pid in ids])
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML))
        manager.launch(find_campaign(s, "Bench"), datetime.now(UTC) - timedelta(hours=1))
    return engine


def prerendered(count: int) -> list[tuple[str, str, bytes]]:
    """The messages ours sends, built the same way (same headers, footer, size), ready for smtplib."""
    from outreach.mailer import OutgoingMessage, build_message, make_message_id

    now = datetime.now(UTC)
    out = []
    for i in range(count):
        to = f"p{i}@acme{i % 50}.example"
        spec = OutgoingMessage(
            from_address="dana@sender.example", from_name=None, to_address=to, to_name=f"P{i}",
            subject=f"Idea for Acme {i % 50}",
            text_body=f"Hi P{i},\n\nA short note about Acme {i % 50}.\n\nBest,\nDana",
            html_body=None, message_id=make_message_id("sender.example", f"raw.{i}.{uuid.uuid4().hex[:12]}"), date=now,
            reply_to=None, in_reply_to=None, references=(),
            list_unsubscribe_url=f"http://127.0.0.1:8000/u/{'t' * 60}",
            list_unsubscribe_mailto="mailto:dana@sender.example?subject=unsubscribe",
            postal_address="Outreach Inc, 1 Main St, Springfield",
        )  # fmt: skip
        out.append(("dana@sender.example", to, build_message(spec).as_bytes()))
    return out


def run_raw(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    """Seconds for smtplib to send every message over one connection."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for sender, to, data in messages:
            smtp.sendmail(sender, [to], data)
    return time.perf_counter() - started


def run_ours(engine: object, count: int, concurrency: int = 1) -> tuple[float, int]:
    """Seconds for back-to-back send ticks to send every touch, and how many ticks that took."""
    from sqlalchemy import func, select

    from db.engine import transaction
    from db.enums import TouchState
    from db.models import CommunicationLog
    from outreach.config import load_settings
    from outreach.sending import send_tick
    from outreach.worker import JobContext, WorkerIdentity

    settings = load_settings()
    worker = WorkerIdentity.current()
    clock = lambda: datetime.now(UTC)  # noqa: E731
    sent = ticks = 0
    started = time.perf_counter()
    while sent < count:
        report = send_tick(engine, JobContext(clock(), worker, settings, clock, concurrency))  # type: ignore[arg-type]
        ticks += 1
        sent += report.outcomes["sent"]
        if not report.outcomes["sent"] and not report.planned["queued"]:
            raise SystemExit(f"stalled after {sent} sent: {report.summary()}")
    elapsed = time.perf_counter() - started
    with transaction(engine, readonly=True) as s:  # type: ignore[arg-type]
        logged = s.scalar(select(func.count()).where(CommunicationLog.state == TouchState.SENT))
    if logged != count:
        raise SystemExit(f"the log has {logged} sent touches, expected {count}")
    return elapsed, ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--database-url", help="PostgreSQL admin URL: a throw-away database is created on it")
    parser.add_argument("--profile", action="store_true", help="profile ours and print the top functions")
    parser.add_argument("--concurrency", type=int, default=1, help="SMTP connections per send tick (worker option)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.server_latency_ms)
        return
    with tempfile.TemporaryDirectory(prefix="outreach-send-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.update({"OUTREACH_DATA_DIR": str(workdir / "data"), "OUTREACH_SECRET_KEY": KEY})
        server, port = start_server()
        pg_cleanup = None
        try:
            url = f"sqlite:///{workdir / 'bench.db'}"
            if args.database_url:
                url, pg_cleanup = _pg_database(args.database_url)
            engine = setup(url, port, args.messages)
            messages = prerendered(args.messages)
            raw_before = run_raw(port, messages)
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            ours, ticks = run_ours(engine, args.messages, args.concurrency)
            if profiler:
                profiler.disable()
            raw_after = run_raw(port, messages)
            engine.dispose()  # type: ignore[attr-defined]
        finally:
            out, _ = server.communicate("", timeout=60)
            out = out.split()[-1] if out.split() else "?"
            if pg_cleanup:
                pg_cleanup()
    n = args.messages
    raw_rate = n / ((raw_before + raw_after) / 2)
    ours_rate = n / ours
    print(f"database: {url.split('://')[0]}; messages: {n}; server accepted {out.strip()}")
    print(f"raw smtplib, one connection: {n / raw_before:.0f} msg/s before, {n / raw_after:.0f} msg/s after")
    print(f"ours (render + send + log):  {ours_rate:.0f} msg/s ({ticks} ticks, concurrency {args.concurrency})")
    print(f"ratio: {ours_rate / raw_rate:.0%} of raw (target >= 50%)")
    if profiler:
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).sort_stats("cumulative")
        stats.print_stats(r"outreach/|mailer|smtplib.py|sqlalchemy/engine/base.py:.*execute\b", 40)
        print(stream.getvalue())


def _pg_database(admin_url: str) -> tuple[str, object]:
    from sqlalchemy import create_engine, text

    name = f"outreach_send_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        from db.engine import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{admin_url.rsplit('/', 1)[0]}/{name}", drop


if __name__ == "__main__":
    main()
