"""Campaigns: each one's state, how many steps it has, and where its prospects are in it."""

from __future__ import annotations

import streamlit as st

from db.engine import transaction
from outreach import workspace

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Campaigns")

with transaction(engine, readonly=True) as session:
    campaigns = workspace.campaign_summaries(session)

if not campaigns:
    st.info(
        "No campaigns yet. Once a campaign is created, it is listed here with its state, "
        "its steps and how many prospects are active, paused, stopped or finished in it."
    )
    st.stop()

st.dataframe(
    [
        {
            "campaign": c.name,
            "state": str(c.state),
            "steps": c.steps,
            "enrolled": sum(c.enrollments.values()),
            **c.enrollments,
            "paused because": c.paused_reason or "",
            "launched": c.launched_at,
            "created": c.created_at,
        }
        for c in campaigns
    ],
    hide_index=True,
    width="stretch",
)
st.caption(f"{len(campaigns)} campaigns · enrollment counts are prospects in each state")
