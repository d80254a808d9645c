"""CampaignManager: campaigns from their definition, launch, planning touches, and their counts.

The database is the only source of truth: a campaign's definition is stored as validated data, its
steps and variants as rows the touches point to, and progress lives in enrollments and the log.
Planning (`schedule_communications`) turns due enrollments into queued touches, rendered then — so the
preview is what is sent, and editing a running campaign changes only touches not yet queued.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, func, insert, select
from sqlalchemy.orm import Session

from db.enums import (
    TERMINAL_TOUCH_STATES,
    CampaignState,
    EnrollmentState,
    EventKind,
    Intent,
    MailboxState,
    ResponseKind,
    StepCondition,
    StepType,
    StopReason,
    TaskType,
    TlsMode,
    TouchState,
)
from db.models import (
    AppSetting,
    CampaignMailbox,
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    Mailbox,
    MessageVariant,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ResponseAnalysis,
    SendCounter,
    SequenceStep,
    Task,
)
from outreach import outbox, send_time
from outreach.config import load_settings
from outreach.enrollments import stop_enrollment
from outreach.errors import OutreachError
from outreach.experiments import StepReview, campaign_ab, choose_variant, record, review
from outreach.generator import available_fields, launch_lint, render_for_enrollment
from outreach.mailboxes import committed_load
from outreach.mailer import MessageError, check_address
from outreach.ramp import effective_daily_limit
from outreach.schedule import SendRules, touch_jitter_key
from outreach.sequence import Definition, Step, Variant, from_data, template_fields, to_data
from outreach.suppression import SuppressionIndex, suppressed_among
from outreach.templating import TemplateError

CAPTURE_MAILBOX = "capture"
CAPTURE_HOST = "127.0.0.1"
POSTAL_ADDRESS_SETTING = "postal_address"
AUTO_PAUSE_AFTER_FAILURES = 10
ENROLL_CHUNK = 2000
# First touches start within a couple of minutes of launch (mailbox limits spread a big launch anyway);
# follow-ups use the schedule's wider default jitter so a day's batch does not leave on the same minute.
FIRST_TOUCH_JITTER = timedelta(minutes=2)

Progress = Callable[[int, int], None]


class CampaignError(OutreachError):
    """A campaign cannot be created, changed or launched as asked."""


@dataclass(frozen=True)
class CampaignRef:
    id: int
    name: str
    created: bool
    state: CampaignState


@dataclass
class LaunchCheck:
    """What launch found before writing anything; `problems` empty means it may go."""

    audience: int = 0
    suppressed: int = 0
    already_enrolled: int = 0
    problems: list[str] = field(default_factory=list)
    missing_fields: dict[str, int] = field(default_factory=dict)  # field -> prospects lacking it
    first_days: dict[str, int] = field(default_factory=dict)  # ISO date -> first touches due that day
    mailboxes: list[str] = field(default_factory=list)
    lint: list[str] = field(default_factory=list)  # content warnings (outreach.generator.launch_lint); never block
    warnings: list[str] = field(default_factory=list)  # e.g. a paused mailbox whose share the others take
    to_enroll: list[tuple[int, datetime]] = field(default_factory=list, repr=False)  # (prospect id, first due)

    @property
    def enrollable(self) -> int:
        return self.audience - self.suppressed - self.already_enrolled

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _PlanBatch:
    """What one planning pass reads once and writes once: prospects, suppressions, counts, the new touches."""

    prospects: dict[int, Prospect] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)
    counts: dict[int, Counter[int]] = field(default_factory=dict)  # step → variant → touches (balancing)
    touches: list[dict[str, Any]] = field(default_factory=list)  # rows for one multi-row insert


@dataclass(frozen=True)
class PlanResult:
    queued: int = 0
    tasks: int = 0
    skipped_steps: int = 0
    stopped: int = 0
    failed: int = 0
    finished: int = 0


# --- lookups -------------------------------------------------------------------------------------


def find_campaign(session: Session, name_or_id: str | int) -> OutreachCampaign:
    text = str(name_or_id).strip()
    campaign = session.scalar(select(OutreachCampaign).where(OutreachCampaign.name == text))
    if campaign is None and text.isdigit():
        campaign = session.get(OutreachCampaign, int(text))
    if campaign is None:
        raise CampaignError(f"no campaign named or numbered '{text}'")
    return campaign


def definition_of(campaign: OutreachCampaign) -> Definition:
    return from_data(campaign.definition)


def postal_address(session: Session, definition: Definition) -> str | None:
    if definition.postal_address:
        return definition.postal_address
    setting = session.get(AppSetting, POSTAL_ADDRESS_SETTING)
    return (setting.value or {}).get("value") if setting else None


# --- create or update ----------------------------------------------------------------------------


def _sync_variants(session: Session, step_row: SequenceStep, variants: Sequence[Variant]) -> None:
    by_name = {v.name: v for v in step_row.variants}
    wanted = {v.name for v in variants}
    for variant in variants:
        row = by_name.get(variant.name)
        if row is None:
            step_row.variants.append(
                MessageVariant(
                    name=variant.name, subject=variant.subject, body=variant.body,
                    html_body=variant.html, weight=variant.weight,
                )
            )  # fmt: skip
            continue
        row.subject, row.body, row.html_body, row.weight = variant.subject, variant.body, variant.html, variant.weight
        row.is_active = True
    for name, row in by_name.items():
        if name in wanted:
            continue
        used = session.scalar(select(exists().where(CommunicationLog.variant_id == row.id)))
        if used:
            row.is_active = False  # history keeps pointing at it; no new touch uses it
        else:
            step_row.variants.remove(row)


def _sync_steps(session: Session, campaign: OutreachCampaign, steps: Sequence[Step]) -> None:
    rows = list(campaign.steps)
    for position, step in enumerate(steps):
        if position < len(rows):
            row = rows[position]
            if row.type != step.type and _step_used(session, row):
                raise CampaignError(
                    f"steps[{position}].type: step {position + 1} already has touches as {row.type}; "
                    "it cannot become {step.type} — add a new step instead"
                )
        else:
            row = SequenceStep(position=position)
            campaign.steps.append(row)
        row.type, row.delay_amount, row.delay_unit = step.type, step.delay.amount, step.delay.unit
        row.condition, row.thread = step.when, step.thread
        _sync_variants(session, row, step.variants)
    for row in rows[len(steps) :]:
        if _step_used(session, row):
            raise CampaignError(
                f"steps: step {row.position + 1} already has touches; a launched campaign's steps can be "
                "changed or added to, not removed"
            )
        campaign.steps.remove(row)


def _step_used(session: Session, row: SequenceStep) -> bool:
    return row.id is not None and bool(session.scalar(select(exists().where(CommunicationLog.step_id == row.id))))


def _sync_mailboxes(session: Session, campaign: OutreachCampaign, names: Sequence[str]) -> None:
    boxes = {b.name: b for b in session.scalars(select(Mailbox).where(Mailbox.name.in_(names)))} if names else {}
    unknown = [n for n in names if n not in boxes]
    if unknown:
        known = ", ".join(session.scalars(select(Mailbox.name).order_by(Mailbox.name))) or "none yet"
        raise CampaignError(
            f"mailboxes: no mailbox named {', '.join(repr(n) for n in unknown)} (known: {known}); "
            "add one with `outreach mailbox add`"
        )
    session.query(CampaignMailbox).filter(CampaignMailbox.campaign_id == campaign.id).delete()
    for position, name in enumerate(names):
        session.add(CampaignMailbox(campaign_id=campaign.id, mailbox_id=boxes[name].id, position=position))


# --- planning helpers ----------------------------------------------------------------------------


def audience_query(definition: Definition) -> Select[tuple[int]]:
    """Prospect ids the definition selects: a list's members, a field filter, or both."""
    query = select(Prospect.id)
    audience = definition.audience
    if audience.list_name:
        query = (
            query.join(ProspectListMember, ProspectListMember.prospect_id == Prospect.id)
            .join(ProspectList, ProspectList.id == ProspectListMember.list_id)
            .where(ProspectList.name == audience.list_name)
        )
    for name, values in (audience.filter or {}).items():
        column = getattr(Prospect, name, None)
        if column is not None:
            query = query.where(func.lower(column).in_([v.lower() for v in values]))
        else:
            query = query.where(Prospect.custom_fields[name].as_string().in_(list(values)))
    return query.order_by(Prospect.id)


