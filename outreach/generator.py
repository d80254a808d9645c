"""MessageGenerator: the exact text a prospect receives for a step — the planner stores it, the preview shows it.

One path renders every touch, so the preview is byte for byte what is queued: the prospect's fields,
the personalization library's best snippets (`personalize_outreach`), the best demo for the company
(`attach_demos`), the previous email for follow-ups (`craft_follow_ups`), then the sandboxed render with
spintax seeded by (prospect, step, variant). The class itself is pure — it holds the library as plain
data and reads no database or clock; `generator_for` and `render_for_enrollment` are the I/O edges the
planner and the preview call. A language model's opener is only ever read here from stored drafts:
nothing on this path calls a model.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import DelayUnit, EventKind, StepType, TouchState
from db.models import CommunicationLog, EngagementEvent, Mailbox, OutreachCampaign, Prospect
from outreach.content_lint import lint_message
from outreach.mailer import reply_subject
from outreach.matching import Candidate, Profile, Scored, profile_of, rank, score
from outreach.personalization import LibraryItem, campaign_has_drafts, draft_of, library_items
from outreach.prospect_fields import PROSPECT_FIELDS
from outreach.sequence import Definition, Step, Variant
from outreach.spintax import has_spintax, spin_seed
from outreach.templating import RenderError, render, undeclared_fields, values_of

SNIPPET_FIELDS = ("opener", "value_prop", "case_study")  # each also the snippet kind that fills it
DEMO_FIELDS = ("demo_link", "demo_title", "demo_description")
_MATCHED = frozenset({*SNIPPET_FIELDS, *DEMO_FIELDS})
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.IGNORECASE | re.DOTALL)
_CACHE_KEY = "outreach.message_generators"
SHORTLISTS = 4096  # remembered (industry, title, size) combinations per generator
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Choice:
    """One value the generator filled in, where it came from, and why (the preview shows this)."""

    field: str
    source: str  # draft, prospect, library, fallback, missing
    explanation: str
    value: str | None = None
    item: str | None = None  # the library snippet's name or the demo's title, when one was chosen


@dataclass(frozen=True)
class RenderedTouch:
    subject: str | None
    text: str
    html: str | None
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class PreviousTouch:
    """The email a follow-up follows; templates read it as `{{ previous.subject }}`, `{{ previous.sent_at | ago }}`."""

    subject: str | None
    text: str
    html: str | None = None
    sent_at: datetime | None = None
    from_name: str | None = None
    from_address: str | None = None
    opened: bool = False
    clicked: bool = False

    def as_context(self) -> dict[str, Any]:
        values = {
            "subject": self.subject, "text": self.text, "html": self.html, "sent_at": self.sent_at,
            "from_name": self.from_name, "from_address": self.from_address, "opened": self.opened,
            "clicked": self.clicked,
        }  # fmt: skip
        return {key: value for key, value in values.items() if value is not None}


# --- the prospect's own fields --------------------------------------------------------------------


def prospect_context(prospect: Prospect, fallbacks: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Template variables for one prospect: standard fields, custom fields, then fallbacks where empty."""
    context: dict[str, Any] = {name: value for name, value in (prospect.custom_fields or {}).items()}
    context |= {name: getattr(prospect, name) for name in PROSPECT_FIELDS}
    names = [n for n in (prospect.first_name, prospect.last_name) if n]
    context["full_name"] = " ".join(names) or None
    return _fill(context, fallbacks or {})


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _fill(context: dict[str, Any], fallbacks: Mapping[str, str]) -> dict[str, Any]:
    for name, value in fallbacks.items():
        if _empty(context.get(name)):
            context[name] = value
    return context


def available_fields(prospect: Prospect) -> set[str]:
    """Fields this prospect actually has a value for."""
    context = prospect_context(prospect)
    return {name for name, value in context.items() if not _empty(value)}


@lru_cache(maxsize=1024)
def _used(subject: str | None, body: str, html: str | None) -> frozenset[str]:
    """Every variable a variant's templates read (with or without a default)."""
    names: set[str] = set()
    for source in (subject, body, html):
        if source:
            names |= undeclared_fields(source)
    return frozenset(names)


def fields_used(variant: Variant) -> frozenset[str]:
    return _used(variant.subject, variant.body, variant.html)


@lru_cache(maxsize=1024)
def _constant(text: str) -> str | None:
    """A snippet that reads no field and has no spintax renders the same for everyone: render it once."""
    if undeclared_fields(text) or has_spintax(text):
        return None
    return render(text, {})


