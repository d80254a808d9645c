"""Crashes, restarts, pauses and several workers: every touch goes out once, or is visibly in doubt.

The slow tests run real `python -m outreach worker` processes against a migrated database and an
aiosmtpd sink in this process, and judge by what the sink received. Sizes are module constants, chosen
so that the whole file stays around a minute and a half on a 2-core machine (see each constant).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from db.engine import dispose_engines, make_engine, transaction
from db.enums import CampaignState, TouchState
from db.migrate import upgrade
from db.models import CommunicationLog
from outreach import outbox
from outreach.campaigns import CampaignManager, find_campaign
from outreach.cli import app as cli_app
from outreach.config import Settings, load_settings
from outreach.sending import send_tick
from outreach.worker import JobContext, WorkerIdentity, run_once
from tests.conftest import postgres_database
from tests.sending_setup import KEY, Box, FaultRule, launch_campaign, touch_states
from tests.smtp_sink import Sink

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SOFT_451 = "451 4.3.0 temporary failure, try again later"
UNFINISHED = (TouchState.QUEUED, TouchState.CLAIMED, TouchState.SENDING, TouchState.RETRY_WAIT)

# The figure: 3,000 touches. Each restarted worker imports (~2 s) and sends for up to 1.5 s
# before its kill; a worker left alone then sends the rest. OUTREACH_CRASH_TOUCHES lowers it for a
# quick local run; the invariants checked do not depend on the count.
CRASH_TOUCHES = int(os.environ.get("OUTREACH_CRASH_TOUCHES", "3000"))
CRASH_KILLS = 6
CRASH_REFUSAL_RATE = 0.10  # the server answers 451 to this share of attempts (at most twice per address)
CRASH_LEASE_SECONDS = "2"  # a killed worker's claims come back two seconds later instead of five minutes
# The figures. Three workers (at most 3 x 200 touches per 5-second tick) need ~20-30 s for 2,000.
MULTI_WORKERS = 3
MULTI_TOUCHES = 2_000


@pytest.fixture
def settings(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    return load_settings()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def worker_env(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OUTREACH_DATA_DIR": str(data_dir),
        "OUTREACH_DATABASE_URL": db_url,
        "OUTREACH_SECRET_KEY": KEY,
        **extra,
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`outreach worker` (the APScheduler loop on the real clock), its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "outreach", "worker"], cwd=ROOT, env=env, stdout=out, stderr=out)


def count_states(engine: Engine, *states: TouchState) -> int:
    counts = touch_states(engine)
    return sum(counts[s] for s in states)


def total_touches(engine: Engine) -> int:
    return sum(touch_states(engine).values())


def work_left(engine: Engine) -> bool:
    """Is anything still to be sent now (not planned yet, queued, or claimed by a dead worker)?"""
    counts = touch_states(engine)
    return sum(counts.values()) < CRASH_TOUCHES or counts[TouchState.QUEUED] + counts[TouchState.CLAIMED] > 0


def sent_message_ids(engine: Engine, state: TouchState) -> set[str]:
    with transaction(engine, readonly=True) as s:
        return set(s.scalars(select(CommunicationLog.message_id).where(CommunicationLog.state == state)))


# --- in process: pause, restart, resume; in-doubt resolution ----------------------------------------

TWO_STEPS = """
  - {type: email, subject: "Idea for {{ company }}", body: "Hi {{ first_name }}"}
  - {type: email, delay: 1 day, subject: "Still there?", body: "Following up, {{ first_name }}"}
"""


def tick(engine: Engine, settings: Settings, now: datetime, worker: str) -> dict[str, int]:
    report = send_tick(engine, JobContext(now, WorkerIdentity(worker, "host", 1), settings, lambda: now))
    return dict(report.outcomes)


def campaign_state(engine: Engine, now: datetime) -> CampaignState:
    """What the worker's finish job concludes at `now`."""
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).finish_campaigns(now)
        return find_campaign(s, "Load").state


