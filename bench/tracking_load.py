"""Tracking service load: pixel and click requests per second against a real uvicorn server on SQLite.

    .venv/bin/python bench/tracking_load.py                        # `outreach serve`, 6,000 requests
    .venv/bin/python bench/tracking_load.py --requests 20000 --concurrency 64
    .venv/bin/python bench/tracking_load.py --server uvicorn       # uvicorn --factory, no access log

A fresh data dir and SQLite database are migrated and seeded with sent touches (each with two stored
links); the service runs in its own process on 127.0.0.1; an httpx async client sends a bounded number
of requests (half opens, half clicks, spread over the touches) with bounded concurrency. Afterwards the
events in the database are counted: every request must have left exactly one event (none lost). Exits 1
when an answer was wrong, an event is missing, or the rate is below --min-rps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from db.engine import make_engine, transaction  # noqa: E402
from db.enums import EventKind, StepType, TouchState  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import CommunicationLog, EngagementEvent, Enrollment, OutreachCampaign, Prospect, SequenceStep  # noqa: E402
from outreach.netutil import free_port, wait_for_port  # noqa: E402
from outreach.tokens import LinkToken, Purpose, sign  # noqa: E402

KEY = "bench-" + "k" * 42
LINKS = ["https://example.com/pricing", "https://example.com/demo?utm_source=mail"]
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def seed(url: str, touches: int) -> list[int]:
    """Migrate and insert `touches` sent touches (one campaign, one step), sent a day ago."""
    engine = make_engine(url)
    upgrade(engine)
    sent_at = datetime.now(UTC) - timedelta(days=1)
    with transaction(engine) as s:
        campaign = OutreachCampaign(name="bench")
        step = SequenceStep(campaign=campaign, position=0, type=StepType.EMAIL)
        s.add_all([campaign, step])
        s.flush()
        people = [{"email": f"p{i}@bench.example", "email_normalized": f"p{i}@bench.example"} for i in range(touches)]
        prospect_ids = list(s.execute(insert(Prospect).returning(Prospect.id), people).scalars())
        enrollments = [{"campaign_id": campaign.id, "prospect_id": pid} for pid in prospect_ids]
        enrollment_ids = list(s.execute(insert(Enrollment).returning(Enrollment.id), enrollments).scalars())
        rows = [
            {"enrollment_id": eid, "step_id": step.id, "channel": StepType.EMAIL, "state": TouchState.SENT,
             "due_at": sent_at, "sent_at": sent_at, "links": LINKS}
            for eid in enrollment_ids
        ]  # fmt: skip
        ids = list(s.execute(insert(CommunicationLog).returning(CommunicationLog.id), rows).scalars())
    engine.dispose()
    return ids


def start_server(kind: str, data_dir: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OUTREACH_DATA_DIR": str(data_dir),
        "OUTREACH_DATABASE_URL": url,
        "OUTREACH_SECRET_KEY": KEY,
        "OUTREACH_BASE_URL": f"http://127.0.0.1:{port}",
        "OUTREACH_LOG_LEVEL": "WARNING",
    }
    if kind == "serve":
        command = [sys.executable, "-m", "outreach", "serve", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "--factory", "outreach.tracking:app_from_environment",
                   "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait_for_port("127.0.0.1", port, timeout=30):
        process.kill()
        raise SystemExit("the tracking service did not start within 30 s")
    return process


def plan(ids: list[int], count: int) -> list[tuple[str, int]]:
    """(path, expected status) for `count` requests: opens and clicks alternating over the touches."""
    out = []
    for i in range(count):
        touch = ids[i % len(ids)]
        if i % 2 == 0:
            out.append((f"/o/{sign(LinkToken(Purpose.OPEN, touch), KEY)}", 200))
        else:
            out.append((f"/c/{sign(LinkToken(Purpose.CLICK, touch, (i // 2) % len(LINKS)), KEY)}", 302))
    return out


async def load(base: str, requests: list[tuple[str, int]], concurrency: int) -> tuple[float, list[float], int]:
    """Send every request once with at most `concurrency` in flight; (seconds, latencies, wrong answers).

    The client must not be the bottleneck on a 2-core machine: each worker drives its own one-connection
    httpx transport (httpx.AsyncHTTPTransport) with requests built before the clock starts. A shared
    32-connection httpx.AsyncClient spent ~3 ms of CPU per request (its pool re-checks every connection
    on every request), twice what the server spends answering.
    """
    latencies: list[float] = []
    wrong = 0
    pending = [
        (httpx.Request("GET", f"{base}{path}", headers={"User-Agent": BROWSER}), expected)
        for path, expected in reversed(requests)
    ]
    transports = [
        httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        for _ in range(concurrency)
    ]

    async def worker(transport: httpx.AsyncHTTPTransport) -> None:
        nonlocal wrong
        async with transport:
            while pending:
                request, expected = pending.pop()
                started = time.perf_counter()
                answer = await transport.handle_async_request(request)
                await answer.aread()
                await answer.aclose()
                latencies.append(time.perf_counter() - started)
                if answer.status_code != expected:
                    wrong += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in transports))
    return time.perf_counter() - started, latencies, wrong


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), to report server CPU per request."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_events(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with transaction(engine, readonly=True) as s:
        rows = s.execute(select(EngagementEvent.kind, func.count()).group_by(EngagementEvent.kind)).all()
    engine.dispose()
    return {str(kind): n for kind, n in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--touches", type=int, default=500)
    parser.add_argument("--server", choices=["serve", "uvicorn"], default="serve")
    parser.add_argument("--min-rps", type=float, default=500.0)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tracking-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        url = f"sqlite:///{data_dir / 'outreach.db'}"
        ids = seed(url, args.touches)
        port = free_port()
        server = start_server(args.server, data_dir, url, port)
        try:
            requests = plan(ids, args.requests)
            asyncio.run(load(f"http://127.0.0.1:{port}", requests[: min(200, len(requests))], 8))  # warm-up
            events_before = sum(count_events(url).values())
            cpu_before = cpu_seconds(server.pid)
            seconds, latencies, wrong = asyncio.run(load(f"http://127.0.0.1:{port}", requests, args.concurrency))
            cpu_after = cpu_seconds(server.pid)
        except httpx.HTTPError as exc:
            tail = (data_dir / "server.log").read_text(errors="replace")[-3000:]
            print(f"request failed: {exc!r}; server exit {server.poll()}; server log:\n{tail}", file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            server.terminate()
            server.wait(timeout=30)
        counts = count_events(url)
    recorded = sum(counts.values()) - events_before
    latencies.sort()
    result = {
        "server": args.server,
        "requests": len(requests),
        "concurrency": args.concurrency,
        "seconds": round(seconds, 3),
        "requests_per_second": round(len(requests) / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "server_cpu_ms_per_request": (
            round((cpu_after - cpu_before) * 1000 / len(requests), 3)
            if cpu_before is not None and cpu_after is not None
            else None
        ),
        "wrong_answers": wrong,
        "events_recorded": recorded,
        "events_by_kind": {EventKind(k).value: n for k, n in counts.items()},
        "events_equal_requests": recorded == len(requests),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['requests']} requests ({args.server}, concurrency {args.concurrency}) in {result['seconds']} s: "
            f"{result['requests_per_second']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
            f"server CPU {result['server_cpu_ms_per_request']} ms/request; "
            f"wrong answers {wrong}; events recorded {recorded} (== requests: {result['events_equal_requests']})"
        )
    ok = wrong == 0 and result["events_equal_requests"] and result["requests_per_second"] >= args.min_rps
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
