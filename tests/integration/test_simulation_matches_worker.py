"""The simulation is what the worker does: a campaign simulated before launch, then sent by the real worker.

40 prospects in New York, Berlin and nowhere in particular, two mailboxes with tight limits (one on a
ramp), two steps, holidays (US Thanksgiving falls inside), windows in each prospect's zone. The draft is
simulated, then launched, then the real worker (`worker.run_once`, every job) runs at each moment the
simulation says something goes out and also every few hours in between, sending to a real SMTP server on
loopback. Every touch must go out exactly when the simulation said: same prospect, step, mailbox, second.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from db.engine import transaction
from db.enums import TlsMode, TouchState
from db.models import CommunicationLog, Enrollment, Mailbox, Prospect, ProspectList, ProspectListMember, SequenceStep
from outreach.campaigns import CampaignManager, find_campaign
from outreach.config import Settings, load_settings
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.ramp import set_ramp
from outreach.sequence import parse_definition
from outreach.simulate import SEND_TICK, Simulation, simulate
from outreach.worker import WorkerIdentity, run_once
from tests.smtp_sink import Sink

KEY = "s" * 48
LAUNCH = datetime(2026, 11, 24, 13, 0, 7, tzinfo=UTC)  # Tuesday: 08:00 in New York, 14:00 in Berlin
YAML = """
name: Sim
audience: {list: sim}
mailboxes: [sim-1, sim-2]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: prospect, window: "09:00-17:00", days: [mon, tue, wed, thu, fri], holidays: true}
steps:
  - {type: email, subject: "Idea for {{ company }}", body: "Hi {{ first_name }}"}
  - {type: email, delay: 1 business day, when: no_reply, thread: true, body: "Following up, {{ first_name }}"}
"""
PLACES = [("America/New_York", "United States"), ("Europe/Berlin", "Germany"), (None, None)]


@pytest.fixture
def settings(data_env, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    return load_settings()


def _set_up(engine: Engine, port: int) -> None:
    with transaction(engine) as s:
        for name, daily, per_minute in (("sim-1", 6, 1), ("sim-2", 5, 2)):
            spec = MailboxSpec(name, f"{name}@sender.example", "127.0.0.1", port, tls=TlsMode.NONE,
                               daily_limit=daily, per_minute=per_minute)  # fmt: skip
            save_mailbox(s, spec)
        set_ramp(s, "sim-1", 3, 2, LAUNCH.date(), LAUNCH)  # 3, 5, then 6 a day
        lst = ProspectList(name="sim")
        s.add(lst)
        s.flush()
        rows = [
            {"email": f"p{i}@co{i}.example", "email_normalized": f"p{i}@co{i}.example", "first_name": f"P{i}",
             "company": f"Co {i}", "timezone": PLACES[i % 3][0], "country": PLACES[i % 3][1]}
            for i in range(40)
        ]  # fmt: skip
        ids = s.execute(insert(Prospect).returning(Prospect.id), rows).scalars().all()
        s.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": pid} for pid in ids])
        CampaignManager(s, secret_key=KEY).create_campaign(parse_definition(YAML))


def _sent(engine: Engine) -> set[tuple[int, int, str, datetime]]:
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(Enrollment.prospect_id, SequenceStep.position, Mailbox.name, CommunicationLog.sent_at)
            .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
            .join(SequenceStep, SequenceStep.id == CommunicationLog.step_id)
            .join(Mailbox, Mailbox.id == CommunicationLog.mailbox_id)
            .where(CommunicationLog.state == TouchState.SENT)
        )
        return {(pid, position + 1, box, at) for pid, position, box, at in rows}


def _per_day(touches: set[tuple[int, int, str, datetime]]) -> Counter[tuple[str, str]]:
    return Counter((at.date().isoformat(), box) for _pid, _step, box, at in touches)


def _held(engine: Engine) -> int:
    with transaction(engine, readonly=True) as s:
        return len(s.scalars(select(CommunicationLog.id).where(CommunicationLog.hold_reason.is_not(None))).all())


@pytest.mark.slow
def test_the_worker_sends_what_the_simulation_showed(engine: Engine, settings: Settings) -> None:
    with Sink() as sink:
        _set_up(engine, sink.port)
        with transaction(engine, readonly=True) as s:
            sim: Simulation = simulate(s, find_campaign(s, "Sim"), LAUNCH, secret_key=KEY, days=21)
            assert str(find_campaign(s, "Sim").state) == "draft"  # the trial launch left nothing behind
            assert s.scalar(select(Enrollment.id).limit(1)) is None
        expected = {(t.prospect_id, t.step, t.mailbox, t.at) for t in sim.sends}
        assert len(expected) == sim.touches and sim.touches + sim.unscheduled == 80
        # Touches waiting behind the limits for more than two days (the default maximum lateness) are not
        # held: the mailboxes keep sending, so they are a backlog, not downtime; all 80 go out in 21 days.
        assert sim.held_late == 0 and sim.unscheduled == 0
        # The limits bind: no mailbox-day above its (ramped) limit, and the sends spread over several days.
        days = _per_day(expected)
        assert days[("2026-11-24", "sim-1")] == 3 and days[("2026-11-25", "sim-1")] == 5
        assert max(n for (_day, box), n in days.items() if box == "sim-2") == 5
        assert len({day for day, _box in days}) >= 5
        # Thanksgiving: nothing reaches a New York prospect on 2026-11-26; Berlin prospects do get mail.
        on_26 = [t.prospect_id % 3 for t in sim.sends if t.at.date().isoformat() == "2026-11-26"]
        assert on_26 and 1 not in on_26 and 2 in on_26

        with transaction(engine) as s:
            CampaignManager(s, secret_key=KEY).launch(find_campaign(s, "Sim"), LAUNCH)
        # The worker runs at every tick where the simulation claimed something, and every 12 hours besides:
        # a tick the simulation skipped must find nothing to do.
        grid = {LAUNCH + timedelta(hours=12) * k for k in range(21 * 2)}
        assert all((t - LAUNCH) % SEND_TICK == timedelta(0) for t in sim.claim_ticks)
        me = WorkerIdentity("sim-worker", "host", 1)
        for moment in sorted(set(sim.claim_ticks) | grid):
            run_once(engine, moment, me, settings)

        actual = _sent(engine)
        assert _per_day(actual) == days
        assert actual == expected
        assert _held(engine) == sim.held_late
        assert len(sink.received) == sim.touches
