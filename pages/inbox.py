"""Inbox & Tasks: conversations with prospects, unmatched mail, tasks, touches in doubt, captured mail, accuracy.

Replies are written by strangers, and our own touches carry prospect fields, so everything that came
from a message or a prospect is shown through st.text, st.code, st.dataframe or as a selectbox option:
never in Markdown, a caption, a widget label or HTML. Markdown here only ever holds the page's own words.
The page reads through `outreach` and calls its actions; what an action does lives there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import plotly.express as px
import streamlit as st

from db.engine import transaction
from db.enums import Intent, LeadStage, ResponseKind
from outreach import late_touches, workspace
from outreach.campaigns import CampaignManager
from outreach.capture import list_captured, read_captured
from outreach.config import load_settings
from outreach.conversations import (
    ConversationItem,
    conversation,
    correct_label,
    count_unmatched,
    label_accuracy,
    unmatched_messages,
)
from outreach.crm_export import CRM_FORMATS, crm_file
from outreach.errors import OutreachError
from outreach.in_doubt import recent_resolutions
from outreach.inbox_actions import book_meeting, move_stage, unsubscribe_prospect
from outreach.inbox_views import (
    LabelNote,
    ProspectCard,
    accuracy_rows,
    confusion_rows,
    conversation_rows,
    count_conversations,
    imap_polled,
    label_notes,
    labelable,
    prospect_card,
)
from outreach.originals import fetch_original, original_location, original_text

PAGE_SIZE = 50
CAPTURED_SHOWN = 100
CAPTURED_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "List-Unsubscribe")
WHEN = "%Y-%m-%d %H:%M"
PERCENT = st.column_config.NumberColumn(format="percent")

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

settings = load_settings()


def _username() -> str:
    return str(st.session_state["user"].username)


def _show_flash(key: str) -> None:
    kind, message = st.session_state.pop(key, (None, None))
    if kind == "success":
        st.success(message)
    elif kind == "error":
        st.error(message)


def _pages(total: int, key: str) -> int:
    """The page the operator is on (1 when everything fits on one)."""
    page_count = max(1, -(-total // PAGE_SIZE))
    return st.pagination(page_count, key=key) if page_count > 1 else 1


def _label_text(intent: str | None) -> str:
    return intent.replace("_", " ") if intent else "no label"


# --- conversations -------------------------------------------------------------------------------


def _conversations(by_kind: dict[str, int]) -> None:
    if sum(by_kind.values()) == 0:
        st.info("No inbound messages yet. Replies, auto-replies and bounces are listed here once they are ingested.")
        return
    view = st.radio(
        "Show", ["prospects", "messages"], horizontal=True, key="conversation_view", label_visibility="collapsed",
        format_func=lambda v: "By prospect" if v == "prospects" else "Every inbound message",
    )  # fmt: skip
    if view == "messages":
        _every_message(by_kind)
        return
    with transaction(engine, readonly=True) as session:
        total = count_conversations(session)
    if total == 0:
        st.info("No conversations yet: nothing received so far answers a touch of ours (see Unmatched).")
        return
    table = st.empty()
    page = _pages(total, "conversation_page")
    with transaction(engine, readonly=True) as session:
        rows = conversation_rows(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    table.dataframe(
        [{k: v for k, v in row.items() if k != "prospect_id"} for row in rows],
        hide_index=True,
        width="stretch",
        column_config={"confidence": PERCENT},
    )
    by_id = {row["prospect_id"]: row for row in rows}
    chosen = st.selectbox(
        "Open a conversation", list(by_id), index=None, key="conversation_pick",
        placeholder="Pick a prospect to read the whole thread",
        format_func=lambda i: f"{by_id[i]['name']} · {by_id[i]['prospect']} · {by_id[i]['received']:{WHEN}}",
    )  # fmt: skip
    if chosen is not None:
        _thread(chosen)


def _every_message(by_kind: dict[str, int]) -> None:
    """Every inbound message, newest first, filtered by kind (bounces and auto-replies included)."""
    kind = st.selectbox(
        "Kind",
        [None, *ResponseKind],
        format_func=lambda k: "All kinds" if k is None else k.replace("_", " "),
        key="inbox_kind",
    )
    matching = by_kind[kind] if kind is not None else sum(by_kind.values())
    if matching == 0:
        st.info("No inbound messages of this kind.")
        return
    table = st.empty()
    page = _pages(matching, f"inbox_page:{kind}")
    with transaction(engine, readonly=True) as session:
        rows = workspace.inbound_rows(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, kind=kind)
    table.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"sentiment": st.column_config.NumberColumn(format="%.2f", help="VADER compound, −1 to 1")},
    )


def _thread(prospect_id: int) -> None:
    try:
        with transaction(engine, readonly=True) as session:
            card = prospect_card(session, prospect_id, secret_key=settings.secret_key())
            items = conversation(session, prospect_id)
            received = [i.response_id for i in items if i.response_id is not None]
            notes = label_notes(session, received)
            polled = imap_polled(session, received)
    except OutreachError as exc:
        st.error(str(exc))
        return
    _show_flash("conversation_flash")  # the outcome of an action on this thread, right above it
    _card(card)
    _quick_actions(card)
    for item in items:
        _message(item, notes, polled)


def _card(card: ProspectCard) -> None:
    with st.container(border=True):
        who = " · ".join(p for p in (card.name, card.email, card.title, card.company) if p)
        st.text(who)
        mail = "suppressed: never mailed again" if card.suppressed else "not suppressed"
        st.text(
            f"Stage: {_label_text(card.stage)} · live sequences: {card.live_enrollments} · "
            f"open tasks: {card.open_tasks} · {mail}"
        )


def _message(item: ConversationItem, notes: dict[int, LabelNote], polled: set[int]) -> None:
    with st.container(border=True):
        st.markdown("**We sent**" if item.direction == "sent" else "**They wrote**")
        meta = [f"{item.at:{WHEN}} UTC", item.kind.replace("_", " ")]
        if item.campaign:
            meta.append(f"campaign {item.campaign}")
        st.text(" · ".join(meta))
        if item.subject:
            st.text(f"Subject: {item.subject}")
        st.code(item.text or "(no text)", language=None, wrap_lines=True)
        if item.response_id is None:
            return
        if labelable(item.kind):
            _label(item, item.response_id, notes.get(item.response_id))
        _original(item.response_id, item.response_id in polled)


def _label(item: ConversationItem, response_id: int, note: LabelNote | None) -> None:
    sure = f" ({item.confidence:.0%} sure)" if item.confidence is not None else ""
    corrected = note is not None and not note.confirmed
    st.text(f"Label: {_label_text(item.intent)}{'' if corrected else sure}")
    if note is not None:
        st.text(note.describe())
    if item.explanation:  # the classifier's reason, for its own label (and confidence) when a person changed it
        said = f" the classifier said {_label_text(note.automatic)}{sure}" if note is not None and corrected else ""
        st.text(f"Why{said}: {item.explanation}")
    intents = list(Intent)
    pick, confirm = st.columns([3, 1], vertical_alignment="bottom")
    pick.selectbox(
        "Correct the label", intents, index=intents.index(item.intent) if item.intent else None,
        key=f"label:{response_id}", format_func=_label_text, placeholder="Choose the right label",
        on_change=_correct_label, args=(response_id,),
    )  # fmt: skip
    confirm.button(
        "Label is right", key=f"confirm:{response_id}", on_click=_confirm_label, args=(response_id, item.intent),
        disabled=item.intent is None or note is not None,
        help="Counts as a review in the Accuracy tab: the classifier got this one right.",
    )  # fmt: skip


def _correct_label(response_id: int) -> None:
    intent = st.session_state.get(f"label:{response_id}")
    if intent is not None:
        _record_label(response_id, intent)


def _confirm_label(response_id: int, intent: Intent | None) -> None:
    if intent is not None:
        _record_label(response_id, intent)


def _record_label(response_id: int, intent: Intent) -> None:
    try:
        with transaction(engine) as session:
            result = correct_label(session, response_id, intent, _username(), now=datetime.now(UTC))
    except OutreachError as exc:
        st.session_state["conversation_flash"] = ("error", str(exc))
        return
    if result.previous == result.intent:
        message = f"Label {_label_text(result.intent)} confirmed."
    else:
        message = f"Label changed from {_label_text(result.previous)} to {_label_text(result.intent)}."
    st.session_state["conversation_flash"] = (
        "success",
        f"{message} Recorded for the Accuracy tab; the label alone changes nothing else (use the actions above).",
    )


def _original(response_id: int, polled: bool) -> None:
    with st.expander("Original message"):
        text = st.session_state.get(f"original:{response_id}")
        if text is not None:
            st.code(text, language=None, wrap_lines=True)
            return
        if not polled:
            st.info(
                "This message was ingested from a file, not polled from a mailbox: only the text above was kept "
                "(quoted history and signature removed)."
            )
            return
        st.button(
            "Fetch it from the mailbox", key=f"fetch:{response_id}", on_click=_fetch_original, args=(response_id,),
            help="Reads the message over IMAP without marking it as read.",
        )  # fmt: skip
        error = st.session_state.get(f"original_error:{response_id}")
        if error:
            st.error(error)


def _fetch_original(response_id: int) -> None:
    try:
        with transaction(engine, readonly=True) as session:
            location = original_location(session, response_id)
        raw = fetch_original(location)  # network, outside the transaction
    except OutreachError as exc:
        st.session_state[f"original_error:{response_id}"] = str(exc)
        return
    st.session_state.pop(f"original_error:{response_id}", None)
    st.session_state[f"original:{response_id}"] = original_text(raw)


# --- quick actions -------------------------------------------------------------------------------


def _quick_actions(card: ProspectCard) -> None:
    pid = card.prospect_id
    meeting, stage, unsubscribe, crm = st.columns(4, border=True)
    meeting.button("Meeting booked", key="qa_meeting", type="primary", on_click=_act, args=("meeting", pid))
    meeting.caption("Stage → meeting; their sequences stop and the book-a-meeting task is closed.")
    stages = list(LeadStage)
    stage.selectbox(
        "Move to stage", stages, index=stages.index(card.stage), key=f"qa_stage:{pid}", format_func=_label_text
    )
    stage.button("Move", key="qa_move", on_click=_act, args=("move", pid), help="Sequences are left as they are.")
    sure = unsubscribe.checkbox("Yes, never mail them again", key=f"qa_unsubscribe_sure:{pid}")
    unsubscribe.button(
        "Unsubscribe", key="qa_unsubscribe", on_click=_act, args=("unsubscribe", pid), disabled=not sure,
        help="Tick the box first.",
    )  # fmt: skip
    unsubscribe.caption("Suppresses the address and stops every sequence they are in.")
    fmt = crm.selectbox("Send to CRM", list(CRM_FORMATS), key="qa_crm_format", format_func=lambda f: CRM_FORMATS[f])
    try:
        with transaction(engine, readonly=True) as session:
            file = crm_file(session, pid, fmt, secret_key=settings.secret_key(), now=datetime.now(UTC))
    except OutreachError as exc:
        crm.error(str(exc))
        return
    crm.download_button(
        "Download for CRM", file.data, file_name=file.filename, mime=file.mime, key="qa_crm_download",
        on_click="ignore", icon=":material/download:",
    )  # fmt: skip


def _act(action: str, prospect_id: int) -> None:
    """One quick action in its own transaction; the outcome is flashed above the conversation list."""
    now, user = datetime.now(UTC), _username()
    try:
        with transaction(engine) as session:
            if action == "meeting":
                message = book_meeting(
                    session, prospect_id, user=user, now=now, secret_key=settings.secret_key()
                ).describe()
            elif action == "move":
                target = LeadStage(st.session_state[f"qa_stage:{prospect_id}"])
                move = move_stage(session, prospect_id, target, user=user, now=now)
                message = f"Stage moved {move.from_stage} → {move.to_stage}." if move else f"Already at {target}."
            else:
                message = unsubscribe_prospect(session, prospect_id, user=user, now=now).describe()
                st.session_state[f"qa_unsubscribe_sure:{prospect_id}"] = False
    except OutreachError as exc:
        st.session_state["conversation_flash"] = ("error", str(exc))
        return
    st.session_state["conversation_flash"] = ("success", message)


# --- unmatched -----------------------------------------------------------------------------------


def _unmatched() -> None:
    with transaction(engine, readonly=True) as session:
        total = count_unmatched(session)
    if total == 0:
        st.info(
            "No unmatched messages. Mail that answers no touch of ours and comes from no enrolled prospect is "
            "kept and listed here, never dropped."
        )
        return
    matched_none = "1 message matched" if total == 1 else f"{total} messages matched"
    st.caption(f"{matched_none} no touch and no enrolled prospect. They changed nothing; read them here.")
    table = st.empty()
    page = _pages(total, "unmatched_page")
    with transaction(engine, readonly=True) as session:
        messages = unmatched_messages(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    table.dataframe(
        [
            {
                "received": m.received_at, "from": m.from_address or "", "subject": m.subject or "",
                "looks like": (m.classified_as or "").replace("_", " "), "our own copy": m.own_touch,
                "text": " ".join(m.text.split())[:200],
            }
            for m in messages
        ],
        hide_index=True,
        width="stretch",
    )  # fmt: skip
    by_id = {m.response_id: m for m in messages}
    chosen = st.selectbox(
        "Read an unmatched message", list(by_id), index=None, key="unmatched_pick", placeholder="Pick a message",
        format_func=lambda i: f"{by_id[i].received_at:{WHEN}} · {by_id[i].from_address or '?'} · {by_id[i].subject}",
    )  # fmt: skip
    if chosen is not None:
        st.code(by_id[chosen].text or "(no text)", language=None, wrap_lines=True)


# --- tasks ---------------------------------------------------------------------------------------


def _finish_task(task_id: int, done: bool) -> None:
    """Done or skipped: the touch is over and the prospect's sequence moves on (CampaignManager.complete_task)."""
    outcome = (st.session_state.get("task_outcome") or "").strip() or None
    try:
        with transaction(engine) as session:
            manager = CampaignManager(session, secret_key=settings.secret_key())
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
    page = _pages(counts[which], f"task_page:{which}")
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
        manager = CampaignManager(session, secret_key=settings.secret_key())
        resolved = manager.resolve_in_doubt(touch_id, was_sent=was_sent, now=datetime.now(UTC))
    if not resolved:
        st.session_state["doubt_flash"] = ("error", f"Touch {touch_id} is no longer in doubt (resolved already).")
        return
    outcome = "marked as sent; the sequence moves on" if was_sent else "queued to be sent again now"
    st.session_state["doubt_flash"] = ("success", f"Touch {touch_id} {outcome}.")


