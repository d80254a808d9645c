"""The send queue on SQLite and PostgreSQL: atomic claims, leases, limits, crash recovery."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.engine import make_engine, transaction
from db.enums import TouchState
from db.models import CommunicationLog
from outreach import outbox
from tests import factories

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _states(engine) -> Counter:
    with transaction(engine, readonly=True) as s:
        return Counter(s.scalars(select(CommunicationLog.state)).all())


def test_only_due_touches_are_claimed(engine) -> None:
    with transaction(engine) as s:
        due = factories.queued_touches(s, 3, NOW - timedelta(minutes=1))
        factories.queued_touches(s, 2, NOW + timedelta(hours=1))
    with transaction(engine) as s:
        assert outbox.claim_due(s, worker_id="w1", now=NOW, limit=10) == due
    with transaction(engine) as s:
        assert outbox.claim_due(s, worker_id="w2", now=NOW, limit=10) == []


def test_full_path_to_sent(engine) -> None:
    with transaction(engine) as s:
        [tid] = factories.queued_touches(s, 1, NOW)
    with transaction(engine) as s:
        assert outbox.claim_due(s, worker_id="w1", now=NOW, limit=5) == [tid]
        assert not outbox.mark_sending(s, tid, "someone-else", "<x@y>", NOW)
        assert outbox.mark_sending(s, tid, "w1", "<a1@sender.example>", NOW)
        assert outbox.mark_sent(s, tid, "w1", NOW)
        assert not outbox.mark_sent(s, tid, "w1", NOW)  # a move happens once
    with transaction(engine, readonly=True) as s:
        row = s.get(CommunicationLog, tid)
        assert (row.state, row.message_id, row.sent_at, row.attempts) == (
            TouchState.SENT, "<a1@sender.example>", NOW, 1,
        )  # fmt: skip


def test_crash_recovery_requeues_claims_and_flags_sends_in_doubt(engine) -> None:
    with transaction(engine) as s:
        a, b = factories.queued_touches(s, 2, NOW)
    with transaction(engine) as s:
        outbox.claim_due(s, worker_id="dead", now=NOW, limit=5, lease=timedelta(minutes=1))
        outbox.mark_sending(s, b, "dead", "<b@sender.example>", NOW, lease=timedelta(minutes=1))
    with transaction(engine) as s:
        assert outbox.recover_expired_leases(s, NOW + timedelta(seconds=30)) == outbox.Recovery(0, 0)
        assert outbox.recover_expired_leases(s, NOW + timedelta(minutes=2)) == outbox.Recovery(1, 1)
    with transaction(engine, readonly=True) as s:
        assert s.get(CommunicationLog, a).state is TouchState.QUEUED
        assert s.get(CommunicationLog, b).state is TouchState.IN_DOUBT
    with transaction(engine) as s:  # an in-doubt touch is never claimed again by itself
        assert outbox.claim_due(s, worker_id="w2", now=NOW + timedelta(minutes=3), limit=5) == [a]
        assert outbox.resolve_in_doubt(s, b, was_sent=True, now=NOW)
        assert s.get(CommunicationLog, b).state is TouchState.SENT


def test_temporary_failures_back_off_then_fail(engine) -> None:
    with transaction(engine) as s:
        [tid] = factories.queued_touches(s, 1, NOW)
    now = NOW
    seen = []
    for _ in range(outbox.MAX_ATTEMPTS):
        with transaction(engine) as s:
            assert outbox.claim_due(s, worker_id="w", now=now, limit=1) == [tid]
            outbox.mark_sending(s, tid, "w", "<t@sender.example>", now)
            seen.append(outbox.mark_temporary_failure(s, tid, "w", "451 try later", now))
            now = s.get(CommunicationLog, tid).due_at
    assert seen == [TouchState.RETRY_WAIT] * (outbox.MAX_ATTEMPTS - 1) + [TouchState.FAILED]
    assert outbox.backoff(1) == timedelta(minutes=1) and outbox.backoff(20) == outbox.BACKOFF_CAP


def test_mailbox_limits_count_from_the_log(engine) -> None:
    with transaction(engine) as s:
        box = factories.mailbox(s, daily=5, per_minute=2)
        factories.queued_touches(s, 8, NOW, box)
    sent_at = NOW
    total = 0
    for minute in range(6):
        now = NOW + timedelta(minutes=minute)
        with transaction(engine) as s:
            claimed = outbox.claim_due(s, worker_id="w", now=now, limit=50)
            assert len(claimed) <= 2
            for tid in claimed:
                outbox.mark_sending(s, tid, "w", f"<{tid}@sender.example>", now)
                outbox.mark_sent(s, tid, "w", now)
            total += len(claimed)
            sent_at = now
    assert total == 5  # the daily limit, reached at two per minute
    with transaction(engine) as s:  # a day later there is room again
        assert len(outbox.claim_due(s, worker_id="w", now=sent_at + timedelta(days=1), limit=50)) == 2


def test_concurrent_workers_claim_each_touch_exactly_once(db_url: str) -> None:
    engine = make_engine(db_url)
    with transaction(engine) as s:
        ids = factories.queued_touches(s, 300, NOW)
    engine.dispose()
    claims: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        eng = make_engine(db_url)
        try:
            while True:
                with transaction(eng) as s:
                    got = outbox.claim_due(s, worker_id=name, now=NOW, limit=7)
                if not got:
                    return
                with transaction(eng) as s:
                    for tid in got:
                        assert outbox.mark_sending(s, tid, name, f"<{tid}@sender.example>", NOW)
                        assert outbox.mark_sent(s, tid, name, NOW)
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
    assert sorted(claims) == sorted(ids)  # every touch once, none twice
    check = make_engine(db_url)
    assert _states(check) == Counter({TouchState.SENT: 300})
    check.dispose()
