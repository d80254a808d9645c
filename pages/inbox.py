"""Inbox & Tasks: inbound messages, LinkedIn and call tasks, touches in doubt after a crash, and captured mail.

Everything here is written by outsiders (prospects, mail servers), so it is shown as table cells and
plain text only, never as Markdown with HTML.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from db.engine import transaction
from db.enums import ResponseKind
from outreach import workspace
from outreach.campaigns import CampaignManager
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


def _finish_task(task_id: int, done: bool) -> None:
    """Done or skipped: the touch is over and the prospect's sequence moves on (CampaignManager.complete_task)."""
    outcome = (st.session_state.get("task_outcome") or "").strip() or None
    try:
        with transaction(engine) as session:
            manager = CampaignManager(session, secret_key=load_settings().secret_key())
            manager.complete_task(task_id, datetime.now(UTC), done=done, outcome=outcome)
    except OutreachError as exc:
        st.session_state["task_flash"] = ("error", str(exc))
        return
    st.session_state["task_outcome"] = ""
    st.session_state["task_flash"] = ("success", f"Task {'done' if done else 'skipped'}; the sequence moves on.")


def _tasks(now: datetime) -> None:
    with transaction(engine, readonly=True) as session:
        due_count = workspace.count_open_tasks(session, now=now, due_now=True)
        later_count = workspace.count_open_tasks(session, now=now, due_now=False)
    _show_flash("task_flash")
    if due_count + later_count == 0:
        st.info("No open tasks. LinkedIn and call steps of a running campaign put their tasks here.")
        return
    counts = {"due": due_count, "upcoming": later_count}
    which = st.radio(
        "Tasks", list(counts), horizontal=True, key="task_view", label_visibility="collapsed",
        format_func=lambda w: f"Due now ({counts[w]})" if w == "due" else f"Upcoming ({counts[w]})",
    )  # fmt: skip
    if counts[which] == 0:
        st.info("Nothing due now." if which == "due" else "Nothing scheduled later.")
        return
    table = st.empty()
    page_count = max(1, -(-counts[which] // PAGE_SIZE))
    page = st.pagination(page_count, key=f"task_page:{which}") if page_count > 1 else 1
    with transaction(engine, readonly=True) as session:
        rows = workspace.open_task_rows(
            session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, now=now, due_now=which == "due"
        )
    table.dataframe([{k: v for k, v in row.items() if k != "id"} for row in rows], hide_index=True, width="stretch")
    by_id = {row["id"]: row for row in rows}
    task_id = st.selectbox(
        "Work on", list(by_id), key="task_pick",
        format_func=lambda i: f"{by_id[i]['due']:%Y-%m-%d %H:%M} · {by_id[i]['type']} · "
        f"{by_id[i]['name'] or by_id[i]['prospect']} · {by_id[i]['campaign']}",
    )  # fmt: skip
    task = by_id[task_id]
    contact = task["linkedin / phone"] or "none on file"
    st.text(f"{'LinkedIn' if task['type'] == 'linkedin' else 'Phone'}: {contact}")
    st.code(task["instructions"] or "(no note)", language=None, wrap_lines=True)
    st.text_input("Outcome note (optional)", key="task_outcome", placeholder="e.g. left a voicemail")
    done_col, skip_col = st.columns(2)
    done_col.button("Done", key="task_done", type="primary", on_click=_finish_task, args=(task_id, True))
    skip_col.button("Skip", key="task_skip", on_click=_finish_task, args=(task_id, False))


# --- in doubt ------------------------------------------------------------------------------------


def _resolve(touch_id: int, was_sent: bool) -> None:
    """The operator's verdict, as `outreach touch resolve`: marked sent moves the sequence on, resend queues it."""
    with transaction(engine) as session:
        manager = CampaignManager(session, secret_key=load_settings().secret_key())
        resolved = manager.resolve_in_doubt(touch_id, was_sent=was_sent, now=datetime.now(UTC))
    if not resolved:
        st.session_state["doubt_flash"] = ("error", f"Touch {touch_id} is no longer in doubt (resolved already).")
        return
    outcome = "marked as sent; the sequence moves on" if was_sent else "queued to be sent again now"
    st.session_state["doubt_flash"] = ("success", f"Touch {touch_id} {outcome}.")


def _in_doubt() -> None:
    with transaction(engine, readonly=True) as session:
        count = workspace.count_in_doubt(session)
    _show_flash("doubt_flash")
    if count == 0:
        st.info(
            "No touches in doubt. When a crash interrupts a send after the message was handed to the mail server, "
            "the touch is listed here and never resent without your say."
        )
        return
    st.warning(
        f"{count} touches may or may not have reached their prospect. Look for the Message-ID in the mailbox's "
        "Sent folder: mark it as sent if it is there, resend it if it is not."
    )
    table = st.empty()
    page_count = max(1, -(-count // PAGE_SIZE))
    page = st.pagination(page_count, key="doubt_page") if page_count > 1 else 1
    with transaction(engine, readonly=True) as session:
        rows = workspace.in_doubt_rows(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    table.dataframe(rows, hide_index=True, width="stretch")
    by_id = {row["id"]: row for row in rows}
    touch_id = st.selectbox(
        "Touch", list(by_id), key="doubt_pick",
        format_func=lambda i: f"{i} · {by_id[i]['prospect']} · {by_id[i]['message-id'] or 'no Message-ID'}",
    )  # fmt: skip
    sent_col, resend_col = st.columns(2)
    sent_col.button("Mark as sent", key="doubt_sent", on_click=_resolve, args=(touch_id, True))
    resend_col.button("Resend", key="doubt_resend", on_click=_resolve, args=(touch_id, False))


def _show_flash(key: str) -> None:
    kind, message = st.session_state.pop(key, (None, None))
    if kind == "success":
        st.success(message)
    elif kind == "error":
        st.error(message)


st.subheader("Tasks")
_tasks(datetime.now(UTC))
st.subheader("In doubt")
_in_doubt()

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