def crash_mid_batch(engine: Engine, now: datetime, claims: int) -> int:
    """A worker that claims `claims` touches, hands the first to SMTP (`sending`) and dies. Returns that touch."""
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).schedule_communications(now)
    with transaction(engine) as s:
        ids = outbox.claim_due(s, worker_id="dead", now=now, limit=claims)
        assert outbox.mark_sending(s, ids[0], "dead", f"<dead.{ids[0]}@sender.example>", now)
    return ids[0]


def test_pause_at_half_restart_resume_sends_everything_once(engine, settings) -> None:
    people = 40
    seen: list[str] = []

    def pause_at_half(rcpt: str) -> None:
        """The operator pauses while the batch is going out, as the message to half of the audience arrives."""
        seen.append(rcpt)
        if len(seen) == people // 2:
            with transaction(engine) as s:
                CampaignManager(s, secret_key=KEY).pause(find_campaign(s, "Load"))

    with Sink(pause_at_half) as sink:
        launch_campaign(engine, sink.port, people=people, launch_at=T0 - timedelta(hours=1), steps=TWO_STEPS)
        in_doubt = crash_mid_batch(engine, T0, claims=4)

        outcomes = tick(engine, settings, T0 + timedelta(seconds=1), "w1")
        assert (len(sink.received), outcomes["sent"], outcomes["deferred"]) == (20, 20, 16)

        # A restarted worker recovers the dead one's claims, but the campaign is paused: nothing goes.
        outcomes = tick(engine, settings, T0 + timedelta(minutes=10), "w2")
        assert (len(sink.received), outcomes.get("sent", 0)) == (20, 0)
        assert touch_states(engine)[TouchState.IN_DOUBT] == 1
        assert campaign_state(engine, T0 + timedelta(minutes=10)) is CampaignState.PAUSED

        with transaction(engine) as s:
            CampaignManager(s, secret_key=KEY).resume(find_campaign(s, "Load"))
        tick(engine, settings, T0 + timedelta(minutes=11), "w2")
        assert len(sink.received) == people - 1  # everyone but the touch in doubt
        assert campaign_state(engine, T0 + timedelta(minutes=11)) is CampaignState.RUNNING

        # The operator looks it up and resends it: same Message-ID, so the recipient could tell a duplicate.
        with transaction(engine) as s:
            manager = CampaignManager(s, secret_key=KEY)
            assert manager.resolve_in_doubt(in_doubt, was_sent=False, now=T0 + timedelta(minutes=12))
        tick(engine, settings, T0 + timedelta(minutes=12), "w2")
        first_round = Counter(r.rcpt_to[0] for r in sink.received)
        assert len(first_round) == people and max(first_round.values()) == 1
        assert f"<dead.{in_doubt}@sender.example>" in {str(r.message["Message-ID"]) for r in sink.received}
        # Step 2 is still ahead: touches are not all terminal, so the campaign is not finished.
        assert campaign_state(engine, T0 + timedelta(hours=2)) is CampaignState.RUNNING

        tick(engine, settings, T0 + timedelta(days=1, hours=1), "w3")
        assert campaign_state(engine, T0 + timedelta(days=1, hours=1)) is CampaignState.FINISHED

    assert Counter(r.rcpt_to[0] for r in sink.received) == Counter({a: 2 for a in first_round})
    assert len({str(r.message["Message-ID"]) for r in sink.received}) == 2 * people
    assert touch_states(engine) == Counter({TouchState.SENT: 2 * people})


