"""The campaign's future, touch by touch: which day and hour each one would go out, by the worker's own rules.

Nothing here re-implements a rule. A draft starts from what launch would enroll, computed with launch's
own functions (first_touch_due, spread_over_mailboxes) without writing anything; a running campaign starts
from its rows. Then the send tick is replayed on a clock: due enrollments become touches (planning), each
touch is kept in its prospect's sending window (outbox.roll_windows: a touch whose window closed is due at
the start of the next one), each mailbox claims the due touches whose window is open, in (due, id) order,
up to what its limits allow (daily limit from outreach.ramp, per-minute, both counted over rolling windows
as outreach.outbox counts them), a claimed touch that waited longer than the campaign's maximum lateness
is held for the operator (outreach.lateness), and a sent touch schedules the next step with
`campaigns.step_due` — the same function, arguments and jitter seed the worker uses. Ticks come every
`send` job interval (worker.JOBS), but only the ticks where something can happen are visited, so a year
of a 100,000-prospect campaign replays in seconds.

What cannot be known is assumed, and every result says so (`ASSUMPTIONS`): conditions such as no_reply
are met, nobody replies, bounces or unsubscribes, tasks are done when they appear, the worker never stops.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.enums import CampaignState, EnrollmentState, MailboxState, StepType, TouchState
from db.models import CampaignMailbox, CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect, SequenceStep
from outreach.campaigns import (
    CampaignManager,
    audience_query,
    definition_of,
    first_touch_due,
    spread_over_mailboxes,
    step_due,
)
from outreach.errors import OutreachError
from outreach.lateness import late_reason, max_lateness
from outreach.mailboxes import committed_load
from outreach.outbox import IN_FLIGHT
from outreach.ramp import Ramp, daily_limit_on, effective_daily_limit, ramp_day, ramp_of
from outreach.schedule import SendRules, touch_jitter_key
from outreach.sequence import PROSPECT_ZONE, Definition
from outreach.suppression import SuppressionIndex
from outreach.worker import JOBS

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366
SEND_TICK = timedelta(seconds=next(job.every_seconds for job in JOBS if job.id == "send"))
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
_NEVER = datetime.max.replace(tzinfo=UTC)  # no window looked up yet
_EPSILON = timedelta(microseconds=1)  # a send stops counting strictly after its window has passed
PENDING_TOUCHES = (TouchState.QUEUED, TouchState.RETRY_WAIT, *IN_FLIGHT)
ASSUMPTIONS = (
    "every step's condition (no_reply, no_open, opened, clicked) is assumed met",
    "nobody replies, bounces or unsubscribes, so no sequence stops early",
    "LinkedIn and call tasks are assumed done as soon as they are due",
    "the worker runs without a break, its send tick every {tick} seconds",
    "other campaigns' future touches through the same mailboxes are not simulated; their sends so far count",
    "a touch that waits in its mailbox's queue longer than the maximum lateness is held for the operator, "
    "as the worker holds it; its prospect's later steps then count as unscheduled",
)


class SimulationError(OutreachError):
    """The campaign cannot be simulated as asked."""


# --- input ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxState:
    """A mailbox as the limits see it at the start: its settings and its sends in the last 24 hours."""

    id: int
    name: str
    daily_limit: int
    per_minute: int
    ramp: Ramp | None
    active: bool
    recent_sends: tuple[datetime, ...] = ()  # sent (or in flight) within the last day, oldest first
    last_send: datetime | None = None  # its latest send ever (lateness.late_reason looks at it)


@dataclass(frozen=True)
class ProspectState:
    """One enrollment: where its sequence stands, and a touch already queued for it (step, due) if any."""

    enrollment_id: int
    prospect_id: int
    mailbox_id: int | None
    timezone: str | None
    country: str | None
    next_step: int  # the next step not yet sent or done
    next_due: datetime | None  # due and not yet planned into a touch
    queued_due: datetime | None = None  # a planned touch for `next_step` waiting to go out
    queued_order: int = 0  # its place among queued touches (the log's id order)
    queued_closes: datetime | None = None  # the end of the window the claim placed it in, if placed


@dataclass(frozen=True)
class SimulationInput:
    campaign_id: int
    campaign: str
    state: str
    definition: Definition
    start: datetime
    boxes: tuple[BoxState, ...]
    prospects: tuple[ProspectState, ...]
    # What the planner does to a follow-up's due time after step_due (schedule.optimize_send_time moves it to
    # the learned best hour): the manager's own method, or None to leave it as is.
    at_best_hour: Callable[[datetime, SendRules, str], datetime] | None = None


# --- output --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedTouch:
    prospect_id: int
    step: int  # from 1
    mailbox: str | None  # None for a LinkedIn or call task
    at: datetime


@dataclass(frozen=True)
class DayCount:
    date: date
    count: int
    by_mailbox: dict[str, int]
    by_step: dict[int, int]
    tasks: int


@dataclass(frozen=True)
class Simulation:
    campaign: str
    state: str
    start: datetime
    days: int
    timezone: str  # the zone days and hours are reported in
    touches: int  # within the horizon
    unscheduled: int  # touches that would go out after the horizon (or never: a paused mailbox, a held touch)
    held_late: int  # touches the worker would hold for the operator: they waited longer than max_lateness
    deferred: int  # claims the worker would put back because the prospect's window was closed at the time
    finishes_on: date | None
    finishes_in_days: int | None
    per_day: list[DayCount]
    per_mailbox: dict[str, int]
    per_step: dict[int, int]
    per_hour: dict[int, int]  # hour of day in `timezone`
    per_local_hour: dict[int, int]  # hour of day in each prospect's own zone
    assumptions: list[str]
    sends: list[SimulatedTouch] = field(repr=False, default_factory=list)
    claim_ticks: list[datetime] = field(repr=False, default_factory=list)  # ticks where a mailbox claimed touches

    @property
    def summary(self) -> str:
        if self.touches == 0 and self.unscheduled == 0:
            return "nothing left to send"
        if self.finishes_in_days is None:
            held = f" ({self.held_late:,} held for being too late)" if self.held_late else ""
            return f"{self.unscheduled:,} touches still to go after {self.days} days{held}"
        if self.finishes_in_days == 0:
            return "finishes today"
        return f"finishes in {self.finishes_in_days} day{'s' if self.finishes_in_days != 1 else ''}"

    def report(self) -> str:
        """The human version of `as_dict`: a line per day, the mailboxes, the assumptions."""
        lines = [
            f"{self.campaign} ({self.state}), from {self.start:%Y-%m-%d %H:%M} UTC for {self.days} days: "
            f"{self.touches:,} touches, {self.summary}"
            + (f" (on {self.finishes_on.isoformat()})" if self.finishes_on else ""),
            f"day ({self.timezone})  touches  by mailbox",
        ]
        for day in self.per_day:
            boxes = ", ".join(f"{name} {n}" for name, n in day.by_mailbox.items())
            tasks = f", tasks {day.tasks}" if day.tasks else ""
            lines.append(f"{day.date.isoformat()}  {day.count:>7}  {boxes}{tasks}")
        lines.append("per mailbox: " + (", ".join(f"{k} {v:,}" for k, v in self.per_mailbox.items()) or "none"))
        if self.held_late:
            lines.append(f"held for the operator (waited longer than the maximum lateness): {self.held_late:,}")
        lines += [f"assumes: {a}" for a in self.assumptions]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "state": self.state,
            "start": self.start.isoformat(),
            "days": self.days,
            "timezone": self.timezone,
            "finishes_on": self.finishes_on.isoformat() if self.finishes_on else None,
            "finishes_in_days": self.finishes_in_days,
            "summary": self.summary,
            "touches": self.touches,
            "unscheduled": self.unscheduled,
            "held_late": self.held_late,
            "deferred": self.deferred,
            "per_day": [
                {
                    "date": d.date.isoformat(),
                    "count": d.count,
                    "by_mailbox": d.by_mailbox,
                    "by_step": {str(k): v for k, v in d.by_step.items()},
                    "tasks": d.tasks,
                }
                for d in self.per_day
            ],
            "per_mailbox": self.per_mailbox,
            "per_step": {str(k): v for k, v in self.per_step.items()},
            "per_hour": {f"{h:02d}": n for h, n in self.per_hour.items()},
            "per_local_hour": {f"{h:02d}": n for h, n in self.per_local_hour.items()},
            "assumptions": self.assumptions,
        }


# --- the replay (pure) ---------------------------------------------------------------------------


@dataclass
class _Group:
    """One mailbox's due touches of one prospect group: the same send rules, so the same windows.

    The claim meets a touch in its prospect's window only (outbox.roll_windows): a touch due inside the
    window open now keeps its due time; one whose window closed while it waited is due at the start of the
    window open now (or next), and they go in the log's id order. So a group is two heaps: `fresh` by
    (due, order), and `waiting`, touches already rolled, by order alone — a window's roll moves nothing.
    """

    rules: SendRules
    fresh: list[tuple[datetime, int, int]] = field(default_factory=list)  # (due, order, prospect index)
    waiting: list[tuple[int, int]] = field(default_factory=list)  # (order, prospect index), due at the window start
    since: datetime = _NEVER  # the window below is window_around(m) for since <= m < end
    start: datetime = _NEVER
    end: datetime = _NEVER

    def window(self, moment: datetime) -> tuple[datetime, datetime]:
        """rules.window_around(moment), computed once per window as the claim's clock moves on."""
        if not self.since <= moment < self.end:
            self.start, self.end = self.rules.window_around(moment)
            self.since = moment
        return self.start, self.end

    def _peek(self, moment: datetime) -> tuple[datetime, datetime]:
        if self.since <= moment < self.end:
            return self.start, self.end
        return self.rules.window_around(moment)

    def head(self, now: datetime) -> tuple[datetime, int] | None:
        """The claim key (due, order) of the first touch the claim may take now, or None (window closed)."""
        start, _end = self.window(now)
        if start > now:
            return None
        fresh = self.fresh
        while fresh and fresh[0][0] < start:  # its window closed before this one: due at this one's start
            _due, order, who = heapq.heappop(fresh)
            heapq.heappush(self.waiting, (order, who))
        if self.waiting:
            return start, self.waiting[0][0]
        if fresh and fresh[0][0] <= now:
            return fresh[0][0], fresh[0][1]
        return None

    def pop(self) -> int:
        """Take the touch `head` returned; its prospect index."""
        if self.waiting:
            return heapq.heappop(self.waiting)[1]
        return heapq.heappop(self.fresh)[2]

    def earliest(self, now: datetime) -> datetime | None:
        """The first moment from `now` at which one of these touches is in its window and due."""
        if self.waiting:
            moment = now
        elif self.fresh:
            moment = max(now, self.fresh[0][0])
        else:
            return None
        start, _end = self._peek(moment)
        return max(moment, start)


