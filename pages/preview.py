"""Preview: a campaign's steps and variants as written, next to the prospect fields they draw on.

Templates and prospect fields are shown as plain text (st.code / tables), never as HTML.
"""

from __future__ import annotations

import streamlit as st

from db.engine import transaction
from outreach import workspace

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Preview")

with transaction(engine, readonly=True) as session:
    campaigns = workspace.campaign_options(session)

if not campaigns:
    st.info("No campaigns yet, so there is nothing to preview. Campaigns and their steps appear here once created.")
    st.stop()

names = {c.id: f"{c.name} ({c.state})" for c in campaigns}
left, right = st.columns(2)
campaign_id = left.selectbox("Campaign", list(names), format_func=names.__getitem__, key="preview_campaign")
search = right.text_input("Find a prospect", placeholder="email, name or company", key="preview_search")

with transaction(engine, readonly=True) as session:
    steps = workspace.campaign_steps(session, campaign_id)
    matches = workspace.find_prospects(session, search)

prospect_id = None
if matches:
    labels = {p.id: f"{p.email} — {p.name}" if p.name else p.email for p in matches}
    prospect_id = right.selectbox("Prospect", list(labels), format_func=labels.__getitem__, key="preview_prospect")
elif search:
    right.caption("No prospect matches this search.")
else:
    right.caption("No prospects yet.")

st.caption("Templates are shown as written: their {{ placeholders }} are not filled in here.")
if not steps:
    st.info("This campaign has no steps yet.")
for step in steps:
    st.subheader(f"Step {step.position + 1} · {step.type}")
    delay = f"after {step.delay_amount} {step.delay_unit.replace('_', ' ')}" if step.delay_amount else "right away"
    thread = " · in the same thread" if step.thread else ""
    st.text(f"{delay} · when: {step.condition.replace('_', ' ')}{thread}")
    if not step.variants:
        st.caption("No variants in this step.")
        continue
    tabs = st.tabs([f"Variant {v.name}" + ("" if v.is_active else " (inactive)") for v in step.variants])
    for tab, variant in zip(tabs, step.variants, strict=True):
        with tab:
            if variant.subject is not None:
                st.text("Subject")
                st.code(variant.subject, language=None, wrap_lines=True)
            st.text("Body")
            st.code(variant.body, language=None, wrap_lines=True)

if prospect_id is not None:
    with transaction(engine, readonly=True) as session:
        fields = workspace.prospect_fields(session, prospect_id)
        enrollment = workspace.enrollment_of(session, campaign_id, prospect_id)
    st.subheader("Prospect")
    if fields is None:
        st.warning("This prospect no longer exists.")
    else:
        st.dataframe(
            [{"field": name, "value": "" if value is None else str(value)} for name, value in fields.items()],
            hide_index=True,
            width="stretch",
        )
        if enrollment is None:
            st.caption("Not enrolled in this campaign.")
        else:
            st.dataframe([enrollment], hide_index=True, width="stretch")
