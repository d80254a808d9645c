"""The send tick against a real SMTP server that misbehaves: 4xx, 5xx, dropped connections, bad messages.

In-process (send_tick with a JobContext at a chosen clock), on SQLite and on PostgreSQL. The sink
(aiosmtpd on loopback) answers per recipient and attempt; its attempt log shows what the worker tried,
in order, and its receipts show what a recipient actually got.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, Row, select, update

from db.engine import transaction
from db.enums import CampaignState, EnrollmentState, EventKind, StopReason, TouchState
from db.models import CommunicationLog, EngagementEvent, Enrollment, Prospect
from outreach import outbox
from outreach.campaigns import CampaignManager, find_campaign
from outreach.config import Settings, load_settings
from outreach.sending import TickReport, send_tick
from outreach.suppression import is_suppressed
from outreach.worker import JobContext, WorkerIdentity
from tests.sending_setup import KEY, FaultRule, launch_campaign
from tests.smtp_sink import Sink

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LAUNCH = T0 - timedelta(hours=1)  # first touches are due within 15 minutes of launch (jitter)
SOFT_421 = "421 4.7.0 too busy, try again later"
SOFT_451 = "451 4.3.0 temporary failure, try again later"
HARD_550 = "550 5.1.1 no such user"
HARD_554 = "554 5.7.1 message rejected"


@pytest.fixture
def settings(data_env, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    return load_settings()


def tick(engine: Engine, settings: Settings, now: datetime, worker: str = "w1") -> TickReport:
    """One send tick as a worker whose clock reads `now` throughout."""
    return send_tick(engine, JobContext(now, WorkerIdentity(worker, "host", 1), settings, lambda: now))


def plan_all(engine: Engine, people: list[str]) -> list[str]:
    """Plan every due touch now; returns the addresses in the order a tick sends them (by touch id)."""
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).schedule_communications(T0)
    ids = {a: t.id for a, t in touches_by_address(engine).items()}
    return sorted(people, key=ids.__getitem__)


def touches_by_address(engine: Engine) -> dict[str, Row]:
    """Each prospect's (single) touch as plain values: id, state, attempts, due_at, last_error, message_id."""
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(Prospect.email, CommunicationLog.id, CommunicationLog.state, CommunicationLog.attempts,
                   CommunicationLog.due_at, CommunicationLog.last_error, CommunicationLog.message_id)
            .join(Enrollment, Enrollment.prospect_id == Prospect.id)
            .join(CommunicationLog, CommunicationLog.enrollment_id == Enrollment.id)
        ).all()  # fmt: skip
        return {row.email: row for row in rows}


def received_by_address(sink: Sink) -> Counter[str]:
    return Counter(r.rcpt_to[0] for r in sink.received)


def test_4xx_retry_with_backoff_5xx_bounce_and_drops_reconnect(engine, settings) -> None:
    people = [f"p{i}@acme.example" for i in range(14)]
    rule = FaultRule()
    with Sink(rule) as sink:
        launch_campaign(engine, sink.port, people=people, launch_at=LAUNCH)
        order = plan_all(engine, people)
        # The first address gets the 554; each fault sits between good addresses.
        hard554, drop, soft421, hard550, soft451, stuck = order[0:12:2]
        ok = [a for a in order if a not in order[0:12:2]]
        rule.plan = {
            hard554: [HARD_554] * 9,
            drop: ["DROP"],
            soft421: [SOFT_421],
            hard550: [HARD_550] * 9,
            soft451: [SOFT_451, SOFT_451],  # clears on the third attempt
            stuck: [SOFT_451] * 9,  # never clears: failed after MAX_ATTEMPTS
        }

        report = tick(engine, settings, T0)
        # One tick tried every address in claim order: the 554 (and the drop, the 421) stalled nothing.
        assert [rcpt for rcpt, _ in rule.attempts] == order
        assert received_by_address(sink) == Counter(ok)
        assert (report.outcomes["sent"], report.outcomes["bounced"], report.outcomes["retrying"]) == (8, 2, 4)
        touches = touches_by_address(engine)
        for soft in (drop, soft421, soft451, stuck):
            t = touches[soft]
            assert (t.state, t.attempts, t.due_at) == (TouchState.RETRY_WAIT, 1, T0 + timedelta(minutes=1)), soft
        assert "connection lost" in (touches[drop].last_error or "")
        assert (touches[soft421].last_error or "").startswith("421")

        tick(engine, settings, T0 + timedelta(seconds=59))  # the backoff has not elapsed: nobody is retried
        assert len(rule.attempts) == len(order)

        t1 = T0 + timedelta(minutes=1)
        tick(engine, settings, t1)
        assert received_by_address(sink) == Counter([*ok, drop, soft421])
        touches = touches_by_address(engine)
        assert (touches[soft451].state, touches[soft451].due_at) == (
            TouchState.RETRY_WAIT, t1 + timedelta(minutes=2),  # the wait doubles
        )  # fmt: skip

        t2 = t1 + timedelta(minutes=2)
        tick(engine, settings, t2)
        assert received_by_address(sink)[soft451] == 1
        now = t2
        for _ in range(outbox.MAX_ATTEMPTS):  # the stuck address uses up its attempts
            now += outbox.BACKOFF_CAP
            tick(engine, settings, now)

    touches = touches_by_address(engine)
    states = {a: t.state for a, t in touches.items()}
    assert states == {
        **dict.fromkeys([*ok, drop, soft421, soft451], TouchState.SENT),
        hard550: TouchState.BOUNCED,
        hard554: TouchState.BOUNCED,
        stuck: TouchState.FAILED,
    }
    assert touches[stuck].attempts == outbox.MAX_ATTEMPTS
    assert max(received_by_address(sink).values()) == 1
    assert {str(r.message["Message-ID"]) for r in sink.received} == {
        t.message_id for t in touches.values() if t.state is TouchState.SENT
    }
    with transaction(engine) as s:
        stops = dict(s.execute(select(Prospect.email, Enrollment.stop_reason).join(Enrollment)).all())
        assert {a for a, reason in stops.items() if reason is StopReason.BOUNCED} == {hard550, hard554}
        assert is_suppressed(s, hard550, KEY) and is_suppressed(s, hard554, KEY)
        assert not is_suppressed(s, stuck, KEY)  # a 4xx never suppresses
        bounces = s.scalars(select(EngagementEvent.details).where(EngagementEvent.kind == EventKind.BOUNCE)).all()
        assert sorted(d["status"] for d in bounces) == [550, 554]
        # Every touch is terminal, so the campaign is done — the failed one included.
        CampaignManager(s, secret_key=KEY).finish_campaigns(now)
        assert find_campaign(s, "Load").state is CampaignState.FINISHED