@dataclass
class _Box:
    """A mailbox's due touches (by prospect group) and its send log, the two things its limits look at."""

    state: BoxState
    groups: dict[int, _Group] = field(default_factory=dict)  # by id() of the group's SendRules
    # Touches the claim leaves unplaced (due longer ago than the maximum lateness when first placed): claimed
    # whatever the window, as before, so the send path holds them (or defers them into their window).
    unplaced: list[tuple[datetime, int, int]] = field(default_factory=list)  # (due, order, prospect index)
    log: list[datetime] = field(default_factory=list)  # send times, oldest first
    version: int = 0
    ready_at: datetime | None = None  # the moment queued in _Replay.ready for this version
    # The limits allow nothing before ready_at. They only loosen as time passes (sends age out of the rolling
    # windows, a ramp rises), so a touch that arrives earlier than ready_at cannot go out before it either.
    blocked: bool = False
    last_send: datetime | None = None

    def used(self, since: datetime) -> int:
        """Sends counted in the window starting at `since` (sent_at >= since, as outbox._used counts)."""
        return len(self.log) - bisect_left(self.log, since)

    def capacity(self, now: datetime) -> int:
        """outbox.mailbox_capacity for this moment: min(per-minute left, today's ramped daily limit left)."""
        if not self.state.active:
            return 0
        minute = self.state.per_minute - self.used(now - MINUTE)
        if minute <= 0:
            return 0
        daily = daily_limit_on(self.state.daily_limit, self.state.ramp, ramp_day(now))
        return max(0, min(minute, daily - self.used(now - DAY)))

    def earliest(self, now: datetime) -> datetime | None:
        """The first moment from `now` at which some touch may be claimed, limits aside."""
        found = max(now, self.unplaced[0][0]) if self.unplaced else None
        for group in self.groups.values():
            moment = group.earliest(now)
            if moment is not None and (found is None or moment < found):
                found = moment
        return found

    def frees_at(self, moment: datetime) -> datetime | None:
        """The earliest moment after `moment` at which a binding limit may let one more through: the send that
        ages out of its rolling window, or the next UTC day of a ramp. None: never (a zero limit)."""
        waits = []
        minute_used = self.used(moment - MINUTE)
        if minute_used >= self.state.per_minute:
            if self.state.per_minute <= 0:
                return None
            oldest = len(self.log) - minute_used
            waits.append(self.log[oldest + minute_used - self.state.per_minute] + MINUTE + _EPSILON)
        day_used = self.used(moment - DAY)
        daily = daily_limit_on(self.state.daily_limit, self.state.ramp, ramp_day(moment))
        if day_used >= daily:
            options = []
            if daily > 0:
                oldest = len(self.log) - day_used
                options.append(self.log[oldest + day_used - daily] + DAY + _EPSILON)
            if self.state.ramp is not None and daily < self.state.daily_limit:
                options.append(datetime.combine(ramp_day(moment) + DAY, datetime.min.time(), UTC))
            if not options:
                return None
            waits.append(min(options))
        return max(waits) if waits else moment


