"""The worker: one APScheduler BlockingScheduler per process, its jobs registered here and nowhere else.

Coordination between several workers happens in the database (claims with leases), never in a shared
job store: APScheduler 3 cannot share one between processes. Streamlit never starts a scheduler.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import WorkerHeartbeat
from outreach.config import Settings, load_settings
from outreach.errors import OutreachError

log = logging.getLogger("outreach.worker")

# Set when the process is asked to stop (SIGTERM, Ctrl-C): a send tick finishes the message in hand,
# gives its other claims back to the queue and claims nothing more, so a stop takes seconds, not a lease.
stopping = threading.Event()

STALE_WORKER_AFTER_S = 3600


@dataclass(frozen=True)
class WorkerIdentity:
    worker_id: str
    hostname: str
    pid: int

    @classmethod
    def current(cls) -> WorkerIdentity:
        host = socket.gethostname()
        return cls(f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}", host, os.getpid())


@dataclass(frozen=True)
class JobContext:
    now: datetime
    worker: WorkerIdentity
    settings: Settings
    clock: Callable[[], datetime]  # for work that takes a while (sending): the time at each step
    concurrency: int = 1  # SMTP connections a send tick may use in parallel (`outreach worker --concurrency`)


JobBody = Callable[[Session, JobContext], str | None]
EngineJobBody = Callable[[Engine, JobContext], str | None]


@dataclass(frozen=True)
class Job:
    """A periodic job returning a short summary (or None).

    A plain body runs in one transaction; an engine body (sending) opens the short transactions it
    needs itself, because a touch's state must be committed before and after the SMTP conversation.
    """

    id: str
    every_seconds: int
    body: JobBody | EngineJobBody
    description: str
    own_transactions: bool = False


def heartbeat(session: Session, ctx: JobContext) -> str | None:
    """Record that this worker is alive, so the dashboard can say whether sending works."""
    row = session.get(WorkerHeartbeat, ctx.worker.worker_id)
    if row is None:
        session.add(
            WorkerHeartbeat(
                worker_id=ctx.worker.worker_id,
                hostname=ctx.worker.hostname,
                pid=ctx.worker.pid,
                started_at=ctx.now,
                last_seen_at=ctx.now,
            )
        )
    else:
        row.last_seen_at = ctx.now
    cutoff = ctx.now.timestamp() - STALE_WORKER_AFTER_S
    session.execute(
        delete(WorkerHeartbeat).where(
            WorkerHeartbeat.last_seen_at < datetime.fromtimestamp(cutoff, UTC),
            WorkerHeartbeat.worker_id != ctx.worker.worker_id,
        )
    )
    return None


def _send(engine: Engine, ctx: JobContext) -> str | None:
    from outreach.sending import send_tick

    return send_tick(engine, ctx).summary()


def _tasks_and_finish(session: Session, ctx: JobContext) -> str | None:
    from outreach.sending import finish_campaigns

    return finish_campaigns(session, ctx)


def _inbox(engine: Engine, ctx: JobContext) -> str | None:
    from outreach.inbox import poll_inboxes

    return poll_inboxes(engine, ctx)


def _resume(session: Session, ctx: JobContext) -> str | None:
    from outreach.enrollments import resume_paused

    return resume_paused(session, ctx)


def _mailbox_health(engine: Engine, ctx: JobContext) -> str | None:
    from outreach.mailbox_health import check_mailboxes

    return check_mailboxes(engine, ctx.now)


def _nightly_models(engine: Engine, ctx: JobContext) -> str | None:
    """Refit the send-time model and re-score every lead, once the stored fit is older than ~a day."""
    from outreach.lead_scores import nightly_refresh
    from outreach.send_time import refit

    with transaction(engine) as session:
        fitted = refit(session, ctx.now)
    return None if fitted is None else f"send times: {fitted}; leads: {nightly_refresh(engine, ctx.now)}"


def _webhooks(engine: Engine, ctx: JobContext) -> str | None:
    from outreach.webhooks import deliver_webhooks

    return deliver_webhooks(engine, ctx)


def _in_doubt(engine: Engine, ctx: JobContext) -> str | None:
    from outreach.in_doubt import resolve_from_sent_folders

    return resolve_from_sent_folders(engine, ctx)


def _analytics(session: Session, ctx: JobContext) -> str | None:
    from outreach.analytics_rollup import refresh

    return refresh(session)


# The one place jobs are registered.
JOBS: tuple[Job, ...] = (
    Job("heartbeat", 15, heartbeat, "records that this worker is alive"),
    Job("send", 5, _send, "recovers expired leases, plans due touches and sends them", own_transactions=True),
    Job("inbox", 60, _inbox, "reads replies, bounces and auto-replies from mailboxes over IMAP", own_transactions=True),
    Job("resume", 300, _resume, "resumes enrollments paused until a date (out of office)"),
    Job("finish", 60, _tasks_and_finish, "marks campaigns with nothing left to do as finished"),
    Job("mailbox_health", 120, _mailbox_health, "pauses unhealthy mailboxes, moves their share", own_transactions=True),
    Job("models", 3600, _nightly_models, "nightly: refits send times, re-scores leads", own_transactions=True),
    Job("webhooks", 15, _webhooks, "announces due tasks and delivers signed webhook events", own_transactions=True),
    Job("in_doubt", 120, _in_doubt, "looks for in-doubt touches in the Sent folder over IMAP", own_transactions=True),
    Job("analytics", 60, _analytics, "folds new events, replies and sends into the Analytics page's rollups"),
)


def run_job(engine: Engine, job: Job, ctx: JobContext) -> str | None:
    if job.own_transactions:
        return job.body(engine, ctx)  # type: ignore[arg-type]
    with transaction(engine) as session:
        return job.body(session, ctx)  # type: ignore[arg-type]


def _fixed(now: datetime) -> Callable[[], datetime]:
    return lambda: now


def run_once(
    engine: Engine,
    now: datetime,
    worker: WorkerIdentity | None = None,
    settings: Settings | None = None,
    concurrency: int = 1,
) -> list[tuple[str, str | None]]:
    """Run every job once, in registration order, as if the clock read `now` (and stood still)."""
    ctx = JobContext(now, worker or WorkerIdentity.current(), settings or load_settings(), _fixed(now), concurrency)
    return [(job.id, run_job(engine, job, ctx)) for job in JOBS]


def _scheduled(
    engine: Engine,
    job: Job,
    worker: WorkerIdentity,
    settings: Settings,
    clock: Callable[[], datetime],
    concurrency: int = 1,
) -> Callable[[], None]:
    def tick() -> None:
        try:
            summary = run_job(engine, job, JobContext(clock(), worker, settings, clock, concurrency))
        except Exception:
            log.exception("%s failed; it runs again at its next interval", job.id)
            return
        if summary:
            log.info("%s: %s", job.id, summary)

    return tick


class _StillRunning(logging.Filter):
    """APScheduler warns each time a job's next run finds the last one still going; for the send tick
    working off a backlog that is the design (max_instances=1), not a problem: logged at DEBUG instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "maximum number of running instances reached" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("apscheduler.scheduler").addFilter(_StillRunning())


def build_scheduler(
    engine: Engine,
    clock: Callable[[], datetime] | None = None,
    settings: Settings | None = None,
    concurrency: int = 1,
) -> BlockingScheduler:
    """One scheduler per process; `concurrency` is how many SMTP connections a send tick may use at once."""
    if concurrency < 1:
        raise OutreachError(f"--concurrency must be 1 or more, got {concurrency}")
    clock = clock or (lambda: datetime.now(UTC))
    settings = settings or load_settings()
    worker = WorkerIdentity.current()
    scheduler = BlockingScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    for job in JOBS:
        scheduler.add_job(
            _scheduled(engine, job, worker, settings, clock, concurrency),
            "interval",
            seconds=job.every_seconds,
            id=job.id,
            name=job.description,
            next_run_time=datetime.now(UTC),  # APScheduler runs on the real clock
        )
    return scheduler


def latest_heartbeats(session: Session) -> list[WorkerHeartbeat]:
    return list(session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.last_seen_at.desc())))