def test_a_message_that_cannot_be_rendered_or_built_fails_alone(engine, settings) -> None:
    people = [f"p{i}@acme.example" for i in range(10)]
    with Sink() as sink:
        launch_campaign(engine, sink.port, people=[*people, "norender@acme.example"], launch_at=LAUNCH)
        with transaction(engine) as s:
            # Edited after launch: the subject needs the company (launch checked it was there) …
            s.execute(update(Prospect).where(Prospect.email == "norender@acme.example").values(company=None))
            # … and an address that no SMTP server would take, caught when the message is built.
            s.execute(update(Prospect).where(Prospect.email == people[4]).values(email="p4 at acme.example"))
        report = tick(engine, settings, T0)
        assert sorted(received_by_address(sink)) == sorted(p for p in people if p != people[4])
    assert (report.planned["failed"], report.outcomes["failed"], report.outcomes["sent"]) == (1, 1, 9)
    touches = touches_by_address(engine)
    assert touches["norender@acme.example"].state is TouchState.FAILED
    assert "render failed" in (touches["norender@acme.example"].last_error or "")
    assert touches["p4 at acme.example"].state is TouchState.FAILED
    assert "cannot build" in (touches["p4 at acme.example"].last_error or "")
    with transaction(engine) as s:
        # A failed touch is terminal: its enrollment is done and so, here, is the campaign.
        assert set(s.scalars(select(Enrollment.state))) == {EnrollmentState.FINISHED}
        CampaignManager(s, secret_key=KEY).finish_campaigns(T0)
        assert find_campaign(s, "Load").state is CampaignState.FINISHED


def test_a_server_that_goes_away_mid_batch_leaves_nothing_in_doubt(engine, settings) -> None:
    people = [f"p{i}@acme.example" for i in range(6)]
    rule = FaultRule()
    with Sink(rule) as sink:
        launch_campaign(engine, sink.port, people=people, launch_at=LAUNCH)
        order = plan_all(engine, people)

        def server_goes_away(rcpt: str, n: int) -> str | None:
            if rcpt != order[2]:
                return None
            sink.controller.server.close()  # stop listening: the reconnect after this drop is refused
            return "DROP"

        rule.refuse = server_goes_away
        report = tick(engine, settings, T0)
    assert [r.rcpt_to[0] for r in sink.received] == order[:2]
    assert report.mailbox_errors and "cannot connect" in report.mailbox_errors[0]
    touches = touches_by_address(engine)
    # The dropped one and the one that could not reconnect were never accepted: both wait for a retry.
    assert [touches[a].state for a in order] == [
        TouchState.SENT, TouchState.SENT, TouchState.RETRY_WAIT, TouchState.RETRY_WAIT,
        TouchState.QUEUED, TouchState.QUEUED,
    ]  # fmt: skip