class CampaignManager:
    """The public service over one session. It never commits: the caller owns the transaction."""

    def __init__(self, session: Session, *, secret_key: str) -> None:
        self.session = session
        self.secret_key = secret_key
        self._reviews: dict[int, StepReview] = {}  # experiment readings, once per step per manager (tick)
        self._sent: dict[int, dict[int, int]] = {}  # step → variant → sent touches, from _variant_counts
        self._send_fits: dict[str, send_time.SendTimeFit] | None = None  # learned send times, loaded when needed

    # --- definition ------------------------------------------------------------------------------

    def create_campaign(self, definition: Definition) -> CampaignRef:
        """Create the campaign, or update the one with that name (archived ones are not reopened)."""
        s = self.session
        campaign = s.scalar(select(OutreachCampaign).where(OutreachCampaign.name == definition.name))
        created = campaign is None
        if campaign is None:
            campaign = OutreachCampaign(name=definition.name)
            s.add(campaign)
        elif campaign.state is CampaignState.ARCHIVED:
            raise CampaignError(f"campaign '{definition.name}' is archived; give the new one another name")
        campaign.definition = to_data(definition)
        campaign.audience = definition.audience.model_dump(mode="json", by_alias=True)
        campaign.schedule = definition.schedule.model_dump(mode="json")
        campaign.stop_on = [str(t) for t in definition.stop_on]
        campaign.track_opens, campaign.track_clicks = definition.tracking.opens, definition.tracking.clicks
        s.flush()
        _sync_steps(s, campaign, definition.steps)
        _sync_mailboxes(s, campaign, definition.mailboxes)
        s.flush()
        return CampaignRef(campaign.id, campaign.name, created, campaign.state)

    # --- launch ----------------------------------------------------------------------------------

    def _campaign_mailboxes(self, campaign: OutreachCampaign) -> list[Mailbox]:
        return list(
            self.session.scalars(
                select(Mailbox)
                .join(CampaignMailbox, CampaignMailbox.mailbox_id == Mailbox.id)
                .where(CampaignMailbox.campaign_id == campaign.id)
                .order_by(CampaignMailbox.position)
            )
        )

    def _capture_mailbox(self) -> Mailbox:
        """While no mailbox exists, campaigns send into the local capture server (nothing reaches a person)."""
        box = self.session.scalar(select(Mailbox).where(Mailbox.name == CAPTURE_MAILBOX))
        if box is None:
            box = Mailbox(
                name=CAPTURE_MAILBOX, from_address="outreach@capture.example", from_name="Outreach (capture)",
                smtp_host=CAPTURE_HOST, smtp_port=load_settings().capture_smtp_port, tls=TlsMode.NONE,
                daily_limit=10_000, per_minute=600,
            )  # fmt: skip
            self.session.add(box)
            self.session.flush()
        return box

    def sending_mailboxes(self, campaign: OutreachCampaign) -> list[Mailbox]:
        boxes = self._campaign_mailboxes(campaign)
        if boxes:
            return boxes
        if self.session.scalar(select(func.count(Mailbox.id)).where(Mailbox.name != CAPTURE_MAILBOX)):
            return []
        box = self._capture_mailbox()
        self.session.add(CampaignMailbox(campaign_id=campaign.id, mailbox_id=box.id, position=0))
        return [box]

    def check_launch(
        self, campaign: OutreachCampaign, now: datetime, smtp_check: Callable[[Mailbox], str | None] | None = None
    ) -> LaunchCheck:
        """Everything launch verifies, without enrolling anyone. `smtp_check` returns an error or None."""
        definition = definition_of(campaign)
        check = LaunchCheck()
        if campaign.state in (CampaignState.FINISHED, CampaignState.ARCHIVED):
            check.problems.append(f"the campaign is {campaign.state}; copy it under a new name to send again")
        boxes = self.sending_mailboxes(campaign)
        check.mailboxes = [b.name for b in boxes]
        if not boxes:
            check.problems.append("mailboxes: the campaign names no mailbox; add `mailboxes: [NAME]` to it")
        active = [b for b in boxes if b.state is MailboxState.ACTIVE]
        for box in boxes:
            try:
                check_address("from", box.from_address)
            except MessageError as exc:
                check.problems.append(f"mailbox {box.name}: {exc}; fix it with `outreach mailbox add {box.name} …`")
            if box.state is not MailboxState.ACTIVE:
                reason = f"mailbox {box.name} is {box.state}: {box.paused_reason or 'resume it first'}"
                if active:  # launch spreads over the active ones; this one's prospects wait for nothing
                    check.warnings.append(f"{reason} (its share goes to {', '.join(b.name for b in active)})")
                else:
                    check.problems.append(reason)
            elif smtp_check is not None and (error := smtp_check(box)):
                check.problems.append(f"mailbox {box.name}: {error}")
        if not postal_address(self.session, definition):
            check.problems.append(
                "postal_address: the compliance footer needs the sender's postal address; add `postal_address:` "
                "to the campaign or set it in Settings"
            )
        prospects = list(self.session.scalars(select(Prospect).where(Prospect.id.in_(audience_query(definition)))))
        check.audience = len(prospects)
        enrolled = set(
            self.session.scalars(select(Enrollment.prospect_id).where(Enrollment.campaign_id == campaign.id))
        )
        suppressed = SuppressionIndex.load(self.session, self.secret_key).mask([p.email_normalized for p in prospects])
        missing: Counter[str] = Counter()
        needed = template_fields(definition)
        for prospect, blocked in zip(prospects, suppressed, strict=True):
            if prospect.id in enrolled:
                check.already_enrolled += 1
            elif blocked:
                check.suppressed += 1
            else:
                missing.update(needed - available_fields(prospect))
                due = self._first_due(definition, prospect, campaign.id, now)
                check.to_enroll.append((prospect.id, due))
                day = due.date().isoformat()
                check.first_days[day] = check.first_days.get(day, 0) + 1
        check.missing_fields = dict(sorted(missing.items()))
        for name, count in check.missing_fields.items():
            check.problems.append(
                f"{count} prospect(s) have no {name} and a template uses it without a default: add "
                f"`| default('…')` or a `fallbacks: {{{name}: …}}` entry"
            )
        if check.audience == 0:
            check.problems.append("audience: no prospect matches the campaign's audience")
        elif check.enrollable == 0:
            check.problems.append("audience: every matching prospect is suppressed or already enrolled")
        has_postal = bool(postal_address(self.session, definition))
        check.lint = launch_lint(self.session, campaign, definition, prospects, now, postal_address=has_postal)
        check.first_days = dict(sorted(check.first_days.items())[:14])
        return check

    def _first_due(self, definition: Definition, prospect: Prospect, salt: int, now: datetime) -> datetime:
        rules = definition.schedule.rules_for(prospect.timezone, prospect.country)
        due = first_touch_due(definition, rules, salt, prospect.id, now)
        return self._at_best_hour(due, definition, rules, touch_jitter_key(salt, prospect.id, 0))

    def _at_best_hour(self, due: datetime, definition: Definition, rules: SendRules, key: str) -> datetime:
        """schedule.optimize_send_time: the learned best local hour inside the same window (outreach.send_time)."""
        if not definition.schedule.optimize_send_time:
            return due
        if self._send_fits is None:  # once per manager (tick), not once per touch
            self._send_fits = send_time.load_model(self.session)
        _due, window_end = rules.next_allowed(due)
        return send_time.preferred_moment(due, window_end, rules.tz, send_time.preferred_fit(self._send_fits), key)

    def launch(
        self,
        campaign: OutreachCampaign,
        now: datetime,
        *,
        smtp_check: Callable[[Mailbox], str | None] | None = None,
        progress: Progress | None = None,
    ) -> LaunchCheck:
        """Validate, then enroll the audience (all in the caller's one transaction) and start running.

        On a running or paused campaign it enrolls prospects that joined the audience since.
        """
        check = self.check_launch(campaign, now, smtp_check)
        if not check.ok:
            raise CampaignError("cannot launch: " + "; ".join(check.problems))
        boxes = [b for b in self.sending_mailboxes(campaign) if b.state is MailboxState.ACTIVE]
        todo = check.to_enroll
        # By remaining capacity: what each mailbox already has committed (sent today, queued, enrolled and
        # waiting, in any campaign) counts against its share. A prospect keeps its mailbox for the whole
        # sequence; outreach.mailbox_health moves the not-yet-contacted ones when a mailbox is paused.
        slots = spread_over_mailboxes(
            len(todo),
            [max(effective_daily_limit(b, now), 1) for b in boxes],
            committed_load(self.session, [b.id for b in boxes], now),
        )
        for start in range(0, len(todo), ENROLL_CHUNK):
            chunk = todo[start : start + ENROLL_CHUNK]
            rows = [
                {
                    "campaign_id": campaign.id,
                    "prospect_id": prospect_id,
                    "mailbox_id": boxes[slots[start + i]].id,
                    "state": EnrollmentState.ACTIVE,
                    "next_step": 0,
                    "next_due_at": due,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, (prospect_id, due) in enumerate(chunk)
            ]
            self.session.execute(insert(Enrollment), rows)
            if progress:
                progress(min(start + ENROLL_CHUNK, len(todo)), len(todo))
        if campaign.state is CampaignState.DRAFT:  # launching again later enrolls newcomers, state unchanged
            campaign.state = CampaignState.RUNNING
            campaign.launched_at = now
        return check

    def pause(self, campaign: OutreachCampaign, reason: str = "paused by the operator") -> None:
        if campaign.state is not CampaignState.RUNNING:
            raise CampaignError(f"campaign '{campaign.name}' is {campaign.state}; only a running one can be paused")
        campaign.state, campaign.paused_reason = CampaignState.PAUSED, reason

    def resume(self, campaign: OutreachCampaign) -> None:
        if campaign.state is not CampaignState.PAUSED:
            raise CampaignError(f"campaign '{campaign.name}' is {campaign.state}; only a paused one can be resumed")
        campaign.state, campaign.paused_reason, campaign.consecutive_failures = CampaignState.RUNNING, None, 0

    def archive(self, campaign: OutreachCampaign, now: datetime) -> int:
        """Stop everything still pending (touches cancelled) and hide the campaign from the active lists."""
        stopped = 0
        for enrollment_id in self.session.scalars(
            select(Enrollment.id).where(
                Enrollment.campaign_id == campaign.id,
                Enrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.PAUSED]),
            )
        ).all():
            stopped += stop_enrollment(self.session, enrollment_id, StopReason.OPERATOR, now)
        campaign.state = CampaignState.ARCHIVED
        return stopped

    # --- planning --------------------------------------------------------------------------------

    def optimize_messaging(
        self, step_row: SequenceStep, counts: Counter[int], *, enrollment_id: int | None = None,
        now: datetime | None = None,
    ) -> MessageVariant:  # fmt: skip
        """The variant for the next touch of this step, applying the experiment's decisions.

        Balanced (the active variant furthest below its weighted share) or Thompson sampling (seeded by
        the enrollment, so the preview shows what is sent); variants an experiment decision stopped are
        never assigned. With `now` (the planner) the step's experiment reading is recorded once per look.
        """
        active = [v for v in step_row.variants if v.is_active] or list(step_row.variants)
        if len(step_row.variants) < 2:
            return active[0]
        found = self._reviews.get(step_row.id)
        if found is None:
            campaign = self.session.get(OutreachCampaign, step_row.campaign_id)
            assert campaign is not None
            found = review(self.session, campaign, step_row, sent=self._sent.get(step_row.id))
            if now is not None:
                found = record(self.session, found, now)
            self._reviews[step_row.id] = found
        key = f"{step_row.id}:{enrollment_id}" if enrollment_id is not None else f"{step_row.id}:n{counts.total()}"
        return choose_variant(found, active, counts, key)

    def _variant_counts(self, step_id: int) -> Counter[int]:
        """Touches per variant of a step (what balancing needs); the sent ones are kept for the experiment.

        Read from the counters the log's triggers keep (migration 0016): one row per variant, whatever
        the size of the step's history.
        """
        rows = self.session.execute(
            select(SendCounter.variant_id, SendCounter.touches, SendCounter.sent).where(SendCounter.step_id == step_id)
        ).all()
        self._sent[step_id] = {vid: sent for vid, _n, sent in rows}
        return Counter({vid: n for vid, n, _sent in rows})

    def _condition_met(self, enrollment: Enrollment, condition: StepCondition) -> bool:
        if condition is StepCondition.ALWAYS:
            return True
        kind = {
            StepCondition.NO_REPLY: EventKind.REPLY,
            StepCondition.NO_OPEN: EventKind.OPEN,
            StepCondition.OPENED: EventKind.OPEN,
            StepCondition.CLICKED: EventKind.CLICK,
        }[condition]
        happened = self.session.scalar(
            select(
                exists().where(
                    EngagementEvent.enrollment_id == enrollment.id,
                    EngagementEvent.kind == kind,
                    EngagementEvent.is_machine.is_(False),
                )
            )
        )
        return not happened if condition in (StepCondition.NO_REPLY, StepCondition.NO_OPEN) else bool(happened)

    def _previous_touch(self, enrollment_id: int) -> CommunicationLog | None:
        return self.session.scalar(
            select(CommunicationLog)
            .where(CommunicationLog.enrollment_id == enrollment_id, CommunicationLog.channel == StepType.EMAIL)
            .order_by(CommunicationLog.id.desc())
            .limit(1)
        )

    def schedule_communications(self, now: datetime, limit: int = 500) -> PlanResult:
        """Turn due enrollments into touches: stop rules, conditions, variant choice, rendering.

        Cost grows with what is due (index on state + next_due_at). On PostgreSQL the rows are taken with
        SKIP LOCKED so several workers plan different enrollments; the unique (enrollment, step) key makes
        a second touch for the same step impossible in any case.
        """
        query = (
            select(Enrollment)
            .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
            .where(
                Enrollment.state == EnrollmentState.ACTIVE,
                Enrollment.next_due_at <= now,
                OutreachCampaign.state == CampaignState.RUNNING,
            )
            .order_by(Enrollment.next_due_at, Enrollment.id)  # ties broken the same way every run (simulation)
            .limit(limit)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Enrollment)
        result = Counter[str]()
        campaigns: dict[int, tuple[OutreachCampaign, Definition]] = {}
        batch = _PlanBatch()
        enrollments = self.session.scalars(query).all()
        if enrollments:  # read once for the batch: the prospects, and which of them are suppressed
            wanted = {e.prospect_id for e in enrollments}
            batch.prospects = {p.id: p for p in self.session.scalars(select(Prospect).where(Prospect.id.in_(wanted)))}
            emails = [p.email_normalized for p in batch.prospects.values()]
            batch.suppressed = suppressed_among(self.session, emails, self.secret_key)
        for enrollment in enrollments:
            if enrollment.campaign_id not in campaigns:
                campaign = self.session.get(OutreachCampaign, enrollment.campaign_id)
                assert campaign is not None
                campaigns[enrollment.campaign_id] = (campaign, definition_of(campaign))
            campaign, definition = campaigns[enrollment.campaign_id]
            result[self._plan_one(enrollment, campaign, definition, batch, now)] += 1
        if batch.touches:  # one multi-row insert (the counters' trigger then runs once for all of them)
            self.session.execute(insert(CommunicationLog), batch.touches)
        return PlanResult(**{k: v for k, v in result.items() if k in PlanResult.__dataclass_fields__})

    def _plan_one(
        self,
        enrollment: Enrollment,
        campaign: OutreachCampaign,
        definition: Definition,
        batch: _PlanBatch,
        now: datetime,
    ) -> str:
        prospect = batch.prospects.get(enrollment.prospect_id)
        assert prospect is not None
        counts = batch.counts
        if prospect.email_normalized in batch.suppressed:
            stop_enrollment(self.session, enrollment.id, StopReason.SUPPRESSED, now)
            return "stopped"
        steps = list(campaign.steps)
        if enrollment.next_step >= len(steps):
            enrollment.next_due_at = None
            return "finished" if self.finish_if_done(enrollment, now) else "skipped_steps"
        step_row = steps[enrollment.next_step]
        step = definition.steps[enrollment.next_step]
        if not self._condition_met(enrollment, step.when):
            enrollment.next_step += 1
            self._schedule_next(enrollment, definition, prospect, now, anchor=now)
            return "skipped_steps"
        if step_row.id not in counts:  # once per step per tick (setdefault would count on every call)
            counts[step_row.id] = self._variant_counts(step_row.id)
        variant_row = self.optimize_messaging(step_row, counts[step_row.id], enrollment_id=enrollment.id, now=now)
        counts[step_row.id][variant_row.id] += 1
        variant = next(v for v in step.variants if v.name == variant_row.name)
        previous = self._previous_touch(enrollment.id) if step.thread else None
        values: dict[str, Any] = {
            "enrollment_id": enrollment.id, "step_id": step_row.id, "variant_id": variant_row.id,
            "mailbox_id": enrollment.mailbox_id if step.type is StepType.EMAIL else None,
            "channel": step.type, "state": TouchState.QUEUED, "due_at": enrollment.next_due_at or now,
            "in_reply_to": previous.message_id if previous else None, "created_at": now, "updated_at": now,
            "subject": None, "body_text": None, "body_html": None, "last_error": None,
        }  # fmt: skip
        outcome = "queued" if step.type is StepType.EMAIL else "tasks"
        try:
            rendered = render_for_enrollment(
                self.session, campaign, definition, enrollment.next_step, variant, prospect, enrollment.id, now,
                thread_subject=previous.subject if previous else None,
            )  # fmt: skip
            values.update(subject=rendered.subject, body_text=rendered.text, body_html=rendered.html)
        except TemplateError as exc:
            values.update(state=TouchState.FAILED, last_error=f"render failed: {exc}")
            outcome = "failed"
        touch = None
        if outcome == "tasks":  # the task points to its touch: this one is inserted now, for its id
            touch = CommunicationLog(**values)
            self.session.add(touch)
            self.session.flush()
        else:  # inserted with the batch's other touches (schedule_communications)
            batch.touches.append(values)
        enrollment.next_step += 1
        enrollment.next_due_at = None  # the next step is scheduled from this touch's actual send time
        if touch is not None:
            self.session.add(
                Task(
                    type=TaskType(step.type.value), communication_id=touch.id, prospect_id=prospect.id,
                    campaign_id=campaign.id, due_at=touch.due_at, body=touch.body_text or "",
                )
            )  # fmt: skip
        elif outcome == "failed":
            self._schedule_next(enrollment, definition, prospect, now, anchor=now)
        return outcome

    def _schedule_next(
        self, enrollment: Enrollment, definition: Definition, prospect: Prospect, now: datetime, *, anchor: datetime
    ) -> None:
        if enrollment.next_step >= len(definition.steps):
            enrollment.next_due_at = None
            self.finish_if_done(enrollment, now)
            return
        rules = definition.schedule.rules_for(prospect.timezone, prospect.country)
        due = step_due(definition, enrollment.next_step, rules, enrollment.campaign_id, enrollment.prospect_id, anchor)
        key = touch_jitter_key(enrollment.campaign_id, enrollment.prospect_id, enrollment.next_step)
        enrollment.next_due_at = self._at_best_hour(due, definition, rules, key)

    def advance_after_touch(self, touch: CommunicationLog, done_at: datetime) -> None:
        """A touch reached the prospect (sent, or its task done/skipped): schedule the next step from then."""
        enrollment = self.session.get(Enrollment, touch.enrollment_id)
        if enrollment is None or enrollment.state is not EnrollmentState.ACTIVE:
            return
        campaign = self.session.get(OutreachCampaign, enrollment.campaign_id)
        prospect = self.session.get(Prospect, enrollment.prospect_id)
        assert campaign is not None and prospect is not None
        if enrollment.next_due_at is None:
            self._schedule_next(enrollment, definition_of(campaign), prospect, done_at, anchor=done_at)

    def resolve_in_doubt(self, touch_id: int, *, was_sent: bool, now: datetime) -> bool:
        """The operator's verdict on an in-doubt touch; when it did go out, the sequence moves on from now."""
        if not outbox.resolve_in_doubt(self.session, touch_id, was_sent=was_sent, now=now):
            return False
        touch = self.session.get(CommunicationLog, touch_id, populate_existing=True)
        if was_sent and touch is not None:
            self.advance_after_touch(touch, now)  # else the sequence moves on once the resent touch is sent
        return True

    def finish_if_done(self, enrollment: Enrollment, now: datetime) -> bool:
        """An enrollment is finished only when it has no step left and every touch is terminal."""
        pending = self.session.scalar(
            select(
                exists().where(
                    CommunicationLog.enrollment_id == enrollment.id,
                    CommunicationLog.state.not_in(list(TERMINAL_TOUCH_STATES)),
                )
            )
        )
        if pending:
            return False
        enrollment.state, enrollment.next_due_at, enrollment.updated_at = EnrollmentState.FINISHED, None, now
        return True

    def finish_campaigns(self, now: datetime) -> list[str]:
        """Running campaigns with nothing left to do become finished."""
        done = []
        for campaign in self.session.scalars(
            select(OutreachCampaign).where(OutreachCampaign.state == CampaignState.RUNNING)
        ).all():
            live = self.session.scalar(
                select(
                    exists().where(
                        Enrollment.campaign_id == campaign.id,
                        Enrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.PAUSED]),
                    )
                )
            )
            if not live:
                campaign.state, campaign.finished_at = CampaignState.FINISHED, now
                done.append(campaign.name)
        return done

    # --- tasks -----------------------------------------------------------------------------------

    def complete_task(self, task_id: int, now: datetime, *, done: bool, outcome: str | None = None) -> None:
        """Done or skipped: the touch becomes terminal and the sequence moves on."""
        from db.enums import TaskState

        task = self.session.get(Task, task_id)
        if task is None or task.state is not TaskState.OPEN:
            raise CampaignError(f"task {task_id} is not open")
        task.state, task.completed_at, task.outcome = (TaskState.DONE if done else TaskState.SKIPPED), now, outcome
        touch = self.session.get(CommunicationLog, task.communication_id) if task.communication_id else None
        if touch is None:
            return
        touch.state = TouchState.SENT if done else TouchState.CANCELLED
        touch.sent_at = now if done else None
        touch.updated_at = now
        self.advance_after_touch(touch, now)

    # --- counts ----------------------------------------------------------------------------------

    def track_engagement(self, campaign: OutreachCampaign) -> dict[str, Any]:
        """Per campaign, step and variant: touches by state and events by kind, counted in SQL."""
        return engagement_counts(self.session, campaign)


