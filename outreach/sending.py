"""The send tick: recover, plan, claim, and deliver — each touch's state committed around its SMTP transaction.

Order for one touch: claimed (committed) → checked (enrollment, suppression, window, lateness) → built
once → `sending` with its Message-ID, guarded by the same checks in the same statement (committed) →
SMTP → `sent` right after the 250 (committed, together with the next touch's `sending`). A crash
between the two commits leaves that one touch `sending`; recovery turns it into `in_doubt`, never a
silent resend. A touch that cannot be built fails alone; the rest of the batch goes out.

What is read is read once per claimed batch (outreach.send_batch); per message only the two state
moves and the sequence's next step are written. `concurrency` > 1 delivers a batch over that many
SMTP connections in parallel threads (each touch is still claimed once, by the one claim statement).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import Engine, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import (
    TERMINAL_TOUCH_STATES,
    CampaignState,
    EnrollmentState,
    EventKind,
    LeadStage,
    MailboxState,
    StopReason,
    SuppressionReason,
    TouchState,
)
from db.models import CommunicationLog, EngagementEvent, Enrollment, Mailbox, OutreachCampaign
from outreach import dkim, outbox
from outreach.campaigns import AUTO_PAUSE_AFTER_FAILURES, CampaignManager, step_due
from outreach.demo_files import touch_attachments
from outreach.enrollments import stop_enrollment
from outreach.errors import OutreachError
from outreach.lateness import late_reason
from outreach.lead_scores import refresh_scores
from outreach.link_tracking import TrackingOptions, track_touch
from outreach.mailboxes import smtp_settings
from outreach.mailbytes import message_bytes
from outreach.mailer import MessageError, OutgoingMessage, make_message_id, sender_domain
from outreach.responses import move_to_contacted
from outreach.send_batch import CampaignCache, CampaignInfo, Job, load_jobs
from outreach.smtp_transport import MailboxUnavailable, SendResult, SmtpConnection, Verdict
from outreach.suppression import suppress, suppressed_among, suppression_hashes
from outreach.tokens import LinkToken, Purpose, sign
from outreach.webhooks import emit_event, listens_for
from outreach.worker import JobContext, stopping

log = logging.getLogger("outreach.sending")

BATCH = 200
MAILBOX_PAUSE_AFTER = 3  # connection or login failures in a row before a mailbox is paused
TICK_BUDGET_S = 30.0  # a tick keeps claiming full batches this long, so a backlog drains at the limits' pace


# The sequence's moves after a 250, built once (see outbox._SENT): only a still-active enrollment with nothing
# scheduled yet, at the step it had, moves on.
_STILL_WAITING = (
    Enrollment.id == bindparam("for_enrollment"),
    Enrollment.state == EnrollmentState.ACTIVE,
    Enrollment.next_due_at.is_(None),
    Enrollment.next_step == bindparam("step"),
)
_NEXT_STEP_DUE = (
    update(Enrollment).where(*_STILL_WAITING).values(next_due_at=bindparam("due"), updated_at=bindparam("now"))
)
_FINISH = (
    update(Enrollment)
    .where(
        *_STILL_WAITING,
        ~exists().where(
            CommunicationLog.enrollment_id == bindparam("for_enrollment"),
            CommunicationLog.state.not_in(list(TERMINAL_TOUCH_STATES)),
        ),
    )
    .values(state=EnrollmentState.FINISHED, next_due_at=None, updated_at=bindparam("now"))
)
_NO_FAILURES = (
    update(OutreachCampaign)
    .where(OutreachCampaign.id == bindparam("campaign_id"), OutreachCampaign.consecutive_failures != 0)
    .values(consecutive_failures=0)
)


@dataclass
class TickReport:
    recovered: outbox.Recovery = field(default_factory=lambda: outbox.Recovery(0, 0))
    planned: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    mailbox_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: str, n: int = 1) -> None:
        with self.lock:  # several delivery threads report into one tick
            self.outcomes[outcome] += n

    def summary(self) -> str | None:
        parts = [f"{n} {what}" for what, n in sorted((self.planned + self.outcomes).items()) if n]
        if self.recovered.requeued or self.recovered.in_doubt:
            parts.append(f"recovered {self.recovered.requeued} claims, {self.recovered.in_doubt} in doubt")
        parts += self.mailbox_errors
        return ", ".join(parts) or None


@dataclass(frozen=True)
class Hold:
    """Why a claimed touch does not go now: cancel, defer (until `when`), hold (for the operator), or fail."""

    kind: str
    detail: str = ""
    when: datetime | None = None
    closes: datetime | None = None  # a deferral into the prospect's next window: that window's end


@dataclass(frozen=True)
class Ready:
    """A touch built and ready for SMTP: what `sending` records, and the bytes (or message) to hand over."""

    job: Job
    message_id: str
    links: list[object]
    message: EmailMessage | bytes


@dataclass(frozen=True)
class Outcome:
    job: Job
    result: SendResult


class Deliverer:
    """Sends one mailbox's claimed touches over one connection."""

    def __init__(
        self, engine: Engine, ctx: JobContext, report: TickReport, campaigns: CampaignCache, suppressed: set[str]
    ) -> None:
        self.engine, self.ctx, self.report, self.campaigns = engine, ctx, report, campaigns
        self.keys = ctx.settings.secret_keys()
        self.suppressed = suppressed
        self.worker = ctx.worker.worker_id
        self.failed: set[int] = set()  # campaigns whose failure count this delivery raised
        self._sender_domain: str | None = None
        self.last_send: datetime | None = None  # this mailbox's latest send (see lateness.late_reason)
        self._stage_webhooks: bool | None = None

    # --- deciding and building (no database writes) -------------------------------------------------

    def _hold(self, info: CampaignInfo, job: Job, now: datetime) -> Hold | None:
        if job.enrollment_state is EnrollmentState.STOPPED or job.to_address in self.suppressed:
            return Hold("cancel", "stopped or suppressed before sending")
        if job.enrollment_state is EnrollmentState.PAUSED:
            return Hold("defer", when=job.paused_until or now)  # picked up again once it runs
        # (the campaign was running at claim time; `_start` checks it again in the `sending` statement)
        late = late_reason(job.due_at, now, info.max_lateness, self.last_send)
        if late is not None:
            return Hold("hold", late)
        rules = self.campaigns.rules(info, job)
        if not rules.is_allowed(now):  # the same rules (holidays included) that planned it, and simulate it
            start, end = rules.next_allowed(now)  # the claim keeps it out until then (outbox.roll_windows)
            return Hold("defer", when=start, closes=end)
        return None

    def _build(self, info: CampaignInfo, job: Job, box: Mailbox, now: datetime) -> Ready:
        message_id = job.message_id or make_message_id(self._domain(box), f"{job.touch_id}.{secrets.token_hex(6)}")
        token = sign(LinkToken(Purpose.UNSUBSCRIBE, job.touch_id), self.keys[0])
        base = self.ctx.settings.base_url
        unsubscribe_url = f"{base}/u/{token}"
        options = TrackingOptions(
            base_url=base, key=self.keys[0], opens=info.track_opens, clicks=info.track_clicks,
            unsubscribe_url=unsubscribe_url,
        )  # fmt: skip
        tracked = track_touch(job.touch_id, job.text, job.html, options)
        spec = OutgoingMessage(
            from_address=box.from_address, from_name=box.from_name, to_address=job.to_address,
            to_name=job.to_name, subject=job.subject, text_body=tracked.text, html_body=tracked.html,
            message_id=message_id, date=now, reply_to=box.reply_to, in_reply_to=job.in_reply_to,
            references=job.references if job.in_reply_to else (), list_unsubscribe_url=unsubscribe_url,
            list_unsubscribe_mailto=f"mailto:{box.from_address}?subject=unsubscribe",
            postal_address=info.postal_address,
            attachments=touch_attachments(self.engine, info.definition, job.touch_id, self.ctx.settings.data_dir),
        )  # fmt: skip
        # Built once, and finalized here: DKIM signs the exact bytes that go on the wire.
        return Ready(job, message_id, list(tracked.links), self.sign(message_bytes(spec)))

    def _domain(self, box: Mailbox) -> str:
        """The sender's domain for Message-IDs, validated once per delivery rather than per message."""
        if self._sender_domain is None:
            self._sender_domain = sender_domain(box.from_address)
        return self._sender_domain

    def _prepare(self, job: Job, box: Mailbox, now: datetime) -> Ready | Hold:
        info = self.campaigns.cached(job.campaign_id)
        hold = self._hold(info, job, now)
        if hold is not None:
            return hold
        try:
            return self._build(info, job, box, now)
        except MessageError as exc:
            return Hold("fail", f"cannot build: {exc}")

    # --- writing ----------------------------------------------------------------------------------

    def _apply_hold(self, s: Session, job: Job, hold: Hold, now: datetime) -> None:
        if hold.kind == "cancel":
            outbox.cancel_claimed(s, job.touch_id, self.worker, hold.detail, now)
            self.report.count("cancelled")
        elif hold.kind == "defer":
            outbox.defer(s, job.touch_id, self.worker, hold.when or now, now, hold.closes)
            self.report.count("deferred")
        elif hold.kind == "hold":
            outbox.hold_claimed(s, job.touch_id, self.worker, hold.detail, now)
            self.report.count("held (too late)")
        else:
            if outbox.mark_permanent_failure(s, job.touch_id, self.worker, hold.detail, now, bounced=False):
                self._move_on(s, job, now)
            self.report.count("failed")

    def _start(self, s: Session, ready: Ready, now: datetime) -> bool:
        """`sending`, only if the enrollment is still live, the campaign running and the address not suppressed."""
        job = ready.job
        email_hashes, domain_hashes = suppression_hashes(job.to_address, self.keys[0])
        start = outbox.SendingStart(
            job.touch_id, job.enrollment_id, ready.message_id, ready.links, email_hashes, domain_hashes
        )
        if outbox.start_sending(s, start, self.worker, now):
            return True
        # Something changed since the batch was read (a pause, a reply, an unsubscribe) or the claim is gone.
        enrollment = s.get(Enrollment, job.enrollment_id)
        campaign = s.get(OutreachCampaign, job.campaign_id)
        if enrollment is None or campaign is None:
            return False
        if enrollment.state is EnrollmentState.ACTIVE and campaign.state is CampaignState.RUNNING:
            if outbox.cancel_claimed(s, job.touch_id, self.worker, "address suppressed before sending", now):
                self.report.count("cancelled")
        elif enrollment.state in (EnrollmentState.STOPPED, EnrollmentState.FINISHED):
            if outbox.cancel_claimed(s, job.touch_id, self.worker, "stopped before sending", now):
                self.report.count("cancelled")
        elif outbox.defer(s, job.touch_id, self.worker, enrollment.paused_until or now, now):
            self.report.count("deferred")
        return False

    def _record(self, s: Session, outcome: Outcome, now: datetime) -> None:
        job, result = outcome.job, outcome.result
        if result.verdict is Verdict.SENT:
            self.last_send = now
            if not outbox.mark_sent(s, job.touch_id, self.worker, now):
                log.error("touch %s was accepted by the server but is no longer ours to mark sent", job.touch_id)
                return
            self._advance(s, job, now)
            self._contacted(s, job, now)
            if job.campaign_id in self.failed or self.campaigns.cached(job.campaign_id).consecutive_failures:
                s.connection().execute(_NO_FAILURES, {"campaign_id": job.campaign_id})
                self.failed.discard(job.campaign_id)
            self.report.count("sent")
            return
        campaign = s.get(OutreachCampaign, job.campaign_id)
        assert campaign is not None
        campaign.consecutive_failures += 1
        self.failed.add(job.campaign_id)
        if result.verdict is Verdict.TEMPORARY:
            state = outbox.mark_temporary_failure(s, job.touch_id, self.worker, result.detail, now)
            if state is TouchState.FAILED:
                self._move_on(s, job, now)
            self.report.count("failed" if state is TouchState.FAILED else "retrying")
        else:
            outbox.mark_permanent_failure(s, job.touch_id, self.worker, result.detail, now, bounced=True)
            self._bounced(s, job, result, now)
        if campaign.consecutive_failures >= AUTO_PAUSE_AFTER_FAILURES and campaign.state is CampaignState.RUNNING:
            campaign.state = CampaignState.PAUSED
            reason = f"paused after {campaign.consecutive_failures} failed sends in a row: {result.detail}"
            campaign.paused_reason = reason[:300]
            self.report.count("campaigns auto-paused")

    def _advance(self, s: Session, job: Job, now: datetime) -> None:
        """After a 250: the next step is due from now, or the enrollment is finished — two guarded UPDATEs.

        The same decision as CampaignManager.advance_after_touch, from the batch's data instead of ORM loads:
        only a still-active enrollment with nothing scheduled yet (and the step it had) moves on.
        """
        info = self.campaigns.cached(job.campaign_id)
        steps = info.definition.steps
        params: dict[str, object] = {"for_enrollment": job.enrollment_id, "step": job.next_step, "now": now}
        if job.next_step < len(steps):
            rules = self.campaigns.rules(info, job)
            params["due"] = step_due(info.definition, job.next_step, rules, job.campaign_id, job.prospect_id, now)
            s.connection().execute(_NEXT_STEP_DUE, params)
        else:
            s.connection().execute(_FINISH, params)

    def _contacted(self, s: Session, job: Job, now: datetime) -> None:
        """A lead still "new" (or without a lead row) moves to "contacted" with its first email.

        Leads past "new" when the batch was read are not read again (automatic moves only go forward);
        the score was refreshed for the batch's new leads before delivery (see fresh_leads), and the move
        to "contacted" does not change it, so it is not recomputed per message.
        """
        if job.lead_stage is None or job.lead_stage is LeadStage.NEW:
            name = self.campaigns.cached(job.campaign_id).definition.name
            reason = f"first email sent ({name})"
            move_to_contacted(s, job.prospect_id, reason, now=now, announce=self._announce_stage(s))

    def _announce_stage(self, s: Session) -> bool:
        """Whether a webhook listens for stage changes (read once per delivery: it is asked per message)."""
        if self._stage_webhooks is None:
            self._stage_webhooks = listens_for(s, "lead_status_changed")
        return self._stage_webhooks

    def _move_on(self, s: Session, job: Job, now: datetime) -> None:
        """The touch failed for good: schedule the next step, or finish the enrollment.

        A failed touch moves the sequence on as one that fails to render at planning does; without this its
        enrollment would stay active with nothing due, and the campaign would never finish.
        """
        touch = s.get(CommunicationLog, job.touch_id)
        assert touch is not None
        CampaignManager(s, secret_key=self.keys[0]).advance_after_touch(touch, now)

    def _bounced(self, s: Session, job: Job, result: SendResult, now: datetime) -> None:
        """5xx at send time: the address will not take mail. Stop the sequence and never send there again."""
        s.add(
            EngagementEvent(
                kind=EventKind.BOUNCE, occurred_at=now, communication_id=job.touch_id, enrollment_id=job.enrollment_id,
                campaign_id=job.campaign_id, prospect_id=job.prospect_id, dedupe_key=f"smtp-bounce:{job.touch_id}",
                details={"status": result.code, "diagnostic": result.detail[:500], "permanent": True},
            )
        )  # fmt: skip
        stop_enrollment(s, job.enrollment_id, StopReason.BOUNCED, now)
        suppress(s, [job.to_address], reason=SuppressionReason.BOUNCED, source=f"SMTP {result.code} at send")
        payload = {"email": job.to_address, "status": result.code, "permanent": True, "source": "smtp"}
        emit_event(s, "bounced", payload, now=now, dedupe_key=f"smtp-bounce:{job.touch_id}")
        self.report.count("bounced")

    def _mailbox_down(self, s: Session, box: Mailbox, ids: list[int], error: OutreachError, now: datetime) -> None:
        outbox.release(s, ids, self.worker, now)
        fresh = s.get(Mailbox, box.id)
        assert fresh is not None
        fresh.consecutive_failures += 1
        fresh.last_error = str(error)[:2000]
        if fresh.consecutive_failures >= MAILBOX_PAUSE_AFTER and fresh.state is MailboxState.ACTIVE:
            fresh.state = MailboxState.PAUSED
            fresh.paused_reason = f"paused after {fresh.consecutive_failures} failed connections: {error}"[:300]
        with self.report.lock:
            self.report.mailbox_errors.append(f"mailbox {box.name}: {error}")
        log.warning("mailbox %s unavailable: %s", box.name, error)

    # --- the loop ---------------------------------------------------------------------------------

    @contextmanager
    def _txn(self) -> Iterator[Session]:
        """One short transaction on the batch's own connection (as db.engine.transaction, without a pool
        checkout and its pre-ping round trip for each of the two commits a message needs)."""
        session = self._session
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.expunge_all()  # nothing read in one transaction is trusted in the next

    def deliver(self, box: Mailbox, jobs: list[Job]) -> None:
        """Each touch: decide and build, then one transaction records the previous 250 and starts this one."""
        try:
            self.sign: Callable[[EmailMessage | bytes], EmailMessage | bytes] = dkim.signer_for(
                self.engine, box.from_address, self.keys
            )  # identity when the domain has no key
            conn = SmtpConnection(smtp_settings(box))
            conn.open()
        except MailboxUnavailable as exc:
            with transaction(self.engine) as s:
                self._mailbox_down(s, box, [j.touch_id for j in jobs], exc, self.ctx.clock())
            return
        with transaction(self.engine, readonly=True) as s:
            self.last_send = s.scalar(
                select(func.max(CommunicationLog.sent_at)).where(CommunicationLog.mailbox_id == box.id)
            )
        pending: Outcome | None = None
        db = self.engine.connect()
        self._session = Session(bind=db, expire_on_commit=False)
        try:
            if box.consecutive_failures:
                with self._txn() as s:
                    s.execute(
                        update(Mailbox).where(Mailbox.id == box.id).values(consecutive_failures=0, last_error=None)
                    )
            for index, job in enumerate(jobs):
                now = self.ctx.clock()
                if stopping.is_set():  # the worker is stopping: what is not handed over goes back to the queue
                    with self._txn() as s:
                        if pending is not None:
                            self._record(s, pending, now)
                            pending = None
                        outbox.release(s, [j.touch_id for j in jobs[index:]], self.worker, now)
                    return
                prepared = self._prepare(job, box, now)
                with self._txn() as s:
                    if pending is not None:
                        self._record(s, pending, now)
                        pending = None
                    if isinstance(prepared, Hold):
                        self._apply_hold(s, job, prepared, now)
                        continue
                    if not self._start(s, prepared, now):
                        continue
                try:
                    result = conn.send(prepared.message, box.from_address, job.to_address)
                except MailboxUnavailable as exc:
                    # Reconnecting after a drop failed before this message's first byte: it was not handed
                    # over (a retry, not in doubt), and the rest of the batch goes back to the queue.
                    with self._txn() as s:
                        now = self.ctx.clock()
                        self._record(s, Outcome(job, SendResult(Verdict.TEMPORARY, None, str(exc))), now)
                        self._mailbox_down(s, box, [j.touch_id for j in jobs[index + 1 :]], exc, now)
                    return
                pending = Outcome(job, result)
        finally:
            if pending is not None:  # the last 250 of the batch (or one before an error) is recorded now
                with self._txn() as s:
                    self._record(s, pending, self.ctx.clock())
            conn.close()
            self._session.close()
            db.close()


