"""Inbox & Tasks: inbound messages with what they were classified as, open tasks, and captured mail.

Everything here is written by outsiders (prospects, mail servers), so it is shown as table cells and
plain text only, never as Markdown with HTML.
"""

from __future__ import annotations

import streamlit as st

from db.engine import transaction
from db.enums import ResponseKind
from outreach import workspace
from outreach.capture import list_captured, read_captured
from outreach.config import load_settings
from outreach.errors import OutreachError

PAGE_SIZE = 50
CAPTURED_SHOWN = 100
CAPTURED_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "List-Unsubscribe")

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Inbox & Tasks")

# --- inbound messages ----------------------------------------------------------------------------
st.subheader("Inbound messages")
with transaction(engine, readonly=True) as session:
    by_kind = workspace.inbound_counts(session)
cols = st.columns(len(by_kind))
for col, (kind, count) in zip(cols, by_kind.items(), strict=True):
    col.metric(kind.replace("_", " ").capitalize(), count)

if sum(by_kind.values()) == 0:
    st.info("No inbound messages yet. Replies, auto-replies and bounces are listed here once they are ingested.")
else:
    kind = st.selectbox(
        "Kind",
        [None, *ResponseKind],
        format_func=lambda k: "All kinds" if k is None else k.replace("_", " "),
        key="inbox_kind",
    )
    matching = by_kind[kind] if kind is not None else sum(by_kind.values())
    table = st.empty()
    page_count = max(1, -(-matching // PAGE_SIZE))
    page = st.pagination(page_count, key=f"inbox_page:{kind}") if page_count > 1 else 1
    with transaction(engine, readonly=True) as session:
        rows = workspace.inbound_rows(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, kind=kind)
    table.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"sentiment": st.column_config.NumberColumn(format="%.2f", help="VADER compound, −1 to 1")},
    )

# --- tasks ---------------------------------------------------------------------------------------
st.subheader("Open tasks")
with transaction(engine, readonly=True) as session:
    open_count = workspace.count_open_tasks(session)
    tasks = workspace.open_task_rows(session, limit=PAGE_SIZE)
if open_count == 0:
    st.info("No open tasks. LinkedIn and call steps of a running campaign put their tasks here.")
else:
    st.dataframe(tasks, hide_index=True, width="stretch")
    if open_count > len(tasks):
        st.caption(f"The {len(tasks)} due soonest of {open_count} open tasks.")

# --- captured mail -------------------------------------------------------------------------------
st.subheader("Captured mail")
settings = load_settings()
captured = list_captured(settings.capture_dir, CAPTURED_SHOWN)
if not captured:
    st.info(
        "No captured mail. While no real mailbox is configured, `outreach up` runs a local capture SMTP server: "
        "every message sent lands here instead of reaching a person."
    )
    st.stop()

st.caption(f"The newest {len(captured)} messages in {settings.capture_dir}; nothing here was delivered.")
st.dataframe(
    [{"received": m.received_at, "to": m.to or ", ".join(m.rcpt_to), "subject": m.subject} for m in captured],
    hide_index=True,
    width="stretch",
)
names = {m.name: f"{m.received_at:%Y-%m-%d %H:%M:%S} · {m.to or ', '.join(m.rcpt_to)} · {m.subject}" for m in captured}
chosen = st.selectbox("Open a captured message", [None, *names], format_func=lambda n: "—" if n is None else names[n])
if chosen is not None:
    try:
        message = read_captured(settings.capture_dir, chosen)
    except OutreachError as exc:
        st.error(str(exc))
        st.stop()
    headers = [{"header": h, "value": str(message[h])} for h in CAPTURED_HEADERS if message[h] is not None]
    st.dataframe(headers, hide_index=True, width="stretch")
    text_part = message.get_body(preferencelist=("plain",))
    if text_part is None:
        st.warning("This message has no plain-text part.")
    else:
        st.code(text_part.get_content(), language=None, wrap_lines=True)