def first_touch_due(
    definition: Definition, rules: SendRules, campaign_id: int, prospect_id: int, now: datetime
) -> datetime:
    """When a newly enrolled prospect's first touch is due: launch, its check and the simulation all ask here."""
    key = touch_jitter_key(campaign_id, prospect_id, 0)
    return rules.due(now, definition.steps[0].delay, key, FIRST_TOUCH_JITTER)


def step_due(
    definition: Definition, step_index: int, rules: SendRules, campaign_id: int, prospect_id: int, anchor: datetime
) -> datetime:
    """When a follow-up is due, counted from the previous touch's actual send time (`anchor`).

    The jitter's seed names the campaign, prospect and step (not the enrollment row), so a simulation
    made before launch draws the same jitter the worker will.
    """
    key = touch_jitter_key(campaign_id, prospect_id, step_index)
    return rules.due(anchor, definition.steps[step_index].delay, key)


def spread_over_mailboxes(count: int, weights: Sequence[int], loads: Sequence[int] | None = None) -> list[int]:
    """Mailbox slots for `count` prospects: each goes to the mailbox whose queue is shortest in days.

    A mailbox's queue is `loads[k]` (what it already has committed) plus what this call gave it, counted
    in days of its daily limit `weights[k]`; the +0.5 (Webster's divisors) interleaves the mailboxes, so
    with no load the shares follow the limits at every prefix (two equal mailboxes alternate), and a
    mailbox with a backlog gets newcomers only once the others have caught up. Deterministic: ties go to
    the mailbox listed first.
    """
    load = list(loads) if loads is not None else [0] * len(weights)
    queue = [((2 * load[k] + 1) / (2 * w), k) for k, w in enumerate(weights) if w > 0]
    heapq.heapify(queue)
    slots = []
    for _ in range(count if queue else 0):
        _, k = heapq.heappop(queue)
        slots.append(k)
        load[k] += 1
        heapq.heappush(queue, ((2 * load[k] + 1) / (2 * weights[k]), k))
    return slots


