"""The campaign definition: YAML text ↔ a typed, validated model, with every problem named by key path and line.

Parsing composes the YAML into nodes (which remember their line), builds plain data from them, and
validates that data twice over: pydantic checks shape and values (unknown keys, delays, enums), and
`_rule_issues` checks the rules that span keys (threading, subjects, variant names, templates). Both
report against the raw data's key paths, which map back to YAML nodes and so to line numbers. All
problems are collected and raised together as one DefinitionError; nothing is half-accepted.

The model maps onto the tables: a Step is a SequenceStep row (position = index, delay.amount /
delay.unit, when → condition, thread), a Variant is a MessageVariant row (html → html_body). A step
written with subject/body directly is stored as one variant named "A".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache, lru_cache
from typing import Annotated, Any, Self, get_args, get_origin
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from db.enums import DelayUnit, StepCondition, StepType, StopReason
from outreach.errors import OutreachError
from outreach.schedule import (
    DAY_NAMES,
    Delay,
    HolidaySetting,
    ScheduleError,
    SendRules,
    Window,
    day_names,
    day_numbers,
    format_delay,
    format_window,
    holidays_for,
    parse_day,
    parse_delay,
    parse_window,
    resolve_zone,
    supported_holiday_countries,
)
from outreach.templating import TemplateProblem, compile_template, fields_without_default

PROSPECT_ZONE = "prospect"
DEFAULT_VARIANT = "A"
SHORTHAND_KEYS = ("subject", "body", "html")
TEMPLATE_KEYS = ("subject", "body", "html")
# Values the message generator adds to every template's context (outreach.generator): a template may use
# them without any prospect having them, so they are never reported as fields prospects lack.
GENERATED_FIELDS = frozenset(
    {"opener", "value_prop", "case_study", "demo_link", "demo_title", "demo_description", "previous", "now"}
)
_SKIP_RULES = "rules_checked"  # validation context flag: parse() has already run the cross-key rules
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Loc = tuple[str | int, ...]


class StopTrigger(StrEnum):
    """What stops a prospect's sequence (the YAML's stop_on words)."""

    REPLY = "reply"
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    DOMAIN_REPLY = "domain_reply"  # anyone at the prospect's company replied

    @property
    def reason(self) -> StopReason:
        return _STOP_REASONS[self]


_STOP_REASONS = {
    StopTrigger.REPLY: StopReason.REPLIED,
    StopTrigger.BOUNCE: StopReason.BOUNCED,
    StopTrigger.UNSUBSCRIBE: StopReason.UNSUBSCRIBED,
    StopTrigger.DOMAIN_REPLY: StopReason.DOMAIN_REPLIED,
}


class InDoubtPolicy(StrEnum):
    """What happens to an in-doubt touch whose Message-ID is not in the mailbox's Sent folder (outreach.in_doubt)."""

    HOLD = "hold"  # the operator decides (the default: many servers keep no Sent copy of SMTP mail)
    RESEND = "resend"  # send it again, with the same Message-ID, once the lease and a grace period are over


DEFAULT_STOP_ON = (StopTrigger.REPLY, StopTrigger.BOUNCE, StopTrigger.UNSUBSCRIBE)
# Opt-outs and hard bounces always end a sequence: the law and the sender's reputation require it.
REQUIRED_STOPS = (StopTrigger.BOUNCE, StopTrigger.UNSUBSCRIBE)


@dataclass(frozen=True)
class Problem:
    """One thing to fix: where (key path, YAML line) and what."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path} (line {self.line})"
        return f"{where}: {self.message}"


class DefinitionError(OutreachError):
    """The campaign definition has problems; `.problems` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"The campaign definition has {count} problem{'s' if count != 1 else ''}:\n{lines}")


@dataclass(frozen=True)
class _Issue:
    """A problem before it has a line: the raw-data path, and the line inside a template if any."""

    loc: Loc
    message: str
    template_line: int | None = None


# ---------------------------------------------------------------------------------------------- field types


def _custom_error(message: str) -> PydanticCustomError:
    # The message goes in the context: user text may contain braces that a template would misread.
    return PydanticCustomError("definition", "{message}", {"message": message})