def _auto_resolved() -> None:
    """What the worker resolved by itself from the mailboxes' Sent folders (outreach.in_doubt), and why."""
    with transaction(engine, readonly=True) as session:
        resolved = recent_resolutions(session, limit=PAGE_SIZE)
    if resolved:
        st.markdown("**Resolved automatically from the Sent folder**")
        st.dataframe(resolved, hide_index=True, width="stretch")


def _in_doubt() -> None:
    with transaction(engine, readonly=True) as session:
        count = workspace.count_in_doubt(session)
    _show_flash("doubt_flash")
    if count == 0:
        st.info(
            "No touches in doubt. When a crash interrupts a send after the message was handed to the mail server, "
            "the touch is listed here and never resent without your say."
        )
        _auto_resolved()
        return
    st.warning(
        f"{count} touches may or may not have reached their prospect. Look for the Message-ID in the mailbox's "
        "Sent folder: mark it as sent if it is there, resend it if it is not."
    )
    table = st.empty()
    page = _pages(count, "doubt_page")
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
    _auto_resolved()


# --- late touches (held for confirmation) ----------------------------------------------------------


def _decide_late(touch_id: int, send: bool) -> None:
    """As `outreach touch confirm|cancel`: confirm sends it now, cancel stops that prospect's sequence."""
    try:
        with transaction(engine) as session:
            (late_touches.confirm if send else late_touches.cancel)(session, touch_id, datetime.now(UTC))
    except OutreachError as exc:
        st.session_state["late_flash"] = ("error", str(exc))
        return
    outcome = "confirmed: it goes out now, at the mailbox's limits" if send else "cancelled; the sequence stopped"
    st.session_state["late_flash"] = ("success", f"Touch {touch_id} {outcome}.")