def test_in_doubt_blocks_finishing_until_the_operator_marks_it_sent(engine, db_url, settings, data_env) -> None:
    with Sink() as sink:
        launch_campaign(engine, sink.port, people=3, launch_at=T0 - timedelta(hours=1))
        in_doubt = crash_mid_batch(engine, T0, claims=3)
        tick(engine, settings, T0 + timedelta(minutes=10), "w2")
        assert len(sink.received) == 2
    assert touch_states(engine) == Counter({TouchState.SENT: 2, TouchState.IN_DOUBT: 1})
    assert campaign_state(engine, T0 + timedelta(minutes=10)) is CampaignState.RUNNING

    # The operator found it in the Sent folder: `outreach touch resolve ID --sent`.
    env = {"OUTREACH_DATABASE_URL": db_url, "OUTREACH_DATA_DIR": str(data_env), "OUTREACH_SECRET_KEY": KEY}
    try:
        result = CliRunner().invoke(cli_app, ["touch", "resolve", str(in_doubt), "--sent", "--json"], env=env)
    finally:
        dispose_engines()
    assert result.exit_code == 0, result.output
    assert touch_states(engine) == Counter({TouchState.SENT: 3})
    assert campaign_state(engine, T0 + timedelta(minutes=11)) is CampaignState.FINISHED


# --- real worker processes -------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_random_moments_never_sends_a_touch_twice(db_url, settings, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng, server_rng = random.Random(seed), random.Random(seed + 1)
    rule = FaultRule(refuse=lambda _rcpt, n: SOFT_451 if n < 2 and server_rng.random() < CRASH_REFUSAL_RATE else None)
    engine = make_engine(db_url)
    env = worker_env(db_url, settings.data_dir, OUTREACH_LEASE_SECONDS=CRASH_LEASE_SECONDS)
    log = tmp_path / "workers.log"
    started = time.monotonic()
    with Sink(rule) as sink:
        launch_campaign(engine, sink.port, people=CRASH_TOUCHES, launch_at=datetime.now(UTC) - timedelta(hours=1))
        left_in_flight = []
        for _ in range(CRASH_KILLS):
            if not work_left(engine):
                break  # a fast machine sent everything before the last kill
            before = len(sink.received)
            proc = start_worker(env, log)
            wait_for(
                lambda: len(sink.received) > before or proc.poll() is not None or not work_left(engine),
                180,  # a worker process imports and starts its scheduler first: ~2 s idle, a minute at load 15
                "the worker to send",
            )
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            left_in_flight.append(count_states(engine, TouchState.CLAIMED, TouchState.SENDING))

        kill_phase = time.monotonic() - started

        # Then a worker that is left alone finishes, its clock moving on so that the expired leases are
        # recovered and the 451s' backoff elapses: the same jobs `outreach worker --once --now …` runs.
        now = datetime.now(UTC)
        for _ in range(30):
            if total_touches(engine) == CRASH_TOUCHES and not count_states(engine, *UNFINISHED):
                break
            now += timedelta(minutes=10)
            run_once(engine, now, WorkerIdentity("after", "host", 1), settings)
        received = sink.received

    states = touch_states(engine)
    sent, in_doubt = sent_message_ids(engine, TouchState.SENT), sent_message_ids(engine, TouchState.IN_DOUBT)
    per_address = Counter(r.rcpt_to[0] for r in received)
    got_ids = Counter(str(r.message["Message-ID"]) for r in received)
    refusals = sum(1 for _, reply in rule.attempts if reply)
    total = time.monotonic() - started
    print(
        f"\ncrash test: seed {seed}, {CRASH_TOUCHES} touches, {len(left_in_flight)} kills leaving "
        f"{left_in_flight} in flight, {refusals} refusals, {len(in_doubt)} in doubt; "
        f"kill phase {kill_phase:.1f} s, total {total:.1f} s"
    )
    assert sum(left_in_flight) > 0, "no kill landed while a batch was in flight"
    assert refusals > 0
    assert max(per_address.values()) == 1, [a for a, n in per_address.items() if n > 1]
    assert max(got_ids.values()) == 1
    assert set(states) <= {TouchState.SENT, TouchState.IN_DOUBT}, states
    assert states[TouchState.SENT] + states[TouchState.IN_DOUBT] == CRASH_TOUCHES
    assert len(in_doubt) <= len(left_in_flight)  # at most one per kill
    assert sent <= set(got_ids)  # `sent` only after the server's 250
    assert set(got_ids) <= sent | in_doubt  # whatever arrived is sent or, after a kill, in doubt


