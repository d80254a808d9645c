"""The send tick: recover, plan, claim, and deliver — each touch's state committed around its SMTP transaction.

Order for one touch: claimed (committed) → checked again (enrollment, suppression, window) → built →
`sending` with its Message-ID (committed) → SMTP → `sent` right after the 250 (committed). A crash
between the two commits leaves that one touch `sending`; recovery turns it into `in_doubt`, never a
silent resend. A touch that cannot be built fails alone; the rest of the batch goes out.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import (
    CampaignState,
    EnrollmentState,
    EventKind,
    MailboxState,
    StopReason,
    SuppressionReason,
    TouchState,
)
from db.models import CommunicationLog, EngagementEvent, Enrollment, Mailbox, OutreachCampaign, Prospect
from outreach import outbox
from outreach.campaigns import AUTO_PAUSE_AFTER_FAILURES, CampaignManager, definition_of, postal_address
from outreach.enrollments import stop_enrollment
from outreach.errors import OutreachError
from outreach.link_tracking import TrackingOptions, track_touch
from outreach.mailboxes import smtp_settings
from outreach.mailer import MessageError, OutgoingMessage, build_message, make_message_id, sender_domain
from outreach.schedule import is_allowed, next_allowed
from outreach.smtp_transport import MailboxUnavailable, SendResult, SmtpConnection, Verdict
from outreach.suppression import is_suppressed, suppress
from outreach.tokens import LinkToken, Purpose, sign
from outreach.webhooks import emit_event
from outreach.worker import JobContext

log = logging.getLogger("outreach.sending")

BATCH = 200
MAILBOX_PAUSE_AFTER = 3  # connection or login failures in a row before a mailbox is paused


@dataclass
class TickReport:
    recovered: outbox.Recovery = field(default_factory=lambda: outbox.Recovery(0, 0))
    planned: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    mailbox_errors: list[str] = field(default_factory=list)

    def summary(self) -> str | None:
        parts = [f"{n} {what}" for what, n in sorted((self.planned + self.outcomes).items()) if n]
        if self.recovered.requeued or self.recovered.in_doubt:
            parts.append(f"recovered {self.recovered.requeued} claims, {self.recovered.in_doubt} in doubt")
        parts += self.mailbox_errors
        return ", ".join(parts) or None


@dataclass(frozen=True)
class Job:
    """Everything needed to send one claimed touch, read once per batch."""

    touch_id: int
    enrollment_id: int
    campaign_id: int
    prospect_id: int
    mailbox_id: int
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str | None
    message_id: str | None
    in_reply_to: str | None


def _load_jobs(session: Session, ids: list[int]) -> list[Job]:
    rows = session.execute(
        select(CommunicationLog, Enrollment.campaign_id, Prospect.id, Prospect.email)
        .add_columns(Prospect.first_name, Prospect.last_name)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .where(CommunicationLog.id.in_(ids))
        .order_by(CommunicationLog.id)
    )
    jobs = []
    for touch, campaign_id, prospect_id, email, first, last in rows:
        name = " ".join(n for n in (first, last) if n) or None
        job = Job(
            touch.id, touch.enrollment_id, campaign_id, prospect_id, touch.mailbox_id, email, name,
            touch.subject or "", touch.body_text or "", touch.body_html, touch.message_id, touch.in_reply_to,
        )  # fmt: skip
        jobs.append(job)
    return jobs


def _references(session: Session, enrollment_id: int, before_touch: int) -> tuple[str, ...]:
    """The thread so far: Message-IDs of this enrollment's earlier sent emails, oldest first."""
    return tuple(
        session.scalars(
            select(CommunicationLog.message_id)
            .where(
                CommunicationLog.enrollment_id == enrollment_id,
                CommunicationLog.id < before_touch,
                CommunicationLog.state == TouchState.SENT,
                CommunicationLog.message_id.is_not(None),
            )
            .order_by(CommunicationLog.id)
        )
    )