def _render_snippet(text: str, fields: Mapping[str, Any], seed: str) -> str:
    constant = _constant(text)
    return constant if constant is not None else render(text, fields, spin_seed=seed)


# --- quoting the previous email ---------------------------------------------------------------------


def _when(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{_DAYS[local.weekday()]}, {local.day} {_MONTHS[local.month - 1]} {local.year} at {local:%H:%M}"


def _attribution(previous: PreviousTouch, tz: ZoneInfo) -> str:
    sender = previous.from_name or previous.from_address or "I"
    if previous.from_name and previous.from_address:
        sender = f"{previous.from_name} <{previous.from_address}>"
    return f"On {_when(previous.sent_at, tz)}, {sender} wrote:" if previous.sent_at else f"{sender} wrote:"


def quote_text(previous: PreviousTouch, tz: ZoneInfo) -> str:
    """The previous email below the new text, '> '-prefixed under an 'On …, … wrote:' line."""
    lines = previous.text.rstrip().splitlines() or [""]
    quoted = "\n".join(f"> {line}" if line else ">" for line in lines)
    return f"{_attribution(previous, tz)}\n{quoted}"


def quote_html(previous: PreviousTouch, tz: ZoneInfo) -> str:
    """The same as a `<blockquote type="cite">`; the previous HTML's body, or its text escaped."""
    if previous.html:
        inner = _BODY.search(previous.html)
        content = inner.group(1) if inner else previous.html
    else:
        content = html_lib.escape(previous.text.rstrip()).replace("\n", "<br>\n")
    attribution = html_lib.escape(_attribution(previous, tz))
    return (
        f'<div class="outreach-quote"><p>{attribution}</p>'
        '<blockquote type="cite" style="margin:0 0 0 .8ex;border-left:1px solid #cccccc;padding-left:1ex">'
        f"{content}</blockquote></div>"
    )


def _append_html(page: str, block: str) -> str:
    """Inside <body> when there is one, else at the end (where the mailer will add the footer after it)."""
    close = page.lower().rfind("</body>")
    return page + block if close < 0 else page[:close] + block + page[close:]


# --- the generator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Personalization:
    values: dict[str, Any] = field(default_factory=dict)
    choices: list[Choice] = field(default_factory=list)


def _ranking(ranked: Sequence[Scored], limit: int = 3) -> str:
    considered = [s.explain() for s in ranked[:limit]]
    more = f" (+{len(ranked) - limit} more)" if len(ranked) > limit else ""
    return "; ".join(considered) + more


class MessageGenerator:
    """Personalizes and renders touches from a loaded library. Pure: equal inputs give equal messages."""

    def __init__(self, items: Sequence[LibraryItem] = (), drafts: Callable[[int], str | None] | None = None) -> None:
        self.snippets: dict[str, list[LibraryItem]] = {kind: [] for kind in SNIPPET_FIELDS}
        self.demos: list[LibraryItem] = []
        for item in items:
            (self.demos if item.kind == "demo" else self.snippets.setdefault(item.kind, [])).append(item)
        self._by_id = {(item.kind, item.id): item for item in items}
        self._drafts = drafts or (lambda _prospect_id: None)
        self._shortlists: dict[tuple[Any, ...], list[Candidate]] = {}

    def _ranked(self, kind: str, items: Sequence[LibraryItem], profile: Profile) -> list[Scored]:
        """The items ranked for a profile, skipping those its industry, title or size rules out.

        Which items a profile rules out depends only on those three, which repeat across an audience, so it
        is worked out once per combination; when nothing is left, everything is ranked so the reasons show.
        """
        key = (kind, profile.industry, profile.has_industry, profile.role, profile.has_role, profile.employee_count)
        shortlist = self._shortlists.get(key)
        if shortlist is None:
            if len(self._shortlists) >= SHORTLISTS:
                self._shortlists.clear()
            shortlist = [item.candidate for item in items if score(item.candidate, profile).miss is None]
            self._shortlists[key] = shortlist
        ranked = rank(shortlist, profile)
        return ranked if ranked and ranked[0].eligible else rank([item.candidate for item in items], profile)

    # --- personalize_outreach ----------------------------------------------------------------------

    def personalize_outreach(
        self,
        fields: Mapping[str, Any],
        *,
        wanted: Collection[str],
        prospect_id: int | None,
        seed: str,
        profile: Profile | None = None,
    ) -> Personalization:
        """`opener`, `value_prop` and `case_study` for one prospect, each the best fit, with the reason.

        A stored draft (the operator's, or a model's that they kept) wins for the opener; then a value the
        prospect already has under that name (e.g. an imported column); then the library's best match.
        """
        result = Personalization()
        for name in SNIPPET_FIELDS:
            if name not in wanted:
                continue
            if name == "opener" and prospect_id is not None and (draft := self._drafts(prospect_id)):
                result.values[name] = draft
                result.choices.append(Choice(name, "draft", "the stored opener draft for this prospect", draft))
                continue
            if not _empty(fields.get(name)):
                result.choices.append(Choice(name, "prospect", f"the prospect's own '{name}' field", str(fields[name])))
                continue
            profile = profile or profile_of(fields)
            choice, value = self._pick_snippet(name, self.snippets[name], profile, fields, seed)
            result.choices.append(choice)
            if value is not None:
                result.values[name] = value
        return result

    def _pick_snippet(
        self, name: str, items: list[LibraryItem], profile: Profile, fields: Mapping[str, Any], seed: str
    ) -> tuple[Choice, str | None]:
        ranked = self._ranked(name, items, profile)
        skipped: list[str] = []
        for scored in ranked:
            if not scored.eligible:
                break
            item = self._by_id[(name, scored.candidate.id)]
            try:
                value = _render_snippet(item.text, fields, f"{seed}:{name}")
            except RenderError as exc:
                skipped.append(f"'{item.name}' skipped: {exc}")
                continue
            reason = "; ".join([*skipped, scored.explain()])
            return Choice(name, "library", reason, value, item.name), value
        if not items:
            return Choice(name, "missing", f"the library has no {name.replace('_', ' ')} snippets"), None
        reason = "; ".join(skipped) or f"nothing in the library fits: {_ranking(ranked)}"
        return Choice(name, "missing", reason), None

    # --- attach_demos ------------------------------------------------------------------------------

    def attach_demos(
        self, fields: Mapping[str, Any], *, wanted: Collection[str], profile: Profile | None = None
    ) -> Personalization:
        """The demo that best fits the company as `demo_link` / `demo_title` / `demo_description`.

        Links only: the send path carries no attachments. The link is a plain URL in the text, which
        click tracking (when the campaign has it on) rewrites like any other link.
        """
        result = Personalization()
        if not any(name in wanted for name in DEMO_FIELDS):
            return result
        if not self.demos:
            result.choices.append(Choice("demo", "missing", "the demo library is empty"))
            return result
        ranked = self._ranked("demo", self.demos, profile or profile_of(fields))
        if not ranked[0].eligible:
            result.choices.append(Choice("demo", "missing", f"no demo fits: {_ranking(ranked)}"))
            return result
        demo = self._by_id[("demo", ranked[0].candidate.id)]
        result.values.update({"demo_link": demo.text, "demo_title": demo.name, "demo_description": demo.description})
        result.choices.append(Choice("demo", "library", ranked[0].explain(), f"{demo.name} — {demo.text}", demo.name))
        return result

    # --- craft_follow_ups --------------------------------------------------------------------------

    def craft_follow_ups(
        self, step: Step, previous: PreviousTouch | None, text: str, html: str | None, tz: ZoneInfo
    ) -> tuple[str, str | None]:
        """Quote the previous email below the new text when the step asks for it (`quote_previous: true`)."""
        if not step.quote_previous or previous is None:
            return text, html
        text = f"{text.rstrip()}\n\n{quote_text(previous, tz)}"
        if html is not None:
            html = _append_html(html, quote_html(previous, tz))
        return text, html

    # --- the whole touch ---------------------------------------------------------------------------

    def render(
        self,
        step: Step,
        step_number: int,
        variant: Variant,
        fields: Mapping[str, Any],
        *,
        prospect_id: int | None,
        fallbacks: Mapping[str, str],
        now: datetime,
        tz: ZoneInfo,
        previous: PreviousTouch | None = None,
        thread_subject: str | None = None,
    ) -> RenderedTouch:
        """Render one touch; a RenderError names the missing field, and that touch fails alone."""
        seed = spin_seed(prospect_id if prospect_id is not None else fields.get("email"), step_number, variant.name)
        wanted = fields_used(variant)
        fields = values_of(fields)
        context = dict(fields)
        profile = profile_of(context) if wanted & _MATCHED else None
        snippets = self.personalize_outreach(
            context, wanted=wanted, prospect_id=prospect_id, seed=seed, profile=profile
        )
        demos = self.attach_demos(context, wanted=wanted, profile=profile)
        context.update(snippets.values)
        context.update(demos.values)
        if previous is not None:
            context["previous"] = previous.as_context()
        context["now"] = now
        context = values_of(_fill(_fill(context, step.fallbacks), fallbacks))
        choices = _with_fallbacks([*snippets.choices, *demos.choices], context, step, fallbacks)
        if step.thread and thread_subject is not None:
            subject: str | None = reply_subject(thread_subject)
        else:
            subject = _one_line(render(variant.subject, context, spin_seed=seed)) if variant.subject else None
        text = render(variant.body, context, spin_seed=seed)
        html = render(variant.html, context, html=True, spin_seed=seed) if variant.html else None
        text, html = self.craft_follow_ups(step, previous, text, html, tz)
        return RenderedTouch(subject, text, html, tuple(choices))


def _one_line(subject: str) -> str:
    """A subject is one line: a line break from a field (a multi-line CSV cell) becomes a space.

    Other control characters cannot be made harmless by guessing, so that touch fails here with the
    reason, rather than at the mail server.
    """
    line = " ".join(subject.split())
    if _CONTROL.search(line):
        raise RenderError("the subject contains a control character (from a prospect's field); clean that field")
    return line


def _with_fallbacks(
    choices: list[Choice], context: Mapping[str, Any], step: Step, fallbacks: Mapping[str, str]
) -> list[Choice]:
    """A missing choice that a fallback covers says so (the step's text first, then the campaign's)."""
    out = []
    for choice in choices:
        names = DEMO_FIELDS if choice.field == "demo" else (choice.field,)
        covered = [n for n in names if n in step.fallbacks or n in fallbacks]
        if choice.source == "missing" and covered:
            where = "the step's" if covered[0] in step.fallbacks else "the campaign's"
            value = str(context.get(covered[0], ""))
            out.append(Choice(choice.field, "fallback", f"{choice.explanation} → {where} fallback text", value))
        else:
            out.append(choice)
    return out


# --- I/O edges: the library, drafts and the previous email from the database ---------------------


def load_generator(session: Session, campaign_id: int | None) -> MessageGenerator:
    """The library as it is now, and this campaign's opener drafts (read one prospect at a time)."""
    if campaign_id is None or not campaign_has_drafts(session, campaign_id):
        return MessageGenerator(library_items(session))

    def draft(prospect_id: int) -> str | None:
        row = draft_of(session, campaign_id, prospect_id)
        return row.text if row is not None else None

    return MessageGenerator(library_items(session), draft)


def generator_for(session: Session, campaign: OutreachCampaign) -> MessageGenerator:
    """One generator per campaign per session (a planning tick reads the library once; faces open a
    session per request, so an edit to the library shows in the next preview)."""
    cache: dict[int, MessageGenerator] = session.info.setdefault(_CACHE_KEY, {})
    if campaign.id not in cache:
        cache[campaign.id] = load_generator(session, campaign.id)
    return cache[campaign.id]


def previous_touch(session: Session, enrollment_id: int) -> PreviousTouch | None:
    """The enrollment's last sent email, with its sender and whether the prospect opened or clicked it."""
    touch = session.scalar(
        select(CommunicationLog)
        .where(
            CommunicationLog.enrollment_id == enrollment_id,
            CommunicationLog.channel == StepType.EMAIL,
            CommunicationLog.state == TouchState.SENT,
        )
        .order_by(CommunicationLog.id.desc())
        .limit(1)
    )
    if touch is None:
        return None
    box = session.get(Mailbox, touch.mailbox_id) if touch.mailbox_id else None
    kinds = set(
        session.scalars(
            select(EngagementEvent.kind).where(
                EngagementEvent.communication_id == touch.id, EngagementEvent.is_machine.is_(False)
            )
        )
    )
    return PreviousTouch(
        subject=touch.subject, text=touch.body_text or "", html=touch.body_html, sent_at=touch.sent_at,
        from_name=box.from_name if box else None, from_address=box.from_address if box else None,
        opened=EventKind.OPEN in kinds or EventKind.CLICK in kinds, clicked=EventKind.CLICK in kinds,
    )  # fmt: skip


def render_for_enrollment(
    session: Session,
    campaign: OutreachCampaign,
    definition: Definition,
    step_index: int,
    variant: Variant,
    prospect: Prospect,
    enrollment_id: int | None,
    now: datetime,
    *,
    thread_subject: str | None = None,
    previous: PreviousTouch | None = None,
) -> RenderedTouch:
    """What the planner stores for a touch (and the preview shows): the one render path."""
    step = definition.steps[step_index]
    if previous is None and enrollment_id is not None and ("previous" in fields_used(variant) or step.quote_previous):
        previous = previous_touch(session, enrollment_id)
    return generator_for(session, campaign).render(
        step, step_index + 1, variant, prospect_context(prospect), prospect_id=prospect.id,
        fallbacks=definition.fallbacks, now=now, tz=definition.schedule.zone_for(prospect.timezone),
        previous=previous, thread_subject=thread_subject,
    )  # fmt: skip


# --- checking a campaign's content before launch -----------------------------------------------------

LINT_SAMPLE = 20  # prospects rendered by launch checks; the Preview page's table pages through more


def _delay(step: Step) -> timedelta:
    amount, unit = step.delay.amount, step.delay.unit
    if unit is DelayUnit.MINUTES:
        return timedelta(minutes=amount)
    if unit is DelayUnit.HOURS:
        return timedelta(hours=amount)
    return timedelta(days=amount * (7 / 5 if unit is DelayUnit.BUSINESS_DAYS else 1))


def simulated_previous(
    session: Session,
    campaign: OutreachCampaign,
    definition: Definition,
    step_index: int,
    prospect: Prospect,
    now: datetime,
    sender: tuple[str | None, str | None] = (None, None),
) -> PreviousTouch | None:
    """For a follow-up not sent yet: the earlier email step rendered for this prospect, as if sent one delay ago.

    Lets the preview and launch checks show `{{ previous.subject }}` and quoting before anything has gone out.
    """
    earlier = [i for i in range(step_index) if definition.steps[i].type is StepType.EMAIL]
    if not earlier:
        return None
    index = earlier[-1]
    sent_at = now - _delay(definition.steps[step_index])
    step = definition.steps[index]
    before = simulated_previous(session, campaign, definition, index, prospect, sent_at, sender)
    thread = before.subject if step.thread and before is not None else None
    try:
        rendered = render_for_enrollment(
            session, campaign, definition, index, step.variants[0], prospect, None, sent_at,
            thread_subject=thread, previous=before,
        )  # fmt: skip
    except RenderError:
        return None
    return PreviousTouch(rendered.subject, rendered.text, rendered.html, sent_at, sender[0], sender[1])


@dataclass(frozen=True)
class IncompleteRender:
    """A prospect whose message for a step and variant cannot be rendered, and why."""

    prospect_id: int
    email: str
    step: int
    variant: str
    error: str
    field: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"prospect": self.email, "step": self.step, "variant": self.variant, "field": self.field,
                "error": self.error}  # fmt: skip


