"""The README's recipe for several workers, run as written: PostgreSQL, `outreach db upgrade`, four
`outreach worker --concurrency 2` processes and `outreach serve`, over the issue's 10,000 touches to a
loopback sink (about 2 minutes on an idle 2-core machine; OUTREACH_MULTIWORKER_TOUCHES lowers it for a
quick local run).

Every touch goes out exactly once, and a mailbox whose limits bind under that contention (a second
campaign on a small mailbox) never exceeds them, judged by what the sink received and when.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.engine import make_engine, transaction
from db.enums import TouchState
from db.models import CommunicationLog
from tests.conftest import postgres_database
from tests.sending_setup import KEY, Box, launch_campaign, touch_states
from tests.smtp_sink import Sink

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
CONCURRENCY = "2"
TOUCHES = int(os.environ.get("OUTREACH_MULTIWORKER_TOUCHES", "10000"))  # the figure
FAST_BOXES = [Box(f"fast-{n}") for n in range(4)]
# A small mailbox with its own campaign: its limits bind while four workers compete for its capacity.
SLOW = Box("slow-1", per_minute=50, daily_limit=80)  # two minute-windows: ~1 min
SLOW_PEOPLE = 150
BIG = TOUCHES - SLOW.daily_limit  # so that exactly TOUCHES messages can go out
# 10,000 took 115 s from process start on an idle machine (87/s); a loaded one is several times slower.
WAIT_S = 900


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _outreach(*args: str) -> list[str]:
    return [sys.executable, "-m", "outreach", *args]


def _wait(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what()}")
        time.sleep(0.2)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.postgres
def test_readme_recipe_four_workers_on_postgresql_send_10000_touches_once(tmp_path: Path) -> None:
    url = next(dbs := postgres_database())
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OUTREACH_DATABASE_URL": url,
        "OUTREACH_DATA_DIR": str(tmp_path / "data"),
        "OUTREACH_SECRET_KEY": KEY,
        "OUTREACH_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "processes.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upgrade = subprocess.run(_outreach("db", "upgrade"), cwd=ROOT, env=env, capture_output=True, text=True)
        assert upgrade.returncode == 0, upgrade.stderr
        engine = make_engine(url)
        with Sink() as sink:
            now = datetime.now(UTC)
            big = launch_campaign(engine, sink.port, people=BIG, launch_at=now - timedelta(hours=1), boxes=FAST_BOXES)
            slow = [f"s{i}@slow.example" for i in range(SLOW_PEOPLE)]
            launch_campaign(engine, sink.port, people=slow, launch_at=now - timedelta(hours=1), name="Slow",
                            boxes=[SLOW])  # fmt: skip
            api_port = _free_port()
            started = time.monotonic()
            with log.open("ab") as out:
                procs.append(subprocess.Popen(_outreach("serve", "--host", "127.0.0.1", "--port", str(api_port)),
                                              cwd=ROOT, env=env, stdout=out, stderr=out))  # fmt: skip
                for _ in range(WORKERS):
                    procs.append(subprocess.Popen(_outreach("worker", "--concurrency", CONCURRENCY),
                                                  cwd=ROOT, env=env, stdout=out, stderr=out))  # fmt: skip
            _wait(
                lambda: len(sink.received) >= TOUCHES or any(p.poll() is not None for p in procs),
                WAIT_S,
                lambda: f"every touch (the sink has {len(sink.received)})",
            )
            elapsed = time.monotonic() - started
            time.sleep(2.0)  # anything sent twice, or past the slow mailbox's limit, would arrive now
            assert _healthy(api_port)
            received = sink.received
        states = touch_states(engine)
        with transaction(engine, readonly=True) as s:
            senders = s.scalar(select(func.count(func.distinct(CommunicationLog.claimed_by))))
        engine.dispose()
    finally:
        for proc in procs:
            proc.terminate()
        codes = [proc.wait(timeout=30) for proc in procs]
        next(dbs, None)  # drop the database only after the processes are gone
    assert all(code in (0, -15) for code in codes), log.read_text()[-3000:]

    per_address = Counter(r.rcpt_to[0] for r in received)
    per_id = Counter(str(r.message["Message-ID"]) for r in received)
    assert len(received) == TOUCHES, f"{len(received)} received in {elapsed:.0f} s"
    assert max(per_address.values()) == 1 and max(per_id.values()) == 1
    assert set(big) <= set(per_address)
    # The slow mailbox: its day's limit exactly, never more than its per-minute limit in any 60 seconds.
    slow_times = sorted(r.at for r in received if r.mail_from == "slow-1@sender.example")
    assert len(slow_times) == SLOW.daily_limit
    for i, start in enumerate(slow_times):
        in_window = sum(1 for t in slow_times[i:] if t < start + 60)
        assert in_window <= SLOW.per_minute, (i, in_window)
    assert states[TouchState.SENT] == TOUCHES
    assert states[TouchState.QUEUED] == SLOW_PEOPLE - SLOW.daily_limit  # waiting for tomorrow's capacity
    assert senders == WORKERS  # every worker took part
    print(f"\n4 workers: {TOUCHES} touches in {elapsed:.1f} s from process start ({TOUCHES / elapsed:.0f}/s)")
