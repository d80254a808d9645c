"""Learned send times: which local hours and weekdays get replies (and human opens), and sending then.

The model (pure): a logistic regression (statsmodels GLM Binomial, ridge-penalized) of "this touch got a
reply" on the prospect's LOCAL hour and weekday at the send (24 + 7 effects, additive). The penalty
shrinks every hour and day toward the pooled rate, so a handful of lucky sends at 06:00 cannot make
06:00 "the best hour"; with plenty of data the penalty stops mattering. Intervals are 95% intervals of
the fitted rate (Laplace approximation, outreach.ridge).

It recommends nothing until there is enough data — MIN_SENDS sends and MIN_SUCCESSES replies (or
opens) — and says so; hours with fewer than MIN_HOUR_SENDS sends are never recommended.
The best window is the run of 1 to WINDOW_HOURS consecutive hours whose rate the data supports best (the
highest lower bound); it is "clearly better" only when that bound — widened for the number of runs
compared (Bonferroni) — lies above the pooled rate.

Sending (pure, deterministic): with `schedule.optimize_send_time: true`, a touch due inside an allowed
window moves to the start of the best-rated local hour between its due time and the window's end
(plus a stable jitter inside that hour) — never earlier than due, never outside the window, and not at
all while the model has too little data.

The DB side is small: `send_cells` aggregates sent touches by zone and UTC hour in SQL, and the fit is
stored as JSON in app_settings (refit nightly by the worker).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from scipy.special import expit
from scipy.stats import norm
from sqlalchemy import Connection, and_, case, exists, func, select
from sqlalchemy.orm import Session

from db.enums import EventKind, StepType, TouchState
from db.models import AppSetting, CommunicationLog, EngagementEvent, Enrollment, OutreachCampaign, Prospect
from outreach.ridge import RidgeFit, ridge_logistic
from outreach.schedule import DAY_NAMES, jitter_offset, resolve_zone

MIN_SENDS = 300
MIN_SUCCESSES = 30
MIN_HOUR_SENDS = 30
WINDOW_HOURS = 3
PRIOR_PRECISION = 4.0  # ridge penalty on each hour/day effect: a prior sd of 0.5 on the log-odds
LOOKBACK_DAYS = 180
REFIT_AFTER = timedelta(hours=20)  # "nightly": a worker refits when the stored fit is older than this
SHIFT_JITTER = timedelta(minutes=15)
MODEL_SETTING = "send_time.model"
METRICS = ("reply", "open")
_METRIC_WORDS = {"reply": "replies", "open": "human opens"}


@dataclass(frozen=True)
class Cell:
    """Sends at one local weekday (0 = Monday) and hour, and how many got the outcome."""

    weekday: int
    hour: int
    sent: int
    successes: int


@dataclass(frozen=True)
class Rate:
    key: int  # the hour (0-23) or the weekday (0-6)
    sent: int
    successes: int
    rate: float  # fitted
    low: float
    high: float


@dataclass(frozen=True)
class BestWindow:
    start_hour: int
    end_hour: int  # exclusive; may be 24
    rate: float
    low: float
    high: float
    clearly_better: bool  # its interval lies above the pooled rate

    @property
    def label(self) -> str:
        return f"{self.start_hour:02d}:00-{self.end_hour:02d}:00"


@dataclass(frozen=True)
class SendTimeFit:
    metric: str
    enough: bool
    message: str
    sent: int
    successes: int
    pooled_rate: float
    hours: tuple[Rate, ...] = ()
    weekdays: tuple[Rate, ...] = ()
    grid: tuple[tuple[float, ...], ...] = ()  # [weekday][hour] fitted rate; empty when not enough data
    best: BestWindow | None = None
    fitted_at: datetime | None = None

    def rate_at(self, weekday: int, hour: int) -> float | None:
        return self.grid[weekday][hour] if self.enough and self.grid else None

    def to_data(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "enough": self.enough, "message": self.message, "sent": self.sent,
            "successes": self.successes, "pooled_rate": self.pooled_rate,
            "hours": [list(_rate_tuple(r)) for r in self.hours],
            "weekdays": [list(_rate_tuple(r)) for r in self.weekdays],
            "grid": [list(row) for row in self.grid],
            "best": None if self.best is None else [self.best.start_hour, self.best.end_hour, self.best.rate,
                                                    self.best.low, self.best.high, self.best.clearly_better],
            "fitted_at": self.fitted_at.isoformat() if self.fitted_at else None,
        }  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SendTimeFit:
        best = data.get("best")
        return cls(
            str(data["metric"]), bool(data["enough"]), str(data["message"]), int(data["sent"]),
            int(data["successes"]), float(data["pooled_rate"]),
            tuple(Rate(*_rate_values(r)) for r in data.get("hours") or []),
            tuple(Rate(*_rate_values(r)) for r in data.get("weekdays") or []),
            tuple(tuple(float(x) for x in row) for row in data.get("grid") or []),
            None if not best else BestWindow(int(best[0]), int(best[1]), float(best[2]), float(best[3]),
                                             float(best[4]), bool(best[5])),
            datetime.fromisoformat(data["fitted_at"]).astimezone(UTC) if data.get("fitted_at") else None,
        )  # fmt: skip


def _rate_tuple(r: Rate) -> tuple[int, int, int, float, float, float]:
    return (r.key, r.sent, r.successes, r.rate, r.low, r.high)


def _rate_values(values: Sequence[Any]) -> tuple[int, int, int, float, float, float]:
    key, sent, successes, rate, low, high = values
    return int(key), int(sent), int(successes), float(rate), float(low), float(high)


# --- the model (pure) ------------------------------------------------------------------------------


def _design(weekday: int, hour: int) -> np.ndarray:
    row = np.zeros(1 + 24 + 7)
    row[0], row[1 + hour], row[25 + weekday] = 1.0, 1.0, 1.0
    return row


def fit_send_times(
    cells: Iterable[Cell],
    metric: str,
    now: datetime,
    *,
    min_sends: int = MIN_SENDS,
    min_successes: int = MIN_SUCCESSES,
    min_hour_sends: int = MIN_HOUR_SENDS,
    window_hours: int = WINDOW_HOURS,
) -> SendTimeFit:
    """Fit reply (or open) rate by local hour and weekday; recommend only with enough data."""
    merged: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for cell in cells:
        if cell.sent > 0:
            merged[(cell.weekday, cell.hour)][0] += cell.sent
            merged[(cell.weekday, cell.hour)][1] += min(cell.successes, cell.sent)
    sent = sum(v[0] for v in merged.values())
    successes = sum(v[1] for v in merged.values())
    pooled = successes / sent if sent else 0.0
    words = _METRIC_WORDS.get(metric, metric)
    if sent < min_sends or successes < min_successes:
        message = (
            f"not enough data yet: {sent} sends and {successes} {words} "
            f"(the model needs {min_sends} sends and {min_successes} {words})"
        )
        return SendTimeFit(metric, False, message, sent, successes, pooled, fitted_at=now)
    keys = sorted(merged)
    X = np.array([_design(w, h) for w, h in keys])
    trials = np.array([merged[k][0] for k in keys], dtype=float)
    wins = np.array([merged[k][1] for k in keys], dtype=float)
    penalty = np.r_[0.0, np.full(31, PRIOR_PRECISION)]
    fit = ridge_logistic(X, wins, trials, penalty)

    day_sent = np.array([sum(merged[k][0] for k in keys if k[0] == d) for d in range(7)], dtype=float)
    day_mix = day_sent / day_sent.sum()  # hours are compared at the weekday mix actually sent
    hour_sent = np.array([sum(merged[k][0] for k in keys if k[1] == h) for h in range(24)], dtype=float)
    hour_mix = hour_sent / hour_sent.sum()

    def hour_row(hour: int) -> np.ndarray:
        row = np.zeros(32)
        row[0], row[1 + hour] = 1.0, 1.0
        row[25:] = day_mix
        return row

    def day_row(day: int) -> np.ndarray:
        row = np.zeros(32)
        row[0], row[25 + day] = 1.0, 1.0
        row[1:25] = hour_mix
        return row

    hours = tuple(
        Rate(h, int(hour_sent[h]), sum(merged[k][1] for k in keys if k[1] == h), *fit.rate(hour_row(h)))
        for h in range(24)
        if hour_sent[h] > 0
    )
    weekdays = tuple(
        Rate(d, int(day_sent[d]), sum(merged[k][1] for k in keys if k[0] == d), *fit.rate(day_row(d)))
        for d in range(7)
        if day_sent[d] > 0
    )
    grid = tuple(tuple(round(fit.rate(_design(d, h))[0], 6) for h in range(24)) for d in range(7))
    best = _best_window(fit, hour_row, hour_sent, pooled, min_hour_sends, window_hours)
    if best is None:
        message = f"no hour has {min_hour_sends}+ sends yet"
    elif best.clearly_better:
        message = (
            f"best hours {best.label}: {words} {best.rate:.1%} (95% {best.low:.1%}–{best.high:.1%}) "
            f"vs {pooled:.1%} overall"
        )
    else:
        message = (
            f"no hour is clearly better yet: the best run {best.label} has {best.rate:.1%} "
            f"(95% {best.low:.1%}–{best.high:.1%}) vs {pooled:.1%} overall"
        )
    if not fit.converged:
        message += " (the fit did not fully converge: treat it as rough)"
    return SendTimeFit(metric, True, message, sent, successes, pooled, hours, weekdays, grid, best, now)


def _best_window(
    fit: RidgeFit, hour_row: Any, hour_sent: np.ndarray, pooled: float, min_hour_sends: int, widest: int
) -> BestWindow | None:
    """The run of 1 to `widest` hours whose rate is best supported by the data: the highest lower bound,
    Bonferroni-adjusted for the number of runs compared (the best of ~30 runs beats the pooled rate by luck
    otherwise). A single strong hour wins as itself; a broad good morning wins as a longer run."""
    rows: list[tuple[int, int, np.ndarray]] = []
    for width in range(1, widest + 1):
        for start in range(0, 24 - width + 1):
            span = range(start, start + width)
            if all(hour_sent[h] >= min_hour_sends for h in span):
                rows.append((start, width, np.mean([hour_row(h) for h in span], axis=0)))  # mean log-odds
    if not rows:
        return None
    z = float(norm.ppf(1 - 0.025 / len(rows)))

    def adjusted_low(row: np.ndarray) -> float:
        eta, se = fit.linear(row)
        return float(expit(eta - z * se))

    start, width, row = max(rows, key=lambda r: (adjusted_low(r[2]), -r[0], r[1]))
    rate, low, high = fit.rate(row)
    return BestWindow(start, start + width, rate, low, high, adjusted_low(row) > pooled)


def best_hour(fit: SendTimeFit, min_hour_sends: int = MIN_HOUR_SENDS) -> int | None:
    """The single hour with the highest fitted rate among hours with enough sends (None without data)."""
    eligible = [r for r in fit.hours if r.sent >= min_hour_sends]
    if not fit.enough or not eligible:
        return None
    return max(eligible, key=lambda r: (r.rate, -r.key)).key


# --- choosing the moment (pure) -------------------------------------------------------------------


def _hour_slots(due: datetime, window_end: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime, int, int]]:
    """[start, end) pieces of [due, window_end) cut at local hour boundaries, with local weekday and hour."""
    slots = []
    moment = due
    while moment < window_end:
        local = moment.astimezone(tz)
        to_boundary = timedelta(minutes=60 - local.minute) - timedelta(seconds=local.second,
                                                                       microseconds=local.microsecond)  # fmt: skip
        end = min(moment + to_boundary, window_end)
        slots.append((moment, end, local.weekday(), local.hour))
        moment = end
    return slots


def preferred_moment(
    due: datetime,
    window_end: datetime,
    tz: ZoneInfo,
    fit: SendTimeFit | None,
    key: str,
    jitter_max: timedelta = SHIFT_JITTER,
) -> datetime:
    """`due`, or the start of a better-rated local hour before `window_end` (plus a stable jitter).

    `due` must be an allowed moment and `window_end` the end of its window (SendRules.next_allowed(due)).
    Ties keep the earlier hour; the result is always in [due, window_end).
    """
    if fit is None or not fit.enough or not fit.grid or due >= window_end:
        return due
    slots = _hour_slots(due, window_end, tz)
    scored = [(fit.grid[wd][hour], -index, start, end) for index, (start, end, wd, hour) in enumerate(slots)]
    _rate, neg_index, start, end = max(scored, key=lambda s: (s[0], s[1]))
    if neg_index == 0:
        return due  # the hour it is due in is already the best on offer
    room = end - start - timedelta(seconds=1)
    return start + jitter_offset(key, max(min(jitter_max, room), timedelta(0)))


def preferred_fit(model: Mapping[str, SendTimeFit] | None) -> SendTimeFit | None:
    """The fit sends follow: replies when there are enough, else human opens, else none."""
    for metric in METRICS:
        fit = (model or {}).get(metric)
        if fit is not None and fit.enough:
            return fit
    return None


# --- the database side -----------------------------------------------------------------------------


def _hour_bucket(bind: Session | Connection) -> Any:
    dialect = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    if dialect == "postgresql":
        return func.date_trunc("hour", CommunicationLog.sent_at)
    return func.strftime("%Y-%m-%d %H:00:00", CommunicationLog.sent_at)


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _campaign_zones(bind: Session | Connection, campaign_ids: Iterable[int]) -> dict[int, ZoneInfo]:
    """The zone a campaign falls back to for prospects without a known one."""
    zones: dict[int, ZoneInfo] = {}
    utc = ZoneInfo("UTC")
    for cid, schedule in bind.execute(
        select(OutreachCampaign.id, OutreachCampaign.schedule).where(OutreachCampaign.id.in_(sorted(campaign_ids)))
    ):
        schedule = schedule or {}
        fixed = schedule.get("timezone")
        name = fixed if fixed and fixed != "prospect" else schedule.get("fallback_timezone")
        zones[cid] = resolve_zone(name, utc)
    return zones


def send_cells(bind: Session | Connection, now: datetime, lookback_days: int = LOOKBACK_DAYS) -> dict[str, list[Cell]]:
    """Sent emails of the last `lookback_days`, by the prospect's local weekday and hour, with outcomes.

    Aggregated in SQL by (prospect zone, campaign, UTC hour); only the zone conversion happens here.
    Opens count only for campaigns that track opens (elsewhere there is nothing to see).
    """
    touch = CommunicationLog
    replied = exists().where(EngagementEvent.communication_id == touch.id, EngagementEvent.kind == EventKind.REPLY)
    opened = exists().where(
        EngagementEvent.communication_id == touch.id,
        EngagementEvent.kind == EventKind.OPEN,
        EngagementEvent.is_machine.is_(False),
    )
    bucket = _hour_bucket(bind).label("bucket")
    query = (
        select(
            Prospect.timezone, Enrollment.campaign_id, bucket, func.count().label("sent"),
            func.sum(case((replied, 1), else_=0)).label("replied"),
            func.sum(case((and_(OutreachCampaign.track_opens.is_(True), opened), 1), else_=0)).label("opened"),
            func.sum(case((OutreachCampaign.track_opens.is_(True), 1), else_=0)).label("open_tracked"),
        )
        .select_from(touch)
        .join(Enrollment, Enrollment.id == touch.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .where(
            touch.state == TouchState.SENT, touch.channel == StepType.EMAIL, touch.sent_at.is_not(None),
            touch.sent_at >= now - timedelta(days=lookback_days),
        )
        .group_by(Prospect.timezone, Enrollment.campaign_id, bucket)
    )  # fmt: skip
    rows = bind.execute(query).all()
    zones = _campaign_zones(bind, {r.campaign_id for r in rows})
    utc = ZoneInfo("UTC")
    cells: dict[str, dict[tuple[int, int], list[int]]] = {m: defaultdict(lambda: [0, 0]) for m in METRICS}
    for r in rows:
        local = _as_utc(r.bucket).astimezone(resolve_zone(r.timezone, zones.get(r.campaign_id, utc)))
        at = (local.weekday(), local.hour)
        cells["reply"][at][0] += int(r.sent)
        cells["reply"][at][1] += int(r.replied or 0)
        cells["open"][at][0] += int(r.open_tracked or 0)
        cells["open"][at][1] += int(r.opened or 0)
    return {m: [Cell(w, h, n, k) for (w, h), (n, k) in sorted(found.items()) if n] for m, found in cells.items()}


def load_model(bind: Session | Connection) -> dict[str, SendTimeFit]:
    """The stored fits by metric (empty before the first refit)."""
    value = bind.scalar(select(AppSetting.value).where(AppSetting.key == MODEL_SETTING))
    if not isinstance(value, dict):
        return {}
    return {m: SendTimeFit.from_data(value[m]) for m in METRICS if isinstance(value.get(m), dict)}


def refit(session: Session, now: datetime, *, force: bool = False) -> str | None:
    """Refit and store both models when the stored fit is older than REFIT_AFTER (or `force`)."""
    stored = load_model(session)
    fitted = [f.fitted_at for f in stored.values() if f.fitted_at is not None]
    if not force and fitted and now - min(fitted) < REFIT_AFTER:
        return None
    cells = send_cells(session, now)
    fits = {m: fit_send_times(cells[m], m, now) for m in METRICS}
    value = {m: fit.to_data() for m, fit in fits.items()}
    setting = session.get(AppSetting, MODEL_SETTING)
    if setting is None:
        session.add(AppSetting(key=MODEL_SETTING, value=value))
    else:
        setting.value = value
    session.flush()
    return "; ".join(f"{m}: {fit.message}" for m, fit in fits.items())


def day_name(weekday: int) -> str:
    return DAY_NAMES[weekday]