def render_sample(
    session: Session,
    campaign: OutreachCampaign,
    definition: Definition,
    prospects: Sequence[Prospect],
    now: datetime,
) -> tuple[list[IncompleteRender], dict[tuple[int, str], RenderedTouch]]:
    """Render every step and variant for each prospect: the failures, and the first good render of each."""
    failures: list[IncompleteRender] = []
    first_good: dict[tuple[int, str], RenderedTouch] = {}
    for prospect in prospects:
        for index, step in enumerate(definition.steps):
            previous = simulated_previous(session, campaign, definition, index, prospect, now)
            thread = previous.subject if step.thread and previous is not None else None
            for variant in step.variants:
                try:
                    rendered = render_for_enrollment(
                        session, campaign, definition, index, variant, prospect, None, now,
                        thread_subject=thread, previous=previous,
                    )  # fmt: skip
                except RenderError as exc:
                    failures.append(IncompleteRender(prospect.id, prospect.email, index + 1, variant.name, str(exc),
                                                     exc.field))  # fmt: skip
                    continue
                first_good.setdefault((index + 1, variant.name), rendered)
    return failures, first_good


def launch_lint(
    session: Session,
    campaign: OutreachCampaign,
    definition: Definition,
    prospects: Sequence[Prospect],
    now: datetime,
    *,
    postal_address: bool,
) -> list[str]:
    """Content warnings for launch checks: each variant's lint (as rendered for a sample prospect) and the
    sampled prospects whose message does not render. Warnings only; launch decides nothing from them."""
    sample = list(prospects[:LINT_SAMPLE])
    failures, renders = render_sample(session, campaign, definition, sample, now)
    out = []
    for (number, name), rendered in sorted(renders.items()):
        step = definition.steps[number - 1]
        email = step.type is StepType.EMAIL
        for warning in lint_message(
            rendered.subject if email else None, rendered.text, rendered.html if email else None,
            postal_address=postal_address,
        ):  # fmt: skip
            out.append(f"step {number} variant {name}: {warning}")
    for failure in failures:
        out.append(
            f"step {failure.step} variant {failure.variant}: does not render for {failure.email}: {failure.error}"
        )
    if len(prospects) > len(sample) and sample:
        out.append(f"content checked for the first {len(sample)} of {len(prospects)} prospects; see Preview for all")
    return out