def duplicates(sink: Sink) -> bool:
    """Did any recipient get two messages? (A Message-ID arriving twice would show here too.)"""
    received = sink.received
    return len({r.rcpt_to[0] for r in received}) < len(received)


@pytest.fixture
def pg_url() -> Iterator[str]:
    for url in postgres_database():
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"])
def test_three_workers_on_one_postgresql_send_each_touch_once(database, pg_url, settings, tmp_path) -> None:
    engine = make_engine(pg_url)
    env = worker_env(pg_url, settings.data_dir)
    log = tmp_path / "workers.log"
    with Sink() as sink:
        launch_campaign(engine, sink.port, people=MULTI_TOUCHES, launch_at=datetime.now(UTC) - timedelta(hours=1),
                        boxes=[Box("sales-1"), Box("sales-2")])  # fmt: skip
        workers = [start_worker(env, log) for _ in range(MULTI_WORKERS)]
        try:
            wait_for(lambda: len(sink.received) >= MULTI_TOUCHES or duplicates(sink), 300, "every message")
            time.sleep(1.0)  # anything sent twice would arrive now
        finally:
            for proc in workers:
                proc.terminate()
            codes = [proc.wait(timeout=30) for proc in workers]
        received = sink.received
    assert codes == [0] * MULTI_WORKERS, log.read_text()[-3000:]
    per_id = Counter(str(r.message["Message-ID"]) for r in received)
    per_address = Counter(r.rcpt_to[0] for r in received)
    assert len(received) == MULTI_TOUCHES
    assert max(per_id.values()) == 1 and max(per_address.values()) == 1
    assert touch_states(engine) == Counter({TouchState.SENT: MULTI_TOUCHES})
    assert sent_message_ids(engine, TouchState.SENT) == set(per_id)
    with transaction(engine, readonly=True) as s:
        senders = s.scalars(select(func.count(func.distinct(CommunicationLog.claimed_by)))).one()
    assert senders == MULTI_WORKERS  # every worker took part


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.mark.slow
def test_rolling_limits_hold_across_worker_restarts(sqlite_url, settings) -> None:
    """Per minute 3, per day 8; every run is a new `worker --once --now …` process.

    The runs' clocks are simulated, so "when the server received it" is the Date header each message
    carries — the worker's clock at the moment it handed the message over. SQLite only: the limits are
    counted by the same query on both databases, and five process starts per database cost ~15 s here.
    """
    engine = make_engine(sqlite_url)
    env = worker_env(sqlite_url, settings.data_dir)
    runs = [  # (clock, how many the limits allow then)
        (T0, 3),
        (T0 + timedelta(seconds=30), 0),  # the minute is full
        (T0 + timedelta(seconds=65), 3),  # the first three left the window
        (T0 + timedelta(seconds=130), 2),  # per minute allows 3, the day only 8 - 6
        (T0 + timedelta(days=1, seconds=10), 3),  # the first three left the day's window
    ]
    sent_per_run = []
    with Sink() as sink:
        launch_campaign(engine, sink.port, people=20, launch_at=T0 - timedelta(hours=1),
                        boxes=[Box("slow-1", per_minute=3, daily_limit=8)])  # fmt: skip
        for at, _ in runs:
            before = len(sink.received)
            result = subprocess.run(
                [sys.executable, "-m", "outreach", "worker", "--once", "--now", at.isoformat()],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            sent_per_run.append(len(sink.received) - before)
        received = sink.received
    assert sent_per_run == [n for _, n in runs]
    times = sorted(parsedate_to_datetime(str(r.message["Date"])) for r in received)
    for start in times:
        assert sum(1 for t in times if start <= t < start + timedelta(minutes=1)) <= 3
        assert sum(1 for t in times if start <= t < start + timedelta(days=1)) <= 8