def _delay_in(value: Any) -> Delay:
    if isinstance(value, Delay):
        return value
    try:
        return parse_delay(value)
    except ScheduleError as exc:
        raise _custom_error(str(exc)) from None


def _window_in(value: Any) -> Window:
    if isinstance(value, Window):
        return value
    try:
        return parse_window(value)
    except ScheduleError as exc:
        raise _custom_error(str(exc)) from None


def _days_in(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise _custom_error(f"use a list of days, e.g. [{', '.join(DAY_NAMES[:5])}]")
    if not value:
        raise _custom_error("at least one day is needed")
    numbers = []
    for name in map(str, value):
        try:
            numbers.append(parse_day(name))
        except ScheduleError:
            hint = _did_you_mean(name.strip().lower(), DAY_NAMES)
            raise _custom_error(f'"{name}" is not a day{hint}; use {", ".join(DAY_NAMES)}') from None
    return day_names(numbers)


def _holidays_in(value: Any) -> HolidaySetting:
    """true (the prospect's country), false (none), or country codes ("US" or [US, DE])."""
    if isinstance(value, bool):
        return value
    codes = [value] if isinstance(value, str) else value
    if not isinstance(codes, list | tuple) or not all(isinstance(code, str) for code in codes):
        raise _custom_error("use true (each prospect's country), false (none) or country codes, e.g. [US, DE]")
    known = supported_holiday_countries()
    result = []
    for code in codes:
        clean = code.strip().upper()
        if clean not in known:
            hint = _did_you_mean(clean, sorted(known))
            raise _custom_error(f'"{code}" is not a country with known public holidays{hint}; use codes like US, DE')
        result.append(clean)
    return tuple(dict.fromkeys(result))


def _filter_values(value: Any) -> tuple[str, ...]:
    """A filter value: one scalar or a list of them, kept as strings (the query layer compares text)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise _custom_error("an empty list matches nobody; give at least one value")
    result = []
    for item in items:
        if isinstance(item, bool):
            raise _custom_error(f'YAML read {item} as yes/no; put the value in quotes, e.g. "NO" for Norway')
        if not isinstance(item, str | int | float) or str(item).strip() == "":
            raise _custom_error(f"{item!r} is not a value to match; use text or a number")
        result.append(str(item).strip())
    return tuple(result)


def _field_name(value: str) -> str:
    if not _FIELD_NAME.match(value):
        raise ValueError(f'"{value}" is not a field name; use letters, digits and _ (e.g. first_name)')
    return value


DelayField = Annotated[Delay, PlainValidator(_delay_in), PlainSerializer(format_delay, return_type=str)]
WindowField = Annotated[Window, PlainValidator(_window_in), PlainSerializer(format_window, return_type=str)]
DaysField = Annotated[tuple[str, ...], BeforeValidator(_days_in)]
FilterValues = Annotated[tuple[str, ...], BeforeValidator(_filter_values)]
FieldName = Annotated[str, AfterValidator(_field_name)]
HolidaysField = Annotated[
    HolidaySetting,
    PlainValidator(_holidays_in),
    PlainSerializer(lambda v: v if isinstance(v, bool) else list(v)),  # a list or a tuple: JSON either way
]


def _lateness_in(value: Any) -> Delay:
    """`max_lateness`: minutes, hours or days (calendar time the worker may be behind), more than zero."""
    delay = _delay_in(value)
    if delay.unit is DelayUnit.BUSINESS_DAYS or delay.amount == 0:
        raise _custom_error(f'"{value}" is not a maximum lateness; use minutes, hours or days, e.g. "2 days"')
    return delay


LatenessField = Annotated[Delay, PlainValidator(_lateness_in), PlainSerializer(format_delay, return_type=str)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
VariantName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------- the model


class Audience(_Model):
    """Who is enrolled: the members of a list, prospects matching a filter, or list members matching it."""

    list_name: Name | None = Field(default=None, alias="list")
    filter: dict[FieldName, FilterValues] | None = None

    @model_validator(mode="after")
    def _something_chosen(self) -> Self:
        if self.list_name is None and not self.filter:
            raise ValueError("choose prospects with list: NAME or filter: {field: value}")
        return self


class Schedule(_Model):
    """When touches may go out, in the prospect's local time (or a fixed zone)."""

    timezone: str = PROSPECT_ZONE
    fallback_timezone: str = "UTC"  # for prospects without a known zone when timezone is "prospect"
    window: WindowField = Window(9 * 60, 17 * 60)
    days: DaysField = DAY_NAMES[:5]
    holidays: HolidaysField = True  # public holidays are skipped: true = each prospect's country
    optimize_send_time: bool = False  # send at the learned best hours inside the window (outreach.send_time)
    # A touch this late (the worker was down) waits for the operator; None: the global default (outreach.lateness)
    max_lateness: LatenessField | None = None

    @field_validator("timezone")
    @classmethod
    def _zone_or_prospect(cls, value: str) -> str:
        return value.strip() if value.strip() == PROSPECT_ZONE else _check_zone(value)

    @field_validator("fallback_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @property
    def day_set(self) -> frozenset[int]:
        return day_numbers(self.days)

    def zone_for(self, prospect_timezone: str | None) -> ZoneInfo:
        """The zone to schedule a prospect's touches in."""
        fallback = ZoneInfo(self.fallback_timezone)
        if self.timezone != PROSPECT_ZONE:
            return ZoneInfo(self.timezone)
        return resolve_zone(prospect_timezone, fallback)

    def rules_for(self, prospect_timezone: str | None, prospect_country: str | None) -> SendRules:
        """One prospect's send rules: window and days in their zone, minus their holidays."""
        return _rules(self, prospect_timezone, prospect_country)


@lru_cache(maxsize=4096)
def _rules(schedule: Schedule, prospect_timezone: str | None, prospect_country: str | None) -> SendRules:
    """Memoized: launch and the simulation ask once per prospect, and prospects share a few zones and countries."""
    zone, holidays = schedule.zone_for(prospect_timezone), holidays_for(schedule.holidays, prospect_country)
    return SendRules(schedule.window, schedule.day_set, zone, holidays)


class Tracking(_Model):
    opens: bool = False
    clicks: bool = True


class ExperimentMetric(StrEnum):
    """What an A/B test compares: the share of sent touches with a reply, a positive reply, a click, an open."""

    REPLY_RATE = "reply_rate"
    POSITIVE_RATE = "positive_rate"
    CLICK_RATE = "click_rate"
    OPEN_RATE = "open_rate"  # allowed, shown with a warning: opens are unreliable


class ExperimentDesign(StrEnum):
    FIXED = "fixed"  # read the test once, at the planned sample
    SEQUENTIAL = "sequential"  # read it at `looks` planned looks with alpha-spending boundaries


class Allocation(StrEnum):
    BALANCED = "balanced"  # by weight, evenly
    THOMPSON = "thompson"  # Thompson sampling from each variant's Beta posterior


class Experiment(_Model):
    """How the campaign's A/B tests are planned and judged (outreach.stats explains the methods)."""

    metric: ExperimentMetric = ExperimentMetric.REPLY_RATE
    mde: float = Field(default=0.05, gt=0, lt=1)  # smallest difference worth detecting, absolute (0.05 = 5 points)
    baseline: float = Field(default=0.05, gt=0, lt=1)  # the rate expected from the control, for planning only
    alpha: float = Field(default=0.05, gt=0, le=0.2)
    power: float = Field(default=0.8, ge=0.5, lt=1)
    design: ExperimentDesign = ExperimentDesign.FIXED
    looks: int = Field(default=3, ge=1, le=10)
    auto_promote: bool = False
    allocation: Allocation = Allocation.BALANCED

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.baseline + self.mde >= 1:
            raise ValueError("baseline + mde must stay below 1 (both are rates, e.g. baseline: 0.05, mde: 0.03)")
        return self


class Variant(_Model):
    """One version of a step's message; several variants make an A/B test."""

    name: VariantName = DEFAULT_VARIANT
    subject: str | None = None
    body: str
    html: str | None = None
    weight: float = Field(default=1.0, gt=0)

    @field_validator("body")
    @classmethod
    def _body_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the body is empty")
        return value


class Step(_Model):
    """One touch of the sequence, `delay` after the previous touch (after launch for the first)."""

    type: StepType
    delay: DelayField = Delay(0, DelayUnit.DAYS)
    when: StepCondition = StepCondition.ALWAYS
    thread: bool = False
    quote_previous: bool = False  # quote the previous email below this one, as mail clients do
    fallbacks: dict[FieldName, str] = {}  # this step's text for fields a prospect lacks (e.g. no matching demo)
    attach_demo: bool = False  # attach the matched demo's PDF file (outreach.demo_files), when it has one
    variants: tuple[Variant, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: Any) -> Any:
        """`subject`/`body`/`html` on the step itself mean a single variant named "A"."""
        if not isinstance(data, Mapping) or not any(key in data for key in SHORTHAND_KEYS):
            return data
        if "variants" in data:
            raise ValueError("use either subject/body on the step or a variants list, not both")
        expanded = {key: value for key, value in data.items() if key not in SHORTHAND_KEYS}
        expanded["variants"] = [{"name": DEFAULT_VARIANT, **{k: data[k] for k in SHORTHAND_KEYS if k in data}}]
        return expanded

    @model_validator(mode="after")
    def _has_message(self) -> Self:
        if not self.variants:
            raise ValueError("a step needs a body (or a list of variants)")
        return self


class Definition(_Model):
    """A whole campaign as the marketer wrote it. Equal definitions produce equal YAML."""

    name: Name
    audience: Audience
    mailboxes: tuple[Name, ...] = ()
    schedule: Schedule = Schedule()
    stop_on: tuple[StopTrigger, ...] = DEFAULT_STOP_ON
    tracking: Tracking = Tracking()
    experiment: Experiment = Experiment()
    postal_address: str | None = None  # the sender's postal address for the compliance footer
    fallbacks: dict[FieldName, str] = {}  # values for fields a prospect lacks, used by every template
    in_doubt: InDoubtPolicy = InDoubtPolicy.HOLD  # a touch not found in the Sent folder: wait, or resend
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("mailboxes")
    @classmethod
    def _unique_mailboxes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f'mailbox "{twice[0]}" is listed twice')
        return value

    @field_validator("stop_on")
    @classmethod
    def _required_stops(cls, value: tuple[StopTrigger, ...]) -> tuple[StopTrigger, ...]:
        missing = [stop.value for stop in REQUIRED_STOPS if stop not in value]
        if missing:
            raise ValueError(f"keep {' and '.join(missing)} in stop_on: opt-outs and hard bounces always stop")
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        """Built directly from Python (the designer page), the cross-key rules still apply."""
        if (info.context or {}).get(_SKIP_RULES):
            return self
        issues = _rule_issues(to_data(self))
        if issues:
            raise ValueError("; ".join(f"{_format_path(i.loc)}: {i.message}" for i in issues))
        return self


# ---------------------------------------------------------------------------------------------- rules


def _loose_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1"}
    return bool(value)


@dataclass(frozen=True)
class _StepContext:
    index: int
    type: Any
    thread: bool
    earlier_email: bool
    opens: bool
    clicks: bool


def _rule_issues(raw: Any) -> list[_Issue]:
    """The rules that span keys, checked on raw data so they run even when other keys are malformed."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("steps"), list):
        return []
    tracking = raw.get("tracking") if isinstance(raw.get("tracking"), Mapping) else {}
    opens = _loose_bool(tracking.get("opens"), False)
    clicks = _loose_bool(tracking.get("clicks"), True)
    issues: list[_Issue] = _experiment_issues(raw.get("experiment"), opens, clicks)
    earlier_email = False
    for index, step in enumerate(raw["steps"]):
        if not isinstance(step, Mapping):
            continue
        context = _StepContext(
            index, step.get("type"), _loose_bool(step.get("thread"), False), earlier_email, opens, clicks
        )
        thread_issues = _thread_issues(("steps", index), context)
        if thread_issues:  # judge the messages as the unthreaded step it has to become
            issues += thread_issues
            context = replace(context, thread=False)
        issues += _step_issues(("steps", index), step, context)
        earlier_email = earlier_email or step.get("type") == StepType.EMAIL
    return issues


def _experiment_issues(experiment: Any, opens: bool, clicks: bool) -> list[_Issue]:
    """An A/B metric needs the tracking that counts it."""
    metric = experiment.get("metric") if isinstance(experiment, Mapping) else None
    needs = {ExperimentMetric.OPEN_RATE: ("opens", opens), ExperimentMetric.CLICK_RATE: ("clicks", clicks)}
    if metric in needs and not needs[metric][1]:
        kind = needs[metric][0]
        return [_Issue(("experiment", "metric"), f"metric: {metric} needs tracking.{kind}: true")]
    return []


def _step_issues(loc: Loc, step: Mapping[str, Any], ctx: _StepContext) -> list[_Issue]:
    issues = _when_issues(loc, step.get("when"), ctx) + _quote_issues(loc, step.get("quote_previous"), ctx)
    if _loose_bool(step.get("attach_demo"), False) and ctx.type != StepType.EMAIL:
        issues.append(_Issue((*loc, "attach_demo"), "only email steps carry attachments; remove attach_demo"))
    variants = step.get("variants")
    if isinstance(variants, list) and not any(key in step for key in SHORTHAND_KEYS):
        issues += _duplicate_names(loc, variants)
        for j, variant in enumerate(variants):
            if isinstance(variant, Mapping):
                issues += _message_issues((*loc, "variants", j), variant, ctx)
    elif "variants" not in step:
        issues += _message_issues(loc, step, ctx)
    return issues


def _thread_issues(loc: Loc, ctx: _StepContext) -> list[_Issue]:
    if not ctx.thread:
        return []
    where = (*loc, "thread")
    if ctx.index == 0:
        return [_Issue(where, "the first step starts the conversation, so it cannot be threaded; remove thread")]
    if ctx.type != StepType.EMAIL:
        return [_Issue(where, "only email steps can be threaded; remove thread")]
    if not ctx.earlier_email:
        return [_Issue(where, "there is no earlier email step to reply to; remove thread")]
    return []


def _quote_issues(loc: Loc, quote: Any, ctx: _StepContext) -> list[_Issue]:
    if not _loose_bool(quote, False):
        return []
    where = (*loc, "quote_previous")
    if ctx.type != StepType.EMAIL:
        return [_Issue(where, "only email steps can quote the previous email; remove quote_previous")]
    if not ctx.earlier_email:
        return [_Issue(where, "there is no earlier email step to quote; remove quote_previous")]
    return []


def _previous_issues(loc: Loc, source: Any, ctx: _StepContext) -> list[_Issue]:
    """`{{ previous.… }}` needs an earlier email (unless the template guards it with `is defined`)."""
    if not isinstance(source, str) or ctx.earlier_email:
        return []
    try:
        needed = fields_without_default(source)
    except TemplateProblem:
        return []  # reported as a compile problem
    if "previous" not in needed:
        return []
    return [_Issue(loc, "uses previous, but no email comes before this step; remove it or wrap it in "
                        "{% if previous is defined %}…{% endif %}")]  # fmt: skip


def _when_issues(loc: Loc, when: Any, ctx: _StepContext) -> list[_Issue]:
    if when in (None, StepCondition.ALWAYS):
        return []
    where = (*loc, "when")
    if ctx.index == 0:
        return [_Issue(where, "the first step has no earlier touch to check; remove when")]
    needs = {StepCondition.OPENED: "opens", StepCondition.NO_OPEN: "opens", StepCondition.CLICKED: "clicks"}
    if when not in needs:
        return []
    if not ctx.earlier_email:
        return [_Issue(where, f"when: {when} looks at an earlier email, and there is none before this step")]
    tracked = ctx.opens if needs[when] == "opens" else ctx.clicks
    if not tracked:
        return [_Issue(where, f"when: {when} needs tracking.{needs[when]}: true")]
    return []


def _duplicate_names(loc: Loc, variants: list[Any]) -> list[_Issue]:
    seen: set[str] = set()
    issues = []
    for j, variant in enumerate(variants):
        if not isinstance(variant, Mapping) or not isinstance(variant.get("name"), str | int):
            continue
        name = str(variant["name"]).strip()
        if name.lower() in seen:
            issues.append(
                _Issue((*loc, "variants", j, "name"), f'the variant name "{name}" is used twice in this step')
            )
        seen.add(name.lower())
    return issues


def _message_issues(loc: Loc, message: Mapping[str, Any], ctx: _StepContext) -> list[_Issue]:
    """Subject rules per step type, then every template must compile."""
    issues = []
    subject = message.get("subject")
    has_subject = isinstance(subject, str | int) and str(subject).strip() != ""
    if ctx.type == StepType.EMAIL and ctx.thread and has_subject:
        issues.append(
            _Issue(
                (*loc, "subject"),
                'a threaded follow-up reuses "Re: <previous subject>"; remove subject or set thread: false',
            )
        )
    elif ctx.type == StepType.EMAIL and not ctx.thread and not has_subject:
        issues.append(_Issue((*loc, "subject"), "an email needs a subject (only threaded follow-ups reuse one)"))
    elif ctx.type in (StepType.LINKEDIN, StepType.CALL):
        for key in ("subject", "html"):
            if message.get(key) is not None:
                issues.append(_Issue((*loc, key), f"{ctx.type} steps have no {key}; remove it"))
    if isinstance(subject, str) and ("\n" in subject.strip() or "\r" in subject):
        issues.append(_Issue((*loc, "subject"), "a subject must be a single line"))
    for key in TEMPLATE_KEYS:
        issues += _template_issues((*loc, key), message.get(key), html=key == "html")
        issues += _previous_issues((*loc, key), message.get(key), ctx)
    return issues


def _template_issues(loc: Loc, source: Any, *, html: bool) -> list[_Issue]:
    if not isinstance(source, str):
        return []
    try:
        compile_template(source, html=html)
    except TemplateProblem as exc:
        return [_Issue(loc, f"the template does not compile: {exc.message}", exc.line)]
    return []


# ---------------------------------------------------------------------------------------------- YAML nodes


def _format_path(loc: Loc) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _child(node: Node, part: str | int) -> tuple[Node | None, Node] | None:
    """The (key node, value node) for one path step; the last duplicate key wins, as in YAML."""
    if isinstance(node, MappingNode) and isinstance(part, str):
        found = None
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == part:
                found = (key, value)
        return found
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _is_shorthand_step(node: Node, loc: Loc, index: int) -> bool:
    """pydantic reports a shorthand step's fields under variants[0]; the YAML has them on the step."""
    return (
        loc[index] == "variants"
        and index + 1 < len(loc)
        and loc[index + 1] == 0
        and isinstance(node, MappingNode)
        and _child(node, "variants") is None
    )


def _locate(root: Node | None, loc: Loc) -> tuple[Loc, int | None, Node | None]:
    """Map a data path onto the YAML: the path as written, the line of the deepest key found, the value node."""
    if root is None:
        return loc, None, None
    node: Node | None = root
    line = root.start_mark.line + 1
    path: list[str | int] = []
    index = 0
    while index < len(loc):
        if node is not None and _is_shorthand_step(node, loc, index):
            index += 2
            continue
        part = loc[index]
        found = _child(node, part) if node is not None else None
        if found is None:
            node = None
        else:
            key, node = found
            line = (key or node).start_mark.line + 1
        path.append(part)
        index += 1
    return tuple(path), line, node


def _template_line(node: Node | None, line: int | None, template_line: int | None) -> int | None:
    """The YAML line of a template's own line: block scalars start on the line after their indicator."""
    if template_line is None or not isinstance(node, ScalarNode):
        return line
    first = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
    return first + template_line - 1


def _problem(root: Node | None, issue: _Issue) -> Problem:
    path, line, node = _locate(root, issue.loc)
    return Problem(_format_path(path), _template_line(node, line, issue.template_line), issue.message)


def _duplicate_keys(node: Node, loc: Loc = ()) -> Iterator[Problem]:
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name is not None and name in seen:
                where = _format_path((*loc, name))
                yield Problem(where, key.start_mark.line + 1, f'"{name}" appears twice here; keep one')
            if name is not None:
                seen.add(name)
            yield from _duplicate_keys(value, (*loc, name) if name is not None else loc)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _load(text: str) -> tuple[Node | None, Any]:
    """Compose (keeping line marks) and construct in one pass; invalid YAML becomes a DefinitionError."""
    try:
        loader = yaml.SafeLoader(text)  # the reader already rejects control characters here
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem("(YAML)", None, f"invalid YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = ", ".join(part for part in (exc.context, exc.problem) if part) or "cannot be read"
        raise DefinitionError([Problem("(YAML)", line, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem("(YAML)", None, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return node, data


# ---------------------------------------------------------------------------------------------- pydantic errors


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) is not None else ():
        model = _model_of(arg)
        if model is not None:
            return model
    return None


def _keys_at(loc: Loc) -> list[str]:
    """The keys allowed in the mapping at `loc`, for did-you-mean suggestions."""
    model: type[BaseModel] | None = Definition
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_of(field.annotation) if field is not None else None
    if model is None:
        return []
    keys = [field.alias or name for name, field in model.model_fields.items()]
    return keys + list(SHORTHAND_KEYS) if model is Step else keys


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Mapping[str, Any], loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _keys_at(loc[:-1])
        hint = _did_you_mean(key, allowed) or (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        return f'unknown key "{key}"{hint}'
    if kind == "missing":
        return "is required"
    if kind == "too_short":
        return "add at least one"
    if kind == "enum":
        expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        given = str(error["input"])
        return f'"{given}" is not allowed here{_did_you_mean(given, expected)}; use one of: {", ".join(expected)}'
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected keys with values here (key: value), got {_short(error['input'])}"
    if kind in ("definition", "value_error"):
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{error['msg']} (got {_short(error['input'])})"


def _pydantic_issues(exc: ValidationError) -> list[_Issue]:
    errors = exc.errors(include_url=False)
    locs = [tuple(part for part in error["loc"] if part != "[key]") for error in errors]
    issues = []
    for error, loc in zip(errors, locs, strict=True):
        # pydantic also calls a list "too short" when its items failed; the item errors say more.
        nested = any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs)
        if error["type"] == "too_short" and nested:
            continue
        issues.append(_Issue(loc, _message(error, loc)))
    return issues


# ---------------------------------------------------------------------------------------------- public API


def _validate(data: Any, root: Node | None, extra: list[Problem]) -> Definition:
    issues = _rule_issues(data)
    definition = None
    try:
        definition = Definition.model_validate(data, context={_SKIP_RULES: True})
    except ValidationError as exc:
        issues = _pydantic_issues(exc) + issues
    problems = extra + [_problem(root, issue) for issue in issues]
    if problems or definition is None:
        unique = list(dict.fromkeys(problems))
        raise DefinitionError(sorted(unique, key=lambda p: (p.line is None, p.line or 0)))
    return definition


def parse_definition(text: str) -> Definition:
    """YAML text → Definition, or a DefinitionError listing every problem with its key path and line."""
    root, data = _load(text)
    if root is None:
        raise DefinitionError([Problem("(top level)", None, "the definition is empty")])
    return _validate(data, root, list(_duplicate_keys(root)))


def from_data(data: Mapping[str, Any]) -> Definition:
    """Stored JSON (OutreachCampaign.definition) → Definition; problems carry paths but no lines."""
    return _validate(data, None, [])


def to_data(definition: Definition) -> dict[str, Any]:
    """JSON-safe data for the database; from_data(to_data(d)) == d."""
    return definition.model_dump(mode="json", by_alias=True)


def _variant_data(variant: Variant, *, named: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": variant.name} if named else {}
    if variant.subject is not None:
        data["subject"] = variant.subject
    data["body"] = variant.body
    if variant.html is not None:
        data["html"] = variant.html
    if variant.weight != 1.0 and named:
        data["weight"] = variant.weight
    return data


def _step_data(step: Step) -> dict[str, Any]:
    data: dict[str, Any] = {"type": step.type.value}
    if step.delay != Delay(0, DelayUnit.DAYS):
        data["delay"] = format_delay(step.delay)
    if step.when != StepCondition.ALWAYS:
        data["when"] = step.when.value
    if step.thread:
        data["thread"] = True
    if step.quote_previous:
        data["quote_previous"] = True
    if step.fallbacks:
        data["fallbacks"] = dict(step.fallbacks)
    if step.attach_demo:
        data["attach_demo"] = True
    only = step.variants[0] if len(step.variants) == 1 else None
    if only is not None and only.name == DEFAULT_VARIANT and only.weight == 1.0:
        data.update(_variant_data(only, named=False))
    else:
        data["variants"] = [_variant_data(variant, named=True) for variant in step.variants]
    return data


def _audience_data(audience: Audience) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if audience.list_name is not None:
        data["list"] = audience.list_name
    if audience.filter:
        data["filter"] = {
            key: values[0] if len(values) == 1 else list(values) for key, values in audience.filter.items()
        }
    return data


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, short word lists inline ([mon, tue]), no anchors/aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # YAML reads \r, NEL and the Unicode separators as line breaks and normalizes them: only
    # double quotes (which escape them) keep such text exactly as it was.
    if any(char in value for char in "\r\x85\u2028\u2029"):
        style: str | None = '"'
    else:
        style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    inline = all(isinstance(item, str) and "\n" not in item and len(item) < 40 for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)


def to_yaml(definition: Definition) -> str:
    """The designer's export; parse_definition(to_yaml(d)) == d."""
    data: dict[str, Any] = {
        "name": definition.name,
        "audience": _audience_data(definition.audience),
        "mailboxes": list(definition.mailboxes),
        "schedule": {
            "timezone": definition.schedule.timezone,
            "window": format_window(definition.schedule.window),
            "days": list(definition.schedule.days),
        },
        "stop_on": [stop.value for stop in definition.stop_on],
        "tracking": {"opens": definition.tracking.opens, "clicks": definition.tracking.clicks},
    }
    if definition.schedule.fallback_timezone != "UTC":
        data["schedule"]["fallback_timezone"] = definition.schedule.fallback_timezone
    if definition.schedule.optimize_send_time:
        data["schedule"]["optimize_send_time"] = True
    if definition.schedule.max_lateness is not None:
        data["schedule"]["max_lateness"] = format_delay(definition.schedule.max_lateness)
    if definition.schedule.holidays is not True:
        holidays = definition.schedule.holidays
        data["schedule"]["holidays"] = holidays if isinstance(holidays, bool) else list(holidays)
    if definition.experiment != Experiment():
        data["experiment"] = definition.experiment.model_dump(mode="json", exclude_defaults=True)
    if definition.postal_address is not None:
        data["postal_address"] = definition.postal_address
    if definition.fallbacks:
        data["fallbacks"] = dict(definition.fallbacks)
    if definition.in_doubt is not InDoubtPolicy.HOLD:
        data["in_doubt"] = definition.in_doubt.value
    data["steps"] = [_step_data(step) for step in definition.steps]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)


def template_locations(definition: Definition) -> Iterator[tuple[Loc, str, bool]]:
    """Every template in the definition: (data path, source, is_html)."""
    for i, step in enumerate(definition.steps):
        for j, variant in enumerate(step.variants):
            for key in TEMPLATE_KEYS:
                source = getattr(variant, key)
                if source is not None:
                    yield ("steps", i, "variants", j, key), source, key == "html"


def _covered(definition: Definition, loc: Loc) -> set[str]:
    """Fields a template at `loc` never lacks: the generator's, and the campaign's and its step's fallbacks."""
    step = definition.steps[int(loc[1])]
    return set(GENERATED_FIELDS) | set(definition.fallbacks) | set(step.fallbacks)


def template_fields(definition: Definition) -> set[str]:
    """Fields the templates need from each prospect: used without a default and not covered by fallbacks."""
    needed: set[str] = set()
    for loc, source, _html in template_locations(definition):
        needed |= fields_without_default(source) - _covered(definition, loc)
    return needed


def missing_fields(definition: Definition, available_fields: set[str], source: str | None = None) -> list[Problem]:
    """Templates that use a field no prospect has, without a default. Pass the YAML `source` to get lines."""
    root = _load(source)[0] if source is not None else None
    problems = []
    for loc, template, _html in template_locations(definition):
        for field in sorted(fields_without_default(template) - available_fields - _covered(definition, loc)):
            message = (
                f'uses "{field}", which no prospect has; add it to the prospects, '
                f"write {{{{ {field} | default('…') }}}}, or add it to fallbacks"
            )
            problems.append(_problem(root, _Issue(loc, message)))
    return problems


@cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _check_zone(value: str) -> str:
    name = value.strip()
    if name in _zone_names() or name == "UTC":
        return name
    by_lower = {zone.lower(): zone for zone in _zone_names()}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    hint = f' (did you mean "{by_lower[close[0]]}"?)' if close else ""
    raise ValueError(f'"{value}" is not a time zone{hint}; use "prospect" or an IANA name like "Europe/Berlin"')