class _Replay:
    """The send tick, replayed: plan, place in windows, claim within limits, send, schedule the next step."""

    def __init__(self, inp: SimulationInput, days: int) -> None:
        self.inp = inp
        self.steps = inp.definition.steps
        self.start = inp.start
        self.end = inp.start + timedelta(days=days)
        self.boxes = [_Box(b) for b in sorted(inp.boxes, key=lambda b: b.id)]
        self.box_index = {b.state.id: i for i, b in enumerate(self.boxes)}
        for box in self.boxes:
            box.log = sorted(box.state.recent_sends)
            box.last_send = box.state.last_send
        self.rules = self._rules()
        self.next_step = [p.next_step for p in inp.prospects]
        self.waiting: list[tuple[datetime, int, int]] = []  # (due, enrollment id, prospect index)
        self.ready: list[tuple[datetime, int, int]] = []  # (when, box index, version)
        self.order = 1 + max((p.queued_order for p in inp.prospects), default=0)
        self.sends: list[tuple[datetime, int, int, int]] = []  # (at, prospect index, step index, box index or -1)
        self.claim_ticks: list[datetime] = []
        self.max_late = max_lateness(inp.definition.schedule.max_lateness)
        self.held = 0
        self.deferred = 0  # claimed touches put back because the prospect's window was closed (a write each)
        self.windows: dict[int, tuple[datetime, datetime]] = {}  # id(rules) -> next_allowed's last answer

    def _rules(self) -> list[SendRules]:
        cache: dict[tuple[str | None, str | None], SendRules] = {}
        schedule = self.inp.definition.schedule
        out = []
        for p in self.inp.prospects:
            key = (p.timezone, p.country)
            if key not in cache:
                cache[key] = schedule.rules_for(p.timezone, p.country)
            out.append(cache[key])
        return out

    # grid: the worker's send ticks, every SEND_TICK from the start
    def _tick_at_or_after(self, moment: datetime) -> datetime:
        if moment <= self.start:
            return self.start
        ticks = -(-(moment - self.start) // SEND_TICK)  # ceiling
        return self.start + SEND_TICK * ticks

    def _box_ready(self, index: int, now: datetime) -> None:
        """(Re)compute when this mailbox can next send something, and queue that moment."""
        box = self.boxes[index]
        box.version += 1
        box.ready_at = None
        first = box.earliest(now) if box.state.active else None
        if first is None:
            return
        moment: datetime | None = self._tick_at_or_after(first)
        box.blocked = False
        while moment is not None and moment < self.end and box.capacity(moment) <= 0:
            box.blocked = True
            frees = box.frees_at(moment)  # each round moves past one binding limit
            moment = self._tick_at_or_after(frees) if frees is not None else None
        if moment is not None:
            box.ready_at = moment
            heapq.heappush(self.ready, (moment, index, box.version))

    def _group(self, box: _Box, who: int) -> _Group:
        rules = self.rules[who]
        group = box.groups.get(id(rules))
        if group is None:
            group = box.groups[id(rules)] = _Group(rules)
        return group

    def _enqueue(self, index: int, due: datetime, order: int, now: datetime, anchor: datetime | None = None) -> None:
        """A touch joins its mailbox's queue at `now`; the claim places it in its window (outbox.roll_windows),
        unless it has waited longer than the maximum lateness since `anchor` (its due time, or the end of the
        window it was placed in)."""
        box_index = self.box_index.get(self.inp.prospects[index].mailbox_id or -1)
        if box_index is None:  # no mailbox: the worker could never send it
            return
        box = self.boxes[box_index]
        moment = max(now, due)
        if due <= now and now - max(anchor or due, due) > self.max_late:
            heapq.heappush(box.unplaced, (due, order, index))
        else:
            group = self._group(box, index)
            heapq.heappush(group.fresh, (due, order, index))
            if box.ready_at is not None and (box.blocked or moment >= box.ready_at):
                return  # it cannot go before the moment already queued
            moment = max(moment, group._peek(moment)[0])
        if box.ready_at is None or (not box.blocked and self._tick_at_or_after(moment) < box.ready_at):
            self._box_ready(box_index, now)

    def _plan(self, now: datetime) -> None:
        """Due enrollments become touches: emails join their mailbox's queue, tasks are done at once."""
        while self.waiting and self.waiting[0][0] <= now:
            due, _eid, index = heapq.heappop(self.waiting)
            step = self.next_step[index]
            if self.steps[step].type is StepType.EMAIL:
                self._enqueue(index, due, self.order, now)
                self.order += 1
            else:
                self.sends.append((now, index, step, -1))
                self._advance(index, now)

    def _advance(self, index: int, sent_at: datetime) -> None:
        """The touch went out: the next step is due by campaigns.step_due, from this send time."""
        self.next_step[index] += 1
        step = self.next_step[index]
        if step >= len(self.steps):
            return
        p, rules = self.inp.prospects[index], self.rules[index]
        due = step_due(self.inp.definition, step, rules, self.inp.campaign_id, p.prospect_id, sent_at)
        if self.inp.at_best_hour is not None:
            due = self.inp.at_best_hour(due, rules, touch_jitter_key(self.inp.campaign_id, p.prospect_id, step))
        heapq.heappush(self.waiting, (due, p.enrollment_id, index))

    def _allowed(self, rules: SendRules, now: datetime) -> tuple[bool, datetime, datetime]:
        """(rules.is_allowed(now), *rules.next_allowed(now)), from one next_allowed call per window.

        The answer of next_allowed stays right for any later moment before that window's end, and the
        replay's clock only moves forward, so each prospect group asks once per window, not once per touch.
        """
        cached = self.windows.get(id(rules))
        if cached is None or now >= cached[1]:
            cached = self.windows[id(rules)] = rules.next_allowed(now)
        first, end = cached
        return now >= first, max(now, first), end

    def _send(self, box: _Box, index: int, who: int, now: datetime) -> None:
        box.log.append(now)
        box.last_send = now
        self.sends.append((now, who, self.next_step[who], index))
        self._advance(who, now)

    def _claim_box(self, index: int, now: datetime) -> int:
        """outbox.claim_due for one mailbox: up to its capacity, in (due, log id) order, only touches in their
        window (and unplaced ones); then the send path's checks, in its order. Returns how many it claimed."""
        box = self.boxes[index]
        take = box.capacity(now)
        taken = 0
        # Each group's first claimable touch; only the group a touch is taken from changes during the claim
        # (follow-ups wait for planning, and a deferral is due in a later window).
        heads = [(group.head(now), group) for group in box.groups.values()] if take > 0 else []
        while taken < take:
            best: tuple[datetime, int] | None = None
            chosen = -1
            if box.unplaced and box.unplaced[0][0] <= now:
                best = box.unplaced[0][0], box.unplaced[0][1]
            for n, (key, _group) in enumerate(heads):
                if key is not None and (best is None or key < best):
                    best, chosen = key, n
            if best is None:
                break
            taken += 1
            due = best[0]
            if chosen < 0:
                _due, _order, who = heapq.heappop(box.unplaced)
            else:
                group = heads[chosen][1]
                who = group.pop()
                heads[chosen] = group.head(now), group
            if late_reason(due, now, self.max_late, box.last_send) is not None:  # the send path's checks, in order
                self.held += 1  # waits for the operator; its sequence goes no further by itself
                continue
            if chosen >= 0:  # placed in its window, which is open now
                self._send(box, index, who, now)
                continue
            allowed, start, _end = self._allowed(self.rules[who], now)
            if allowed:
                self._send(box, index, who, now)
            else:  # deferred into its next window, which the claim then keeps it in
                self.deferred += 1
                heapq.heappush(self._group(box, who).fresh, (start, best[1], who))
        return taken

    def _claim_and_send(self, now: datetime) -> None:
        ready = set()
        while self.ready and self.ready[0][0] <= now:
            _when, index, version = heapq.heappop(self.ready)
            if version == self.boxes[index].version:
                ready.add(index)
        for index in sorted(ready):  # claim_due takes the mailboxes in id order
            if self._claim_box(index, now) and (not self.claim_ticks or self.claim_ticks[-1] != now):
                self.claim_ticks.append(now)
            self._box_ready(index, now)  # the main loop moves on by at least one tick

    def run(self) -> None:
        for index, p in enumerate(self.inp.prospects):
            if p.next_step >= len(self.steps):
                continue
            if p.queued_due is not None:
                if self.steps[p.next_step].type is StepType.EMAIL:
                    self._enqueue(index, p.queued_due, p.queued_order, self.start, p.queued_closes)
                else:  # an open task: done when due (or now, if it is overdue)
                    heapq.heappush(self.waiting, (p.queued_due, p.enrollment_id, index))
            elif p.next_due is not None:
                heapq.heappush(self.waiting, (p.next_due, p.enrollment_id, index))
        now = self.start
        while now < self.end:
            self._plan(now)
            self._claim_and_send(now)
            candidates = []
            if self.waiting:
                candidates.append(self.waiting[0][0])
            while self.ready and self.ready[0][2] != self.boxes[self.ready[0][1]].version:
                heapq.heappop(self.ready)  # stale
            if self.ready:
                candidates.append(self.ready[0][0])
            if not candidates:
                break
            now = max(now + SEND_TICK, self._tick_at_or_after(min(candidates)))


def replay(inp: SimulationInput, days: int = DEFAULT_DAYS) -> Simulation:
    """Run the send tick forward `days` days from `inp.start` and count what goes out when (pure)."""
    if not 1 <= days <= MAX_DAYS:
        raise SimulationError(f"--days: {days} is out of range; simulate 1 to {MAX_DAYS} days")
    run = _Replay(inp, days)
    run.run()
    return _summarize(inp, run, days)


def _report_zone(definition: Definition) -> ZoneInfo:
    schedule = definition.schedule
    return ZoneInfo(schedule.fallback_timezone if schedule.timezone == PROSPECT_ZONE else schedule.timezone)


def _summarize(inp: SimulationInput, run: _Replay, days: int) -> Simulation:
    zone = _report_zone(inp.definition)
    names = [b.state.name for b in run.boxes]
    per_day: dict[date, tuple[Counter[str], Counter[int], list[int]]] = {}
    per_hour: Counter[int] = Counter()
    per_local_hour: Counter[int] = Counter()
    sends = []
    current: datetime | None = None  # sends come in time order: a tick's sends share its conversions
    local_hours: dict[ZoneInfo, int] = {}
    for at, who, step, box in run.sends:
        if at != current:
            current, local_hours = at, {}
            local = at.astimezone(zone)
            hour = local.hour
            day = local.date()
            if day not in per_day:
                per_day[day] = (Counter(), Counter(), [0])
            mailboxes, steps, tasks = per_day[day]
        if box >= 0:
            mailboxes[names[box]] += 1
        else:
            tasks[0] += 1
        steps[step + 1] += 1
        per_hour[hour] += 1
        tz = run.rules[who].tz
        local_hour = local_hours.get(tz)
        if local_hour is None:
            local_hour = local_hours[tz] = at.astimezone(tz).hour
        per_local_hour[local_hour] += 1
        sends.append(SimulatedTouch(inp.prospects[who].prospect_id, step + 1, names[box] if box >= 0 else None, at))
    unscheduled = sum(len(run.steps) - step for step in run.next_step)
    last = max((at for at, *_ in run.sends), default=None)
    finishes_on = last.astimezone(zone).date() if last is not None and unscheduled == 0 else None
    start_day = inp.start.astimezone(zone).date()
    rows = [
        DayCount(day, sum(m.values()) + t[0], dict(sorted(m.items())), dict(sorted(s.items())), t[0])
        for day, (m, s, t) in sorted(per_day.items())
    ]
    per_mailbox = Counter({name: 0 for name in names})
    for row in rows:
        per_mailbox.update(row.by_mailbox)
    tick = int(SEND_TICK.total_seconds())
    return Simulation(
        campaign=inp.campaign, state=inp.state, start=inp.start, days=days, timezone=str(zone),
        touches=len(run.sends), unscheduled=unscheduled, held_late=run.held, deferred=run.deferred,
        finishes_on=finishes_on,
        finishes_in_days=(finishes_on - start_day).days if finishes_on else None, per_day=rows,
        per_mailbox=dict(per_mailbox), per_step=dict(sorted(Counter(s.step for s in sends).items())),
        per_hour=dict(sorted(per_hour.items())), per_local_hour=dict(sorted(per_local_hour.items())),
        assumptions=[a.format(tick=tick) for a in ASSUMPTIONS], sends=sends, claim_ticks=run.claim_ticks,
    )  # fmt: skip


# --- reading the database ------------------------------------------------------------------------


def _boxes(session: Session, ids: Sequence[int], start: datetime) -> tuple[BoxState, ...]:
    """Each mailbox's settings, and its sends (any campaign) still inside the rolling day at the start."""
    if not ids:
        return ()
    recent: dict[int, list[datetime]] = {i: [] for i in ids}
    # As outbox._used counts: sent and bounced by send time, in doubt by the end of its lease, in flight now.
    counted_at = case(
        (CommunicationLog.state == TouchState.IN_DOUBT,
         func.coalesce(CommunicationLog.lease_expires_at, CommunicationLog.updated_at)),
        else_=CommunicationLog.sent_at,
    )  # fmt: skip
    for box_id, at in session.execute(
        select(CommunicationLog.mailbox_id, counted_at).where(
            CommunicationLog.mailbox_id.in_(ids),
            CommunicationLog.state.in_((TouchState.SENT, TouchState.BOUNCED, TouchState.IN_DOUBT)),
            counted_at >= start - DAY,
        )
    ):
        recent[box_id].append(at)
    for box_id, count in session.execute(
        select(CommunicationLog.mailbox_id, func.count())
        .where(CommunicationLog.mailbox_id.in_(ids), CommunicationLog.state.in_(IN_FLIGHT))
        .group_by(CommunicationLog.mailbox_id)
    ):
        recent[box_id] += [start] * count  # in flight: counted now, as the worker counts them
    last = dict(
        session.execute(
            select(CommunicationLog.mailbox_id, func.max(CommunicationLog.sent_at))
            .where(CommunicationLog.mailbox_id.in_(ids))
            .group_by(CommunicationLog.mailbox_id)
        ).all()
    )
    out = []
    for box in session.scalars(select(Mailbox).where(Mailbox.id.in_(ids)).order_by(Mailbox.id)):
        out.append(
            BoxState(
                box.id, box.name, box.daily_limit, box.per_minute, ramp_of(box),
                active=box.state.value == "active", recent_sends=tuple(sorted(recent[box.id])),
                last_send=last.get(box.id),
            )
        )  # fmt: skip
    return tuple(out)


def _prospects(session: Session, campaign: OutreachCampaign) -> tuple[ProspectState, ...]:
    """Active enrollments with where their sequence stands, and the touch each has queued (if any)."""
    queued: dict[int, tuple[int, datetime, int, datetime | None]] = {}
    for enrollment_id, position, due, touch_id, closes in session.execute(
        select(
            CommunicationLog.enrollment_id,
            SequenceStep.position,
            CommunicationLog.due_at,
            CommunicationLog.id,
            CommunicationLog.window_closes_at,
        )
        .join(SequenceStep, SequenceStep.id == CommunicationLog.step_id)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .where(
            Enrollment.campaign_id == campaign.id,
            Enrollment.state == EnrollmentState.ACTIVE,
            CommunicationLog.state.in_(PENDING_TOUCHES),
        )
    ):
        queued[enrollment_id] = (position, due, touch_id, closes)
    rows = session.execute(
        select(
            Enrollment.id, Enrollment.prospect_id, Enrollment.mailbox_id, Enrollment.next_step,
            Enrollment.next_due_at, Prospect.timezone, Prospect.country,
        )
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .where(Enrollment.campaign_id == campaign.id, Enrollment.state == EnrollmentState.ACTIVE)
        .order_by(Enrollment.id)
    )  # fmt: skip
    out = []
    for enrollment_id, prospect_id, mailbox_id, next_step, next_due, tz, country in rows:
        touch = queued.get(enrollment_id)
        if touch is not None:  # planning moved next_step past the queued touch's step
            position, due, touch_id, closes = touch
            out.append(
                ProspectState(
                    enrollment_id, prospect_id, mailbox_id, tz, country, position, None, due, touch_id, closes
                )
            )
        else:
            out.append(ProspectState(enrollment_id, prospect_id, mailbox_id, tz, country, next_step, next_due))
    return tuple(out)


def load_state(session: Session, campaign: OutreachCampaign, start: datetime) -> SimulationInput:
    """The campaign as the worker would find it at `start`: its enrollments, queued touches and mailboxes."""
    prospects = _prospects(session, campaign)
    named = session.scalars(select(CampaignMailbox.mailbox_id).where(CampaignMailbox.campaign_id == campaign.id))
    ids = set(named) | {p.mailbox_id for p in prospects if p.mailbox_id}
    definition = definition_of(campaign)
    manager = CampaignManager(session, secret_key="")  # only its planner's send-time step is used

    def at_best_hour(due: datetime, rules: SendRules, key: str) -> datetime:
        return manager._at_best_hour(due, definition, rules, key)  # what _schedule_next applies after step_due

    return SimulationInput(
        campaign.id, campaign.name, str(campaign.state), definition, start, _boxes(session, sorted(ids), start),
        prospects, at_best_hour if definition.schedule.optimize_send_time else None,
    )  # fmt: skip


def _draft_state(session: Session, campaign: OutreachCampaign, start: datetime, secret_key: str) -> SimulationInput:
    """What launch would enroll, computed with launch's own steps and nothing written: the audience minus the
    enrolled and the suppressed (in launch's order), each first due time from `first_touch_due` and the
    best-hour step, the mailboxes from `spread_over_mailboxes` over the same limits and committed loads.

    Only what the schedule needs is checked (an active mailbox, someone to enroll); the launch check says
    the rest. A savepoint is rolled back: `sending_mailboxes` may add the capture mailbox.
    """
    definition = definition_of(campaign)
    manager = CampaignManager(session, secret_key=secret_key)
    savepoint = session.begin_nested()
    try:
        boxes = [b for b in manager.sending_mailboxes(campaign) if b.state is MailboxState.ACTIVE]
        if not boxes:
            raise SimulationError(f"{campaign.name} cannot be simulated before it can launch: no active mailbox")
        rows = session.execute(  # the rows (and order) check_launch reads, without loading whole prospects
            select(Prospect.id, Prospect.timezone, Prospect.country, Prospect.email_normalized).where(
                Prospect.id.in_(audience_query(definition))
            )
        ).all()
        enrolled = set(session.scalars(select(Enrollment.prospect_id).where(Enrollment.campaign_id == campaign.id)))
        blocked = SuppressionIndex.load(session, secret_key).mask([row[3] for row in rows])
        todo = [row for row, out in zip(rows, blocked, strict=True) if not out and row[0] not in enrolled]
        if not todo:
            raise SimulationError(f"{campaign.name} cannot be simulated before it can launch: nobody to enroll")
        slots = spread_over_mailboxes(
            len(todo),
            [max(effective_daily_limit(b, start), 1) for b in boxes],
            committed_load(session, [b.id for b in boxes], start),
        )
        box_ids = [b.id for b in boxes]
        schedule = definition.schedule
        rules_of: dict[tuple[str | None, str | None], SendRules] = {}  # rules_for, asked once per zone and country
        prospects = []
        for n, (prospect_id, tz, country, _email) in enumerate(todo):  # as CampaignManager._first_due
            rules = rules_of.get((tz, country))
            if rules is None:
                rules = rules_of[tz, country] = schedule.rules_for(tz, country)
            due = first_touch_due(definition, rules, campaign.id, prospect_id, start)
            due = manager._at_best_hour(due, definition, rules, touch_jitter_key(campaign.id, prospect_id, 0))
            box_id = box_ids[slots[n]]
            prospects.append(ProspectState(n + 1, prospect_id, box_id, tz, country, 0, due))  # ids in insert order
        named = session.scalars(select(CampaignMailbox.mailbox_id).where(CampaignMailbox.campaign_id == campaign.id))
        states = _boxes(session, sorted(set(named) | {b.id for b in boxes}), start)
    finally:
        savepoint.rollback()
    session.expire(campaign)
    follow_ups = CampaignManager(session, secret_key="")  # only its planner's send-time step is used

    def at_best_hour(due: datetime, rules: SendRules, key: str) -> datetime:
        return follow_ups._at_best_hour(due, definition, rules, key)  # what _schedule_next applies after step_due

    return SimulationInput(
        campaign.id, campaign.name, str(CampaignState.DRAFT), definition, start, states, tuple(prospects),
        at_best_hour if schedule.optimize_send_time else None,
    )  # fmt: skip


def simulate(
    session: Session, campaign: OutreachCampaign, now: datetime, *, secret_key: str, days: int = DEFAULT_DAYS
) -> Simulation:
    """What the worker would send, when, for this campaign: a draft as if launched now, a running one from now.

    The session is left as it was found (a draft's enrollments are computed, not written).
    """
    if campaign.state in (CampaignState.FINISHED, CampaignState.ARCHIVED):
        raise SimulationError(f"{campaign.name} is {campaign.state}: nothing is left to send")
    if campaign.state is CampaignState.DRAFT:
        inp = _draft_state(session, campaign, now, secret_key)
    else:
        inp = load_state(session, campaign, now)
    result = replay(inp, days)
    if campaign.state is CampaignState.PAUSED:
        result.assumptions.append("the campaign is paused: simulated as if it were resumed now")
    return result
