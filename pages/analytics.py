"""Analytics: the funnel, rates with denominators and intervals, breakdowns, heatmap, replies, live monitor.

The page only draws: outreach.analytics reads the rollups (outreach.analytics_rollup, refreshed first so
the numbers are current) and returns dataclasses (cached here for a minute), outreach.analytics_tables
turns them into the rows shown and downloaded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import Engine

from db.engine import transaction
from outreach import analytics, analytics_reads, analytics_tables
from outreach.analytics import Filters

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

CACHE_TTL_S = 60
MONITOR_EVERY_S = 15
EMPTY = "No sends yet — launch a campaign on the Campaigns page, and its numbers appear here."


def _now() -> datetime:
    return datetime.now(UTC)


def _db(e: Engine) -> str:
    return e.url.render_as_string(hide_password=True)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def _options(db: str, _engine: Engine) -> analytics_reads.FilterOptions:
    with transaction(_engine, readonly=True) as s:
        return analytics_reads.filter_options(s)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="Counting…")
def _overview(db: str, filters: Filters, _engine: Engine) -> analytics.Overview:
    return analytics.current_overview(_engine, filters, _now())


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def _mix(db: str, filters: Filters, _engine: Engine) -> analytics_reads.ReplyMix:
    with transaction(_engine, readonly=True) as s:
        return analytics_reads.reply_mix(s, filters)


def _percent_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates and interval bounds shown as percentages (the CSV keeps the fractions)."""
    if not rows:
        return {}
    names = [k for k in rows[0] if "rate" in k or k.endswith((" low", " high")) or k in ("low", "high")]
    return {k: st.column_config.NumberColumn(k, format="percent") for k in names}


def _table(title: str, rows: list[dict[str, Any]], key: str, empty: str) -> None:
    """A table with its CSV download, or why there is none."""
    st.markdown(f"**{title}**")
    if not rows:
        st.caption(empty)
        return
    st.dataframe(rows, hide_index=True, width="stretch", column_config=_percent_columns(rows), key=f"{key}_table")
    st.download_button(f"Download {title.lower()} (CSV)", analytics_tables.to_csv(rows), f"analytics-{key}.csv",
                       "text/csv", key=f"{key}_csv", icon=":material/download:")  # fmt: skip


st.title("Analytics")

# --- live monitor (its own fragment: refreshes without rerunning the page) -------------------------


@st.fragment(run_every=timedelta(seconds=MONITOR_EVERY_S))
def _monitor() -> None:
    with transaction(engine, readonly=True) as s:
        rows = analytics_tables.monitor_rows(analytics_reads.live_monitor(s, _now()))
    st.subheader("Running now")
    if not rows:
        st.caption("No campaign is running. Launched campaigns show their sends, queue and failures here, live.")
        return
    st.dataframe(rows, hide_index=True, width="stretch", key="monitor_table")
    st.caption(
        f"Refreshes every {MONITOR_EVERY_S} s. In doubt: a crash left the send unknown; it is never resent "
        "silently — resolve it on the Campaigns page or with `outreach touch resolve`."
    )


_monitor()

# --- filters --------------------------------------------------------------------------------------

options = _options(_db(engine), engine)
campaign_col, list_col, box_col, date_col = st.columns(4)
campaign_id = campaign_col.selectbox(
    "Campaign", [None, *options.campaigns], key="analytics_campaign",
    format_func=lambda i: "All campaigns" if i is None else options.campaigns[i],
)  # fmt: skip
list_id = list_col.selectbox(
    "Prospect list", [None, *options.lists], key="analytics_list",
    format_func=lambda i: "All lists" if i is None else options.lists[i],
)  # fmt: skip
mailbox_id = box_col.selectbox(
    "Mailbox", [None, *options.mailboxes], key="analytics_mailbox",
    format_func=lambda i: "All mailboxes" if i is None else options.mailboxes[i],
)  # fmt: skip
first, last = options.first_send or _now().date(), max(options.last_send or _now().date(), _now().date())
picked = date_col.date_input("Sent between (UTC days)", value=(first, last), key="analytics_dates")
span: tuple[date | None, date | None] = (None, None)
if isinstance(picked, tuple | list) and len(picked) == 2:  # while picking, only the start is set
    span = (picked[0], picked[1])
filters = Filters(start=span[0], end=span[1], campaign_id=campaign_id, list_id=list_id, mailbox_id=mailbox_id)

view = _overview(_db(engine), filters, engine)
filtered = any(v is not None for v in (campaign_id, list_id, mailbox_id)) or options.first_send is not None


def _funnel(view: analytics.Overview) -> None:
    """People through the funnel, overall and per campaign."""
    st.subheader("Funnel")
    st.caption(
        "People: a prospect in two campaigns counts in each. Human-opened excludes machine opens (Apple Mail "
        "Privacy Protection proxies, security gateways) and counts a click as an open; it and human-clicked are "
        "divided only by emails of campaigns that track them. Meeting: the lead moved to meeting or won after "
        "the first email. Every rate shows its 95% Wilson interval."
    )
    stages = analytics.funnel(view.people)
    left, right = st.columns([1, 1])
    with left:
        figure = go.Figure(go.Funnel(y=[s.name for s in stages], x=[s.count for s in stages], textinfo="value"))
        figure.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, height=320)
        st.plotly_chart(figure, width="stretch", key="funnel_chart")
    with right:
        _table("Funnel", analytics_tables.funnel_rows(stages), "funnel", "")
    if campaign_id is None:
        _table("Per campaign (people)", analytics_tables.campaign_rows(view.campaigns), "campaigns", "")


