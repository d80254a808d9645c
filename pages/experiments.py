"""Experiments: every step with two or more variants, and what each variant has sent and got back."""

from __future__ import annotations

import streamlit as st

from db.engine import transaction
from outreach import workspace

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Experiments")

with transaction(engine, readonly=True) as session:
    found = workspace.experiments(session)

if not found:
    st.info(
        "No experiments yet. A campaign step with two or more variants is an A/B test: "
        "it appears here with each variant's sends and replies."
    )
    st.stop()

for experiment in found:
    st.subheader(f"{experiment.campaign} · step {experiment.step_position + 1}")
    st.caption(f"{experiment.step_type} step · campaign {experiment.campaign_state}")
    st.dataframe(
        [
            {
                "variant": v.name,
                "active": v.is_active,
                "weight": v.weight,
                "sent": v.sent,
                "replied": v.replied,
                "reply rate": v.reply_rate,
            }
            for v in experiment.variants
        ],
        hide_index=True,
        width="stretch",
        column_config={"reply rate": st.column_config.NumberColumn(format="percent")},
    )
