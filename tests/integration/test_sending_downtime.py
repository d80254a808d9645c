"""After downtime, and with several connections: due touches go out once, at the limits; too-late ones wait.

In-process send ticks at chosen clocks against an aiosmtpd sink, on SQLite and PostgreSQL; the sink's
receipts say what a recipient got. Also the queue's own rules the send path relies on: in-doubt touches
count against a mailbox's limits, a paused campaign's touches are left alone, claims over many
mailboxes by concurrent workers do not deadlock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from db.engine import dispose_engines, make_engine, transaction
from db.enums import EnrollmentState, StopReason, TouchState
from db.models import CommunicationLog, Enrollment, Prospect
from outreach import late_touches, outbox
from outreach.campaigns import CampaignManager, find_campaign
from outreach.cli import app as cli_app
from outreach.config import Settings, load_settings
from outreach.lateness import LATENESS_ENV
from outreach.sending import TickReport, send_tick
from outreach.worker import JobContext, WorkerIdentity, stopping
from tests import factories
from tests.sending_setup import ALL_DAY, KEY, Box, launch_campaign, touch_states
from tests.smtp_sink import Sink

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LAUNCH = T0 - timedelta(hours=1)  # first touches are due within two minutes of launch
LATE_2H = ALL_DAY.replace("days:", 'max_lateness: "2 hours", days:')


@pytest.fixture
def settings(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    monkeypatch.delenv(LATENESS_ENV, raising=False)
    return load_settings()


def tick(engine: Engine, settings: Settings, now: datetime, concurrency: int = 1) -> TickReport:
    ctx = JobContext(now, WorkerIdentity("w1", "host", 1), settings, lambda: now, concurrency)
    return send_tick(engine, ctx)


def received(sink: Sink) -> Counter[str]:
    return Counter(r.rcpt_to[0] for r in sink.received)


def test_after_downtime_due_touches_go_out_once_at_the_limits(engine, settings) -> None:
    """The worker was down three hours: 25 touches are due at once; a 10-per-minute mailbox paces them."""
    with Sink() as sink:
        people = launch_campaign(engine, sink.port, people=25, launch_at=LAUNCH, boxes=[Box("slow", per_minute=10)])
        back = T0 + timedelta(hours=2)
        sent_per_tick = []
        for seconds in (0, 20, 61, 90, 125, 190):
            before = len(sink.received)
            tick(engine, settings, back + timedelta(seconds=seconds))
            sent_per_tick.append(len(sink.received) - before)
    assert sent_per_tick == [10, 0, 10, 0, 5, 0]
    assert received(sink) == Counter(people)  # everyone once
    assert touch_states(engine) == Counter({TouchState.SENT: 25})


def test_a_touch_later_than_the_maximum_lateness_waits_for_the_operator(engine, db_url, settings, data_env) -> None:
    with Sink() as sink:
        people = launch_campaign(engine, sink.port, people=4, launch_at=LAUNCH, schedule=LATE_2H)
        report = tick(engine, settings, T0 + timedelta(days=1))  # down for a day: every touch is 25 hours late
        assert sink.received == [] and report.outcomes["held (too late)"] == 4
        with transaction(engine, readonly=True) as s:
            rows = late_touches.held_rows(s, limit=10)
            assert late_touches.count_held(s) == 4
        assert {r["prospect"] for r in rows} == set(people)
        assert all(r["why"].startswith("late:") and "the maximum is 2.0 hours" in r["why"] for r in rows)
        # Held touches stay queued but are never claimed by themselves.
        tick(engine, settings, T0 + timedelta(days=1, minutes=5))
        assert sink.received == [] and touch_states(engine) == Counter({TouchState.QUEUED: 4})

        keep, drop = rows[0], rows[1]
        env = {"OUTREACH_DATABASE_URL": db_url, "OUTREACH_DATA_DIR": str(data_env), "OUTREACH_SECRET_KEY": KEY}
        try:
            result = CliRunner().invoke(cli_app, ["touch", "confirm", str(keep["id"]), "--json"], env=env)
            assert result.exit_code == 0, result.output
            result = CliRunner().invoke(cli_app, ["touch", "cancel", str(drop["id"]), "--json"], env=env)
            assert result.exit_code == 0, result.output
            again = CliRunner().invoke(cli_app, ["touch", "cancel", str(drop["id"])], env=env)
            assert again.exit_code == 2 and "not waiting for confirmation" in again.output
        finally:
            dispose_engines()
        confirmed_at = datetime.now(UTC)  # the CLI confirms at the real clock: the touch is due from then
        tick(engine, settings, confirmed_at + timedelta(seconds=1))
        assert received(sink) == Counter([keep["prospect"]])
    with transaction(engine, readonly=True) as s:
        stopped = s.execute(
            select(Enrollment.state, Enrollment.stop_reason)
            .join(Prospect, Prospect.id == Enrollment.prospect_id)
            .where(Prospect.email == drop["prospect"])
        ).one()
        assert tuple(stopped) == (EnrollmentState.STOPPED, StopReason.OPERATOR)
        assert late_touches.count_held(s) == 2
    assert touch_states(engine) == Counter({TouchState.SENT: 1, TouchState.CANCELLED: 1, TouchState.QUEUED: 2})


def test_the_global_default_lateness_applies_without_a_campaign_setting(engine, settings, monkeypatch) -> None:
    monkeypatch.setenv(LATENESS_ENV, "30 minutes")
    with Sink() as sink:
        launch_campaign(engine, sink.port, people=3, launch_at=LAUNCH)
        tick(engine, settings, T0)  # about an hour late: over the 30 minutes
        assert sink.received == []
        monkeypatch.setenv(LATENESS_ENV, "2 days")
        tick(engine, settings, T0)  # held touches stay held whatever the setting says now
        assert sink.received == []
        with transaction(engine) as s:
            for touch_id in late_touches.held_ids(s):
                late_touches.confirm(s, touch_id, T0)
        tick(engine, settings, T0 + timedelta(seconds=5))
        assert len(sink.received) == 3


def test_several_connections_send_each_touch_once(engine, settings) -> None:
    boxes = [Box("sales-1"), Box("sales-2")]
    with Sink() as sink:
        people = launch_campaign(engine, sink.port, people=120, launch_at=LAUNCH, boxes=boxes)
        report = tick(engine, settings, T0, concurrency=4)
    assert report.outcomes["sent"] == 120
    assert received(sink) == Counter(people)
    assert len({str(r.message["Message-ID"]) for r in sink.received}) == 120
    with transaction(engine, readonly=True) as s:
        assert set(s.scalars(select(Enrollment.state))) == {EnrollmentState.FINISHED}


# --- the queue's rules -------------------------------------------------------------------------------


def test_in_doubt_touches_count_against_the_mailbox_limits(engine) -> None:
    with transaction(engine) as s:
        box = factories.mailbox(s, daily=3, per_minute=100)
        ids = factories.queued_touches(s, 5, T0, box)
    with transaction(engine) as s:
        claimed = outbox.claim_due(s, worker_id="dead", now=T0, limit=2, lease=timedelta(minutes=1))
        for touch_id in claimed:
            assert outbox.mark_sending(s, touch_id, "dead", f"<{touch_id}@sender.example>", T0, timedelta(minutes=1))
    later = T0 + timedelta(minutes=10)
    with transaction(engine) as s:
        assert outbox.recover_expired_leases(s, later) == outbox.Recovery(0, 2)
    with transaction(engine) as s:  # the day allows 3; two may have gone out: one more, not three
        assert outbox.claim_due(s, worker_id="w", now=later, limit=10) == [i for i in ids if i not in claimed][:1]
    with transaction(engine) as s:  # a day after they were handed over, the window is free again
        assert len(outbox.claim_due(s, worker_id="w", now=T0 + timedelta(days=1, minutes=2), limit=10)) == 2


def test_a_paused_campaigns_touches_are_left_alone(engine) -> None:
    with transaction(engine) as s:
        ids = factories.queued_touches(s, 3, T0)
        campaign_id = s.get(Enrollment, s.get(CommunicationLog, ids[0]).enrollment_id).campaign_id
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).pause(find_campaign(s, campaign_id))
    for minute in range(3):
        with transaction(engine) as s:
            assert outbox.claim_due(s, worker_id="w", now=T0 + timedelta(minutes=minute), limit=10) == []
    with transaction(engine, readonly=True) as s:
        rows = s.execute(select(CommunicationLog.state, CommunicationLog.updated_at, CommunicationLog.due_at)).all()
    assert {(r.state, r.due_at) for r in rows} == {(TouchState.QUEUED, T0)}  # not claimed, not deferred
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).resume(find_campaign(s, campaign_id))
    with transaction(engine) as s:
        assert outbox.claim_due(s, worker_id="w", now=T0, limit=10) == ids


def test_concurrent_claims_over_many_mailboxes_do_not_deadlock(db_url: str) -> None:
    """Workers lock the due mailboxes in id order, so none waits for another the other way round."""
    engine = make_engine(db_url)
    with transaction(engine) as s:
        boxes = [factories.mailbox(s, f"box-{n}") for n in range(6)]
        ids = [i for box in reversed(boxes) for i in factories.queued_touches(s, 40, T0, box)]
    engine.dispose()
    claims: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        eng = make_engine(db_url)
        try:
            while True:
                with transaction(eng) as s:
                    got = outbox.claim_due(s, worker_id=name, now=T0, limit=9)
                if not got:
                    return
                with lock:
                    claims.extend(got)
        except BaseException as exc:
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(claims) == sorted(ids)


@pytest.fixture
def stop_flag() -> Iterator[threading.Event]:
    yield stopping
    stopping.clear()


def test_a_stopping_worker_finishes_the_message_in_hand_and_gives_the_rest_back(engine, settings, stop_flag) -> None:
    seen: list[str] = []

    def sigterm_on_second(rcpt: str) -> None:
        seen.append(rcpt)
        if len(seen) == 2:
            stop_flag.set()  # what `outreach worker` does on SIGTERM / Ctrl-C

    with Sink(sigterm_on_second) as sink:
        launch_campaign(engine, sink.port, people=6, launch_at=LAUNCH)
        report = tick(engine, settings, T0)
        assert len(sink.received) == 2 and report.outcomes["sent"] == 2
        assert touch_states(engine) == Counter({TouchState.SENT: 2, TouchState.QUEUED: 4})  # nothing left claimed
        assert tick(engine, settings, T0).outcomes == Counter()  # a stopping worker claims nothing more
        stop_flag.clear()
        tick(engine, settings, T0 + timedelta(seconds=5))
    assert len(received(sink)) == 6 and max(received(sink).values()) == 1