def _daily(view: analytics.Overview) -> None:
    """Emails per UTC send day, quiet days included."""
    st.subheader("Day by day")
    days = analytics_tables.day_rows(view.days)
    long_form = [
        {"day": row["day"], "count": row[measure], "measure": measure}
        for row in days
        for measure in ("sent", "delivered", "human-opened", "human-clicked", "replied")
    ]
    series = px.line(long_form, x="day", y="count", color="measure", markers=True)
    first, last = view.days[0].day, view.days[-1].day
    single = [f"{first - timedelta(days=1)} 12:00", f"{first} 12:00"]  # one day: a day wide, not a millisecond
    series.update_xaxes(tickformat="%Y-%m-%d", range=single if first == last else None)
    st.plotly_chart(series, width="stretch", key="series_chart")
    st.caption("Emails by the UTC day they were sent: an open or reply days later counts on its email's day.")
    _table("Daily series", days, "daily", "")


def _steps(view: analytics.Overview) -> None:
    """Emails per step, per variant and per mailbox, with mailbox health."""
    st.subheader("Steps, variants and mailboxes")
    st.caption("Counted in emails. Health: a mailbox's own state first, then bounce (over 5%) and complaint "
               "(over 0.3%) rates — “at risk” when the whole interval is above the limit.")  # fmt: skip
    _table("Per step", analytics_tables.step_rows(view.steps), "steps", "")
    _table("Per variant", analytics_tables.variant_rows(view.variants), "variants", "")
    _table("Per mailbox", analytics_tables.mailbox_rows(view.mailboxes), "mailboxes", "")


def _heatmap(view: analytics.Overview) -> None:
    """Reply rate by the local hour and weekday the prospect received the email."""
    st.subheader("Reply rate by the prospect's local send time")
    heat = analytics_tables.heat_rows(view.heatmap)
    rates = [[None] * 24 for _ in range(7)]
    hover = [[""] * 24 for _ in range(7)]
    for cell in view.heatmap:
        rates[cell.weekday][cell.hour] = cell.reply.value
        low, high = cell.reply.low, cell.reply.high
        hover[cell.weekday][cell.hour] = (
            f"{cell.reply.count} of {cell.reply.of} delivered replied<br>95% interval {low:.1%}–{high:.1%}"
        )
    heatmap = go.Figure(
        go.Heatmap(
            z=rates,
            x=list(range(24)),
            y=list(analytics.WEEKDAYS),
            customdata=hover,
            colorscale="Blues",
            hovertemplate="%{y} %{x}:00 — %{customdata}<extra></extra>",
            zmin=0,
            zmax=max([v for row in rates for v in row if v is not None] + [0.01]),  # all zero: still a scale
        )
    )
    heatmap.update_layout(xaxis_title="local hour", yaxis_autorange="reversed", height=320,
                          margin={"l": 10, "r": 10, "t": 10, "b": 10})  # fmt: skip
    st.plotly_chart(heatmap, width="stretch", key="heatmap_chart")
    note = "Empty cells: nothing was delivered at that hour. Hover a cell for its count and interval."
    if view.unzoned_sent:
        note += f" {view.unzoned_sent:,} emails to prospects without a known time zone are not in the map."
    st.caption(note)
    _table("Heatmap", [r for r in heat if r["delivered"]], "heatmap", "Nothing was delivered yet.")


def _replies(view: analytics.Overview) -> None:
    """Intent and sentiment of replies, and how long people took to answer."""
    st.subheader("Replies")
    mix = _mix(_db(engine), filters, engine)
    intents, sentiment = analytics_tables.mix_rows(mix)
    delays = analytics_tables.delay_rows(view.reply_delays)
    if mix.total == 0:
        st.caption("No replies to these emails yet. Intents, sentiment and how fast people answer show here.")
    else:
        intent_col, sentiment_col, delay_col = st.columns(3)
        intent_col.plotly_chart(px.bar(intents, x="intent", y="replies"), width="stretch", key="intent_chart")
        sentiment_col.plotly_chart(
            px.bar(sentiment, x="sentiment", y="replies"), width="stretch", key="sentiment_chart"
        )
        delay_col.plotly_chart(px.bar(delays, x="first reply after", y="replied emails"), width="stretch",
                               key="delay_chart")  # fmt: skip
        st.caption("Intent and sentiment count reply messages (VADER compound ±0.05); time to reply counts each "
                   "replied email once, by its first reply.")  # fmt: skip
        _table("Intent mix", intents, "intents", "")
        _table("Sentiment mix", sentiment, "sentiment", "")
        _table("Time to reply", delays, "reply_delay", "")


if view.empty:
    st.info("No emails were sent inside these filters." if filtered else EMPTY)
else:
    _funnel(view)
    _daily(view)
    _steps(view)
    _heatmap(view)
    _replies(view)

# --- Send-time recommendations ---