# --- counts (pure SQL aggregation) ----------------------------------------------------------------

COUNTED_EVENTS = (EventKind.OPEN, EventKind.CLICK, EventKind.REPLY, EventKind.BOUNCE, EventKind.UNSUBSCRIBE)


def _touch_counts(session: Session, campaign_id: int) -> dict[tuple[int, int | None], Counter[str]]:
    rows = session.execute(
        select(CommunicationLog.step_id, CommunicationLog.variant_id, CommunicationLog.state, func.count())
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .where(Enrollment.campaign_id == campaign_id)
        .group_by(CommunicationLog.step_id, CommunicationLog.variant_id, CommunicationLog.state)
    )
    out: dict[tuple[int, int | None], Counter[str]] = {}
    for step_id, variant_id, state, n in rows:
        out.setdefault((step_id, variant_id), Counter())[str(state)] += n
    return out


def _event_counts(session: Session, campaign_id: int) -> dict[tuple[int, int | None], Counter[str]]:
    """Distinct touches with at least one (human) event of each kind."""
    rows = session.execute(
        select(
            CommunicationLog.step_id,
            CommunicationLog.variant_id,
            EngagementEvent.kind,
            func.count(func.distinct(EngagementEvent.communication_id)),
        )
        .join(CommunicationLog, CommunicationLog.id == EngagementEvent.communication_id)
        .where(
            EngagementEvent.campaign_id == campaign_id,
            EngagementEvent.kind.in_(COUNTED_EVENTS),
            EngagementEvent.is_machine.is_(False),
        )
        .group_by(CommunicationLog.step_id, CommunicationLog.variant_id, EngagementEvent.kind)
    )
    out: dict[tuple[int, int | None], Counter[str]] = {}
    for step_id, variant_id, kind, n in rows:
        out.setdefault((step_id, variant_id), Counter())[str(kind)] += n
    return out


