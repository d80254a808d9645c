"""Deliverability costs: DKIM signing per message, and the mailbox health check over a big send history.

    .venv/bin/python bench/deliverability_bench.py                      # 200,000 touches, SQLite
    .venv/bin/python bench/deliverability_bench.py --touches 1000000 --database-url postgresql+psycopg://…

DKIM: the same messages flattened unsigned (the baseline: what the send path did before) and signed
(dkimpy, RSA 2048, relaxed/relaxed), per message. Health: `mailbox_health` (the one SQL aggregation the
worker's job runs every 2 minutes) over 20 mailboxes and N touches spread over 30 days, against a plain
`count(*)` of the same table in the same run (the cost of reading it once).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_dkim(messages: int) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from outreach.dkim import Signer
    from outreach.mailer import OutgoingMessage, build_message

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    sign = Signer("sender.example", "outreach", pem)
    now = datetime(2026, 12, 4, 10, tzinfo=UTC)
    built = [
        build_message(
            OutgoingMessage(
                from_address="dana@sender.example", to_address=f"p{i}@prospect.example", subject=f"Idea {i}",
                text_body="Hi,\n\nA short note about your team.\n\nBest,\nDana", html_body="<p>Hi,</p><p>A note.</p>",
                message_id=f"<{i}.x@sender.example>", date=now, list_unsubscribe_url=f"https://t.example/u/{i}",
                list_unsubscribe_mailto="mailto:dana@sender.example?subject=unsubscribe", postal_address="1 Main St",
            )
        )
        for i in range(messages)
    ]  # fmt: skip
    start = time.perf_counter()
    for message in built:
        message.as_bytes()
    plain = (time.perf_counter() - start) / messages
    start = time.perf_counter()
    for message in built:
        sign(message)
    signed = (time.perf_counter() - start) / messages
    extra = (signed - plain) * 1000
    print(f"DKIM ({messages} messages): flatten {plain * 1000:.2f} ms/msg (baseline), flatten + sign "
          f"{signed * 1000:.2f} ms/msg: +{extra:.2f} ms, at most {1 / signed:.0f} msg/s per core")  # fmt: skip


def fill(url: str, touches: int) -> None:
    from sqlalchemy import insert

    from db.engine import make_engine, transaction
    from db.enums import EventKind, StepType, TouchState
    from db.migrate import upgrade
    from db.models import (
        CommunicationLog,
        EngagementEvent,
        Enrollment,
        Mailbox,
        OutreachCampaign,
        Prospect,
        SequenceStep,
    )

    engine = make_engine(url)
    upgrade(engine)
    now = datetime(2026, 12, 4, 10, tzinfo=UTC)
    with transaction(engine) as s:
        boxes = [Mailbox(name=f"box-{i}", from_address=f"b{i}@sender.example", smtp_host="h", smtp_port=25)
                 for i in range(20)]  # fmt: skip
        campaign = OutreachCampaign(name="bench")
        step = SequenceStep(campaign=campaign, position=0, type=StepType.EMAIL)
        s.add_all([*boxes, campaign, step])
        s.flush()
        box_ids, step_id, campaign_id = [b.id for b in boxes], step.id, campaign.id
    states = [TouchState.SENT] * 90 + [TouchState.BOUNCED] * 3 + [TouchState.FAILED] * 2 + [TouchState.QUEUED] * 5
    chunk = 20_000
    for first in range(0, touches, chunk):
        n = min(chunk, touches - first)
        with transaction(engine) as s:
            pids = s.execute(insert(Prospect).returning(Prospect.id), [
                {"email": f"p{first + i}@x.example", "email_normalized": f"p{first + i}@x.example"} for i in range(n)
            ]).scalars().all()  # fmt: skip
            eids = s.execute(insert(Enrollment).returning(Enrollment.id), [
                {"campaign_id": campaign_id, "prospect_id": pid, "mailbox_id": box_ids[pid % 20]} for pid in pids
            ]).scalars().all()  # fmt: skip
            rows = []
            for k, eid in enumerate(eids):
                state = states[(first + k) % len(states)]
                at = now - timedelta(minutes=((first + k) * 37) % (30 * 24 * 60))
                rows.append({"enrollment_id": eid, "step_id": step_id, "mailbox_id": box_ids[(first + k) % 20],
                             "channel": StepType.EMAIL, "state": state, "due_at": at, "updated_at": at,
                             "sent_at": at if state in (TouchState.SENT, TouchState.BOUNCED) else None,
                             "attempts": 6 if state is TouchState.FAILED else 1})  # fmt: skip
            tids = s.execute(insert(CommunicationLog).returning(CommunicationLog.id), rows).scalars().all()
            s.execute(insert(EngagementEvent), [
                {"kind": EventKind.UNSUBSCRIBE if k % 2 else EventKind.BOUNCE, "communication_id": tid,
                 "occurred_at": now - timedelta(days=k % 30)}
                for k, tid in enumerate(tids[::50])
            ])  # fmt: skip
    engine.dispose()


def bench_health(url: str, touches: int) -> None:
    from sqlalchemy import func, select

    from db.engine import make_engine, transaction
    from db.models import CommunicationLog
    from outreach.mailbox_health import check_mailboxes, mailbox_health

    start = time.perf_counter()
    fill(url, touches)
    print(f"filled {touches:,} touches in {time.perf_counter() - start:.1f} s")
    engine = make_engine(url)
    now = datetime(2026, 12, 4, 10, tzinfo=UTC)
    for attempt in range(2):  # the second run is warm
        with transaction(engine, readonly=True) as s:
            start = time.perf_counter()
            total = s.scalar(select(func.count()).select_from(CommunicationLog))
            scan = time.perf_counter() - start
            start = time.perf_counter()
            rows = mailbox_health(s, now)
            health = time.perf_counter() - start
        start = time.perf_counter()
        check_mailboxes(engine, now)  # pauses them all (3 % bounces + unsubscribes) and moves nothing it cannot
        job = time.perf_counter() - start
        print(f"run {attempt + 1}: count(*) of {total:,} touches {scan * 1000:.0f} ms (baseline); mailbox_health "
              f"over {len(rows)} mailboxes {health * 1000:.0f} ms; health job {job * 1000:.0f} ms")  # fmt: skip
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touches", type=int, default=200_000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f}")
    bench_dkim(args.messages)
    if args.database_url:
        from sqlalchemy import create_engine, text

        name = f"bench_health_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            bench_health(args.database_url.rsplit("/", 1)[0] + f"/{name}", args.touches)
        finally:
            from db.engine import dispose_engines

            dispose_engines()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    with tempfile.TemporaryDirectory() as tmp:
        bench_health(f"sqlite:///{tmp}/bench.db", args.touches)


if __name__ == "__main__":
    main()
