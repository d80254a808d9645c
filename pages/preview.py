"""Preview: the exact message a prospect gets for a step and variant, as `outreach preview` shows it.

outreach.preview.preview renders it the way the worker will (or shows what was stored when the touch is
already queued or sent). Everything is shown as plain text — the HTML part as its source — never as HTML.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from db.engine import transaction
from outreach import workspace
from outreach.config import load_settings
from outreach.errors import OutreachError
from outreach.preview import Preview, preview

SOURCES = {
    "queued": "Queued: this is the stored message, exactly what goes out.",
    "sent": "Sent: this is the message that went out.",
    "rendered": "Not queued yet: rendered now from the templates, the way the worker will render it.",
}

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

by_id = {c.id: c for c in campaigns}
left, right = st.columns(2)
campaign_id = left.selectbox(
    "Campaign", list(by_id), format_func=lambda i: f"{by_id[i].name} ({by_id[i].state})", key="preview_campaign"
)
search = right.text_input("Find a prospect", placeholder="email, name or company", key="preview_search")

with transaction(engine, readonly=True) as session:
    steps = workspace.campaign_steps(session, campaign_id)
    matches = workspace.find_prospects(session, search)  # searched in the database, at most 50 shown

prospects = {p.id: p for p in matches}
prospect_id = None
if matches:
    labels = {p.id: f"{p.email} — {p.name}" if p.name else p.email for p in matches}
    prospect_id = right.selectbox("Prospect", list(labels), format_func=labels.__getitem__, key="preview_prospect")
elif search:
    right.caption("No prospect matches this search.")
else:
    right.caption("No prospects yet.")

if not steps:
    st.info("This campaign has no steps yet.")
    st.stop()

by_number = {step.position + 1: step for step in steps}
step_number = left.selectbox(
    "Step", list(by_number), key=f"preview_step:{campaign_id}",
    format_func=lambda n: f"Step {n} · {by_number[n].type}",
)  # fmt: skip
step = by_number[step_number]
variant_names = [v.name for v in step.variants if v.is_active]
variant_name = left.selectbox(
    "Variant", [None, *variant_names], key=f"preview_variant:{campaign_id}:{step_number}",
    format_func=lambda v: "the one the worker would choose" if v is None else f"Variant {v}",
)  # fmt: skip


def _show(result: Preview, email: str) -> None:
    st.caption(f"Variant {result.variant} · {SOURCES.get(result.source, result.source)}")
    if result.error:
        st.error(f"Step {result.step}, variant {result.variant} does not render for {email}: {result.error}")
        return
    if result.headers:
        st.dataframe(
            [{"header": name, "value": value} for name, value in result.headers.items()],
            hide_index=True,
            width="stretch",
        )
    if result.subject is not None:
        st.text("Subject")
        st.code(result.subject, language=None, wrap_lines=True)
    st.text("Text part" if result.subject is not None else "Note / script")
    st.code(result.text, language=None, wrap_lines=True)
    if result.html is not None:
        st.text("HTML part (source, not rendered)")
        st.code(result.html, language="html", wrap_lines=True)


st.subheader("Message")
if prospect_id is None:
    st.info("Find and pick a prospect to see the exact message they would get.")
else:
    email = prospects[prospect_id].email
    try:
        with transaction(engine, readonly=True) as session:
            result = preview(
                session, by_id[campaign_id].name, email, datetime.now(UTC), secret_key=load_settings().secret_key(),
                step_number=step_number, variant_name=variant_name,
            )  # fmt: skip
    except OutreachError as exc:
        st.error(f"This step cannot be previewed: {exc}")
    else:
        _show(result, email)

with st.expander(f"Step {step_number} as written"):
    delay = f"after {step.delay_amount} {step.delay_unit.replace('_', ' ')}" if step.delay_amount else "right away"
    thread = " · in the same thread" if step.thread else ""
    st.text(f"{delay} · when: {step.condition.replace('_', ' ')}{thread}")
    for variant in step.variants:
        st.text(f"Variant {variant.name}" + ("" if variant.is_active else " (inactive)"))
        if variant.subject is not None:
            st.code(variant.subject, language=None, wrap_lines=True)
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