def fresh_leads(engine: Engine, jobs: list[Job], now: datetime) -> None:
    """The batch's leads still "new" (or without a row) get their row and score now, in one pass.

    Their first email then only moves the stage (`_contacted`), instead of creating the row under a
    savepoint and rescoring the lead inside each message's transaction.
    """
    ids = [j.prospect_id for j in jobs if j.lead_stage is None or j.lead_stage is LeadStage.NEW]
    if ids:
        with transaction(engine) as s:
            refresh_scores(s, ids, now)


def _chunks(jobs: list[Job], parts: int) -> list[list[Job]]:
    """Split one mailbox's jobs over `parts` connections, keeping claim order within each."""
    size = -(-len(jobs) // max(parts, 1))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def _deliver_batch(
    engine: Engine, ctx: JobContext, report: TickReport, campaigns: CampaignCache, ids: list[int]
) -> None:
    key = ctx.settings.secret_key()
    with transaction(engine, readonly=True) as s:
        jobs = load_jobs(s, ids)
        suppressed = suppressed_among(s, [j.to_address for j in jobs], key)
        boxes = {b.id: b for b in s.scalars(select(Mailbox).where(Mailbox.id.in_({j.mailbox_id for j in jobs})))}
        for job in jobs:
            campaigns.get(s, job.campaign_id)
        for box in boxes.values():
            s.expunge(box)
    fresh_leads(engine, jobs, ctx.clock())
    by_mailbox: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        by_mailbox[job.mailbox_id].append(job)
    concurrency = max(1, ctx.concurrency)
    work = []
    for box_id, box_jobs in by_mailbox.items():
        parts = max(1, concurrency // len(by_mailbox)) if concurrency > len(by_mailbox) else 1
        work += [(boxes[box_id], chunk) for chunk in _chunks(box_jobs, parts)]

    def run(item: tuple[Mailbox, list[Job]]) -> None:
        Deliverer(engine, ctx, report, campaigns, suppressed).deliver(*item)

    if concurrency == 1 or len(work) == 1:
        for item in work:
            run(item)
        return
    errors: list[BaseException] = []

    def guarded(item: tuple[Mailbox, list[Job]]) -> None:
        try:
            run(item)
        except BaseException as exc:  # re-raised in the tick's thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(item,), name=f"send-{n}") for n, item in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def send_tick(engine: Engine, ctx: JobContext) -> TickReport:
    """One pass of the sending pipeline: recovery, then plan, claim and deliver while full batches are due.

    A full batch means more may be due (a backlog after downtime, a big launch): the tick goes on, at the
    pace the mailboxes' limits allow (each claim spends only what the rolling windows leave), for up to
    TICK_BUDGET_S, so one worker is not capped at one batch per tick interval.
    """
    report = TickReport()
    key = ctx.settings.secret_key()
    started = time.monotonic()
    with transaction(engine) as s:
        report.recovered = outbox.recover_expired_leases(s, ctx.now)
    while not stopping.is_set():
        now = ctx.clock()
        with transaction(engine) as s:
            plan = CampaignManager(s, secret_key=key).schedule_communications(now)
            report.planned.update(vars(plan))
        with transaction(engine) as s:
            ids = outbox.claim_due(s, worker_id=ctx.worker.worker_id, now=now, limit=BATCH)
        if ids:
            _deliver_batch(engine, ctx, report, CampaignCache(), ids)  # definitions parsed once per batch
        if len(ids) < BATCH or time.monotonic() - started > TICK_BUDGET_S or ctx.clock() == now or stopping.is_set():
            return report
    return report


def finish_campaigns(session: Session, ctx: JobContext) -> str | None:
    done = CampaignManager(session, secret_key=ctx.settings.secret_key()).finish_campaigns(ctx.now)
    return f"finished {', '.join(done)}" if done else None