def _late() -> None:
    st.subheader("Too late to send unasked")
    with transaction(engine, readonly=True) as session:
        count = late_touches.count_held(session)
    _show_flash("late_flash")
    if count == 0:
        st.caption(
            "None. A touch that became later than its campaign's maximum lateness (the worker was down, say) "
            "waits here for your confirmation instead of going out days late."
        )
        return
    st.warning(f"{count} touches are later than their campaign's maximum lateness: send them now, or cancel them.")
    table = st.empty()
    page = _pages(count, "late_page")
    with transaction(engine, readonly=True) as session:
        rows = late_touches.held_rows(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    table.dataframe(rows, hide_index=True, width="stretch")
    by_id = {row["id"]: row for row in rows}
    touch_id = st.selectbox(
        "Late touch", list(by_id), key="late_pick", format_func=lambda i: f"{i} · {by_id[i]['prospect']}"
    )
    send_col, cancel_col = st.columns(2)
    send_col.button("Send now", key="late_send", on_click=_decide_late, args=(touch_id, True))
    cancel_col.button("Cancel (stop the sequence)", key="late_cancel", on_click=_decide_late, args=(touch_id, False))


# --- captured mail -------------------------------------------------------------------------------


def _captured() -> None:
    captured = list_captured(settings.capture_dir, CAPTURED_SHOWN)
    if not captured:
        st.info(
            "No captured mail. While no real mailbox is configured, `outreach up` runs a local capture SMTP server: "
            "every message sent lands here instead of reaching a person."
        )
        return
    st.caption(f"The newest {len(captured)} messages in {settings.capture_dir}; nothing here was delivered.")
    st.dataframe(
        [{"received": m.received_at, "to": m.to or ", ".join(m.rcpt_to), "subject": m.subject} for m in captured],
        hide_index=True,
        width="stretch",
    )
    names = {
        m.name: f"{m.received_at:%Y-%m-%d %H:%M:%S} · {m.to or ', '.join(m.rcpt_to)} · {m.subject}" for m in captured
    }
    chosen = st.selectbox(
        "Open a captured message", [None, *names], format_func=lambda n: "—" if n is None else names[n]
    )
    if chosen is None:
        return
    try:
        message = read_captured(settings.capture_dir, chosen)
    except OutreachError as exc:
        st.error(str(exc))
        return
    headers = [{"header": h, "value": str(message[h])} for h in CAPTURED_HEADERS if message[h] is not None]
    st.dataframe(headers, hide_index=True, width="stretch")
    text_part = message.get_body(preferencelist=("plain",))
    if text_part is None:
        st.warning("This message has no plain-text part.")
    else:
        st.code(text_part.get_content(), language=None, wrap_lines=True)


# --- accuracy ------------------------------------------------------------------------------------


def _accuracy() -> None:
    with transaction(engine, readonly=True) as session:
        view = label_accuracy(session)
    if view.reviewed == 0:
        st.info(
            "No corrections yet. Correct a reply's label in a conversation, or confirm it with “Label is right”: "
            "the classifier's labels are then compared with yours here, class by class."
        )
        return
    labelled, reviewed, agreed = st.columns(3)
    labelled.metric("Replies labelled", view.labelled)
    reviewed.metric("Reviewed by people", view.reviewed)
    agreed.metric("Classifier agreed", f"{view.accuracy:.0%}" if view.accuracy is not None else "—")
    st.caption(
        "Measured on the replies someone reviewed, not on a random sample: precision is how often the "
        "classifier's label was kept, recall how many of the replies people put in a class it had found."
    )
    rows = accuracy_rows(view)
    st.dataframe(rows, hide_index=True, width="stretch", column_config={"precision": PERCENT, "recall": PERCENT})
    _accuracy_chart(rows)
    st.markdown("**What the classifier said, and what people corrected it to**")
    confusions = confusion_rows(view)
    if confusions:
        st.dataframe(confusions, hide_index=True, width="stretch")
    else:
        st.info("No label was changed: every reviewed label was confirmed.")


def _accuracy_chart(rows: list[dict[str, Any]]) -> None:
    points = [
        {"label": row["label"], "measure": measure, "value": row[measure]}
        for row in rows
        for measure in ("precision", "recall")
        if row[measure] is not None
    ]
    chart = px.bar(
        points, x="label", y="value", color="measure", barmode="group", range_y=[0, 1],
        labels={"label": "label", "value": "", "measure": ""}, title="Per-class precision and recall",
    )  # fmt: skip
    chart.update_yaxes(tickformat=".0%")
    st.plotly_chart(chart, width="stretch", key="accuracy_chart")


# --- the page ------------------------------------------------------------------------------------

st.title("Inbox & Tasks")

with transaction(engine, readonly=True) as _session:
    inbound_by_kind = workspace.inbound_counts(_session)
for column, (kind_name, kind_count) in zip(st.columns(len(inbound_by_kind)), inbound_by_kind.items(), strict=True):
    column.metric(kind_name.replace("_", " ").capitalize(), kind_count)

conversations_tab, unmatched_tab, tasks_tab, doubt_tab, captured_tab, accuracy_tab = st.tabs(
    ["Conversations", "Unmatched", "Tasks", "In doubt", "Captured mail", "Accuracy"]
)
with conversations_tab:
    _conversations(inbound_by_kind)
with unmatched_tab:
    _unmatched()
with tasks_tab:
    _tasks(datetime.now(UTC))
with doubt_tab:
    _in_doubt()
    _late()
with captured_tab:
    _captured()
with accuracy_tab:
    _accuracy()