POSITIVE_INTENTS = (Intent.INTERESTED,)
NEGATIVE_INTENTS = (Intent.NOT_INTERESTED, Intent.UNSUBSCRIBE)


def _reply_mood_counts(session: Session, campaign_id: int) -> dict[tuple[int, int | None], Counter[str]]:
    """Replies classified positive (interested) or negative (not interested, unsubscribe), per touch group."""
    rows = session.execute(
        select(CommunicationLog.step_id, CommunicationLog.variant_id, ResponseAnalysis.intent, func.count())
        .join(CommunicationLog, CommunicationLog.id == ResponseAnalysis.communication_id)
        .where(ResponseAnalysis.campaign_id == campaign_id, ResponseAnalysis.kind == ResponseKind.REPLY)
        .group_by(CommunicationLog.step_id, CommunicationLog.variant_id, ResponseAnalysis.intent)
    )
    out: dict[tuple[int, int | None], Counter[str]] = {}
    for step_id, variant_id, intent, n in rows:
        mood = "positive" if intent in POSITIVE_INTENTS else "negative" if intent in NEGATIVE_INTENTS else None
        if mood:
            out.setdefault((step_id, variant_id), Counter())[mood] += n
    return out


def _metrics(touches: Counter[str], events: Counter[str]) -> dict[str, int]:
    sent = touches[TouchState.SENT] + touches[TouchState.BOUNCED]
    bounced = max(touches[TouchState.BOUNCED], events[EventKind.BOUNCE])
    return {
        "sent": sent,
        "delivered": max(sent - bounced, 0),
        "opened": events[EventKind.OPEN],
        "clicked": events[EventKind.CLICK],
        "replied": events[EventKind.REPLY],
        "positive": events["positive"],
        "negative": events["negative"],
        "bounced": bounced,
        "unsubscribed": events[EventKind.UNSUBSCRIBE],
    }


