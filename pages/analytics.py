"""Analytics: touches by state and engagement events by kind, for all campaigns or one."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from db.engine import transaction
from outreach import workspace

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Analytics")

with transaction(engine, readonly=True) as session:
    campaigns = workspace.campaign_options(session)
names = {c.id: c.name for c in campaigns}
campaign_id = st.selectbox(
    "Campaign",
    [None, *names],
    format_func=lambda i: "All campaigns" if i is None else names[i],
    key="analytics_campaign",
)

with transaction(engine, readonly=True) as session:
    touches = workspace.touch_counts(session, campaign_id=campaign_id)
    events = workspace.event_counts(session, campaign_id=campaign_id)

st.subheader("Touches by state")
if sum(touches.values()) == 0:
    st.info("No touches yet. Every email, LinkedIn or call touch a campaign schedules is counted here by state.")
else:
    left, right = st.columns([1, 2])
    left.dataframe([{"state": s, "touches": n} for s, n in touches.items()], hide_index=True, width="stretch")
    chart = px.bar(x=list(touches), y=list(touches.values()), labels={"x": "state", "y": "touches"})
    right.plotly_chart(chart, width="stretch", key="touches_chart")

st.subheader("Engagement events by kind")
if not events:
    st.info("No engagement events yet. Opens, clicks, replies, bounces and unsubscribes are counted here.")
else:
    left, right = st.columns([1, 2])
    left.dataframe(events, hide_index=True, width="stretch")
    long_form = [
        {"kind": row["kind"], "source": source, "events": row[source]}
        for row in events
        for source in ("people", "machines")
    ]
    chart = px.bar(long_form, x="kind", y="events", color="source", barmode="stack")
    right.plotly_chart(chart, width="stretch", key="events_chart")
    st.caption("Machines: privacy proxies and link scanners that open or click on their own.")
