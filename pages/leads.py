"""Leads: how many prospects are at each pipeline stage, and the best-scored leads first."""

from __future__ import annotations

import streamlit as st

from db.engine import transaction
from db.enums import LeadStage
from outreach import workspace

PAGE_SIZE = 50

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Leads")

with transaction(engine, readonly=True) as session:
    stages = workspace.lead_stage_counts(session)

if sum(stages.values()) == 0:
    st.info("No qualified leads yet. Prospects get a stage and a score here as they are contacted and reply.")
    st.stop()

st.dataframe(
    [{"stage": stage.replace("_", " "), "leads": count} for stage, count in stages.items()],
    hide_index=True,
    width="content",
)

stage = st.selectbox(
    "Stage",
    [None, *(LeadStage(s) for s, n in stages.items() if n)],
    format_func=lambda s: "All stages" if s is None else s.replace("_", " "),
    key="leads_stage",
)
matching = stages[stage] if stage is not None else sum(stages.values())
table = st.empty()
page_count = max(1, -(-matching // PAGE_SIZE))
page = st.pagination(page_count, key=f"leads_page:{stage}") if page_count > 1 else 1
with transaction(engine, readonly=True) as session:
    rows = workspace.lead_rows(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, stage=stage)
table.dataframe(
    rows, hide_index=True, width="stretch", column_config={"score": st.column_config.NumberColumn(format="%.1f")}
)