def engagement_counts(session: Session, campaign: OutreachCampaign) -> dict[str, Any]:
    touches = _touch_counts(session, campaign.id)
    events = _event_counts(session, campaign.id)
    for key, moods in _reply_mood_counts(session, campaign.id).items():
        events.setdefault(key, Counter()).update(moods)
    total_t: Counter[str] = Counter()
    total_e: Counter[str] = Counter()
    steps_out = []
    for step in campaign.steps:
        step_t: Counter[str] = Counter()
        step_e: Counter[str] = Counter()
        variants_out = []
        for variant in step.variants:
            vt = touches.get((step.id, variant.id), Counter())
            ve = events.get((step.id, variant.id), Counter())
            step_t.update(vt)
            step_e.update(ve)
            variants_out.append({"name": variant.name, "active": variant.is_active, **_metrics(vt, ve)})
        total_t.update(step_t)
        total_e.update(step_e)
        step_out = {"step": step.position + 1, "type": str(step.type), **_metrics(step_t, step_e)}
        step_out["variants"] = variants_out
        if len(variants_out) >= 2:
            step_out["ab"] = campaign_ab(session, campaign, step, variants_out)
        steps_out.append(step_out)
    return {
        "campaign": campaign.name,
        "state": str(campaign.state),
        **_metrics(total_t, total_e),
        "touches": {str(state): total_t[str(state)] for state in TouchState},
        "steps": steps_out,
    }


def enrollment_counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Enrollment.state, func.count()).where(Enrollment.campaign_id == campaign_id).group_by(Enrollment.state)
    )
    counts = {str(state): 0 for state in EnrollmentState}
    counts.update({str(state): n for state, n in rows})
    return counts