class Deliverer:
    """Sends one mailbox's claimed touches over one connection."""

    def __init__(self, engine: Engine, ctx: JobContext, report: TickReport) -> None:
        self.engine, self.ctx, self.report = engine, ctx, report
        self.keys = ctx.settings.secret_keys()

    def _hold_reason(self, session: Session, job: Job, now: datetime) -> tuple[str, datetime | None] | None:
        """Why this claimed touch must not go now: ('cancel', None) or ('defer', when)."""
        enrollment = session.get(Enrollment, job.enrollment_id)
        campaign = session.get(OutreachCampaign, job.campaign_id)
        assert enrollment is not None and campaign is not None
        if enrollment.state is EnrollmentState.STOPPED or is_suppressed(session, job.to_address, self.keys[0]):
            return ("cancel", None)
        if campaign.state is not CampaignState.RUNNING or enrollment.state is EnrollmentState.PAUSED:
            return ("defer", enrollment.paused_until or now)  # picked up again once it runs
        sched = definition_of(campaign).schedule
        prospect = session.get(Prospect, enrollment.prospect_id)
        tz = sched.zone_for(prospect.timezone if prospect else None)
        if not is_allowed(now, window=sched.window, days=sched.day_set, tz=tz):
            return ("defer", next_allowed(now, window=sched.window, days=sched.day_set, tz=tz)[0])
        return None

    def _build(self, session: Session, job: Job, box: Mailbox, message_id: str, now: datetime) -> OutgoingMessage:
        campaign = session.get(OutreachCampaign, job.campaign_id)
        assert campaign is not None
        token = sign(LinkToken(Purpose.UNSUBSCRIBE, job.touch_id), self.keys[0])
        unsubscribe_url = f"{self.ctx.settings.base_url}/u/{token}"
        options = TrackingOptions(
            base_url=self.ctx.settings.base_url, key=self.keys[0], opens=campaign.track_opens,
            clicks=campaign.track_clicks, unsubscribe_url=unsubscribe_url,
        )  # fmt: skip
        tracked = track_touch(job.touch_id, job.text, job.html, options)
        touch = session.get(CommunicationLog, job.touch_id)
        assert touch is not None
        touch.links = tracked.links  # committed with `sending`: the only URLs a click may lead to
        return OutgoingMessage(
            from_address=box.from_address, from_name=box.from_name, to_address=job.to_address,
            to_name=job.to_name, subject=job.subject, text_body=tracked.text, html_body=tracked.html,
            message_id=message_id, date=now, reply_to=box.reply_to, in_reply_to=job.in_reply_to,
            references=_references(session, job.enrollment_id, job.touch_id) if job.in_reply_to else (),
            list_unsubscribe_url=unsubscribe_url,
            list_unsubscribe_mailto=f"mailto:{box.from_address}?subject=unsubscribe",
            postal_address=postal_address(session, definition_of(campaign)),
        )  # fmt: skip

    def _prepare(self, job: Job, box: Mailbox) -> OutgoingMessage | None:
        """Claim-time checks and the build, then `sending` committed. None: nothing to send."""
        worker, now = self.ctx.worker.worker_id, self.ctx.clock()
        with transaction(self.engine) as s:
            hold = self._hold_reason(s, job, now)
            if hold is not None:
                kind, when = hold
                if kind == "cancel":
                    outbox.cancel_claimed(s, job.touch_id, worker, "stopped or suppressed before sending", now)
                else:
                    outbox.defer(s, job.touch_id, worker, when or now, now)
                self.report.outcomes["cancelled" if kind == "cancel" else "deferred"] += 1
                return None
            try:
                message_id = job.message_id or make_message_id(
                    sender_domain(box.from_address), f"{job.touch_id}.{secrets.token_hex(6)}"
                )
                spec = self._build(s, job, box, message_id, now)
                build_message(spec)
            except MessageError as exc:
                if outbox.mark_permanent_failure(s, job.touch_id, worker, f"cannot build: {exc}", now, bounced=False):
                    self._move_on(s, job, now)
                self.report.outcomes["failed"] += 1
                return None
            if not outbox.mark_sending(s, job.touch_id, worker, message_id, now):
                return None  # our claim is gone (lease expired and recovered): not ours to send
        return spec

    def _record(self, job: Job, result: SendResult) -> None:
        worker, now = self.ctx.worker.worker_id, self.ctx.clock()
        with transaction(self.engine) as s:
            campaign = s.get(OutreachCampaign, job.campaign_id)
            assert campaign is not None
            if result.verdict is Verdict.SENT:
                outbox.mark_sent(s, job.touch_id, worker, now)
                self._move_on(s, job, now)
                campaign.consecutive_failures = 0
                self.report.outcomes["sent"] += 1
                return
            campaign.consecutive_failures += 1
            if result.verdict is Verdict.TEMPORARY:
                state = outbox.mark_temporary_failure(s, job.touch_id, worker, result.detail, now)
                if state is TouchState.FAILED:
                    self._move_on(s, job, now)
                self.report.outcomes["failed" if state is TouchState.FAILED else "retrying"] += 1
            else:
                outbox.mark_permanent_failure(s, job.touch_id, worker, result.detail, now, bounced=True)
                self._bounced(s, job, result, now)
            if campaign.consecutive_failures >= AUTO_PAUSE_AFTER_FAILURES and campaign.state is CampaignState.RUNNING:
                campaign.state = CampaignState.PAUSED
                reason = f"paused after {campaign.consecutive_failures} failed sends in a row: {result.detail}"
                campaign.paused_reason = reason[:300]
                self.report.outcomes["campaigns auto-paused"] += 1

    def _move_on(self, s: Session, job: Job, now: datetime) -> None:
        """The touch is terminal (sent, or failed for good): schedule the next step, or finish the enrollment.

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
        self.report.outcomes["bounced"] += 1

    def _mailbox_down(self, box_id: int, ids: list[int], error: OutreachError) -> None:
        worker, now = self.ctx.worker.worker_id, self.ctx.clock()
        with transaction(self.engine) as s:
            outbox.release(s, ids, worker, now)
            box = s.get(Mailbox, box_id)
            assert box is not None
            box.consecutive_failures += 1
            box.last_error = str(error)[:2000]
            if box.consecutive_failures >= MAILBOX_PAUSE_AFTER and box.state is MailboxState.ACTIVE:
                box.state = MailboxState.PAUSED
                box.paused_reason = f"paused after {box.consecutive_failures} failed connections: {error}"[:300]
        self.report.mailbox_errors.append(f"mailbox {box.name}: {error}")
        log.warning("mailbox %s unavailable: %s", box.name, error)

    def deliver(self, box_id: int, jobs: list[Job]) -> None:
        with transaction(self.engine, readonly=True) as s:
            box = s.get(Mailbox, box_id)
            assert box is not None
            s.expunge(box)
        try:
            settings = smtp_settings(box)
            conn = SmtpConnection(settings)
            conn.open()
        except MailboxUnavailable as exc:
            self._mailbox_down(box_id, [j.touch_id for j in jobs], exc)
            return
        try:
            if box.consecutive_failures:
                with transaction(self.engine) as s:
                    fresh = s.get(Mailbox, box_id)
                    if fresh is not None:
                        fresh.consecutive_failures, fresh.last_error = 0, None
            for index, job in enumerate(jobs):
                spec = self._prepare(job, box)
                if spec is None:
                    continue
                try:
                    result = conn.send(build_message(spec), box.from_address, job.to_address)
                except MailboxUnavailable as exc:
                    # Reconnecting after a drop failed before this message's first byte: it was not handed
                    # over (a retry, not in doubt), and the rest of the batch goes back to the queue.
                    self._record(job, SendResult(Verdict.TEMPORARY, None, str(exc)))
                    self._mailbox_down(box_id, [j.touch_id for j in jobs[index + 1 :]], exc)
                    return
                self._record(job, result)
        finally:
            conn.close()


def send_tick(engine: Engine, ctx: JobContext) -> TickReport:
    """One pass of the sending pipeline: recovery, planning, claims, delivery per mailbox."""
    report = TickReport()
    key = ctx.settings.secret_key()
    with transaction(engine) as s:
        report.recovered = outbox.recover_expired_leases(s, ctx.now)
    with transaction(engine) as s:
        plan = CampaignManager(s, secret_key=key).schedule_communications(ctx.now)
        report.planned.update(vars(plan))
    with transaction(engine) as s:
        ids = outbox.claim_due(s, worker_id=ctx.worker.worker_id, now=ctx.now, limit=BATCH)
    if not ids:
        return report
    with transaction(engine, readonly=True) as s:
        jobs = _load_jobs(s, ids)
    by_mailbox: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        by_mailbox[job.mailbox_id].append(job)
    deliverer = Deliverer(engine, ctx, report)
    for box_id, box_jobs in by_mailbox.items():
        deliverer.deliver(box_id, box_jobs)
    return report


def finish_campaigns(session: Session, ctx: JobContext) -> str | None:
    done = CampaignManager(session, secret_key=ctx.settings.secret_key()).finish_campaigns(ctx.now)
    return f"finished {', '.join(done)}" if done else None
